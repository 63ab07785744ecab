//! Response security headers and the content types the API accepts.

use actix_web::http::header;
use actix_web::middleware::DefaultHeaders;

use crate::config::Environment;

/// No inline script or style anywhere: every script and stylesheet is a hashed
/// file under /static, so the policy can stay strict.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'; \
report-uri /api/v1/csp-reports";

/// The billing page's forms answer with a redirect to Stripe's hosted
/// Checkout and Customer Portal, which `form-action` must allow (browsers
/// apply it to the redirect too).
pub const BILLING_CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
object-src 'none'; base-uri 'self'; \
form-action 'self' https://checkout.stripe.com https://billing.stripe.com; \
frame-ancestors 'none'; report-uri /api/v1/csp-reports";

const HSTS: &str = "max-age=63072000; includeSubDomains";

pub struct Headers {
    hsts: bool,
}

impl Headers {
    pub fn new(environment: Environment) -> Self {
        // HSTS only where TLS is guaranteed: production sits behind https.
        Self {
            hsts: environment.is_production(),
        }
    }

    /// Headers added to every response unless a handler set its own
    /// (static assets set a long-lived Cache-Control, for instance).
    pub fn middleware(&self) -> DefaultHeaders {
        let mut headers = DefaultHeaders::new()
            .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
            .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .add((header::REFERRER_POLICY, "strict-origin-when-cross-origin"))
            .add((header::X_FRAME_OPTIONS, "DENY"))
            .add(("Cross-Origin-Opener-Policy", "same-origin"))
            .add((
                "Permissions-Policy",
                "camera=(), microphone=(), geolocation=()",
            ))
            .add((header::CACHE_CONTROL, "no-store"));
        if self.hsts {
            headers = headers.add((header::STRICT_TRANSPORT_SECURITY, HSTS));
        }
        headers
    }
}

/// JSON in any of its spellings, including the CSP report formats browsers send.
pub fn is_json_content_type(mime: mime_guess::Mime) -> bool {
    mime.type_() == "application"
        && (mime.subtype() == "json"
            || mime.suffix().is_some_and(|s| s == "json")
            || mime.subtype() == "csp-report")
}

/// Middleware: `HEAD` is answered wherever `GET` is (RFC 9110 asks it; uptime
/// monitors and link checkers send it), by routing it as `GET`. The HTTP/1
/// codec remembers the request was `HEAD` and sends the headers only.
pub async fn head_as_get(
    mut req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    if req.method() == actix_web::http::Method::HEAD {
        req.head_mut().method = actix_web::http::Method::GET;
    }
    next.call(req).await
}

/// Middleware: a request body in a content coding the server cannot decode is
/// refused with 415 (RFC 9110 §15.5.16) instead of being read as if it were
/// plain, which would store compressed bytes or fail with a puzzling message.
/// Decoded are the codings actix-web was built with: gzip, deflate, brotli.
pub async fn decodable_body(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<
    actix_web::dev::ServiceResponse<actix_web::body::EitherBody<impl actix_web::body::MessageBody>>,
    actix_web::Error,
> {
    use actix_web::http::header::ContentEncoding;
    let decodable = match req.headers().get(header::CONTENT_ENCODING) {
        None => true,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.parse::<ContentEncoding>().ok())
            .is_some_and(|coding| coding != ContentEncoding::Zstd),
    };
    if decodable {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let error = crate::error::AppError::UnsupportedMediaType(
        "The request body's Content-Encoding is not one this server decodes: send it as gzip, deflate, br or uncompressed.".into(),
    );
    let (req, _) = req.into_parts();
    Ok(actix_web::dev::ServiceResponse::from_err(error, req).map_into_right_body())
}

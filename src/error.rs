//! The application error and the one place where any error becomes a response:
//! the JSON error shape under `/api`, a friendly HTML page everywhere else.

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};
use askama::Template as _;
use serde::Serialize;

use crate::telemetry::CorrelationId;
use crate::views::ErrorPage;

pub type AppResult<T> = Result<T, AppError>;

/// Whether 5xx pages may show the internal cause (development only). Absent
/// means no: the safe default.
#[derive(Debug, Clone, Copy)]
pub struct ErrorDetail {
    pub show_internal: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication required")]
    Unauthorized,
    /// Signed in, but not a member of any enabled organization.
    #[error("Your account does not belong to any active organization.")]
    NoOrganization,
    #[error("{0}")]
    PaymentRequired(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Validation(String),
    /// The thing exists but is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// The thing existed but is closed for good (a resolved conversation).
    #[error("{0}")]
    Gone(String),
    /// Over a budget of `limit` requests: `X-RateLimit-*` and `Retry-After`
    /// say which, and when to come back.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        limit: u32,
        retry_after_secs: u64,
    },
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    /// Wraps a cause that must be logged but never shown.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "BAD_REQUEST",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::NoOrganization => "NO_ORGANIZATION",
            Self::PaymentRequired(_) => "PLAN_LIMIT_REACHED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            Self::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            Self::Validation(_) => "VALIDATION_FAILED",
            Self::Conflict(_) => "CONFLICT",
            Self::Gone(_) => "GONE",
            Self::TooManyRequests { .. } => "RATE_LIMITED",
            Self::Unavailable(_) => "SERVICE_UNAVAILABLE",
            Self::Internal(_) => "INTERNAL_ERROR",
        }
    }

    /// What the user may read. Internal causes stay in the log.
    fn public_message(&self) -> String {
        match self {
            Self::Internal(_) => default_message(StatusCode::INTERNAL_SERVER_ERROR).into(),
            // Only machines read this one (a page sends the browser to sign in).
            Self::Unauthorized => "Missing, unknown or revoked credentials: send a valid key as `Authorization: Bearer …`, or sign in.".into(),
            Self::NotFound | Self::MethodNotAllowed => default_message(self.status_code()).into(),
            other => other.to_string(),
        }
    }
}

/// What a visitor reads who writes in a resolved (or erased) conversation.
pub const CONVERSATION_CLOSED: &str = "This conversation is closed; please start a new one.";

/// What a visitor reads while the database cannot be reached.
pub const DATABASE_UNAVAILABLE: &str =
    "Frontdesk cannot reach its database right now. Please try again in a moment.";

impl From<crate::db::DbError> for AppError {
    fn from(err: crate::db::DbError) -> Self {
        use crate::db::DbError as E;
        match err {
            // No connection to be had (down, or the pool exhausted): a retry can
            // help, so 503 rather than 500. The cause is logged by the caller.
            E::Pool(_) | E::Unresponsive(_) => {
                tracing::warn!(error = %err, "database unavailable");
                Self::Unavailable(DATABASE_UNAVAILABLE.into())
            }
            E::Query(e) => e.into(),
            other => Self::internal(other),
        }
    }
}

impl From<crate::services::accounts::AccountError> for AppError {
    fn from(err: crate::services::accounts::AccountError) -> Self {
        use crate::services::accounts::AccountError as E;
        match err {
            E::NotFound => Self::NotFound,
            E::Limit(limit) => Self::PaymentRequired(limit.message),
            E::Forbidden(why) => Self::Forbidden(why.into()),
            e @ E::InviterUnverified => Self::Forbidden(e.to_string()),
            // Well formed, but refused by the state things are in (someone
            // has it already, nobody else is owner): the same request can
            // succeed once that changes, so 409 rather than 422.
            e @ (E::EmailTaken
            | E::AlreadyMember
            | E::AlreadyInvited
            | E::SlugTaken
            | E::LastOwner
            | E::SoleOwner(_)
            | E::LiveSubscription) => Self::Conflict(e.to_string()),
            E::Db(e) => e.into(),
            other => Self::Validation(other.to_string()),
        }
    }
}

impl From<crate::services::tickets::TicketError> for AppError {
    fn from(err: crate::services::tickets::TicketError) -> Self {
        use crate::services::tickets::TicketError as E;
        match err {
            E::NotFound => Self::NotFound,
            E::Forbidden(why) => Self::Forbidden(why.into()),
            E::Db(e) => e.into(),
            other => Self::Validation(other.to_string()),
        }
    }
}

impl From<crate::services::knowledge::KnowledgeError> for AppError {
    fn from(err: crate::services::knowledge::KnowledgeError) -> Self {
        use crate::services::knowledge::{KnowledgeError as E, TextError};
        match err {
            E::Text(TextError::Unsupported { .. }) => Self::UnsupportedMediaType(err.to_string()),
            E::TooLarge { .. } => Self::PayloadTooLarge(err.to_string()),
            E::NotFound => Self::NotFound,
            E::Limit(limit) => Self::PaymentRequired(limit.message),
            E::Db(e) => e.into(),
            other => Self::Validation(other.to_string()),
        }
    }
}

impl From<crate::services::knowledge::TextError> for AppError {
    fn from(err: crate::services::knowledge::TextError) -> Self {
        crate::services::knowledge::KnowledgeError::Text(err).into()
    }
}

impl From<crate::services::chat::ChatError> for AppError {
    fn from(err: crate::services::chat::ChatError) -> Self {
        use crate::services::chat::ChatError as E;
        match err {
            E::Erased => Self::Gone(CONVERSATION_CLOSED.into()),
            // The database went away mid-reply: trying again can help.
            E::Pool(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                Self::Unavailable(DATABASE_UNAVAILABLE.into())
            }
            E::Db(e) => e.into(),
        }
    }
}

impl From<crate::services::agents::AgentError> for AppError {
    fn from(err: crate::services::agents::AgentError) -> Self {
        use crate::services::agents::AgentError as E;
        match err {
            E::NotFound => Self::NotFound,
            E::Limit(limit) => Self::PaymentRequired(limit.message),
            e @ E::SlugTaken => Self::Conflict(e.to_string()),
            E::Db(e) => e.into(),
            other => Self::Validation(other.to_string()),
        }
    }
}

impl From<crate::services::billing::LimitError> for AppError {
    fn from(err: crate::services::billing::LimitError) -> Self {
        use crate::services::billing::LimitError as E;
        match err {
            E::Reached(limit) => Self::PaymentRequired(limit.message),
            E::Db(e) => e.into(),
        }
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(err: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error as E};
        match err {
            // The connection died under the query (a database restart or
            // failover): the next attempt gets a fresh one, so 503, not 500.
            E::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => {
                tracing::warn!(error = %err, "database connection lost");
                Self::Unavailable(DATABASE_UNAVAILABLE.into())
            }
            other => Self::internal(other),
        }
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(err: actix_web::error::BlockingError) -> Self {
        Self::internal(err)
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NoOrganization => StatusCode::FORBIDDEN,
            Self::PaymentRequired(_) => StatusCode::PAYMENT_REQUIRED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Gone(_) => StatusCode::GONE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The body is filled in by [`render_errors`], which knows the path and the
    /// correlation id; this only carries the status.
    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::new(self.status_code());
        if let Self::TooManyRequests {
            limit,
            retry_after_secs,
            ..
        } = self
        {
            let headers = res.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            crate::rate_limit::set_headers(
                headers,
                crate::rate_limit::Standing {
                    limit: *limit,
                    remaining: 0,
                    reset_secs: *retry_after_secs,
                },
            );
        }
        res
    }
}

impl AppError {
    /// The API's error shape for this error, for an answer whose status line
    /// already went out (the last event of a reply's stream).
    pub fn body(&self, correlation_id: &str) -> serde_json::Value {
        let status = self.status_code();
        serde_json::to_value(ErrorBody {
            error: status.canonical_reason().unwrap_or("Error"),
            code: self.code(),
            message: &self.public_message(),
            correlation_id,
            timestamp: error_timestamp(),
        })
        .unwrap_or_default()
    }
}

fn error_timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn default_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "The request could not be understood.",
        401 => "Please sign in to continue.",
        402 => "Your plan does not include this. Upgrade to continue.",
        403 => "You do not have access to this.",
        404 => "We could not find what you were looking for.",
        405 => "This address does not accept that kind of request.",
        408 => "The request took too long to arrive.",
        413 => "The request is larger than this server accepts.",
        415 => "This content type is not accepted here.",
        422 => "Some of the information is not valid.",
        429 => "Too many requests; please slow down and try again shortly.",
        503 => "The service is temporarily unavailable; please try again shortly.",
        s if s >= 500 => {
            "Something went wrong on our side. We have logged it and will look into it."
        }
        _ => "The request could not be completed.",
    }
}

fn page_title(status: StatusCode) -> &'static str {
    match status.as_u16() {
        402 => "Upgrade needed",
        404 => "Page not found",
        405 => "Method not allowed",
        413 => "Too large",
        415 => "Unsupported content type",
        422 => "Check your input",
        429 => "Slow down",
        s if s >= 500 => "Something went wrong",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    error: &'a str,
    code: &'a str,
    message: &'a str,
    correlation_id: &'a str,
    timestamp: String,
}

/// Middleware: gives every error response its final form. Responses that a handler
/// rendered on purpose (a JSON probe answering 503, say) carry a body and no error,
/// and pass through untouched.
pub async fn render_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, actix_web::Error> {
    // Read before routing: cloning the request itself would stop the router from
    // writing path parameters into it.
    let correlation_id = CorrelationId::of(&req);
    let production = req
        .app_data::<ErrorDetail>()
        .is_none_or(|d| !d.show_internal);

    // Handlers' and extractors' errors arrive as responses carrying the error.
    // An `Err` could only come from the session middleware inside this one, and
    // its store turns an unreadable session into a 503 from the extractors
    // instead (`auth::session_store::UNAVAILABLE_KEY`).
    let res = next.call(req).await?;

    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return Ok(res.map_into_left_body());
    }
    let from_error = res.response().error().is_some();
    let empty = matches!(
        res.response().body().size(),
        actix_web::body::BodySize::Sized(0) | actix_web::body::BodySize::None
    );
    if !from_error && !empty {
        return Ok(res.map_into_left_body());
    }

    // A body extractor without an error handler of ours (raw bytes: the
    // public chat start, uploads, webhooks) fails with actix-web's own words.
    let payload = res
        .response()
        .error()
        .and_then(|e| e.as_error::<actix_web::error::PayloadError>())
        .map(unreadable_body);
    let (app_error, detail) = match res.response().error() {
        Some(e) => (
            payload.as_ref().or_else(|| e.as_error::<AppError>()),
            e.to_string(),
        ),
        None => (None, String::new()),
    };
    let mut rendered = render(
        res.request().path(),
        status,
        app_error,
        &detail,
        &correlation_id,
        production,
    );
    // Keep headers a handler set on purpose (Allow, Retry-After, …).
    for (name, value) in res.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rendered.headers_mut().insert(name.clone(), value.clone());
        }
    }
    let (req, _) = res.into_parts();
    Ok(ServiceResponse::new(req, rendered).map_into_right_body())
}

fn render(
    path: &str,
    status: StatusCode,
    app_error: Option<&AppError>,
    detail: &str,
    correlation_id: &str,
    production: bool,
) -> HttpResponse {
    let message = match app_error {
        Some(e) => e.public_message(),
        // Errors from actix extractors are about the request itself; their text is
        // safe and useful (e.g. "Json deserialize error: missing field `x`").
        None if status.is_client_error() && !detail.is_empty() => detail.to_string(),
        None => default_message(status).to_string(),
    };
    if status.is_server_error() {
        let cause = match app_error {
            Some(AppError::Internal(cause)) => cause.as_str(),
            _ => detail,
        };
        tracing::error!(status = status.as_u16(), %correlation_id, cause, "request failed");
    }
    let message = if status.is_server_error() && !production {
        match app_error {
            Some(AppError::Internal(cause)) => format!("{message} (development detail: {cause})"),
            _ => message,
        }
    } else {
        message
    };
    let code = app_error
        .map(AppError::code)
        .unwrap_or_else(|| code_for(status));

    let mut builder = HttpResponse::build(status);
    builder.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    // Webhooks and metrics scrapes are machine-to-machine too: they get the JSON shape.
    let api = path.starts_with("/api/")
        || path == "/api"
        || path.starts_with("/webhooks/")
        || path == "/metrics"
        || path.starts_with("/metrics/");
    if status == StatusCode::UNAUTHORIZED && !api {
        // A page that needs a session sends the browser to sign in.
        return see_other("/login");
    }
    if matches!(app_error, Some(AppError::NoOrganization)) && !api {
        // Nothing in /app without an organization: offer to start one.
        return see_other("/app/welcome");
    }
    if status == StatusCode::UNAUTHORIZED {
        // RFC 9110: a 401 names the scheme that would be accepted.
        builder.insert_header((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"frontdesk\""),
        ));
    }
    if api {
        builder.json(ErrorBody {
            error: status.canonical_reason().unwrap_or("Error"),
            code,
            message: &message,
            correlation_id,
            timestamp: error_timestamp(),
        })
    } else {
        let (back_href, back_label) = ErrorPage::back_for(path);
        let page = ErrorPage {
            status: status.as_u16(),
            title: page_title(status).to_string(),
            message,
            correlation_id: correlation_id.to_string(),
            back_href,
            back_label,
        };
        match page.render() {
            Ok(html) => builder.content_type("text/html; charset=utf-8").body(html),
            Err(e) => {
                tracing::error!(error = %e, "error page template failed");
                builder
                    .content_type("text/plain; charset=utf-8")
                    .body(default_message(status))
            }
        }
    }
}

fn see_other(location: &'static str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .finish()
}

fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BAD_REQUEST",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        408 => "REQUEST_TIMEOUT",
        413 => "PAYLOAD_TOO_LARGE",
        415 => "UNSUPPORTED_MEDIA_TYPE",
        422 => "VALIDATION_FAILED",
        429 => "RATE_LIMITED",
        503 => "SERVICE_UNAVAILABLE",
        s if s >= 500 => "INTERNAL_ERROR",
        _ => "REQUEST_FAILED",
    }
}

/// Maps actix's body extractor errors onto our error type (wired in `startup`).
pub fn json_error(
    err: actix_web::error::JsonPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let app = match &err {
        E::OverflowKnownLength { length, limit } => AppError::PayloadTooLarge(format!(
            "The JSON body is {length} bytes; the limit is {limit} bytes."
        )),
        E::Overflow { limit } => {
            AppError::PayloadTooLarge(format!("The JSON body exceeds the limit of {limit} bytes."))
        }
        E::ContentType => AppError::UnsupportedMediaType(
            "Send the body as JSON with Content-Type: application/json.".into(),
        ),
        E::Deserialize(e) => invalid_json(e),
        E::Payload(e) => unreadable_body(e),
        other => AppError::BadRequest(format!("The body could not be read: {other}")),
    };
    app.into()
}

/// A JSON body serde refused: not JSON at all is a 400, JSON of the wrong
/// shape a 422.
pub(crate) fn invalid_json(e: &serde_json::Error) -> AppError {
    if e.is_data() {
        AppError::Validation(format!(
            "The JSON body is not valid: {}",
            plain_serde(&e.to_string())
        ))
    } else {
        AppError::BadRequest(format!("The body is not valid JSON: {e}"))
    }
}

/// A body that could not be read to its end: said plainly, without the
/// I/O error's debug form that actix-web's own message carries.
pub(crate) fn unreadable_body(err: &actix_web::error::PayloadError) -> AppError {
    use actix_web::error::PayloadError as P;
    match err {
        P::Overflow => AppError::PayloadTooLarge("The body exceeds the size limit.".into()),
        // With an I/O error inside, it is the decoder that failed (a client
        // whose connection broke reads no answer anyway).
        P::Incomplete(None) => {
            AppError::BadRequest("The body ended before the length it announced.".into())
        }
        _ => AppError::BadRequest(
            "The body could not be read: it is not what its Content-Encoding says (send it uncompressed, or compressed as declared).".into(),
        ),
    }
}

pub fn form_error(
    err: actix_web::error::UrlencodedError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::UrlencodedError as E;
    let app = match &err {
        E::Overflow { size, limit } => AppError::PayloadTooLarge(format!(
            "The form is {size} bytes; the limit is {limit} bytes."
        )),
        E::ContentType => AppError::UnsupportedMediaType(
            "Send the form as application/x-www-form-urlencoded.".into(),
        ),
        E::Payload(e) => unreadable_body(e),
        other => AppError::BadRequest(format!("The form could not be read: {other}")),
    };
    app.into()
}

pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::QueryPayloadError as Q;
    let why = match &err {
        Q::Deserialize(e) => plain_serde(&e.to_string()),
        other => other.to_string(),
    };
    AppError::BadRequest(format!("The query string is not valid: {why}")).into()
}

/// serde's explanation without the Rust in it: it names the server's own
/// types ("expected struct AgentForm with 10 elements") and Rust's number
/// types ("expected i64"), which say nothing to a caller of a JSON API.
fn plain_serde(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("struct ") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "struct ".len()..];
        let name = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if !after.starts_with(|c: char| c.is_ascii_uppercase()) {
            out.push_str("struct ");
            rest = after;
            continue;
        }
        let mut tail = &after[name..];
        // "… with 10 elements": how many fields the type has.
        if let Some(count) = tail.strip_prefix(" with ") {
            let digits = count.find(|c: char| !c.is_ascii_digit()).unwrap_or(0);
            if digits > 0 {
                let unit = &count[digits..];
                if let Some(t) = unit
                    .strip_prefix(" elements")
                    .or_else(|| unit.strip_prefix(" element"))
                {
                    tail = t;
                }
            }
        }
        out.push_str("a JSON object");
        rest = tail;
    }
    out.push_str(rest);
    const NUMBERS: [(&str, &str); 10] = [
        ("i8", "an integer"),
        ("i16", "an integer"),
        ("i32", "an integer"),
        ("i64", "an integer"),
        ("u8", "a whole number"),
        ("u16", "a whole number"),
        ("u32", "a whole number"),
        ("u64", "a whole number"),
        ("f32", "a number"),
        ("f64", "a number"),
    ];
    for (rust, plain) in NUMBERS {
        out = out.replace(&format!("expected {rust}"), &format!("expected {plain}"));
    }
    out
}

pub fn path_error(_: actix_web::error::PathError, _: &actix_web::HttpRequest) -> actix_web::Error {
    AppError::NotFound.into()
}

#[cfg(test)]
mod plain_serde_tests {
    use super::plain_serde;

    #[test]
    fn serde_messages_lose_the_rust_type_names() {
        assert_eq!(
            plain_serde("invalid type: null, expected struct AgentForm at line 1 column 4"),
            "invalid type: null, expected a JSON object at line 1 column 4"
        );
        assert_eq!(
            plain_serde("invalid length 0, expected struct AgentForm with 10 elements"),
            "invalid length 0, expected a JSON object"
        );
        assert_eq!(
            plain_serde("invalid type: string \"1\", expected i64 at line 1 column 15"),
            "invalid type: string \"1\", expected an integer at line 1 column 15"
        );
        assert_eq!(
            plain_serde("invalid type: string \"hot\", expected f64"),
            "invalid type: string \"hot\", expected a number"
        );
        // Nothing else changes: field names are the caller's own words.
        for kept in [
            "unknown field `zzz`, expected one of `name`, `slug`",
            "missing field `q`",
            "a struct of words",
        ] {
            assert_eq!(plain_serde(kept), kept);
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::middleware::from_fn;
    use actix_web::{App, HttpResponse, test, web};

    use super::{AppError, ErrorDetail, render_errors};

    async fn boom() -> Result<HttpResponse, AppError> {
        Err(AppError::internal(
            "SELECT password_hash FROM users: connection reset",
        ))
    }

    async fn call(path: &str, show_internal: bool) -> (u16, String) {
        let app = test::init_service(
            App::new()
                .app_data(ErrorDetail { show_internal })
                .route("/api/v1/boom", web::get().to(boom))
                .route("/boom", web::get().to(boom))
                .wrap(from_fn(render_errors)),
        )
        .await;
        let res = test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
        let status = res.status().as_u16();
        let body = test::read_body(res).await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[actix_web::test]
    async fn a_connection_lost_mid_query_is_a_503_and_other_query_errors_a_500() {
        use actix_web::ResponseError as _;
        use diesel::result::{DatabaseErrorKind, Error};
        let lost = Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection,
            Box::new("server closed the connection unexpectedly".to_string()),
        );
        assert_eq!(AppError::from(lost).status_code().as_u16(), 503);
        let through_a_service = crate::services::tickets::TicketError::Db(Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection,
            Box::new("terminating connection due to administrator command".to_string()),
        ));
        assert_eq!(
            AppError::from(through_a_service).status_code().as_u16(),
            503
        );
        let broken = Error::DatabaseError(
            DatabaseErrorKind::CheckViolation,
            Box::new("CHECK constraint failed".to_string()),
        );
        assert_eq!(AppError::from(broken).status_code().as_u16(), 500);
    }

    #[actix_web::test]
    async fn production_500_hides_the_cause_in_json_and_html() {
        for path in ["/api/v1/boom", "/boom"] {
            let (status, body) = call(path, false).await;
            assert_eq!(status, 500);
            assert!(!body.contains("password_hash"), "{body}");
            assert!(body.contains("Something went wrong"), "{body}");
        }
        let (_, json) = call("/api/v1/boom", false).await;
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(json["code"], "INTERNAL_ERROR");
        assert_eq!(json["error"], "Internal Server Error");
    }

    #[actix_web::test]
    async fn development_500_shows_the_cause_to_the_developer() {
        let (status, body) = call("/api/v1/boom", true).await;
        assert_eq!(status, 500);
        assert!(body.contains("connection reset"), "{body}");
    }
}

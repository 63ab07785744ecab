//! One-shot notices carried across a redirect in the session.

use actix_session::Session;

use crate::views::account::Flash;

const KEY: &str = "flash";

pub fn set(session: &Session, kind: &'static str, message: &str) {
    // A notice that cannot be stored is not worth failing the request over.
    let _ = session.insert(KEY, (kind, message));
}

/// A plan limit stopped what the person tried: back to `to`, where the
/// notice shows with a link to the billing page.
pub fn limit(
    session: &Session,
    limit: &crate::services::billing::LimitReached,
    to: &str,
) -> actix_web::HttpResponse {
    set(session, "limit", &limit.message);
    crate::routes::auth::see_other(to)
}

pub fn take(session: &Session) -> Option<Flash> {
    let (kind, message) = session.remove_as::<(String, String)>(KEY)?.ok()?;
    let kind = match kind.as_str() {
        "success" => "success",
        "error" => "error",
        "limit" => "limit",
        _ => "info",
    };
    Some(Flash { kind, message })
}

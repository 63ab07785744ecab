//! Who is calling: sessions, API keys, CSRF, and the extractors that turn them
//! into a [`crate::domain::TenantScope`].

pub mod csrf;
pub mod device;
pub mod extractors;
pub mod password;
pub mod session_store;
pub mod tokens;

/// The token of an `Authorization: Bearer …` header. The scheme's name is
/// case-insensitive (RFC 9110), so `bearer fd_…` is the same key; one reading
/// for the API, its rate limits and the metrics, so all three agree.
pub fn bearer_token(headers: &actix_web::http::header::HeaderMap) -> Option<&str> {
    let value = headers
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

//! Who is calling: sessions, API keys, CSRF, and the extractors that turn them
//! into a [`crate::domain::TenantScope`].

pub mod csrf;
pub mod extractors;
pub mod password;
pub mod session_store;
pub mod tokens;

//! CSRF protection: a per-session token that every state-changing form carries
//! (`csrf_token`) and every cookie-authenticated API call sends (`X-CSRF-Token`).

use std::future::Future;
use std::pin::Pin;

use actix_session::{Session, SessionExt as _};
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use serde::de::DeserializeOwned;

use super::extractors::ORG_KEY;
use super::tokens;
use crate::domain::OrganizationId;
use crate::error::AppError;

const SESSION_KEY: &str = "csrf";
pub const HEADER: &str = "x-csrf-token";

/// The session's token, created on first use.
pub fn token(session: &Session) -> Result<String, AppError> {
    super::session_store::ensure_readable(session)?;
    if let Ok(Some(existing)) = session.get::<String>(SESSION_KEY) {
        return Ok(existing);
    }
    let fresh = tokens::generate();
    session
        .insert(SESSION_KEY, &fresh)
        .map_err(AppError::internal)?;
    Ok(fresh)
}

/// Drops the session's token; the next form gets a new one.
pub fn forget(session: &Session) {
    session.remove(SESSION_KEY);
}

/// The token for a page of one organization: the session's token with the
/// organization's id, so a form from a tab opened before switching to another
/// organization cannot act on the new one (the switch is in the session, not
/// in the page's address). Forms about the person, not the organization
/// (switching, signing out, the account), carry the plain [`token`].
pub fn organization_token(
    session: &Session,
    organization: OrganizationId,
) -> Result<String, AppError> {
    Ok(format!("{}.{}", token(session)?, organization.0))
}

pub fn verify(session: &Session, presented: Option<&str>) -> Result<(), AppError> {
    // A form posted while the session cannot be read is not a forgery.
    super::session_store::ensure_readable(session)?;
    let expected = session.get::<String>(SESSION_KEY).ok().flatten();
    // Session tokens are base64url, which has no '.'.
    let (presented, organization) = match presented.map(|p| p.split_once('.')) {
        Some(Some((token, organization))) => (Some(token), Some(organization)),
        Some(None) => (presented, None),
        None => (None, None),
    };
    match (expected, presented) {
        (Some(expected), Some(presented)) if tokens::equal(&expected, presented) => {}
        _ => {
            return Err(AppError::Forbidden(
                "The form expired or did not come from this site. Reload the page and try again."
                    .into(),
            ));
        }
    }
    let current = session.get::<i64>(ORG_KEY).ok().flatten();
    match (organization, current) {
        (Some(page), current) if current.is_none_or(|c| page != c.to_string()) => {
            Err(AppError::Conflict(OTHER_ORGANIZATION.into()))
        }
        _ => Ok(()),
    }
}

/// Why a form from a page of one organization was refused in another.
pub const OTHER_ORGANIZATION: &str = "This page belongs to another organization than the one you are now in (switched in another tab, disabled or left): reload it and try again.";

/// A form body that names its CSRF token field.
pub trait CsrfProtected {
    fn csrf_token(&self) -> &str;
}

/// A urlencoded form whose CSRF token was checked before the handler runs.
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned + CsrfProtected + 'static> FromRequest for CsrfForm<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let session = req.get_session();
        let form = web::Form::<T>::from_request(req, payload);
        Box::pin(async move {
            let form = form.await?.into_inner();
            verify(&session, Some(form.csrf_token()))?;
            Ok(CsrfForm(form))
        })
    }
}

/// Implements [`CsrfProtected`] for form structs with a `csrf_token` field.
#[macro_export]
macro_rules! csrf_protected {
    ($($form:ty),+ $(,)?) => {
        $(impl $crate::auth::csrf::CsrfProtected for $form {
            fn csrf_token(&self) -> &str {
                &self.csrf_token
            }
        })+
    };
}

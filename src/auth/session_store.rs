//! actix-session's store over the database: sessions are valid on every instance
//! and survive restarts. The cookie holds a random key; the row is found by its hash.

use std::collections::HashMap;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration;

use super::tokens;
use crate::db::models::SessionRow;
use crate::db::{DbConnection, DbPool};
use crate::domain::UserId;

/// The session entry that names the signed-in user (indexed, for "sign out everywhere").
pub const USER_KEY: &str = "uid";

/// The whole state of a request whose session could not be read (the database
/// is down). actix-session would answer such a request with a bare 500 from
/// outside every other middleware: no correlation id, no error page, no log
/// line. With this marker the request goes on, and the extractors answer 503
/// through the application's error handling; the stored session is untouched.
pub const UNAVAILABLE_KEY: &str = "_store_unavailable";

/// 503 when this request's session could not be read.
pub fn ensure_readable(session: &actix_session::Session) -> Result<(), crate::error::AppError> {
    match session.get::<bool>(UNAVAILABLE_KEY) {
        Ok(Some(true)) => Err(crate::error::AppError::Unavailable(
            crate::error::DATABASE_UNAVAILABLE.into(),
        )),
        _ => Ok(()),
    }
}

/// The state as this request loaded it (its stored JSON), carried in the
/// state itself so `update` can tell what the request changed from what
/// another request wrote meanwhile. Never stored.
const BASE_KEY: &str = "_base";

/// `current` (stored now) with the changes this request made to `base`
/// (what it loaded) to arrive at `new`: two requests of one browser that
/// change different entries (one switches organization while another renews
/// the idle timer, or takes a form's token) both keep their change instead of
/// the later one writing back the earlier state whole.
fn merge(
    base: &HashMap<String, String>,
    new: HashMap<String, String>,
    mut current: HashMap<String, String>,
) -> HashMap<String, String> {
    for key in base.keys().chain(new.keys()) {
        if base.get(key) == new.get(key) {
            continue;
        }
        match new.get(key) {
            Some(value) => current.insert(key.clone(), value.clone()),
            None => current.remove(key),
        };
    }
    current
}

fn unreadable(state: &HashMap<String, String>) -> bool {
    state.contains_key(UNAVAILABLE_KEY)
}

#[derive(Clone)]
pub struct DbSessionStore {
    pool: DbPool,
}

impl DbSessionStore {
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut DbConnection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let pool = self.pool.clone();
        actix_web::web::block(move || {
            let mut conn = pool.get()?;
            work(&mut conn)
        })
        .await?
    }
}

fn expires(ttl: &Duration) -> chrono::NaiveDateTime {
    crate::domain::now() + chrono::TimeDelta::seconds(ttl.whole_seconds())
}

/// A session nobody signed into (a visitor who opened a form: it holds the
/// CSRF token) lives this long at most: every client without a cookie makes
/// one, and they must not pile up for a week.
const ANONYMOUS_TTL_SECS: i64 = 2 * 3600;

fn expires_for(state: &HashMap<String, String>, ttl: &Duration) -> chrono::NaiveDateTime {
    if user_of(state).is_some() {
        expires(ttl)
    } else {
        expires(&Duration::seconds(
            ttl.whole_seconds().min(ANONYMOUS_TTL_SECS),
        ))
    }
}

fn user_of(state: &HashMap<String, String>) -> Option<UserId> {
    state.get(USER_KEY).and_then(|v| v.parse().ok()).map(UserId)
}

impl SessionStore for DbSessionStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<HashMap<String, String>>, LoadError> {
        let hash = tokens::hash(key.as_ref());
        let state = match self
            .run(move |conn| Ok(SessionRow::load(conn, &hash)?))
            .await
        {
            Ok(state) => state,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the session");
                let marker = HashMap::from([(UNAVAILABLE_KEY.to_string(), "true".to_string())]);
                return Ok(Some(marker));
            }
        };
        let Some(stored) = state else {
            return Ok(None);
        };
        let mut state: HashMap<String, String> =
            serde_json::from_str(&stored).map_err(|e| LoadError::Deserialization(e.into()))?;
        state.insert(BASE_KEY.to_string(), stored);
        Ok(Some(state))
    }

    async fn save(
        &self,
        mut state: HashMap<String, String>,
        ttl: &Duration,
    ) -> Result<SessionKey, SaveError> {
        // A renewed session (a new key at sign-in) starts from its own state.
        state.remove(BASE_KEY);
        if unreadable(&state) {
            return Err(SaveError::Other(anyhow::anyhow!(
                "the session could not be read; not saving one derived from it"
            )));
        }
        let json = serde_json::to_string(&state).map_err(|e| SaveError::Serialization(e.into()))?;
        let key = tokens::generate();
        let session_key =
            SessionKey::try_from(key.clone()).map_err(|e| SaveError::Other(e.into()))?;
        let hash = tokens::hash(&key);
        let until = expires_for(&state, ttl);
        let user = user_of(&state);
        // As in `update`: an error here would become a bare 500 from outside
        // every other middleware (no headers, no page, no correlation id). The
        // answer goes out instead, with a cookie naming no stored session, so
        // the next request starts afresh.
        if let Err(e) = self
            .run(move |conn| Ok(SessionRow::insert(conn, &hash, user, &json, until)?))
            .await
        {
            tracing::error!(error = %e, "could not store a new session; the answer goes out without it");
        }
        Ok(session_key)
    }

    async fn update(
        &self,
        key: SessionKey,
        mut state: HashMap<String, String>,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        if unreadable(&state) {
            // Never overwrite the stored session with one built on a failed read.
            return Ok(key);
        }
        let base = state.remove(BASE_KEY);
        let hash = tokens::hash(key.as_ref());
        let ttl_now = *ttl;
        let new = state.clone();
        // A failed write must not turn the handler's answer (its changes
        // already committed) into a bare 500 without the application's headers:
        // the session keeps its last stored state and the answer goes out.
        let updated = match self
            .run(move |conn| {
                crate::db::write_transaction(conn, |conn| {
                    let Some(current) = SessionRow::load_for_update(conn, &hash)? else {
                        return Ok(false);
                    };
                    let state = match base {
                        Some(base) if base != current => merge(
                            &serde_json::from_str(&base)?,
                            new,
                            serde_json::from_str(&current)?,
                        ),
                        _ => new,
                    };
                    let json = serde_json::to_string(&state)?;
                    let (user, until) = (user_of(&state), expires_for(&state, &ttl_now));
                    Ok(SessionRow::update(conn, &hash, user, &json, until)?)
                })
            })
            .await
        {
            Ok(updated) => updated,
            Err(e) => {
                tracing::error!(error = %e, "could not store the session's changes; kept as it was");
                return Ok(key);
            }
        };
        if updated {
            Ok(key)
        } else {
            // Deleted meanwhile (signed out everywhere): start over signed out.
            let mut state = state;
            state.remove(USER_KEY);
            self.save(state, ttl)
                .await
                .map_err(|e| UpdateError::Other(e.into()))
        }
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &Duration) -> anyhow::Result<()> {
        let hash = tokens::hash(key.as_ref());
        let until = expires(ttl);
        let anonymous_until = expires_for(&HashMap::new(), ttl);
        // As in `update`: a session not extended this time is no reason to fail
        // the answer.
        if let Err(e) = self
            .run(move |conn| Ok(SessionRow::touch(conn, &hash, until, anonymous_until)?))
            .await
        {
            tracing::warn!(error = %e, "could not extend the session");
        }
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> anyhow::Result<()> {
        let hash = tokens::hash(key.as_ref());
        self.run(move |conn| Ok(SessionRow::delete(conn, &hash)?))
            .await?;
        Ok(())
    }
}

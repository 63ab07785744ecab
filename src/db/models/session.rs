//! Server-side session rows: the cookie carries a random key, the row its state.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::sessions;
use crate::domain::UserId;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sessions)]
pub struct SessionRow {
    pub key_hash: String,
    pub user_id: Option<i64>,
    pub state: String,
    pub expires_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl SessionRow {
    /// The state of a live session.
    pub fn load(conn: &mut DbConnection, key_hash: &str) -> QueryResult<Option<String>> {
        sessions::table
            .filter(sessions::key_hash.eq(key_hash))
            .filter(sessions::expires_at.gt(crate::domain::now()))
            .select(sessions::state)
            .first(conn)
            .optional()
    }

    /// The state of a live session, held until the transaction ends (on
    /// PostgreSQL a no-op update takes the row's lock; SQLite's write
    /// transaction holds the database).
    pub fn load_for_update(conn: &mut DbConnection, key_hash: &str) -> QueryResult<Option<String>> {
        diesel::update(sessions::table.filter(sessions::key_hash.eq(key_hash)))
            .set(sessions::updated_at.eq(sessions::updated_at))
            .execute(conn)?;
        Self::load(conn, key_hash)
    }

    pub fn insert(
        conn: &mut DbConnection,
        key_hash: &str,
        user_id: Option<UserId>,
        state: &str,
        expires_at: NaiveDateTime,
    ) -> QueryResult<usize> {
        let now = crate::domain::now();
        diesel::insert_into(sessions::table)
            .values((
                sessions::key_hash.eq(key_hash),
                sessions::user_id.eq(user_id.map(|u| u.0)),
                sessions::state.eq(state),
                sessions::expires_at.eq(expires_at),
                sessions::created_at.eq(now),
                sessions::updated_at.eq(now),
            ))
            .execute(conn)
    }

    /// Returns false when the session no longer exists (signed out elsewhere).
    pub fn update(
        conn: &mut DbConnection,
        key_hash: &str,
        user_id: Option<UserId>,
        state: &str,
        expires_at: NaiveDateTime,
    ) -> QueryResult<bool> {
        diesel::update(sessions::table.filter(sessions::key_hash.eq(key_hash)))
            .set((
                sessions::user_id.eq(user_id.map(|u| u.0)),
                sessions::state.eq(state),
                sessions::expires_at.eq(expires_at),
                sessions::updated_at.eq(crate::domain::now()),
            ))
            .execute(conn)
            .map(|n| n == 1)
    }

    /// Extends the idle expiry: to `expires_at` for a signed-in session, to
    /// `anonymous_until` for one that only holds a form's CSRF token.
    pub fn touch(
        conn: &mut DbConnection,
        key_hash: &str,
        expires_at: NaiveDateTime,
        anonymous_until: NaiveDateTime,
    ) -> QueryResult<usize> {
        let signed_in = diesel::update(
            sessions::table
                .filter(sessions::key_hash.eq(key_hash))
                .filter(sessions::user_id.is_not_null()),
        )
        .set(sessions::expires_at.eq(expires_at))
        .execute(conn)?;
        let anonymous = diesel::update(
            sessions::table
                .filter(sessions::key_hash.eq(key_hash))
                .filter(sessions::user_id.is_null()),
        )
        .set(sessions::expires_at.eq(anonymous_until))
        .execute(conn)?;
        Ok(signed_in + anonymous)
    }

    pub fn delete(conn: &mut DbConnection, key_hash: &str) -> QueryResult<usize> {
        diesel::delete(sessions::table.filter(sessions::key_hash.eq(key_hash))).execute(conn)
    }

    /// "Sign out everywhere", a password change, a disabled account.
    pub fn delete_for_user(conn: &mut DbConnection, user_id: UserId) -> QueryResult<usize> {
        diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id.0))).execute(conn)
    }

    pub fn count_for_user(conn: &mut DbConnection, user_id: UserId) -> QueryResult<i64> {
        sessions::table
            .filter(sessions::user_id.eq(user_id.0))
            .count()
            .get_result(conn)
    }

    pub fn delete_expired(conn: &mut DbConnection) -> QueryResult<usize> {
        diesel::delete(sessions::table.filter(sessions::expires_at.le(crate::domain::now())))
            .execute(conn)
    }
}

//! Single-use, expiring links (email verification, password reset), stored hashed.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::user_tokens;
use crate::domain::UserId;

pub const VERIFY_EMAIL: &str = "verify_email";
pub const RESET_PASSWORD: &str = "reset_password";

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = user_tokens)]
pub struct UserToken {
    pub id: i64,
    pub user_id: UserId,
    pub purpose: String,
    pub token_hash: String,
    pub expires_at: NaiveDateTime,
    pub used_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
}

/// Why a link cannot be used, phrased for the person who clicked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    Unknown,
    Used,
    Expired,
}

impl UserToken {
    pub fn create(
        conn: &mut DbConnection,
        user_id: UserId,
        purpose: &str,
        token_hash: &str,
        expires_at: NaiveDateTime,
    ) -> QueryResult<usize> {
        diesel::insert_into(user_tokens::table)
            .values((
                user_tokens::user_id.eq(user_id),
                user_tokens::purpose.eq(purpose),
                user_tokens::token_hash.eq(token_hash),
                user_tokens::expires_at.eq(expires_at),
                user_tokens::created_at.eq(crate::domain::now()),
            ))
            .execute(conn)
    }

    /// Deletes the user's links for these purposes that were never used.
    /// When the newest link for `purpose` that still works was made, if any.
    pub fn newest_live_at(
        conn: &mut DbConnection,
        user_id: UserId,
        purpose: &str,
    ) -> QueryResult<Option<NaiveDateTime>> {
        user_tokens::table
            .filter(user_tokens::user_id.eq(user_id))
            .filter(user_tokens::purpose.eq(purpose))
            .filter(user_tokens::used_at.is_null())
            .filter(user_tokens::expires_at.gt(crate::domain::now()))
            .select(diesel::dsl::max(user_tokens::created_at))
            .first(conn)
    }

    pub fn discard_unused(
        conn: &mut DbConnection,
        user_id: UserId,
        purposes: &[&str],
    ) -> QueryResult<usize> {
        diesel::delete(
            user_tokens::table
                .filter(user_tokens::user_id.eq(user_id))
                .filter(user_tokens::purpose.eq_any(purposes))
                .filter(user_tokens::used_at.is_null()),
        )
        .execute(conn)
    }

    /// Marks the token used and returns its user, atomically: of two concurrent
    /// uses exactly one wins.
    pub fn consume(
        conn: &mut DbConnection,
        purpose: &str,
        token_hash: &str,
    ) -> QueryResult<Result<UserId, TokenProblem>> {
        let now = crate::domain::now();
        let token: Option<UserToken> = user_tokens::table
            .filter(user_tokens::token_hash.eq(token_hash))
            .filter(user_tokens::purpose.eq(purpose))
            .select(UserToken::as_select())
            .first(conn)
            .optional()?;
        let Some(token) = token else {
            return Ok(Err(TokenProblem::Unknown));
        };
        if token.used_at.is_some() {
            return Ok(Err(TokenProblem::Used));
        }
        if token.expires_at <= now {
            return Ok(Err(TokenProblem::Expired));
        }
        let claimed = diesel::update(
            user_tokens::table
                .filter(user_tokens::id.eq(token.id))
                .filter(user_tokens::used_at.is_null()),
        )
        .set(user_tokens::used_at.eq(Some(now)))
        .execute(conn)?;
        if claimed == 0 {
            return Ok(Err(TokenProblem::Used));
        }
        Ok(Ok(token.user_id))
    }

    /// Whose token this is, whatever its state.
    pub fn owner(
        conn: &mut DbConnection,
        purpose: &str,
        token_hash: &str,
    ) -> QueryResult<Option<UserId>> {
        user_tokens::table
            .filter(user_tokens::token_hash.eq(token_hash))
            .filter(user_tokens::purpose.eq(purpose))
            .select(user_tokens::user_id)
            .first(conn)
            .optional()
    }

    /// Looks a token up without using it (to show the reset form).
    pub fn check(
        conn: &mut DbConnection,
        purpose: &str,
        token_hash: &str,
    ) -> QueryResult<Result<UserId, TokenProblem>> {
        let token: Option<UserToken> = user_tokens::table
            .filter(user_tokens::token_hash.eq(token_hash))
            .filter(user_tokens::purpose.eq(purpose))
            .select(UserToken::as_select())
            .first(conn)
            .optional()?;
        Ok(match token {
            None => Err(TokenProblem::Unknown),
            Some(t) if t.used_at.is_some() => Err(TokenProblem::Used),
            Some(t) if t.expires_at <= crate::domain::now() => Err(TokenProblem::Expired),
            Some(t) => Ok(t.user_id),
        })
    }
}

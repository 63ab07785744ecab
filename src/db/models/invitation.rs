//! Invitations to join an organization, by email, with a role.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::invitations;
use crate::domain::{Email, OrganizationId, Role, TenantScope, UserId};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = invitations)]
pub struct Invitation {
    pub id: i64,
    pub organization_id: OrganizationId,
    pub email: String,
    pub role: String,
    pub token_hash: String,
    pub invited_by: Option<UserId>,
    pub expires_at: NaiveDateTime,
    pub accepted_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
}

impl Invitation {
    pub fn create(
        conn: &mut DbConnection,
        scope: &TenantScope,
        invited_by: Option<UserId>,
        email: &Email,
        role: Role,
        token_hash: &str,
        expires_at: NaiveDateTime,
    ) -> QueryResult<Invitation> {
        diesel::insert_into(invitations::table)
            .values((
                invitations::organization_id.eq(scope.organization_id()),
                invitations::email.eq(email.as_str()),
                invitations::role.eq(role.as_str()),
                invitations::token_hash.eq(token_hash),
                invitations::invited_by.eq(invited_by),
                invitations::expires_at.eq(expires_at),
                invitations::created_at.eq(crate::domain::now()),
            ))
            .get_result(conn)
    }

    /// Open (not accepted, revoked or expired) invitations of the scope's organization.
    pub fn pending(conn: &mut DbConnection, scope: &TenantScope) -> QueryResult<Vec<Invitation>> {
        invitations::table
            .filter(invitations::organization_id.eq(scope.organization_id()))
            .filter(invitations::accepted_at.is_null())
            .filter(invitations::revoked_at.is_null())
            .filter(invitations::expires_at.gt(crate::domain::now()))
            .order(invitations::created_at.desc())
            .select(Invitation::as_select())
            .load(conn)
    }

    /// Whether `email` already has an open invitation to the organization.
    pub fn is_pending_for(
        conn: &mut DbConnection,
        scope: &TenantScope,
        email: &Email,
    ) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(
            invitations::table
                .filter(invitations::organization_id.eq(scope.organization_id()))
                .filter(invitations::email.eq(email.as_str()))
                .filter(invitations::accepted_at.is_null())
                .filter(invitations::revoked_at.is_null())
                .filter(invitations::expires_at.gt(crate::domain::now())),
        ))
        .get_result(conn)
    }

    /// Every invitation ever sent, pending or not, oldest first (for exports).
    pub fn all(conn: &mut DbConnection, scope: &TenantScope) -> QueryResult<Vec<Invitation>> {
        invitations::table
            .filter(invitations::organization_id.eq(scope.organization_id()))
            .order(invitations::id.asc())
            .select(Invitation::as_select())
            .load(conn)
    }

    /// How many invitations are still open: each holds a seat.
    pub fn count_pending(conn: &mut DbConnection, scope: &TenantScope) -> QueryResult<i64> {
        invitations::table
            .filter(invitations::organization_id.eq(scope.organization_id()))
            .filter(invitations::accepted_at.is_null())
            .filter(invitations::revoked_at.is_null())
            .filter(invitations::expires_at.gt(crate::domain::now()))
            .count()
            .get_result(conn)
    }

    pub fn find(
        conn: &mut DbConnection,
        scope: &TenantScope,
        id: i64,
    ) -> QueryResult<Option<Invitation>> {
        invitations::table
            .filter(invitations::organization_id.eq(scope.organization_id()))
            .filter(invitations::id.eq(id))
            .select(Invitation::as_select())
            .first(conn)
            .optional()
    }

    pub fn revoke(conn: &mut DbConnection, scope: &TenantScope, id: i64) -> QueryResult<bool> {
        diesel::update(
            invitations::table
                .filter(invitations::organization_id.eq(scope.organization_id()))
                .filter(invitations::id.eq(id))
                .filter(invitations::accepted_at.is_null())
                .filter(invitations::revoked_at.is_null()),
        )
        .set(invitations::revoked_at.eq(Some(crate::domain::now())))
        .execute(conn)
        .map(|n| n == 1)
    }

    /// By the token in the link: not tenant-scoped, the token is the authority.
    pub fn by_token(conn: &mut DbConnection, token_hash: &str) -> QueryResult<Option<Invitation>> {
        invitations::table
            .filter(invitations::token_hash.eq(token_hash))
            .select(Invitation::as_select())
            .first(conn)
            .optional()
    }

    /// Marks the invitation accepted; false if someone else got there first.
    pub fn mark_accepted(conn: &mut DbConnection, id: i64) -> QueryResult<bool> {
        diesel::update(
            invitations::table
                .filter(invitations::id.eq(id))
                .filter(invitations::accepted_at.is_null())
                .filter(invitations::revoked_at.is_null()),
        )
        .set(invitations::accepted_at.eq(Some(crate::domain::now())))
        .execute(conn)
        .map(|n| n == 1)
    }

    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::Viewer)
    }
}

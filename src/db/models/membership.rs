use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::{memberships, organizations, users};
use crate::domain::{self, MembershipId, OrganizationId, Role, UserId};

use super::Organization;

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = memberships)]
pub struct Membership {
    pub id: MembershipId,
    pub organization_id: OrganizationId,
    pub user_id: UserId,
    pub role: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = memberships)]
pub struct NewMembership {
    pub organization_id: OrganizationId,
    pub user_id: UserId,
    pub role: &'static str,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl NewMembership {
    pub fn new(organization_id: OrganizationId, user_id: UserId, role: Role) -> Self {
        let now = domain::now();
        Self {
            organization_id,
            user_id,
            role: role.as_str(),
            created_at: now,
            updated_at: now,
        }
    }
}

impl Membership {
    pub fn create(conn: &mut DbConnection, new: &NewMembership) -> QueryResult<Self> {
        diesel::insert_into(memberships::table)
            .values(new)
            .get_result(conn)
    }

    /// The role column is constrained by the schema, so an unknown value is a bug.
    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::Viewer)
    }

    /// Every organization the user belongs to, with the role held there.
    pub fn organizations_of(
        conn: &mut DbConnection,
        user_id: UserId,
    ) -> QueryResult<Vec<(Organization, Membership)>> {
        memberships::table
            .inner_join(organizations::table)
            .filter(memberships::user_id.eq(user_id))
            .order(organizations::name.asc())
            .select((Organization::as_select(), Membership::as_select()))
            .load(conn)
    }
}

/// A member of the scope's organization, with their account.
#[derive(Debug, Clone)]
pub struct MemberWithUser {
    pub membership: Membership,
    pub user: super::User,
}

impl Membership {
    /// The user's membership in one organization, if any (used to build a scope).
    pub fn of_user_in(
        conn: &mut DbConnection,
        user_id: UserId,
        organization_id: OrganizationId,
    ) -> QueryResult<Option<Membership>> {
        memberships::table
            .filter(memberships::user_id.eq(user_id))
            .filter(memberships::organization_id.eq(organization_id))
            .select(Membership::as_select())
            .first(conn)
            .optional()
    }

    pub fn list(
        conn: &mut DbConnection,
        scope: &crate::domain::TenantScope,
    ) -> QueryResult<Vec<MemberWithUser>> {
        let rows: Vec<(Membership, super::User)> = memberships::table
            .inner_join(users::table)
            .filter(memberships::organization_id.eq(scope.organization_id()))
            .order(users::email.asc())
            .select((Membership::as_select(), super::User::as_select()))
            .load(conn)?;
        Ok(rows
            .into_iter()
            .map(|(membership, user)| MemberWithUser { membership, user })
            .collect())
    }

    pub fn count(conn: &mut DbConnection, scope: &crate::domain::TenantScope) -> QueryResult<i64> {
        memberships::table
            .filter(memberships::organization_id.eq(scope.organization_id()))
            .count()
            .get_result(conn)
    }

    pub fn find(
        conn: &mut DbConnection,
        scope: &crate::domain::TenantScope,
        id: MembershipId,
    ) -> QueryResult<Option<Membership>> {
        memberships::table
            .filter(memberships::organization_id.eq(scope.organization_id()))
            .filter(memberships::id.eq(id))
            .select(Membership::as_select())
            .first(conn)
            .optional()
    }

    /// The owners' addresses, for billing notices sent by the system (no member
    /// acts, so there is no scope).
    pub fn owner_emails(
        conn: &mut DbConnection,
        organization_id: OrganizationId,
    ) -> QueryResult<Vec<String>> {
        memberships::table
            .inner_join(users::table)
            .filter(memberships::organization_id.eq(organization_id))
            .filter(memberships::role.eq(Role::Owner.as_str()))
            .filter(users::disabled_at.is_null())
            .order(users::email.asc())
            .select(users::email)
            .load(conn)
    }

    /// Call inside the transaction that changes an owner. On PostgreSQL the
    /// owner rows stay locked until it ends, so two owners demoting each other
    /// at once cannot both see the other still there (the second waits, then
    /// counts one); SQLite's write transaction already runs them one by one.
    ///
    /// Owners other than `except` who can still act: a disabled account is no
    /// one in charge, so the last enabled owner cannot leave it to them.
    pub fn other_active_owners(
        conn: &mut DbConnection,
        scope: &crate::domain::TenantScope,
        except: MembershipId,
    ) -> QueryResult<i64> {
        if conn.backend() == crate::db::Backend::Postgres {
            diesel::sql_query(
                "SELECT id FROM memberships WHERE organization_id = $1 AND role = 'owner' FOR UPDATE",
            )
            .bind::<diesel::sql_types::BigInt, _>(scope.organization_id().0)
            .execute(conn)?;
        }
        memberships::table
            .inner_join(users::table)
            .filter(memberships::organization_id.eq(scope.organization_id()))
            .filter(memberships::role.eq(Role::Owner.as_str()))
            .filter(memberships::id.ne(except))
            .filter(users::disabled_at.is_null())
            .count()
            .get_result(conn)
    }

    pub fn set_role(
        conn: &mut DbConnection,
        scope: &crate::domain::TenantScope,
        id: MembershipId,
        role: Role,
    ) -> QueryResult<bool> {
        diesel::update(
            memberships::table
                .filter(memberships::organization_id.eq(scope.organization_id()))
                .filter(memberships::id.eq(id)),
        )
        .set((
            memberships::role.eq(role.as_str()),
            memberships::updated_at.eq(domain::now()),
        ))
        .execute(conn)
        .map(|n| n == 1)
    }

    pub fn remove(
        conn: &mut DbConnection,
        scope: &crate::domain::TenantScope,
        id: MembershipId,
    ) -> QueryResult<bool> {
        diesel::delete(
            memberships::table
                .filter(memberships::organization_id.eq(scope.organization_id()))
                .filter(memberships::id.eq(id)),
        )
        .execute(conn)
        .map(|n| n == 1)
    }
}

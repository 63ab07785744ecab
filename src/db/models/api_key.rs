//! Organization API keys: shown once, stored hashed, scoped, revocable.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::api_keys;
use crate::domain::{OrganizationId, TenantScope, UserId};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
pub struct ApiKey {
    pub id: i64,
    pub organization_id: OrganizationId,
    pub name: String,
    pub prefix: String,
    pub key_hash: String,
    pub scopes: String,
    pub created_by: Option<UserId>,
    pub last_used_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
}

impl ApiKey {
    pub fn create(
        conn: &mut DbConnection,
        scope: &TenantScope,
        name: &str,
        prefix: &str,
        key_hash: &str,
        scopes: &str,
    ) -> QueryResult<ApiKey> {
        diesel::insert_into(api_keys::table)
            .values((
                api_keys::organization_id.eq(scope.organization_id()),
                api_keys::name.eq(name),
                api_keys::prefix.eq(prefix),
                api_keys::key_hash.eq(key_hash),
                api_keys::scopes.eq(scopes),
                api_keys::created_by.eq(scope.user_id()),
                api_keys::created_at.eq(crate::domain::now()),
            ))
            .get_result(conn)
    }

    pub fn list(conn: &mut DbConnection, scope: &TenantScope) -> QueryResult<Vec<ApiKey>> {
        api_keys::table
            .filter(api_keys::organization_id.eq(scope.organization_id()))
            .order(api_keys::created_at.desc())
            .select(ApiKey::as_select())
            .load(conn)
    }

    pub fn find(
        conn: &mut DbConnection,
        scope: &TenantScope,
        id: i64,
    ) -> QueryResult<Option<ApiKey>> {
        api_keys::table
            .filter(api_keys::organization_id.eq(scope.organization_id()))
            .filter(api_keys::id.eq(id))
            .select(ApiKey::as_select())
            .first(conn)
            .optional()
    }

    pub fn revoke(conn: &mut DbConnection, scope: &TenantScope, id: i64) -> QueryResult<bool> {
        diesel::update(
            api_keys::table
                .filter(api_keys::organization_id.eq(scope.organization_id()))
                .filter(api_keys::id.eq(id))
                .filter(api_keys::revoked_at.is_null()),
        )
        .set(api_keys::revoked_at.eq(Some(crate::domain::now())))
        .execute(conn)
        .map(|n| n == 1)
    }

    /// How fresh "last used" is kept. Writing it on every call would make
    /// each request of a busy key a write: one writer at a time on SQLite,
    /// and every request of the key queued on its row's lock on PostgreSQL.
    pub const LAST_USED_GRANULARITY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

    /// Authentication: a live key by its hash (this is where a scope comes from).
    pub fn authenticate(conn: &mut DbConnection, key_hash: &str) -> QueryResult<Option<ApiKey>> {
        let key: Option<ApiKey> = api_keys::table
            .filter(api_keys::key_hash.eq(key_hash))
            .filter(api_keys::revoked_at.is_null())
            .select(ApiKey::as_select())
            .first(conn)
            .optional()?;
        let now = crate::domain::now();
        if let Some(key) = &key
            && key
                .last_used_at
                .is_none_or(|at| now - at >= Self::LAST_USED_GRANULARITY)
        {
            diesel::update(api_keys::table.filter(api_keys::id.eq(key.id)))
                .set(api_keys::last_used_at.eq(Some(now)))
                .execute(conn)?;
        }
        Ok(key)
    }

    pub fn can_write(&self) -> bool {
        self.scopes.split(',').any(|s| s.trim() == "write")
    }
}

//! An organization's API keys for remote chat providers, stored sealed.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::provider_credentials;
use crate::domain::{OrganizationId, TenantScope};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = provider_credentials)]
pub struct ProviderCredential {
    pub id: i64,
    pub organization_id: OrganizationId,
    pub provider: String,
    pub base_url: Option<String>,
    /// `crate::crypto` output; never leaves the server.
    pub sealed_key: String,
    /// The last characters of the key, the only part ever shown again.
    pub key_hint: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl ProviderCredential {
    pub fn list(conn: &mut DbConnection, scope: &TenantScope) -> QueryResult<Vec<Self>> {
        provider_credentials::table
            .filter(provider_credentials::organization_id.eq(scope.organization_id()))
            .order(provider_credentials::provider.asc())
            .select(Self::as_select())
            .load(conn)
    }

    pub fn find(
        conn: &mut DbConnection,
        organization_id: OrganizationId,
        provider: &str,
    ) -> QueryResult<Option<Self>> {
        provider_credentials::table
            .filter(provider_credentials::organization_id.eq(organization_id))
            .filter(provider_credentials::provider.eq(provider))
            .select(Self::as_select())
            .first(conn)
            .optional()
    }

    /// Replaces the organization's key for `provider` (one per provider), in
    /// the caller's transaction.
    pub fn save(
        conn: &mut DbConnection,
        scope: &TenantScope,
        provider: &str,
        base_url: Option<&str>,
        sealed_key: &str,
        key_hint: &str,
    ) -> QueryResult<()> {
        // Two saves at once: without it, on PostgreSQL the second's delete
        // misses the first's new row and its insert breaks the unique key.
        crate::db::lock_until_commit(
            conn,
            &format!("provider_credential:{}:{provider}", scope.organization_id()),
        )?;
        let now = crate::domain::now();
        Self::delete(conn, scope, provider)?;
        diesel::insert_into(provider_credentials::table)
            .values((
                provider_credentials::organization_id.eq(scope.organization_id()),
                provider_credentials::provider.eq(provider),
                provider_credentials::base_url.eq(base_url),
                provider_credentials::sealed_key.eq(sealed_key),
                provider_credentials::key_hint.eq(key_hint),
                provider_credentials::created_at.eq(now),
                provider_credentials::updated_at.eq(now),
            ))
            .execute(conn)
            .map(|_| ())
    }

    /// Every organization's keys, for the operator's re-encryption after a key
    /// rotation (`frontdesk keys rotate`); nothing else reads across tenants.
    pub fn all_for_rotation(conn: &mut DbConnection) -> QueryResult<Vec<Self>> {
        provider_credentials::table
            .order(provider_credentials::id.asc())
            .select(Self::as_select())
            .load(conn)
    }

    /// Stores `sealed` in place of `previous`; `false` if the row changed (or
    /// went) in between, in which case nothing is written.
    pub fn replace_sealed(
        conn: &mut DbConnection,
        id: i64,
        previous: &str,
        sealed: &str,
    ) -> QueryResult<bool> {
        diesel::update(
            provider_credentials::table
                .filter(provider_credentials::id.eq(id))
                .filter(provider_credentials::sealed_key.eq(previous)),
        )
        .set(provider_credentials::sealed_key.eq(sealed))
        .execute(conn)
        .map(|n| n == 1)
    }

    pub fn delete(
        conn: &mut DbConnection,
        scope: &TenantScope,
        provider: &str,
    ) -> QueryResult<bool> {
        diesel::delete(
            provider_credentials::table
                .filter(provider_credentials::organization_id.eq(scope.organization_id()))
                .filter(provider_credentials::provider.eq(provider)),
        )
        .execute(conn)
        .map(|n| n > 0)
    }
}

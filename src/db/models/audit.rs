//! The audit log: who did what, from where, when.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::audit_log;
use crate::domain::{OrganizationId, UserId};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub struct AuditEntry {
    pub id: i64,
    pub organization_id: Option<OrganizationId>,
    pub actor_user_id: Option<UserId>,
    pub actor_label: String,
    pub action: String,
    pub target: Option<String>,
    pub detail: Option<String>,
    pub ip: Option<String>,
    pub created_at: NaiveDateTime,
}

/// One event to record.
#[derive(Debug, Clone)]
pub struct NewAuditEntry<'a> {
    pub organization_id: Option<OrganizationId>,
    pub actor_user_id: Option<UserId>,
    pub actor_label: &'a str,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub detail: Option<&'a str>,
    pub ip: Option<&'a str>,
}

impl AuditEntry {
    pub fn record(conn: &mut DbConnection, entry: &NewAuditEntry<'_>) -> QueryResult<usize> {
        diesel::insert_into(audit_log::table)
            .values((
                audit_log::organization_id.eq(entry.organization_id),
                audit_log::actor_user_id.eq(entry.actor_user_id),
                audit_log::actor_label.eq(entry.actor_label),
                audit_log::action.eq(entry.action),
                audit_log::target.eq(entry.target),
                audit_log::detail.eq(entry.detail),
                audit_log::ip.eq(entry.ip),
                audit_log::created_at.eq(crate::domain::now()),
            ))
            .execute(conn)
    }

    /// One organization's entries, newest first, optionally of one action:
    /// `limit` of them after skipping `offset`.
    pub fn for_organization(
        conn: &mut DbConnection,
        scope: &crate::domain::TenantScope,
        action: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> QueryResult<Vec<AuditEntry>> {
        let mut query = audit_log::table
            .filter(audit_log::organization_id.eq(scope.organization_id()))
            .into_boxed();
        if let Some(action) = action {
            query = query.filter(audit_log::action.eq(action.to_string()));
        }
        query
            .order((audit_log::created_at.desc(), audit_log::id.desc()))
            .limit(limit)
            .offset(offset)
            .select(AuditEntry::as_select())
            .load(conn)
    }
}

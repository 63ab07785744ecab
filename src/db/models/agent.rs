//! AI agents of an organization.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::knowledge_index::AgentIndex;
use crate::db::DbConnection;
use crate::db::schema::agents;
use crate::domain::{AgentId, OrganizationId, Slug, TenantScope};

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = agents)]
pub struct Agent {
    pub id: AgentId,
    pub organization_id: OrganizationId,
    pub name: String,
    pub slug: String,
    pub greeting: String,
    pub instructions: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub temperature: f64,
    pub handoff_threshold: f64,
    pub allowed_origins: String,
    pub enabled: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// The settings an owner or admin edits. `None` is a value here (the server's
/// default provider or model), so it is written as NULL rather than skipped.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = agents, treat_none_as_null = true)]
pub struct AgentSettings {
    pub name: String,
    pub greeting: String,
    pub instructions: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub temperature: f64,
    pub handoff_threshold: f64,
    pub allowed_origins: String,
    pub enabled: bool,
}

impl Agent {
    /// Taken before an agent's row or what hangs on it is written, until
    /// commit: on PostgreSQL its edits run one at a time (a field one leaves
    /// out is not written back stale by another), and its deletion waits for
    /// an indexing job writing its passages (whose foreign key would fail if
    /// the agent went first) or comes before it, and the job finds it gone.
    /// Taken before a document's lock, never after. SQLite runs one writer at
    /// a time anyway.
    pub fn lock(conn: &mut DbConnection, id: AgentId) -> QueryResult<()> {
        crate::db::lock_until_commit(conn, &format!("agent:{id}"))
    }

    pub fn create(
        conn: &mut DbConnection,
        scope: &TenantScope,
        slug: &Slug,
        settings: &AgentSettings,
    ) -> QueryResult<Agent> {
        let now = crate::domain::now();
        diesel::insert_into(agents::table)
            .values((
                agents::organization_id.eq(scope.organization_id()),
                agents::slug.eq(slug.as_str()),
                agents::name.eq(&settings.name),
                agents::greeting.eq(&settings.greeting),
                agents::instructions.eq(&settings.instructions),
                agents::provider.eq(&settings.provider),
                agents::model.eq(&settings.model),
                agents::temperature.eq(settings.temperature),
                agents::handoff_threshold.eq(settings.handoff_threshold),
                agents::allowed_origins.eq(&settings.allowed_origins),
                agents::enabled.eq(settings.enabled),
                agents::created_at.eq(now),
                agents::updated_at.eq(now),
            ))
            .get_result::<Agent>(conn)
            .and_then(|agent| {
                AgentIndex::of(agent.id).create(conn)?;
                Ok(agent)
            })
    }

    pub fn list(conn: &mut DbConnection, scope: &TenantScope) -> QueryResult<Vec<Agent>> {
        agents::table
            .filter(agents::organization_id.eq(scope.organization_id()))
            .order(agents::name.asc())
            .select(Agent::as_select())
            .load(conn)
    }

    pub fn count(conn: &mut DbConnection, scope: &TenantScope) -> QueryResult<i64> {
        agents::table
            .filter(agents::organization_id.eq(scope.organization_id()))
            .count()
            .get_result(conn)
    }

    pub fn find(
        conn: &mut DbConnection,
        scope: &TenantScope,
        id: AgentId,
    ) -> QueryResult<Option<Agent>> {
        agents::table
            .filter(agents::organization_id.eq(scope.organization_id()))
            .filter(agents::id.eq(id))
            .select(Agent::as_select())
            .first(conn)
            .optional()
    }

    pub fn update(
        conn: &mut DbConnection,
        scope: &TenantScope,
        id: AgentId,
        settings: &AgentSettings,
    ) -> QueryResult<bool> {
        diesel::update(
            agents::table
                .filter(agents::organization_id.eq(scope.organization_id()))
                .filter(agents::id.eq(id)),
        )
        .set((settings, agents::updated_at.eq(crate::domain::now())))
        .execute(conn)
        .map(|n| n == 1)
    }

    pub fn delete(conn: &mut DbConnection, scope: &TenantScope, id: AgentId) -> QueryResult<bool> {
        let deleted = diesel::delete(
            agents::table
                .filter(agents::organization_id.eq(scope.organization_id()))
                .filter(agents::id.eq(id)),
        )
        .execute(conn)?
            == 1;
        if deleted {
            AgentIndex::of(id).drop_table(conn)?;
        }
        Ok(deleted)
    }

    /// The agent answering at `slug` in the organization, now or through a
    /// former address (then with `true`: the caller may point to the new one).
    pub fn public(
        conn: &mut DbConnection,
        organization: OrganizationId,
        slug: &Slug,
    ) -> QueryResult<Option<(Agent, bool)>> {
        let of_org = || agents::table.filter(agents::organization_id.eq(organization));
        let current = of_org()
            .filter(agents::slug.eq(slug.as_str()))
            .select(Agent::as_select())
            .first(conn)
            .optional()?;
        if let Some(agent) = current {
            return Ok(Some((agent, false)));
        }
        let Some(id) = super::AgentFormerSlug::owner(conn, organization, slug)? else {
            return Ok(None);
        };
        let moved = of_org()
            .filter(agents::id.eq(id))
            .select(Agent::as_select())
            .first(conn)
            .optional()?;
        Ok(moved.map(|agent| (agent, true)))
    }

    /// Moves the agent to a new address (slug) within its organization.
    pub fn set_slug(
        conn: &mut DbConnection,
        scope: &TenantScope,
        id: AgentId,
        slug: &Slug,
    ) -> QueryResult<usize> {
        diesel::update(
            agents::table
                .filter(agents::organization_id.eq(scope.organization_id()))
                .filter(agents::id.eq(id)),
        )
        .set((
            agents::slug.eq(slug.as_str()),
            agents::updated_at.eq(crate::domain::now()),
        ))
        .execute(conn)
    }

    /// Whether an agent of the scope's organization other than `except`
    /// answers at `slug`, now or through a former address.
    pub fn slug_taken(
        conn: &mut DbConnection,
        scope: &TenantScope,
        except: Option<AgentId>,
        slug: &Slug,
    ) -> QueryResult<bool> {
        let another = |id: AgentId| except != Some(id);
        let current: Option<AgentId> = agents::table
            .filter(agents::organization_id.eq(scope.organization_id()))
            .filter(agents::slug.eq(slug.as_str()))
            .select(agents::id)
            .first(conn)
            .optional()?;
        Ok(current.is_some_and(another)
            || super::AgentFormerSlug::owner(conn, scope.organization_id(), slug)?
                .is_some_and(another))
    }
}

impl Agent {
    /// Origins allowed to embed the widget, one per line or comma-separated.
    pub fn origins(&self) -> impl Iterator<Item = &str> {
        self.allowed_origins
            .split([',', '\n', ' '])
            .map(|o| o.trim().trim_end_matches('/'))
            .filter(|o| !o.is_empty())
    }

    pub fn allows_origin(&self, origin: &str) -> bool {
        self.origins().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

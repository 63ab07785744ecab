//! Addresses an organization or an agent used before its slug changed. They
//! keep leading to it, and nobody else may take them while they do: an old
//! widget snippet must never start talking to another company's agent.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::{agent_former_slugs, organization_former_slugs};
use crate::domain::{self, AgentId, OrganizationId, Slug, TenantScope};

/// How many new former addresses an organization, or an agent, may leave
/// behind in [`WINDOW`]. Former addresses stay reserved for as long as their
/// owner exists (letting one go would let another company's agent answer an
/// old snippet), so without a bound one could hold any number of names.
/// Taking back a former address is not counted: it reserves nothing new.
pub const MAX_NEW_PER_WINDOW: i64 = 5;
pub const WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(30);

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = organization_former_slugs)]
pub struct OrganizationFormerSlug {
    pub slug: String,
    pub organization_id: OrganizationId,
    pub retired_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = agent_former_slugs)]
pub struct AgentFormerSlug {
    pub organization_id: OrganizationId,
    pub slug: String,
    pub agent_id: AgentId,
    pub retired_at: NaiveDateTime,
}

impl OrganizationFormerSlug {
    /// The organization that used to answer at `slug`.
    pub fn owner(conn: &mut DbConnection, slug: &Slug) -> QueryResult<Option<OrganizationId>> {
        organization_former_slugs::table
            .find(slug.as_str())
            .select(organization_former_slugs::organization_id)
            .first(conn)
            .optional()
    }

    /// The scope's former addresses, newest first.
    pub fn slugs(conn: &mut DbConnection, scope: &TenantScope) -> QueryResult<Vec<String>> {
        organization_former_slugs::table
            .filter(organization_former_slugs::organization_id.eq(scope.organization_id()))
            .order((
                organization_former_slugs::retired_at.desc(),
                organization_former_slugs::slug.asc(),
            ))
            .select(organization_former_slugs::slug)
            .load(conn)
    }

    /// How many addresses the scope's organization left behind lately.
    pub fn recent(conn: &mut DbConnection, scope: &TenantScope) -> QueryResult<i64> {
        organization_former_slugs::table
            .filter(organization_former_slugs::organization_id.eq(scope.organization_id()))
            .filter(organization_former_slugs::retired_at.gt(domain::now() - WINDOW))
            .count()
            .get_result(conn)
    }

    /// Keeps `old` leading to the scope's organization, which now answers at
    /// `new` (taking back one of its own former addresses is allowed).
    pub fn retire(
        conn: &mut DbConnection,
        scope: &TenantScope,
        old: &str,
        new: &Slug,
    ) -> QueryResult<()> {
        let org = scope.organization_id();
        diesel::delete(
            organization_former_slugs::table
                .filter(organization_former_slugs::organization_id.eq(org))
                .filter(organization_former_slugs::slug.eq(new.as_str())),
        )
        .execute(conn)?;
        diesel::insert_into(organization_former_slugs::table)
            .values((
                organization_former_slugs::slug.eq(old),
                organization_former_slugs::organization_id.eq(org),
                organization_former_slugs::retired_at.eq(domain::now()),
            ))
            .execute(conn)
            .map(|_| ())
    }
}

impl AgentFormerSlug {
    /// The agent of the organization that used to answer at `slug`.
    pub fn owner(
        conn: &mut DbConnection,
        organization: OrganizationId,
        slug: &Slug,
    ) -> QueryResult<Option<AgentId>> {
        agent_former_slugs::table
            .find((organization, slug.as_str()))
            .select(agent_former_slugs::agent_id)
            .first(conn)
            .optional()
    }

    /// The agent's former addresses, newest first.
    pub fn slugs(
        conn: &mut DbConnection,
        scope: &TenantScope,
        agent: AgentId,
    ) -> QueryResult<Vec<String>> {
        agent_former_slugs::table
            .filter(agent_former_slugs::organization_id.eq(scope.organization_id()))
            .filter(agent_former_slugs::agent_id.eq(agent))
            .order((
                agent_former_slugs::retired_at.desc(),
                agent_former_slugs::slug.asc(),
            ))
            .select(agent_former_slugs::slug)
            .load(conn)
    }

    /// Every agent's former addresses in the scope's organization, each
    /// agent's newest first.
    pub fn of_organization(
        conn: &mut DbConnection,
        scope: &TenantScope,
    ) -> QueryResult<Vec<(AgentId, String)>> {
        agent_former_slugs::table
            .filter(agent_former_slugs::organization_id.eq(scope.organization_id()))
            .order((
                agent_former_slugs::agent_id.asc(),
                agent_former_slugs::retired_at.desc(),
                agent_former_slugs::slug.asc(),
            ))
            .select((agent_former_slugs::agent_id, agent_former_slugs::slug))
            .load(conn)
    }

    /// How many addresses the agent left behind lately.
    pub fn recent(
        conn: &mut DbConnection,
        scope: &TenantScope,
        agent: AgentId,
    ) -> QueryResult<i64> {
        agent_former_slugs::table
            .filter(agent_former_slugs::organization_id.eq(scope.organization_id()))
            .filter(agent_former_slugs::agent_id.eq(agent))
            .filter(agent_former_slugs::retired_at.gt(domain::now() - WINDOW))
            .count()
            .get_result(conn)
    }

    /// Keeps `old` leading to the agent, which now answers at `new`.
    pub fn retire(
        conn: &mut DbConnection,
        scope: &TenantScope,
        agent: AgentId,
        old: &str,
        new: &Slug,
    ) -> QueryResult<()> {
        let org = scope.organization_id();
        diesel::delete(
            agent_former_slugs::table
                .filter(agent_former_slugs::organization_id.eq(org))
                .filter(agent_former_slugs::agent_id.eq(agent))
                .filter(agent_former_slugs::slug.eq(new.as_str())),
        )
        .execute(conn)?;
        diesel::insert_into(agent_former_slugs::table)
            .values((
                agent_former_slugs::organization_id.eq(org),
                agent_former_slugs::slug.eq(old),
                agent_former_slugs::agent_id.eq(agent),
                agent_former_slugs::retired_at.eq(domain::now()),
            ))
            .execute(conn)
            .map(|_| ())
    }
}

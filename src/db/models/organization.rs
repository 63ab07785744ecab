use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::organizations;
use crate::domain::{self, OrganizationId, Slug};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = organizations)]
pub struct Organization {
    pub id: OrganizationId,
    pub slug: String,
    pub name: String,
    pub disabled_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = organizations)]
pub struct NewOrganization<'a> {
    pub slug: &'a str,
    pub name: &'a str,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl<'a> NewOrganization<'a> {
    pub fn new(slug: &'a Slug, name: &'a str) -> Self {
        let now = domain::now();
        Self {
            slug: slug.as_str(),
            name,
            created_at: now,
            updated_at: now,
        }
    }
}

impl Organization {
    pub fn create(conn: &mut DbConnection, new: &NewOrganization<'_>) -> QueryResult<Self> {
        diesel::insert_into(organizations::table)
            .values(new)
            .get_result(conn)
    }

    pub fn find(conn: &mut DbConnection, id: OrganizationId) -> QueryResult<Option<Self>> {
        organizations::table
            .find(id)
            .select(Organization::as_select())
            .first(conn)
            .optional()
    }

    pub fn find_by_slug(conn: &mut DbConnection, slug: &Slug) -> QueryResult<Option<Self>> {
        organizations::table
            .filter(organizations::slug.eq(slug.as_str()))
            .select(Organization::as_select())
            .first(conn)
            .optional()
    }

    /// The organization answering at `slug`, now or through a former address
    /// (then with `true`: the caller may point to the new one).
    pub fn public(conn: &mut DbConnection, slug: &Slug) -> QueryResult<Option<(Self, bool)>> {
        if let Some(org) = Self::find_by_slug(conn, slug)? {
            return Ok(Some((org, false)));
        }
        let Some(id) = super::OrganizationFormerSlug::owner(conn, slug)? else {
            return Ok(None);
        };
        Ok(Self::find(conn, id)?.map(|org| (org, true)))
    }

    /// Whether an organization other than `except` answers at `slug`, now or
    /// through a former address.
    pub fn slug_taken(
        conn: &mut DbConnection,
        except: Option<OrganizationId>,
        slug: &Slug,
    ) -> QueryResult<bool> {
        let another = |id: OrganizationId| except != Some(id);
        let current: Option<OrganizationId> = organizations::table
            .filter(organizations::slug.eq(slug.as_str()))
            .select(organizations::id)
            .first(conn)
            .optional()?;
        Ok(current.is_some_and(another)
            || super::OrganizationFormerSlug::owner(conn, slug)?.is_some_and(another))
    }

    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }
}

impl Organization {
    /// Renames the scope's organization (its slug, in chat addresses, stays).
    pub fn rename(
        conn: &mut DbConnection,
        scope: &crate::domain::TenantScope,
        name: &str,
    ) -> QueryResult<usize> {
        diesel::update(organizations::table.find(scope.organization_id()))
            .set((
                organizations::name.eq(name),
                organizations::updated_at.eq(domain::now()),
            ))
            .execute(conn)
    }

    /// Moves the scope's organization to a new public address (slug).
    pub fn set_slug(
        conn: &mut DbConnection,
        scope: &crate::domain::TenantScope,
        slug: &Slug,
    ) -> QueryResult<usize> {
        diesel::update(organizations::table.find(scope.organization_id()))
            .set((
                organizations::slug.eq(slug.as_str()),
                organizations::updated_at.eq(domain::now()),
            ))
            .execute(conn)
    }

    /// Deletes the scope's organization and, by cascade, everything it owns;
    /// its agents' search indexes are tables, which no cascade reaches.
    pub fn delete(
        conn: &mut DbConnection,
        scope: &crate::domain::TenantScope,
    ) -> QueryResult<usize> {
        super::knowledge_index::drop_organization(conn, scope.organization_id())?;
        diesel::delete(organizations::table.find(scope.organization_id())).execute(conn)
    }

    pub fn set_disabled(
        conn: &mut DbConnection,
        id: OrganizationId,
        disabled: bool,
    ) -> QueryResult<usize> {
        let at = disabled.then(domain::now);
        diesel::update(organizations::table.find(id))
            .set((
                organizations::disabled_at.eq(at),
                organizations::updated_at.eq(domain::now()),
            ))
            .execute(conn)
    }

    /// The newest `limit` organizations whose name or slug contains `search`
    /// (all without one), each with its member count, and how many match in
    /// all (platform admin).
    pub fn search_with_member_counts(
        conn: &mut DbConnection,
        search: Option<&str>,
        limit: i64,
    ) -> QueryResult<(Vec<(Organization, i64)>, i64)> {
        use crate::db::schema::memberships;
        let matching = || {
            let mut query = organizations::table.into_boxed();
            if let Some(text) = search.filter(|t| !t.trim().is_empty()) {
                let pattern = super::contains_pattern(text.trim());
                query = query.filter(
                    diesel::dsl::sql::<diesel::sql_types::Bool>("(lower(organizations.name) LIKE ")
                        .bind::<diesel::sql_types::Text, _>(pattern.clone())
                        .sql(" ESCAPE '\\' OR lower(organizations.slug) LIKE ")
                        .bind::<diesel::sql_types::Text, _>(pattern)
                        .sql(" ESCAPE '\\')"),
                );
            }
            query
        };
        let total: i64 = matching().count().get_result(conn)?;
        let orgs: Vec<Organization> = matching()
            .order((organizations::created_at.desc(), organizations::id.desc()))
            .limit(limit)
            .select(Organization::as_select())
            .load(conn)?;
        let ids: Vec<OrganizationId> = orgs.iter().map(|o| o.id).collect();
        let counts: std::collections::HashMap<OrganizationId, i64> = memberships::table
            .filter(memberships::organization_id.eq_any(&ids))
            .group_by(memberships::organization_id)
            .select((memberships::organization_id, diesel::dsl::count_star()))
            .load::<(OrganizationId, i64)>(conn)?
            .into_iter()
            .collect();
        let rows = orgs
            .into_iter()
            .map(|o| {
                let members = counts.get(&o.id).copied().unwrap_or(0);
                (o, members)
            })
            .collect();
        Ok((rows, total))
    }
}

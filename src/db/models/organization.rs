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

    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }
}

impl Organization {
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

    /// Every organization with its member count (platform admin).
    pub fn all_with_member_counts(
        conn: &mut DbConnection,
        limit: i64,
    ) -> QueryResult<Vec<(Organization, i64)>> {
        use crate::db::schema::memberships;
        let orgs: Vec<Organization> = organizations::table
            .order(organizations::created_at.desc())
            .limit(limit)
            .select(Organization::as_select())
            .load(conn)?;
        let mut out = Vec::with_capacity(orgs.len());
        for org in orgs {
            let count = memberships::table
                .filter(memberships::organization_id.eq(org.id))
                .count()
                .get_result(conn)?;
            out.push((org, count));
        }
        Ok(out)
    }
}

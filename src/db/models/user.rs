use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::users;
use crate::domain::{self, Email, UserId};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub password_hash: Option<String>,
    pub email_verified_at: Option<NaiveDateTime>,
    pub is_platform_admin: bool,
    pub disabled_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub password_hash: Option<&'a str>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl<'a> NewUser<'a> {
    pub fn new(email: &'a Email, name: &'a str, password_hash: Option<&'a str>) -> Self {
        let now = domain::now();
        Self {
            email: email.as_str(),
            name,
            password_hash,
            created_at: now,
            updated_at: now,
        }
    }
}

impl User {
    /// The name to show, or the email address for an account without one
    /// (a platform admin made on the command line, say).
    pub fn display_name(&self) -> &str {
        shown_name(&self.name, &self.email)
    }

    pub fn create(conn: &mut DbConnection, new: &NewUser<'_>) -> QueryResult<Self> {
        diesel::insert_into(users::table)
            .values(new)
            .get_result(conn)
    }

    pub fn find(conn: &mut DbConnection, id: UserId) -> QueryResult<Option<Self>> {
        users::table
            .find(id)
            .select(User::as_select())
            .first(conn)
            .optional()
    }

    pub fn find_by_email(conn: &mut DbConnection, email: &Email) -> QueryResult<Option<Self>> {
        users::table
            .filter(users::email.eq(email.as_str()))
            .select(User::as_select())
            .first(conn)
            .optional()
    }
}

/// `name`, or `email` when the name is blank.
pub fn shown_name<'a>(name: &'a str, email: &'a str) -> &'a str {
    if name.trim().is_empty() { email } else { name }
}

impl User {
    pub fn mark_verified(conn: &mut DbConnection, id: UserId) -> QueryResult<usize> {
        let now = domain::now();
        diesel::update(
            users::table
                .find(id)
                .filter(users::email_verified_at.is_null()),
        )
        .set((
            users::email_verified_at.eq(Some(now)),
            users::updated_at.eq(now),
        ))
        .execute(conn)
    }

    pub fn set_name(conn: &mut DbConnection, id: UserId, name: &str) -> QueryResult<usize> {
        diesel::update(users::table.find(id))
            .set((users::name.eq(name), users::updated_at.eq(domain::now())))
            .execute(conn)
    }

    pub fn set_password(
        conn: &mut DbConnection,
        id: UserId,
        password_hash: &str,
    ) -> QueryResult<usize> {
        diesel::update(users::table.find(id))
            .set((
                users::password_hash.eq(Some(password_hash)),
                users::updated_at.eq(domain::now()),
            ))
            .execute(conn)
    }

    /// A new address must be confirmed again.
    pub fn set_email(conn: &mut DbConnection, id: UserId, email: &Email) -> QueryResult<usize> {
        diesel::update(users::table.find(id))
            .set((
                users::email.eq(email.as_str()),
                users::email_verified_at.eq(None::<NaiveDateTime>),
                users::updated_at.eq(domain::now()),
            ))
            .execute(conn)
    }

    /// Deletes the account: memberships, sessions and links go with it; what
    /// it did (audit entries, keys, invitations) stays without its name.
    pub fn delete(conn: &mut DbConnection, id: UserId) -> QueryResult<usize> {
        diesel::delete(users::table.find(id)).execute(conn)
    }

    pub fn set_disabled(conn: &mut DbConnection, id: UserId, disabled: bool) -> QueryResult<usize> {
        let at = disabled.then(domain::now);
        diesel::update(users::table.find(id))
            .set((
                users::disabled_at.eq(at),
                users::updated_at.eq(domain::now()),
            ))
            .execute(conn)
    }

    pub fn set_platform_admin(conn: &mut DbConnection, id: UserId) -> QueryResult<usize> {
        diesel::update(users::table.find(id))
            .set((
                users::is_platform_admin.eq(true),
                users::updated_at.eq(domain::now()),
            ))
            .execute(conn)
    }

    /// The newest `limit` accounts whose email or name contains `search` (all
    /// without one), and how many match in all (platform admin).
    pub fn search(
        conn: &mut DbConnection,
        search: Option<&str>,
        limit: i64,
    ) -> QueryResult<(Vec<User>, i64)> {
        let matching = || {
            let mut query = users::table.into_boxed();
            if let Some(text) = search.filter(|t| !t.trim().is_empty()) {
                let pattern = super::contains_pattern(text.trim());
                query = query.filter(
                    diesel::dsl::sql::<diesel::sql_types::Bool>("(lower(users.email) LIKE ")
                        .bind::<diesel::sql_types::Text, _>(pattern.clone())
                        .sql(" ESCAPE '\\' OR lower(users.name) LIKE ")
                        .bind::<diesel::sql_types::Text, _>(pattern)
                        .sql(" ESCAPE '\\')"),
                );
            }
            query
        };
        let total: i64 = matching().count().get_result(conn)?;
        let users = matching()
            .order((users::created_at.desc(), users::id.desc()))
            .limit(limit)
            .select(User::as_select())
            .load(conn)?;
        Ok((users, total))
    }
}

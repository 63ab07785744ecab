//! Conversations with an agent and their messages.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::{conversations, messages};
use crate::domain::OrganizationId;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = conversations)]
pub struct Conversation {
    pub id: i64,
    pub organization_id: OrganizationId,
    pub agent_id: i64,
    pub channel: String,
    pub visitor_id: String,
    pub status: String,
    pub summary: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = messages)]
pub struct Message {
    pub id: i64,
    pub organization_id: OrganizationId,
    pub conversation_id: i64,
    pub role: String,
    pub content: String,
    pub provider: Option<String>,
    pub latency_ms: Option<i32>,
    pub tokens_in: Option<i32>,
    pub tokens_out: Option<i32>,
    pub citations: String,
    pub handoff_offered: bool,
    pub created_at: NaiveDateTime,
}

/// A message to store.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub role: &'a str,
    pub content: &'a str,
    pub provider: Option<&'a str>,
    pub latency_ms: Option<i32>,
    pub tokens_in: Option<i32>,
    pub tokens_out: Option<i32>,
    pub citations: &'a str,
    pub handoff_offered: bool,
}

impl Conversation {
    pub fn start(
        conn: &mut DbConnection,
        organization_id: OrganizationId,
        agent_id: i64,
        channel: &str,
        visitor_id: &str,
    ) -> QueryResult<Conversation> {
        let now = crate::domain::now();
        diesel::insert_into(conversations::table)
            .values((
                conversations::organization_id.eq(organization_id),
                conversations::agent_id.eq(agent_id),
                conversations::channel.eq(channel),
                conversations::visitor_id.eq(visitor_id),
                conversations::status.eq("open"),
                conversations::created_at.eq(now),
                conversations::updated_at.eq(now),
            ))
            .get_result(conn)
    }

    /// Scoped by organization: an id from another tenant finds nothing.
    pub fn find(
        conn: &mut DbConnection,
        organization_id: OrganizationId,
        id: i64,
    ) -> QueryResult<Option<Conversation>> {
        conversations::table
            .filter(conversations::organization_id.eq(organization_id))
            .filter(conversations::id.eq(id))
            .select(Conversation::as_select())
            .first(conn)
            .optional()
    }

    pub fn add_message(&self, conn: &mut DbConnection, m: &NewMessage<'_>) -> QueryResult<Message> {
        let now = crate::domain::now();
        diesel::update(conversations::table.find(self.id))
            .set(conversations::updated_at.eq(now))
            .execute(conn)?;
        diesel::insert_into(messages::table)
            .values((
                messages::organization_id.eq(self.organization_id),
                messages::conversation_id.eq(self.id),
                messages::role.eq(m.role),
                messages::content.eq(m.content),
                messages::provider.eq(m.provider),
                messages::latency_ms.eq(m.latency_ms),
                messages::tokens_in.eq(m.tokens_in),
                messages::tokens_out.eq(m.tokens_out),
                messages::citations.eq(m.citations),
                messages::handoff_offered.eq(m.handoff_offered),
                messages::created_at.eq(now),
            ))
            .get_result(conn)
    }

    pub fn messages(&self, conn: &mut DbConnection) -> QueryResult<Vec<Message>> {
        messages::table
            .filter(messages::conversation_id.eq(self.id))
            .order(messages::id.asc())
            .select(Message::as_select())
            .load(conn)
    }

    /// "Talk to a person": the team picks it up from here.
    pub fn escalate(&self, conn: &mut DbConnection) -> QueryResult<usize> {
        diesel::update(conversations::table.find(self.id))
            .set((
                conversations::status.eq("escalated"),
                conversations::updated_at.eq(crate::domain::now()),
            ))
            .execute(conn)
    }
}

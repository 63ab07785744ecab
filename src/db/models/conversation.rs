//! Conversations with an agent and their messages.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::{agents, conversations, messages};
use crate::domain::{AgentId, ConversationId, OrganizationId, TenantScope};

pub const OPEN: &str = "open";
pub const ESCALATED: &str = "escalated";
pub const RESOLVED: &str = "resolved";
pub const STATUSES: [&str; 3] = [OPEN, ESCALATED, RESOLVED];

/// Words of a conversation search that count; the rest are ignored.
const MAX_SEARCH_WORDS: usize = 8;

/// Where a conversation came in: the public chat page, the widget, or a
/// caller of the JSON API speaking for its own end user.
pub const PAGE: &str = "page";
pub const WIDGET: &str = "widget";
pub const API: &str = "api";

/// Who wrote a message: the visitor, the AI agent, or a person of the team
/// (the roles the messages table's CHECK allows).
pub const MESSAGE_ROLES: [&str; 3] = ["visitor", "agent", "staff"];

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = conversations)]
pub struct Conversation {
    pub id: ConversationId,
    pub organization_id: OrganizationId,
    pub agent_id: AgentId,
    pub channel: String,
    pub visitor_id: String,
    pub visitor_ip: String,
    pub token_hash: String,
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
    pub conversation_id: ConversationId,
    pub role: String,
    pub content: String,
    pub provider: Option<String>,
    pub latency_ms: Option<i32>,
    pub tokens_in: Option<i32>,
    pub tokens_out: Option<i32>,
    pub citations: String,
    pub handoff_offered: bool,
    pub created_at: NaiveDateTime,
    /// Set on visitor messages, for the rate limits.
    pub visitor_id: Option<String>,
    pub visitor_ip: Option<String>,
}

/// A message to store.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub role: &'a str,
    pub content: &'a str,
    /// Where a visitor's message came from, as the per-address limit counts
    /// it (see `address_bucket`); `None` for anyone else's.
    pub visitor_address: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub latency_ms: Option<i32>,
    pub tokens_in: Option<i32>,
    pub tokens_out: Option<i32>,
    pub citations: &'a str,
    pub handoff_offered: bool,
}

impl<'a> NewMessage<'a> {
    /// A message written by a person (the visitor or the team): just its text.
    /// A visitor's message, sent from `address`: the request's, not the one
    /// the conversation was started from.
    pub fn from_visitor(content: &'a str, address: &'a str) -> Self {
        Self {
            visitor_address: Some(address),
            ..Self::written("visitor", content)
        }
    }

    pub fn written(role: &'a str, content: &'a str) -> Self {
        Self {
            role,
            content,
            visitor_address: None,
            provider: None,
            latency_ms: None,
            tokens_in: None,
            tokens_out: None,
            citations: "[]",
            handoff_offered: false,
        }
    }
}

/// Who started a conversation, from where.
#[derive(Debug, Clone)]
pub struct NewConversation<'a> {
    pub agent_id: AgentId,
    pub channel: &'a str,
    pub visitor_id: &'a str,
    pub visitor_ip: &'a str,
    pub token_hash: &'a str,
}

/// The list filters of the conversations page and API.
#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    pub agent_id: Option<AgentId>,
    pub status: Option<String>,
    pub since: Option<NaiveDateTime>,
    pub until: Option<NaiveDateTime>,
    /// Matches message text: every word, case-insensitively, somewhere.
    pub search: Option<String>,
    /// Only conversations someone wrote in: a chat opened and left says
    /// nothing to the team (the API lists every one).
    pub written_only: bool,
    pub limit: i64,
    /// Rows skipped before the first one returned (paging).
    pub offset: i64,
}

/// A row of the conversations list.
#[derive(Debug, Clone, Queryable)]
pub struct ConversationListing {
    pub conversation: Conversation,
    pub agent_name: String,
}

/// The conversation has at least one message.
#[diesel::dsl::auto_type]
fn written() -> _ {
    diesel::dsl::exists(messages::table.filter(messages::conversation_id.eq(conversations::id)))
}

impl Conversation {
    pub fn start(
        conn: &mut DbConnection,
        organization_id: OrganizationId,
        new: &NewConversation<'_>,
    ) -> QueryResult<Conversation> {
        let now = crate::domain::now();
        diesel::insert_into(conversations::table)
            .values((
                conversations::organization_id.eq(organization_id),
                conversations::agent_id.eq(new.agent_id),
                conversations::channel.eq(new.channel),
                conversations::visitor_id.eq(new.visitor_id),
                conversations::visitor_ip.eq(new.visitor_ip),
                conversations::token_hash.eq(new.token_hash),
                conversations::status.eq(OPEN),
                conversations::created_at.eq(now),
                conversations::updated_at.eq(now),
            ))
            .get_result(conn)
    }

    /// Taken first by every transaction that changes a conversation's status,
    /// adds to it or changes its ticket (a visitor's message takes it after its
    /// rate-limit locks), and the rows read again after it: on PostgreSQL
    /// such writes then run one at a time per conversation, so none is lost
    /// and the conversation and ticket rows are never locked in opposite
    /// orders. SQLite runs one writer at a time anyway.
    pub fn lock(conn: &mut DbConnection, id: ConversationId) -> QueryResult<()> {
        crate::db::lock_until_commit(conn, &format!("conversation:{id}"))
    }

    /// Scoped by organization: an id from another tenant finds nothing.
    pub fn find(
        conn: &mut DbConnection,
        scope: &TenantScope,
        id: ConversationId,
    ) -> QueryResult<Option<Conversation>> {
        Self::find_in(conn, scope.organization_id(), id)
    }

    /// For the public chat, whose caller proved the agent's organization by its slug
    /// and the conversation by its token.
    pub fn find_in(
        conn: &mut DbConnection,
        organization_id: OrganizationId,
        id: ConversationId,
    ) -> QueryResult<Option<Conversation>> {
        conversations::table
            .filter(conversations::organization_id.eq(organization_id))
            .filter(conversations::id.eq(id))
            .select(Conversation::as_select())
            .first(conn)
            .optional()
    }

    pub fn list(
        conn: &mut DbConnection,
        scope: &TenantScope,
        filter: &ConversationFilter,
    ) -> QueryResult<Vec<ConversationListing>> {
        let mut query = conversations::table
            .inner_join(agents::table)
            .filter(conversations::organization_id.eq(scope.organization_id()))
            .select((Conversation::as_select(), agents::name))
            // The id breaks ties so that pages neither repeat nor skip rows.
            .order((conversations::updated_at.desc(), conversations::id.desc()))
            .limit(filter.limit)
            .offset(filter.offset)
            .into_boxed();
        if let Some(agent) = filter.agent_id {
            query = query.filter(conversations::agent_id.eq(agent));
        }
        if let Some(status) = &filter.status {
            query = query.filter(conversations::status.eq(status.clone()));
        }
        if let Some(since) = filter.since {
            query = query.filter(conversations::created_at.ge(since));
        }
        if let Some(until) = filter.until {
            query = query.filter(conversations::created_at.lt(until));
        }
        if filter.written_only {
            query = query.filter(written());
        }
        // Every word somewhere in the conversation, not the words as one
        // phrase: "photo damage" finds "a photo of the damage".
        let words = filter.search.as_deref().unwrap_or("").split_whitespace();
        for word in words.take(MAX_SEARCH_WORDS) {
            let pattern = super::contains_pattern(word);
            query = query.filter(
                conversations::id.eq_any(
                    messages::table
                        .filter(messages::organization_id.eq(scope.organization_id()))
                        .filter(
                            diesel::dsl::sql::<diesel::sql_types::Bool>(
                                "lower(messages.content) LIKE ",
                            )
                            .bind::<diesel::sql_types::Text, _>(pattern)
                            .sql(" ESCAPE '\\'"),
                        )
                        .select(messages::conversation_id),
                ),
            );
        }
        query.load::<(Conversation, String)>(conn).map(|rows| {
            rows.into_iter()
                .map(|(conversation, agent_name)| ConversationListing {
                    conversation,
                    agent_name,
                })
                .collect()
        })
    }

    /// The first thing the visitor wrote in each of `ids` (of the
    /// organization's conversations), for a list that has no summary yet.
    pub fn first_visitor_messages(
        conn: &mut DbConnection,
        scope: &TenantScope,
        ids: &[ConversationId],
    ) -> QueryResult<std::collections::HashMap<ConversationId, String>> {
        let firsts: Vec<Option<i64>> = messages::table
            .filter(messages::organization_id.eq(scope.organization_id()))
            .filter(messages::conversation_id.eq_any(ids.iter().map(|id| id.0)))
            .filter(messages::role.eq("visitor"))
            .group_by(messages::conversation_id)
            .select(diesel::dsl::min(messages::id))
            .load(conn)?;
        let rows: Vec<(i64, String)> = messages::table
            .filter(messages::organization_id.eq(scope.organization_id()))
            .filter(messages::id.eq_any(firsts.into_iter().flatten()))
            .select((messages::conversation_id, messages::content))
            .load(conn)?;
        Ok(rows
            .into_iter()
            .map(|(id, content)| (ConversationId(id), content))
            .collect())
    }

    /// Deletes one of the organization's conversations with its messages;
    /// `false` when it is not one of theirs.
    pub fn delete(
        conn: &mut DbConnection,
        scope: &TenantScope,
        id: ConversationId,
    ) -> QueryResult<bool> {
        diesel::delete(
            conversations::table
                .filter(conversations::organization_id.eq(scope.organization_id()))
                .filter(conversations::id.eq(id)),
        )
        .execute(conn)
        .map(|n| n == 1)
    }

    /// How many of the organization's conversations someone wrote in are in
    /// each status.
    pub fn count_by_status(
        conn: &mut DbConnection,
        scope: &TenantScope,
    ) -> QueryResult<Vec<(String, i64)>> {
        conversations::table
            .filter(conversations::organization_id.eq(scope.organization_id()))
            .filter(written())
            .group_by(conversations::status)
            .select((conversations::status, diesel::dsl::count_star()))
            .load(conn)
    }

    /// Up to `limit` conversations after `after`, in id order: walks every
    /// conversation of the organization a page at a time (for exports).
    pub fn page_after(
        conn: &mut DbConnection,
        scope: &TenantScope,
        after: Option<ConversationId>,
        limit: i64,
    ) -> QueryResult<Vec<Conversation>> {
        conversations::table
            .filter(conversations::organization_id.eq(scope.organization_id()))
            .filter(conversations::id.gt(after.map_or(0, |id| id.0)))
            .order(conversations::id.asc())
            .limit(limit)
            .select(Conversation::as_select())
            .load(conn)
    }

    pub fn add_message(&self, conn: &mut DbConnection, m: &NewMessage<'_>) -> QueryResult<Message> {
        let now = crate::domain::now();
        diesel::update(conversations::table.find(self.id))
            .set(conversations::updated_at.eq(now))
            .execute(conn)?;
        let visitor = m.role == "visitor";
        diesel::insert_into(messages::table)
            .values((
                messages::visitor_id.eq(visitor.then_some(self.visitor_id.as_str())),
                messages::visitor_ip.eq(if visitor { m.visitor_address } else { None }),
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

    /// Whether someone from the team has written in it.
    pub fn has_staff_reply(&self, conn: &mut DbConnection) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(
            messages::table
                .filter(messages::conversation_id.eq(self.id))
                .filter(messages::role.eq("staff")),
        ))
        .get_result(conn)
    }

    /// The id of the newest message, to tell whether a conversation moved on.
    pub fn last_message_id(&self, conn: &mut DbConnection) -> QueryResult<Option<i64>> {
        messages::table
            .filter(messages::conversation_id.eq(self.id))
            .select(diesel::dsl::max(messages::id))
            .first(conn)
    }

    pub fn set_status(&self, conn: &mut DbConnection, status: &str) -> QueryResult<usize> {
        diesel::update(conversations::table.find(self.id))
            .set((
                conversations::status.eq(status),
                conversations::updated_at.eq(crate::domain::now()),
            ))
            .execute(conn)
    }

    pub fn set_summary(&self, conn: &mut DbConnection, summary: &str) -> QueryResult<usize> {
        diesel::update(conversations::table.find(self.id))
            .set(conversations::summary.eq(summary))
            .execute(conn)
    }

    /// Visitor messages since `since` from this visitor (of this organization:
    /// visitor ids are chosen by each organization's callers, so another's
    /// visitor of the same id is someone else) and from this address, across
    /// every conversation: the rate limit holds across instances.
    pub fn recent_visitor_messages(
        conn: &mut DbConnection,
        organization: OrganizationId,
        visitor_id: &str,
        visitor_ip: &str,
        since: NaiveDateTime,
    ) -> QueryResult<(i64, i64)> {
        let by_visitor = messages::table
            .filter(messages::organization_id.eq(organization))
            .filter(messages::visitor_id.eq(visitor_id))
            .filter(messages::created_at.ge(since))
            .count()
            .get_result(conn)?;
        let by_ip = messages::table
            .filter(messages::visitor_ip.eq(visitor_ip))
            .filter(messages::created_at.ge(since))
            .count()
            .get_result(conn)?;
        Ok((by_visitor, by_ip))
    }

    /// How many messages `visitor_ip` sent `organization`'s agents since
    /// `since`, counted up to `cap` (so a turn reads at most that many rows,
    /// however busy the address), and when the first of them was sent.
    pub fn messages_from_address(
        conn: &mut DbConnection,
        organization: OrganizationId,
        visitor_ip: &str,
        since: NaiveDateTime,
        cap: i64,
    ) -> QueryResult<(i64, Option<NaiveDateTime>)> {
        let sent: Vec<NaiveDateTime> = messages::table
            .filter(messages::visitor_ip.eq(visitor_ip))
            .filter(messages::created_at.ge(since))
            .filter(messages::organization_id.eq(organization))
            .select(messages::created_at)
            .order(messages::created_at.asc())
            .limit(cap)
            .load(conn)?;
        Ok((
            i64::try_from(sent.len()).unwrap_or(i64::MAX),
            sent.first().copied(),
        ))
    }

    /// Conversations started from `visitor_ip` since `since`, across instances.
    pub fn recently_started_from(
        conn: &mut DbConnection,
        visitor_ip: &str,
        since: NaiveDateTime,
    ) -> QueryResult<i64> {
        conversations::table
            .filter(conversations::visitor_ip.eq(visitor_ip))
            .filter(conversations::created_at.ge(since))
            .count()
            .get_result(conn)
    }
}

//! Tickets: conversations handed to the team, and their timelines.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::{agents, conversations, ticket_events, tickets, users};
use crate::domain::{ConversationId, OrganizationId, TenantScope, TicketId, UserId};

/// The team owes the visitor an answer.
pub const OPEN: &str = "open";
/// The team answered; waiting for the visitor.
pub const PENDING: &str = "pending";
pub const SOLVED: &str = "solved";
pub const STATUSES: [&str; 3] = [OPEN, PENDING, SOLVED];

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tickets)]
pub struct Ticket {
    pub id: TicketId,
    pub organization_id: OrganizationId,
    pub conversation_id: ConversationId,
    pub subject: String,
    pub status: String,
    pub assignee_id: Option<UserId>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub solved_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ticket_events)]
pub struct TicketEvent {
    pub id: i64,
    pub organization_id: OrganizationId,
    pub ticket_id: TicketId,
    pub actor_id: Option<UserId>,
    pub actor_label: String,
    pub kind: String,
    pub body: String,
    pub created_at: NaiveDateTime,
}

/// One line of a ticket's timeline, to store.
#[derive(Debug, Clone, Copy)]
pub struct NewTicketEvent<'a> {
    pub actor_id: Option<UserId>,
    pub actor_label: &'a str,
    /// `opened`, `reopened`, `assigned`, `unassigned`, `status`, `note` or `reply`.
    pub kind: &'a str,
    pub body: &'a str,
}

/// Whose tickets a list shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Assigned {
    #[default]
    Anyone,
    Nobody,
    To(UserId),
}

/// The list filters of the tickets page and API.
#[derive(Debug, Clone, Default)]
pub struct TicketFilter {
    /// `None` lists every status.
    pub status: Option<&'static str>,
    pub assigned: Assigned,
    pub limit: i64,
    pub offset: i64,
}

/// A row of the tickets list.
#[derive(Debug, Clone)]
pub struct TicketListing {
    pub ticket: Ticket,
    pub agent_name: String,
    pub assignee_name: Option<String>,
}

impl Ticket {
    /// The ticket of a conversation that asks for a person: a new one, or its
    /// solved one opened again. The flag says whether anything changed.
    pub fn open_for(
        conn: &mut DbConnection,
        conversation_id: ConversationId,
        organization_id: OrganizationId,
        subject: &str,
    ) -> QueryResult<(Ticket, Opened)> {
        let now = crate::domain::now();
        if let Some(ticket) = Self::of_conversation(conn, organization_id, conversation_id)? {
            if ticket.status != SOLVED {
                return Ok((ticket, Opened::AlreadyOpen));
            }
            diesel::update(tickets::table.find(ticket.id))
                .set((
                    tickets::status.eq(OPEN),
                    tickets::solved_at.eq(None::<NaiveDateTime>),
                    tickets::updated_at.eq(now),
                ))
                .execute(conn)?;
            let ticket = tickets::table
                .find(ticket.id)
                .select(Ticket::as_select())
                .first(conn)?;
            return Ok((ticket, Opened::Reopened));
        }
        let ticket = diesel::insert_into(tickets::table)
            .values((
                tickets::organization_id.eq(organization_id),
                tickets::conversation_id.eq(conversation_id),
                tickets::subject.eq(subject),
                tickets::status.eq(OPEN),
                tickets::created_at.eq(now),
                tickets::updated_at.eq(now),
            ))
            .get_result(conn)?;
        Ok((ticket, Opened::New))
    }

    /// Scoped by organization: an id from another tenant finds nothing.
    pub fn find(
        conn: &mut DbConnection,
        scope: &TenantScope,
        id: TicketId,
    ) -> QueryResult<Option<Ticket>> {
        tickets::table
            .filter(tickets::organization_id.eq(scope.organization_id()))
            .filter(tickets::id.eq(id))
            .select(Ticket::as_select())
            .first(conn)
            .optional()
    }

    /// The ticket of one of the organization's conversations, if it has one.
    pub fn for_conversation(
        conn: &mut DbConnection,
        scope: &TenantScope,
        conversation_id: ConversationId,
    ) -> QueryResult<Option<Ticket>> {
        Self::of_conversation(conn, scope.organization_id(), conversation_id)
    }

    /// For the public chat, whose caller proved the conversation by its token.
    pub fn of_conversation(
        conn: &mut DbConnection,
        organization_id: OrganizationId,
        conversation_id: ConversationId,
    ) -> QueryResult<Option<Ticket>> {
        tickets::table
            .filter(tickets::organization_id.eq(organization_id))
            .filter(tickets::conversation_id.eq(conversation_id))
            .select(Ticket::as_select())
            .first(conn)
            .optional()
    }

    pub fn list(
        conn: &mut DbConnection,
        scope: &TenantScope,
        filter: &TicketFilter,
    ) -> QueryResult<Vec<TicketListing>> {
        let mut query = tickets::table
            .inner_join(conversations::table.inner_join(agents::table))
            .left_join(users::table.on(tickets::assignee_id.eq(users::id.nullable())))
            .filter(tickets::organization_id.eq(scope.organization_id()))
            .select((
                Ticket::as_select(),
                agents::name,
                users::name.nullable(),
                users::email.nullable(),
            ))
            // The id breaks ties so that equal times keep one order. (Offset
            // paging: a ticket that moves up between two page loads shifts the
            // rows after it by one.)
            .order((tickets::updated_at.desc(), tickets::id.desc()))
            .limit(filter.limit)
            .offset(filter.offset)
            .into_boxed();
        if let Some(status) = filter.status {
            query = query.filter(tickets::status.eq(status));
        }
        match filter.assigned {
            Assigned::Anyone => {}
            Assigned::Nobody => query = query.filter(tickets::assignee_id.is_null()),
            Assigned::To(user) => query = query.filter(tickets::assignee_id.eq(user)),
        }
        query
            .load::<(Ticket, String, Option<String>, Option<String>)>(conn)
            .map(|rows| {
                rows.into_iter()
                    .map(|(ticket, agent_name, name, email)| TicketListing {
                        ticket,
                        agent_name,
                        assignee_name: name.zip(email).map(|(name, email)| {
                            super::user::shown_name(&name, &email).to_string()
                        }),
                    })
                    .collect()
            })
    }

    /// How many of the organization's tickets are in each status.
    pub fn count_by_status(
        conn: &mut DbConnection,
        scope: &TenantScope,
    ) -> QueryResult<Vec<(String, i64)>> {
        tickets::table
            .filter(tickets::organization_id.eq(scope.organization_id()))
            .group_by(tickets::status)
            .select((tickets::status, diesel::dsl::count_star()))
            .load(conn)
    }

    /// Every ticket of the organization with its timeline (for exports).
    pub fn all_with_events(
        conn: &mut DbConnection,
        scope: &TenantScope,
    ) -> QueryResult<Vec<(Ticket, Vec<TicketEvent>)>> {
        let list: Vec<Ticket> = tickets::table
            .filter(tickets::organization_id.eq(scope.organization_id()))
            .order(tickets::id.asc())
            .select(Ticket::as_select())
            .load(conn)?;
        list.into_iter()
            .map(|t| {
                let events = t.events(conn)?;
                Ok((t, events))
            })
            .collect()
    }

    pub fn set_status(&self, conn: &mut DbConnection, status: &str) -> QueryResult<usize> {
        let now = crate::domain::now();
        diesel::update(tickets::table.find(self.id))
            .set((
                tickets::status.eq(status),
                tickets::solved_at.eq((status == SOLVED).then_some(now)),
                tickets::updated_at.eq(now),
            ))
            .execute(conn)
    }

    pub fn set_assignee(
        &self,
        conn: &mut DbConnection,
        assignee: Option<UserId>,
    ) -> QueryResult<usize> {
        diesel::update(tickets::table.find(self.id))
            .set((
                tickets::assignee_id.eq(assignee),
                tickets::updated_at.eq(crate::domain::now()),
            ))
            .execute(conn)
    }

    /// Every ticket in `organization_id` given to `user`, whatever its status.
    pub fn assigned_to(
        conn: &mut DbConnection,
        organization_id: OrganizationId,
        user: UserId,
    ) -> QueryResult<Vec<Ticket>> {
        tickets::table
            .filter(tickets::organization_id.eq(organization_id))
            .filter(tickets::assignee_id.eq(user))
            .order(tickets::id.asc())
            .select(Ticket::as_select())
            .load(conn)
    }

    /// Takes the ticket from `user` if they still have it (a reassignment
    /// that came first stands); `false` when they no longer had it.
    pub fn unassign_from(&self, conn: &mut DbConnection, user: UserId) -> QueryResult<bool> {
        diesel::update(
            tickets::table
                .find(self.id)
                .filter(tickets::assignee_id.eq(user)),
        )
        .set((
            tickets::assignee_id.eq(None::<UserId>),
            tickets::updated_at.eq(crate::domain::now()),
        ))
        .execute(conn)
        .map(|n| n == 1)
    }

    /// Moves the ticket up the list (something happened on it).
    pub fn touch(&self, conn: &mut DbConnection) -> QueryResult<usize> {
        diesel::update(tickets::table.find(self.id))
            .set(tickets::updated_at.eq(crate::domain::now()))
            .execute(conn)
    }

    pub fn add_event(
        &self,
        conn: &mut DbConnection,
        event: &NewTicketEvent<'_>,
    ) -> QueryResult<TicketEvent> {
        diesel::insert_into(ticket_events::table)
            .values((
                ticket_events::organization_id.eq(self.organization_id),
                ticket_events::ticket_id.eq(self.id),
                ticket_events::actor_id.eq(event.actor_id),
                ticket_events::actor_label.eq(event.actor_label),
                ticket_events::kind.eq(event.kind),
                ticket_events::body.eq(event.body),
                ticket_events::created_at.eq(crate::domain::now()),
            ))
            .get_result(conn)
    }

    pub fn events(&self, conn: &mut DbConnection) -> QueryResult<Vec<TicketEvent>> {
        ticket_events::table
            .filter(ticket_events::ticket_id.eq(self.id))
            .order(ticket_events::id.asc())
            .select(TicketEvent::as_select())
            .load(conn)
    }
}

/// What [`Ticket::open_for`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    New,
    Reopened,
    AlreadyOpen,
}

//! Tickets: what the team does with a conversation handed to it. A visitor's
//! "talk to a person" opens one; members who may respond reply (the visitor
//! sees it in the chat), leave internal notes (the visitor never does), assign
//! it and set its status. Every step is a line of the ticket's timeline,
//! written in the same transaction as the change.

use std::time::Duration;

use url::Url;

use crate::db::models::conversation::{ESCALATED, OPEN, RESOLVED};
use crate::db::models::ticket::{self, NewTicketEvent, Opened, Ticket};
use crate::db::models::{Conversation, Membership, NewMessage, User};
use crate::db::{DbConnection, write_transaction};
use crate::domain::{Email, OrganizationId, Permission, TenantScope, TicketId, UserId};
use crate::services::accounts::Actor;
use crate::services::chat::schedule_summary;
use crate::services::jobs::{self, EnqueueOptions, SendEmail};
use crate::services::mail::{MailTemplate, OutgoingEmail};

/// Longest reply or note, in characters.
pub const MAX_TEXT_CHARS: usize = 8000;
/// A subject is the first visitor message, cut to this many characters.
const SUBJECT_CHARS: usize = 120;

#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    #[error("{field} {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

impl TicketError {
    fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }

    /// An assignee who is not a member able to answer, or not a user id at all.
    pub fn not_a_responder() -> Self {
        Self::invalid(
            "assignee",
            "must be a member of this organization who can answer conversations",
        )
    }

    /// The form field the problem belongs to, for errors beside the field.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    /// The message without the field name, for showing beside the field.
    pub fn message(&self) -> String {
        match self {
            Self::Invalid { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

fn require(scope: &TenantScope) -> Result<(), TicketError> {
    if scope.role().can(Permission::Respond) {
        Ok(())
    } else {
        Err(TicketError::Forbidden(
            "Your role does not allow working on tickets.",
        ))
    }
}

/// The timeline's name for the person in the chat (who has no account).
pub const VISITOR_LABEL: &str = "Visitor";

/// Writes one line of the ticket's timeline, as `actor`.
fn record(
    conn: &mut DbConnection,
    ticket: &Ticket,
    actor: &Actor<'_>,
    kind: &str,
    body: &str,
) -> diesel::QueryResult<crate::db::models::TicketEvent> {
    ticket.add_event(
        conn,
        &NewTicketEvent {
            actor_id: actor.user_id,
            actor_label: actor.label,
            kind,
            body,
        },
    )
}

/// Called in the transaction that escalates a conversation: opens its ticket
/// (or reopens a solved one) and notes who asked.
pub fn open_for(
    conn: &mut DbConnection,
    conversation: &Conversation,
    who: &Actor<'_>,
) -> diesel::QueryResult<Ticket> {
    // Two "talk to a person" at once (two tabs, two instances) make one ticket.
    Conversation::lock(conn, conversation.id)?;
    let subject = subject_of(conn, conversation)?;
    let (ticket, opened) = Ticket::open_for(
        conn,
        conversation.id,
        conversation.organization_id,
        &subject,
    )?;
    let kind = match opened {
        Opened::New => "opened",
        Opened::Reopened => "reopened",
        Opened::AlreadyOpen => return Ok(ticket),
    };
    record(conn, &ticket, who, kind, "")?;
    Ok(ticket)
}

/// The visitor's first message on one line, cut short; or a plain name.
fn subject_of(conn: &mut DbConnection, conversation: &Conversation) -> diesel::QueryResult<String> {
    let first = conversation
        .messages(conn)?
        .into_iter()
        .find(|m| m.role == "visitor")
        .map(|m| m.content.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty());
    Ok(match first {
        Some(text) if text.chars().count() > SUBJECT_CHARS => {
            let cut: String = text.chars().take(SUBJECT_CHARS - 1).collect();
            format!("{}…", cut.trim_end())
        }
        Some(text) => text,
        None => format!("Conversation #{}", conversation.id),
    })
}

fn checked_text(field: &'static str, raw: &str) -> Result<String, TicketError> {
    let text = crate::domain::text::clean(raw, true);
    let text = text.trim();
    if text.is_empty() {
        return Err(TicketError::invalid(field, "is empty"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(TicketError::invalid(
            field,
            format!("can be at most {MAX_TEXT_CHARS} characters"),
        ));
    }
    Ok(text.to_string())
}

/// The ticket as it stands after a change.
fn reload(
    conn: &mut DbConnection,
    scope: &TenantScope,
    id: TicketId,
) -> Result<Ticket, TicketError> {
    Ticket::find(conn, scope, id)?.ok_or(TicketError::NotFound)
}

/// The ticket and its conversation, read under the conversation's lock (see
/// [`Conversation::lock`]): only inside a write transaction.
fn load(
    conn: &mut DbConnection,
    scope: &TenantScope,
    id: TicketId,
) -> Result<(Ticket, Conversation), TicketError> {
    let found = Ticket::find(conn, scope, id)?.ok_or(TicketError::NotFound)?;
    Conversation::lock(conn, found.conversation_id)?;
    let ticket = reload(conn, scope, id)?;
    let conversation =
        Conversation::find(conn, scope, ticket.conversation_id)?.ok_or(TicketError::NotFound)?;
    Ok((ticket, conversation))
}

/// Answers the visitor: a message in the conversation they see, and the ticket
/// waits for them (`pending`). A solved ticket is taken up again. The
/// conversation's summary is written again once it has been quiet for
/// `summarize_after`, with the team's part in it.
pub fn reply(
    conn: &mut DbConnection,
    scope: &TenantScope,
    actor: &Actor<'_>,
    id: TicketId,
    raw: &str,
    summarize_after: Duration,
) -> Result<Ticket, TicketError> {
    require(scope)?;
    let text = checked_text("content", raw)?;
    write_transaction(conn, |conn| {
        let (ticket, conversation) = load(conn, scope, id)?;
        let message = conversation.add_message(conn, &NewMessage::written("staff", &text))?;
        schedule_summary(conn, &conversation, message.id, summarize_after)?;
        // The team has the conversation now, whatever it was: a resolved one
        // opens to the visitor again, one handed back to the agent is taken
        // back (or the agent would answer the visitor over the team).
        if conversation.status != ESCALATED {
            conversation.set_status(conn, ESCALATED)?;
        }
        ticket.set_status(conn, ticket::PENDING)?;
        record(conn, &ticket, actor, "reply", &text)?;
        // Taken up again: the timeline says so, not only that someone replied.
        if ticket.status == ticket::SOLVED {
            record(conn, &ticket, actor, "status", ticket::PENDING)?;
        }
        reload(conn, scope, id)
    })
}

/// An internal note: for the team only, never shown to the visitor.
pub fn note(
    conn: &mut DbConnection,
    scope: &TenantScope,
    actor: &Actor<'_>,
    id: TicketId,
    raw: &str,
) -> Result<Ticket, TicketError> {
    require(scope)?;
    let text = checked_text("note", raw)?;
    write_transaction(conn, |conn| {
        let (ticket, _) = load(conn, scope, id)?;
        ticket.touch(conn)?;
        record(conn, &ticket, actor, "note", &text)?;
        reload(conn, scope, id)
    })
}

/// Gives the ticket to a member who may respond (or to nobody). Someone other
/// than the one assigning hears about it by email.
pub fn assign(
    conn: &mut DbConnection,
    scope: &TenantScope,
    actor: &Actor<'_>,
    id: TicketId,
    assignee: Option<UserId>,
    base_url: &Url,
) -> Result<Ticket, TicketError> {
    require(scope)?;
    write_transaction(conn, |conn| {
        let (ticket, _) = load(conn, scope, id)?;
        let person = match assignee {
            None => None,
            Some(user_id) => {
                crate::db::lock_until_commit(
                    conn,
                    &responder_lock(scope.organization_id(), user_id),
                )?;
                let member = Membership::of_user_in(conn, user_id, scope.organization_id())?
                    .filter(|m| m.role().can(Permission::Respond));
                let user = User::find(conn, user_id)?.filter(|u| u.disabled_at.is_none());
                match (member, user) {
                    (Some(_), Some(user)) => Some(user),
                    _ => return Err(TicketError::not_a_responder()),
                }
            }
        };
        if ticket.assignee_id == person.as_ref().map(|u| u.id) {
            return Ok(ticket);
        }
        ticket.set_assignee(conn, person.as_ref().map(|u| u.id))?;
        let (kind, body) = match &person {
            Some(user) => ("assigned", user.display_name().to_string()),
            None => ("unassigned", String::new()),
        };
        let event = record(conn, &ticket, actor, kind, &body)?;
        if let Some(user) = person.filter(|u| Some(u.id) != actor.user_id)
            && let Ok(to) = Email::parse(&user.email)
        {
            let key = format!("ticket-assigned:{}", event.id);
            jobs::enqueue(
                conn,
                &SendEmail(OutgoingEmail::new(
                    &to,
                    MailTemplate::TicketAssigned {
                        name: user.name.clone(),
                        ticket_id: ticket.id.0,
                        subject: ticket.subject.clone(),
                        organization_id: Some(ticket.organization_id.0),
                    },
                    base_url,
                )),
                EnqueueOptions {
                    idempotency_key: Some(&key),
                    ..EnqueueOptions::default()
                },
            )?;
        }
        reload(conn, scope, id)
    })
}

/// `open`, `pending` or `solved`, or the 422 that names them.
pub fn parse_status(raw: &str) -> Result<&'static str, TicketError> {
    ticket::STATUSES
        .into_iter()
        .find(|s| *s == raw.trim())
        .ok_or_else(|| TicketError::invalid("status", "must be open, pending or solved"))
}

/// Solving a ticket resolves its conversation (the visitor starts a new one
/// to write again); opening it again takes the conversation up again.
pub fn set_status(
    conn: &mut DbConnection,
    scope: &TenantScope,
    actor: &Actor<'_>,
    id: TicketId,
    status: &'static str,
) -> Result<Ticket, TicketError> {
    require(scope)?;
    write_transaction(conn, |conn| {
        let (ticket, conversation) = load(conn, scope, id)?;
        if ticket.status == status {
            return Ok(ticket);
        }
        ticket.set_status(conn, status)?;
        let conversation_status = if status == ticket::SOLVED {
            RESOLVED
        } else {
            ESCALATED
        };
        if conversation.status != conversation_status {
            conversation.set_status(conn, conversation_status)?;
        }
        record(conn, &ticket, actor, "status", status)?;
        reload(conn, scope, id)
    })
}

/// In the transaction that stores a visitor's message: a ticket waiting for
/// them is the team's turn again. `true` when a person from the team has
/// taken the conversation over (their ticket is not solved and they have
/// replied in it): the agent then stays quiet and lets them answer.
pub fn visitor_wrote(
    conn: &mut DbConnection,
    conversation: &Conversation,
) -> diesel::QueryResult<bool> {
    let Some(ticket) =
        Ticket::of_conversation(conn, conversation.organization_id, conversation.id)?
    else {
        return Ok(false);
    };
    if ticket.status == ticket::SOLVED {
        return Ok(false);
    }
    if ticket.status == ticket::PENDING {
        ticket.set_status(conn, ticket::OPEN)?;
        let visitor = Actor {
            user_id: None,
            label: VISITOR_LABEL,
            ip: &conversation.visitor_ip,
        };
        record(conn, &ticket, &visitor, "status", ticket::OPEN)?;
    } else {
        ticket.touch(conn)?;
    }
    conversation.has_staff_reply(conn)
}

/// Someone who can no longer answer in `organization` (removed, left, made a
/// viewer, disabled) gives up the tickets they had: each goes back to the
/// "nobody yet" queue with a line on its timeline saying why, so none waits on
/// a person who will not come. Runs in the caller's transaction.
pub fn release_assignments(
    conn: &mut DbConnection,
    organization: OrganizationId,
    user: &User,
    who: &Actor<'_>,
    why: &str,
) -> diesel::QueryResult<usize> {
    crate::db::lock_until_commit(conn, &responder_lock(organization, user.id))?;
    let held = Ticket::assigned_to(conn, organization, user.id)?;
    let reason = format!("{} {why}", user.display_name());
    let mut released = 0;
    for ticket in &held {
        if ticket.unassign_from(conn, user.id)? {
            record(conn, ticket, who, "unassigned", &reason)?;
            released += 1;
        }
    }
    Ok(released)
}

/// Taken by an assignment to `user` and by taking their tickets back, so an
/// assignment cannot land just after the person stopped being able to answer.
fn responder_lock(organization: OrganizationId, user: UserId) -> String {
    format!("responder:{organization}:{user}")
}

/// When the team closes or reopens the conversation itself (its page or API),
/// the ticket follows.
pub fn conversation_status_changed(
    conn: &mut DbConnection,
    conversation: &Conversation,
    status: &str,
    who: &Actor<'_>,
) -> diesel::QueryResult<()> {
    if status == ESCALATED {
        open_for(conn, conversation, who)?;
        return Ok(());
    }
    let Some(ticket) =
        Ticket::of_conversation(conn, conversation.organization_id, conversation.id)?
    else {
        return Ok(());
    };
    // Resolved, or handed back to the agent (open): either way the team no
    // longer owes the visitor an answer, and the agent answers them again.
    if (status == RESOLVED || status == OPEN) && ticket.status != ticket::SOLVED {
        ticket.set_status(conn, ticket::SOLVED)?;
        record(conn, &ticket, who, "status", ticket::SOLVED)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{TicketError, checked_text, parse_status};

    #[test]
    fn replies_and_notes_are_trimmed_and_bounded() {
        assert_eq!(checked_text("content", "  Hello  ").unwrap(), "Hello");
        assert!(matches!(
            checked_text("content", " \n "),
            Err(TicketError::Invalid {
                field: "content",
                ..
            })
        ));
        let long = "x".repeat(super::MAX_TEXT_CHARS + 1);
        assert!(checked_text("note", &long).is_err());
    }

    #[test]
    fn statuses_are_the_three() {
        assert_eq!(parse_status("solved").unwrap(), "solved");
        assert!(parse_status("closed").is_err());
    }
}

//! The ticket queue and one ticket's page.

use askama::Template;
use askama_web::WebTemplate;

use super::account::{AppChrome, FieldErrors};
use super::agents::TranscriptRow;

pub struct TicketRow {
    pub id: i64,
    pub subject: String,
    pub status: String,
    pub agent_name: String,
    /// Empty when nobody has it.
    pub assignee: String,
    pub updated: String,
}

/// One tab of the queue: a status with how many tickets are in it.
pub struct StatusTab {
    pub value: &'static str,
    pub label: &'static str,
    pub count: i64,
    pub current: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "app/tickets.html")]
pub struct TicketsPage {
    pub chrome: AppChrome,
    pub tabs: Vec<StatusTab>,
    /// The status shown (`open`, `pending`, `solved` or `all`).
    pub status: String,
    /// `anyone`, `me` or `nobody`.
    pub assigned: String,
    pub rows: Vec<TicketRow>,
    pub pager: super::Pager,
    /// Why the filters asked for were not applied.
    pub error: Option<String>,
}

/// A member the ticket can be given to.
pub struct AssigneeChoice {
    pub id: i64,
    pub name: String,
    pub selected: bool,
}

/// A line of the timeline.
pub struct EventRow {
    pub who: String,
    pub what: String,
    pub text: String,
    pub when: String,
    /// Internal notes stand out: the visitor never sees them.
    pub note: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "app/ticket.html")]
pub struct TicketPage {
    pub chrome: AppChrome,
    pub id: i64,
    pub subject: String,
    pub status: String,
    pub assignee: String,
    pub assignees: Vec<AssigneeChoice>,
    pub conversation_id: i64,
    pub agent_name: String,
    pub channel: String,
    pub summary: String,
    pub started: String,
    pub messages: Vec<TranscriptRow>,
    pub events: Vec<EventRow>,
    /// May reply, note, assign and change the status.
    pub can_respond: bool,
    pub errors: FieldErrors,
    /// What was typed, kept when it was refused.
    pub reply: String,
    pub note: String,
}

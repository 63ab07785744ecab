//! Types that can only be made by parsing: inner code never re-validates them.

mod email;
mod ids;
mod plan;
mod role;
mod scope;
mod slug;
pub mod text;

pub use email::Email;
pub use ids::{
    AgentId, ConversationId, DocumentId, JobId, MembershipId, OrganizationId, TicketId, UserId,
};
pub use plan::{Limits, Plan};
pub use role::{Permission, Role};
pub use scope::TenantScope;
pub use slug::Slug;

/// Why a value was refused, phrased for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// The current time as stored: naive UTC, truncated to microseconds so SQLite and
/// PostgreSQL hold and compare exactly the same value.
pub fn now() -> chrono::NaiveDateTime {
    use chrono::{DurationRound as _, TimeDelta};
    let now = chrono::Utc::now().naive_utc();
    now.duration_trunc(TimeDelta::microseconds(1))
        .unwrap_or(now)
}

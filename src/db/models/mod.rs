//! One file per table: row struct, `New…` insertable, queries taking the connection.

pub mod agent;
pub mod api_key;
pub mod audit;
pub mod billing_account;
pub mod conversation;
pub mod former_slug;
pub mod invitation;
pub mod invoice;
pub mod job;
pub mod knowledge;
pub mod knowledge_index;
pub mod membership;
pub mod organization;
pub mod provider_credential;
pub mod session;
pub mod stripe_event;
pub mod ticket;
pub mod usage_counter;
pub mod user;
pub mod user_token;

/// A `LIKE` pattern matching `text` anywhere, case-insensitively when compared
/// with `lower(column)`, its own `%`, `_` and `\` taken literally (with
/// `ESCAPE '\'`).
pub(crate) fn contains_pattern(text: &str) -> String {
    let escaped = text
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

pub use agent::{Agent, AgentSettings};
pub use api_key::ApiKey;
pub use audit::{AuditEntry, NewAuditEntry};
pub use billing_account::{BillingAccount, SubscriptionChange};
pub use conversation::{
    Conversation, ConversationFilter, ConversationListing, Message, NewConversation, NewMessage,
};
pub use former_slug::{AgentFormerSlug, OrganizationFormerSlug};
pub use invitation::Invitation;
pub use invoice::{Invoice, InvoiceUpdate};
pub use job::{Job, NewJob};
pub use knowledge::{Document, Passage};
pub use membership::{MemberWithUser, Membership, NewMembership};
pub use organization::{NewOrganization, Organization};
pub use provider_credential::ProviderCredential;
pub use session::SessionRow;
pub use stripe_event::{NewStripeEvent, StripeEvent};
pub use ticket::{Ticket, TicketEvent, TicketFilter, TicketListing};
pub use usage_counter::UsageCounter;
pub use user::{NewUser, User};
pub use user_token::{TokenProblem, UserToken};

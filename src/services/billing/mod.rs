//! Billing: plans and their limits, Stripe Checkout and the Customer Portal,
//! and Stripe's webhook events, stored once and applied in a job.
//!
//! Without `STRIPE_SECRET_KEY` billing is off and every organization is
//! unlimited (self-hosting).

pub mod checkout;
pub mod events;
pub mod limits;
pub mod objects;
pub mod stripe;
pub mod superseded;
pub mod webhook;

use crate::db::DbConnection;
use crate::db::models::Membership;
use crate::domain::{Email, OrganizationId};
use crate::services::jobs::{self, EnqueueOptions, SendEmail};
use crate::services::mail::{MailTemplate, OutgoingEmail};

pub use events::ProcessStripeEvent;
pub use limits::{Entitlement, LimitError, LimitReached, Resource, Usage};
pub use stripe::{StripeApi, StripeError};
pub use superseded::CancelSupersededSubscription;

/// One email per owner, enqueued in the caller's transaction; the idempotency
/// key (`key` plus the address) keeps a re-run from emailing twice.
pub(crate) fn email_owners(
    conn: &mut DbConnection,
    org: OrganizationId,
    key: &str,
    template: MailTemplate,
    base_url: &url::Url,
) -> diesel::QueryResult<()> {
    for address in Membership::owner_emails(conn, org)? {
        let Ok(to) = Email::parse(&address) else {
            continue;
        };
        let key = format!("{key}:{address}");
        jobs::enqueue(
            conn,
            &SendEmail(OutgoingEmail::new(&to, template.clone(), base_url)),
            EnqueueOptions {
                idempotency_key: Some(&key),
                ..EnqueueOptions::default()
            },
        )?;
    }
    Ok(())
}

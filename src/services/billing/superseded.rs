//! Two live subscriptions bill the customer twice: Checkout finished in two
//! tabs, say, or a subscription added by hand in Stripe's dashboard. The newer
//! one (the one Stripe confirmed last) is the organization's plan; the one it
//! replaced is canceled in Stripe at once, with its unused time credited.

use serde::{Deserialize, Serialize};

use super::StripeApi;
use crate::db::DbConnection;
use crate::db::models::BillingAccount;
use crate::domain::OrganizationId;
use crate::services::accounts::{Actor, audit};
use crate::services::jobs::{self, EnqueueOptions, Job, JobContext, JobFailure};

const BILLING: Actor<'static> = Actor {
    user_id: None,
    label: "billing",
    ip: "",
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CancelSupersededSubscription {
    pub organization_id: OrganizationId,
    pub subscription_id: String,
    pub replaced_by: String,
}

impl Job for CancelSupersededSubscription {
    const KIND: &'static str = "billing.cancel_superseded";
    /// Stripe may be unreachable for a while; a dead job shows in `frontdesk jobs`.
    const MAX_ATTEMPTS: i32 = 10;
}

impl CancelSupersededSubscription {
    /// Queued in the transaction that made `replaced_by` the organization's
    /// subscription, so the cancellation happens exactly when the switch does.
    pub fn enqueue(
        conn: &mut DbConnection,
        organization_id: OrganizationId,
        subscription_id: &str,
        replaced_by: &str,
    ) -> diesel::QueryResult<()> {
        let key = format!("cancel-superseded:{subscription_id}");
        let job = Self {
            organization_id,
            subscription_id: subscription_id.to_string(),
            replaced_by: replaced_by.to_string(),
        };
        let options = EnqueueOptions {
            run_at: None,
            idempotency_key: Some(&key),
        };
        jobs::enqueue(conn, &job, options).map(|_| ())
    }

    pub async fn run(self, ctx: &JobContext) -> Result<(), JobFailure> {
        let Some(api) = ctx.stripe.as_ref() else {
            // An instance started without the key may claim it: another one,
            // or this one restarted with billing on, can still do it.
            return Err(JobFailure::retry(
                "billing is off on this instance (no STRIPE_SECRET_KEY): cannot cancel the superseded subscription",
            ));
        };
        let org = self.organization_id;
        let account = ctx
            .db(move |conn| BillingAccount::ensure(conn, org))
            .await?;
        let target = self.subscription_id.clone();
        if account.stripe_subscription_id.as_deref() == Some(target.as_str()) {
            // The plan only moves to newer subscriptions, so this is not
            // expected; keeping the organization's plan comes first.
            tracing::warn!(organization = %org, subscription = %target, "a subscription queued for cancellation is the plan; kept");
            return Ok(());
        }
        let outcome = match ended(api, &target).await? {
            Some(status) => format!("had already ended ({status})"),
            None => match api.cancel_subscription(&target).await {
                Ok(status) => format!("canceled in Stripe with proration (now {status})"),
                Err(e) if e.is_retryable() => return Err(e.into()),
                // Canceled meanwhile (the customer in the portal, say)?
                Err(e) => match ended(api, &target).await? {
                    Some(status) => format!("had already ended ({status})"),
                    None => {
                        tracing::error!(organization = %org, subscription = %target, error = %e, "Stripe refused to cancel a superseded subscription: the customer is billed twice until it is canceled in Stripe");
                        return Err(JobFailure::permanent(e));
                    }
                },
            },
        };
        tracing::info!(organization = %org, subscription = %target, %outcome, "superseded subscription handled");
        self.record(ctx, &outcome).await
    }

    async fn record(&self, ctx: &JobContext, outcome: &str) -> Result<(), JobFailure> {
        let org = self.organization_id;
        let target = self.subscription_id.clone();
        let detail = format!("replaced by {}; {outcome}", self.replaced_by);
        ctx.db(move |conn| {
            audit(
                conn,
                Some(org),
                &BILLING,
                "billing.subscription_canceled",
                Some(&target),
                Some(&detail),
            )
        })
        .await
    }
}

/// The subscription's status if it has ended in Stripe (or Stripe no longer
/// has it); `None` while it is live.
async fn ended(api: &StripeApi, id: &str) -> Result<Option<String>, JobFailure> {
    Ok(match api.find_subscription(id).await? {
        Some(sub) if sub.is_terminal() => Some(sub.status),
        Some(_) => None,
        None => Some("unknown to Stripe".into()),
    })
}

//! Two live subscriptions bill the customer twice: Checkout finished in two
//! tabs, say, or a subscription added by hand in Stripe's dashboard. The newer
//! one (the one Stripe confirmed last) is the organization's plan; the one it
//! replaced is canceled in Stripe at once, with its unused time credited.

use serde::{Deserialize, Serialize};

use super::StripeError;
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
            return Err(JobFailure::permanent(
                "billing is off (no STRIPE_SECRET_KEY): cannot cancel the superseded subscription",
            ));
        };
        let org = self.organization_id;
        let account = ctx
            .db(move |conn| BillingAccount::ensure(conn, org))
            .await?;
        if account.stripe_subscription_id.as_deref() == Some(self.subscription_id.as_str()) {
            // It became the organization's subscription again: keep it.
            return Ok(());
        }
        let key = format!("frontdesk-cancel-superseded-{}", self.subscription_id);
        let detail = match api.cancel_subscription(&self.subscription_id, &key).await {
            Ok(status) => format!(
                "replaced by {}; canceled in Stripe with proration (now {status})",
                self.replaced_by
            ),
            Err(StripeError::Api { status: 404, .. }) => {
                format!("replaced by {}; Stripe no longer has it", self.replaced_by)
            }
            Err(e) if e.is_retryable() => return Err(JobFailure::retry(e)),
            Err(e) => return Err(JobFailure::permanent(e)),
        };
        tracing::info!(organization = %org, subscription = %self.subscription_id, %detail, "superseded subscription canceled");
        let target = self.subscription_id.clone();
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
        .await?;
        Ok(())
    }
}

//! Applies stored Stripe events, in a job. Every event is applied at most once
//! (its row moves out of `received` in the same transaction as its effects),
//! in any order (older state never overwrites newer), and an event that cannot
//! be matched to an organization is kept, marked `unmatched`, and acknowledged.

use serde::{Deserialize, Serialize};

use super::objects::{self, CheckoutSession, Envelope, Invoice, Subscription};
use crate::db::models::stripe_event::{FAILED, RECEIVED};
use crate::db::models::{
    BillingAccount, InvoiceUpdate, Organization, StripeEvent, SubscriptionChange,
};
use crate::db::{DbConnection, write_transaction};
use crate::domain::{OrganizationId, Plan};
use crate::services::accounts::{Actor, audit};
use crate::services::jobs::{self, EnqueueOptions, Job, JobContext, JobFailure};
use crate::services::mail::MailTemplate;

use super::StripeApi;
use super::limits::PAST_DUE;
use super::superseded::CancelSupersededSubscription;

/// Processes one stored Stripe event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessStripeEvent {
    pub event_id: String,
}

impl Job for ProcessStripeEvent {
    const KIND: &'static str = "billing.stripe_event";
    /// Re-fetching from Stripe may fail for a while: ten attempts with
    /// backoff, then [`redrive_stuck`] queues the event again every hour.
    const MAX_ATTEMPTS: i32 = 10;
}

/// An event still unprocessed this long after it arrived, with no job left to
/// run it (every attempt failed, say while Stripe's API was down for longer
/// than the retries last), is queued again by the hourly maintenance job:
/// Stripe was answered 2xx and will not resend it, so nothing else would.
const STUCK_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(15);
/// Older events are left to an operator (`frontdesk jobs` shows their dead jobs).
const REDRIVE_WITHIN: chrono::TimeDelta = chrono::TimeDelta::days(7);
const REDRIVE_BATCH: i64 = 500;

/// Queues a fresh job for every stuck event; returns how many.
pub fn redrive_stuck(conn: &mut DbConnection) -> diesel::QueryResult<usize> {
    let now = crate::domain::now();
    let hour = chrono::Utc::now().timestamp() / 3600;
    let stuck = StripeEvent::received_between(
        conn,
        now - REDRIVE_WITHIN,
        now - STUCK_AFTER,
        REDRIVE_BATCH,
    )?;
    let mut queued = 0;
    for event_id in stuck {
        let job = ProcessStripeEvent {
            event_id: event_id.clone(),
        };
        let payload = serde_json::to_string(&job)
            .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
        if crate::db::models::Job::is_pending(conn, ProcessStripeEvent::KIND, &payload)? {
            continue;
        }
        let key = format!("stripe-redrive:{event_id}:{hour}");
        let options = EnqueueOptions {
            run_at: None,
            idempotency_key: Some(&key),
        };
        if jobs::enqueue(conn, &job, options)?.is_some() {
            tracing::warn!(event = %event_id, "Stripe event still unprocessed with no job left to run it: queued again");
            queued += 1;
        }
    }
    Ok(queued)
}

const STRIPE: Actor<'static> = Actor {
    user_id: None,
    label: "stripe",
    ip: "",
};

/// How an event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Processed(OrganizationId, String),
    Ignored(Option<OrganizationId>, String),
    Unmatched(String),
}

impl Outcome {
    fn parts(&self) -> (&'static str, Option<OrganizationId>, &str) {
        match self {
            Self::Processed(org, d) => ("processed", Some(*org), d),
            Self::Ignored(org, d) => ("ignored", *org, d),
            Self::Unmatched(d) => ("unmatched", None, d),
        }
    }
}

/// What applying an event inside its transaction came to.
enum Step {
    Done(Outcome),
    /// Nothing changed; run the job again later.
    Retry(String),
}

impl ProcessStripeEvent {
    pub async fn run(self, ctx: &JobContext) -> Result<(), JobFailure> {
        let id = self.event_id.clone();
        let Some(event) = ctx.db(move |conn| StripeEvent::find(conn, &id)).await? else {
            return Err(JobFailure::permanent(format!(
                "Stripe event {} is not stored",
                self.event_id
            )));
        };
        match event.state.as_str() {
            RECEIVED => {}
            // Its job runs again only when an operator retried it (`frontdesk
            // jobs retry`), the cause mended: applied as if just received.
            FAILED => {
                let id = self.event_id.clone();
                ctx.db(move |conn| StripeEvent::reopen(conn, &id)).await?;
            }
            _ => return Ok(()),
        }
        let envelope: Envelope = match serde_json::from_str(&event.payload) {
            Ok(e) => e,
            Err(e) => {
                let detail = format!("unreadable event payload: {e}");
                self.finish(ctx, Outcome::Ignored(None, detail), |_| Ok(()))
                    .await?;
                return Ok(());
            }
        };
        let result = match envelope.event_type.as_str() {
            "checkout.session.completed" => self.checkout_completed(ctx, &envelope).await,
            "customer.subscription.created"
            | "customer.subscription.updated"
            | "customer.subscription.deleted" => match parse::<Subscription>(&envelope) {
                Ok(sub) => {
                    self.subscription(ctx, sub, envelope.created, false, None)
                        .await
                }
                Err(e) => Err(e),
            },
            "invoice.paid" | "invoice.payment_failed" => self.invoice(ctx, &envelope).await,
            "customer.subscription.trial_will_end" => self.trial_will_end(ctx, &envelope).await,
            other => {
                let detail = format!("{other} is not used by Frontdesk");
                self.finish(ctx, Outcome::Ignored(None, detail), |_| Ok(()))
                    .await
            }
        };
        if let Err(failure) = &result
            && failure.permanent
        {
            // Kept with the reason, for an operator to look at (the job is dead too).
            let (id, detail) = (self.event_id.clone(), failure.message.clone());
            ctx.db(move |conn| StripeEvent::finish(conn, &id, FAILED, None, Some(&detail)))
                .await?;
            ctx.metrics.webhooks.outcome("failed");
        }
        result
    }

    /// Applies an event in one transaction: the event row is claimed first (on
    /// PostgreSQL that holds it, so a second run of the same event waits and
    /// then finds it finished), `work` makes its changes and says how it ended,
    /// and the event is marked with that outcome.
    async fn settle(
        &self,
        ctx: &JobContext,
        work: impl FnOnce(&mut DbConnection) -> diesel::QueryResult<Step> + Send + 'static,
    ) -> Result<(), JobFailure> {
        let id = self.event_id.clone();
        let step = ctx
            .db(move |conn| {
                write_transaction(conn, |conn| {
                    if !StripeEvent::claim(conn, &id)? {
                        return Ok(None);
                    }
                    let step = work(conn)?;
                    if let Step::Done(outcome) = &step {
                        let (state, org, detail) = outcome.parts();
                        StripeEvent::finish(conn, &id, state, org, Some(detail))?;
                    }
                    Ok(Some(step))
                })
            })
            .await?;
        if let Some(Step::Done(outcome)) = &step {
            ctx.metrics.webhooks.outcome(outcome.parts().0);
        }
        match step {
            None => Ok(()),
            Some(Step::Retry(why)) => Err(JobFailure::retry(why)),
            Some(Step::Done(Outcome::Unmatched(why))) => {
                tracing::warn!(event = %self.event_id, reason = %why, "Stripe event matches no organization; kept as unmatched");
                Ok(())
            }
            Some(Step::Done(outcome)) => {
                tracing::info!(event = %self.event_id, outcome = ?outcome, "Stripe event applied");
                Ok(())
            }
        }
    }

    /// Marks the event with `outcome` and applies `effects` with it.
    async fn finish(
        &self,
        ctx: &JobContext,
        outcome: Outcome,
        effects: impl FnOnce(&mut DbConnection) -> diesel::QueryResult<()> + Send + 'static,
    ) -> Result<(), JobFailure> {
        self.settle(ctx, move |conn| {
            effects(conn)?;
            Ok(Step::Done(outcome))
        })
        .await
    }

    async fn checkout_completed(
        &self,
        ctx: &JobContext,
        envelope: &Envelope,
    ) -> Result<(), JobFailure> {
        let session: CheckoutSession = parse(envelope)?;
        if session.mode.as_deref().is_some_and(|m| m != "subscription") {
            let detail = format!("checkout session {} is not a subscription", session.id);
            return self
                .finish(ctx, Outcome::Ignored(None, detail), |_| Ok(()))
                .await;
        }
        // Only the metadata this server set on the session can claim an
        // organization for a customer it does not know. Never
        // `client_reference_id`: on a Payment Link or Pricing Table whoever
        // opens the link sets it, and Stripe signs the event all the same.
        let claimed = session
            .metadata
            .as_ref()
            .and_then(|m| m.get("organization_id"))
            .and_then(|raw| raw.parse::<i64>().ok())
            .map(OrganizationId);
        let customer = session.customer.as_ref().map(|c| c.0.clone());
        let org = {
            let customer = customer.clone();
            ctx.db(move |conn| match_organization(conn, customer.as_deref(), claimed))
                .await?
        };
        let Some(org) = org else {
            let detail = format!(
                "checkout session {} names no known organization or customer",
                session.id
            );
            return self
                .finish(ctx, Outcome::Unmatched(detail), |_| Ok(()))
                .await;
        };
        // As it is before Stripe is asked: see `subscription`'s `seen`.
        let before = ctx
            .db(move |conn| match customer {
                Some(customer) => link_customer(conn, org, &customer),
                None => BillingAccount::ensure(conn, org),
            })
            .await?;
        let Some(sub_id) = session.subscription.map(|s| s.0) else {
            let detail = format!("checkout session {} has no subscription yet", session.id);
            return self
                .finish(ctx, Outcome::Ignored(Some(org), detail), |_| Ok(()))
                .await;
        };
        // The session only names the subscription: its state comes from Stripe.
        let sub = fetch_subscription(ctx, &sub_id).await?;
        self.subscription(ctx, sub, fetched_now(), true, Some(before.updated_at))
            .await
    }

    /// Applies `sub` if it is newer than what the organization has. A `fresh`
    /// state (read from Stripe) comes with `seen`, the account's `updated_at`
    /// from before Stripe was asked: if another event changed the account
    /// meanwhile, Stripe's answer may predate that change, so it is asked again
    /// rather than laid over a newer state.
    async fn subscription(
        &self,
        ctx: &JobContext,
        sub: Subscription,
        at: i64,
        fresh: bool,
        seen: Option<chrono::NaiveDateTime>,
    ) -> Result<(), JobFailure> {
        let customer = sub.customer.0.clone();
        let claimed = sub
            .metadata("organization_id")
            .and_then(|raw| raw.parse::<i64>().ok())
            .map(OrganizationId);
        let account = {
            let customer = customer.clone();
            ctx.db(move |conn| {
                let Some(org) = match_organization(conn, Some(&customer), claimed)? else {
                    return Ok(None);
                };
                link_customer(conn, org, &customer).map(Some)
            })
            .await?
        };
        let Some(account) = account else {
            let detail = format!("subscription {} of unknown customer {customer}", sub.id);
            return self
                .finish(ctx, Outcome::Unmatched(detail), |_| Ok(()))
                .await;
        };
        let org = account.organization_id;
        // A first look outside the transaction decides whether Stripe must be
        // asked (no network call may run inside it); the decision that counts
        // is made again on the locked row.
        // State read from Stripe is as of now, not as of the event.
        let (sub, fresh, at, seen) = match decide(&account, &sub, at, fresh, None) {
            Decision::AskStripe if !fresh => (
                fetch_subscription(ctx, &sub.id).await?,
                true,
                fetched_now(),
                Some(account.updated_at),
            ),
            _ => (sub, fresh, at, seen),
        };
        // Two subscriptions live at once: which one is the plan depends on
        // the stored one too, as Stripe has it now.
        let current = match rival(&account, &sub) {
            Some(id) => Some(
                stripe_api(ctx)?
                    .find_subscription(id)
                    .await?
                    .unwrap_or_else(|| Subscription::gone(id, sub.customer.clone())),
            ),
            None => None,
        };
        let config = ctx.config.stripe.clone();
        self.settle(ctx, move |conn| {
            let account = BillingAccount::lock(conn, org)?;
            if seen.is_some_and(|seen| seen != account.updated_at) {
                return Ok(Step::Retry(format!(
                    "the organization's billing changed while Stripe was asked about {}; asking again",
                    sub.id
                )));
            }
            let mut replaces = None;
            match decide(&account, &sub, at, fresh, current.as_ref()) {
                Decision::Ignore(why) => {
                    let detail = format!("subscription {}: {why}", sub.id);
                    return Ok(Step::Done(Outcome::Ignored(Some(org), detail)));
                }
                Decision::Outdated { newer } => {
                    tracing::warn!(organization = %org, older = %sub.id, %newer, "two live Stripe subscriptions: canceling the older one");
                    CancelSupersededSubscription::enqueue(conn, org, &sub.id, &newer)?;
                    let detail = format!(
                        "subscription {}: older than {newer}, which is the plan; its cancellation is queued",
                        sub.id
                    );
                    audit_change(conn, org, &sub.id, &detail)?;
                    return Ok(Step::Done(Outcome::Ignored(Some(org), detail)));
                }
                Decision::AskStripe if !fresh => {
                    return Ok(Step::Retry(format!(
                        "subscription {} changed while this event was applied; asking Stripe again",
                        sub.id
                    )));
                }
                Decision::Recheck => {
                    return Ok(Step::Retry(format!(
                        "the organization's subscription changed while {} was applied; asking Stripe again",
                        sub.id
                    )));
                }
                Decision::Replace { older } => replaces = Some(older),
                Decision::AskStripe | Decision::Apply => {}
            }
            let plan = sub
                .price_id()
                .and_then(|p| config.plan_for_price(p))
                .or_else(|| sub.metadata("plan").and_then(|p| Plan::parse(p).ok()))
                .unwrap_or(Plan::Free);
            let now = crate::domain::now();
            let (start, end) = sub.period();
            let change = SubscriptionChange {
                stripe_subscription_id: Some(sub.id.clone()),
                plan: plan.as_str().into(),
                status: sub.status.clone(),
                price_id: sub.price_id().map(str::to_string),
                current_period_start: start,
                current_period_end: end,
                cancel_at_period_end: sub.cancel_at_period_end,
                trial_end: sub.trial_end.and_then(objects::timestamp),
                // From when it happened, not from when this job ran: a
                // redelivered or retried event must not lengthen the grace.
                past_due_since: (sub.status == PAST_DUE).then(|| {
                    let since = if fresh {
                        now
                    } else {
                        objects::timestamp(at).map_or(now, |t| t.min(now))
                    };
                    account.past_due_since.unwrap_or(since)
                }),
                stripe_state_at: at.max(account.stripe_state_at),
                updated_at: now,
            };
            let mut transition = format!(
                "{} {} -> {} {}",
                account.plan, account.status, change.plan, change.status
            );
            // Two live subscriptions means the customer pays twice: the one
            // replaced is canceled, queued in the same transaction as the switch.
            if let Some(older) = replaces {
                tracing::warn!(organization = %org, replaced = %older, by = %sub.id, "two live Stripe subscriptions: canceling the one replaced");
                CancelSupersededSubscription::enqueue(conn, org, &older, &sub.id)?;
                transition.push_str(&format!("; replaces {older}, whose cancellation is queued"));
            }
            BillingAccount::apply(conn, org, &change)?;
            audit_change(conn, org, &sub.id, &transition)?;
            let detail = format!("subscription {}: {transition}", sub.id);
            Ok(Step::Done(Outcome::Processed(org, detail)))
        })
        .await
    }

    async fn invoice(&self, ctx: &JobContext, envelope: &Envelope) -> Result<(), JobFailure> {
        let invoice: Invoice = parse(envelope)?;
        let customer = invoice.customer.as_ref().map(|c| c.0.clone());
        let org = ctx
            .db(move |conn| match_organization(conn, customer.as_deref(), None))
            .await?;
        let Some(org) = org else {
            let detail = format!("invoice {} of an unknown customer", invoice.id);
            return self
                .finish(ctx, Outcome::Unmatched(detail), |_| Ok(()))
                .await;
        };
        let failed = envelope.event_type == "invoice.payment_failed";
        let amount = invoice.amount_label(invoice.amount_due);
        let detail = format!(
            "invoice {} {} ({amount})",
            invoice.id,
            if failed { "payment failed" } else { "paid" }
        );
        let base_url = ctx.config.base_url.clone();
        let event_id = self.event_id.clone();
        self.finish(ctx, Outcome::Processed(org, detail), move |conn| {
            let status = if failed {
                invoice.status.as_deref().unwrap_or("open")
            } else {
                "paid"
            };
            // Stripe retries out of order: a failure reported after the
            // invoice was paid is history, not news for the owners. The lock
            // makes a `paid` being applied at this moment count as paid.
            BillingAccount::lock(conn, org)?;
            let already_paid = crate::db::models::Invoice::status_of(conn, &invoice.id)?
                .is_some_and(|s| s == "paid");
            crate::db::models::Invoice::upsert(
                conn,
                org,
                &InvoiceUpdate {
                    stripe_invoice_id: &invoice.id,
                    number: invoice.number.as_deref(),
                    status,
                    currency: invoice.currency.as_deref().unwrap_or("usd"),
                    amount_due: invoice.amount_due,
                    amount_paid: invoice.amount_paid,
                    hosted_invoice_url: invoice.hosted_invoice_url.as_deref(),
                    stripe_created: invoice.created,
                },
            )?;
            if failed && already_paid {
                return Ok(());
            }
            let action = if failed {
                "billing.payment_failed"
            } else {
                "billing.invoice_paid"
            };
            audit(
                conn,
                Some(org),
                &STRIPE,
                action,
                Some(&invoice.id),
                Some(&amount),
            )?;
            if failed {
                let name = organization_name(conn, org)?;
                super::email_owners(
                    conn,
                    org,
                    &format!("stripe:{event_id}"),
                    MailTemplate::PaymentFailed {
                        organization: name,
                        amount,
                        invoice_url: invoice.hosted_invoice_url.clone(),
                    },
                    &base_url,
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn trial_will_end(
        &self,
        ctx: &JobContext,
        envelope: &Envelope,
    ) -> Result<(), JobFailure> {
        let sub: Subscription = parse(envelope)?;
        let customer = sub.customer.0.clone();
        let (at, told) = (envelope.created, sub.clone());
        let found = ctx
            .db(move |conn| {
                let Some(org) = match_organization(conn, Some(&customer), None)? else {
                    return Ok(None);
                };
                let account = BillingAccount::ensure(conn, org)?;
                Ok(Some((org, trial_over(&account, &told, at))))
            })
            .await?;
        let Some((org, over)) = found else {
            let detail = format!("trial of subscription {} of an unknown customer", sub.id);
            return self
                .finish(ctx, Outcome::Unmatched(detail), |_| Ok(()))
                .await;
        };
        if let Some(why) = over {
            // Paid early or canceled since: "your trial ends" would mislead.
            let detail = format!("trial of {}: {why}; the owners are not emailed", sub.id);
            return self
                .finish(ctx, Outcome::Ignored(Some(org), detail), |_| Ok(()))
                .await;
        }
        let ends = sub.trial_end.and_then(objects::timestamp).map_or_else(
            || "soon".to_string(),
            |t| t.format("%B %-d, %Y").to_string(),
        );
        let base_url = ctx.config.base_url.clone();
        let event_id = self.event_id.clone();
        let detail = format!("trial of {} ends {ends}", sub.id);
        self.finish(ctx, Outcome::Processed(org, detail), move |conn| {
            audit(
                conn,
                Some(org),
                &STRIPE,
                "billing.trial_will_end",
                Some(&sub.id),
                Some(&ends),
            )?;
            let organization = organization_name(conn, org)?;
            super::email_owners(
                conn,
                org,
                &format!("stripe:{event_id}"),
                MailTemplate::TrialEnding { organization, ends },
                &base_url,
            )
        })
        .await
    }
}

const TRIALING: &str = "trialing";

/// Why a trial's end, told at `at`, is no news any more; `None` while the
/// trial goes on. The stored state only overrules the event when it is this
/// subscription's and at least as recent.
fn trial_over(account: &BillingAccount, sub: &Subscription, at: i64) -> Option<String> {
    if sub.status != TRIALING {
        return Some(format!("the subscription is {}", sub.status));
    }
    let ours = account.stripe_subscription_id.as_deref() == Some(sub.id.as_str());
    (ours && account.status != TRIALING && account.stripe_state_at >= at)
        .then(|| format!("the subscription is {} since", account.status))
}

fn parse<T: serde::de::DeserializeOwned>(envelope: &Envelope) -> Result<T, JobFailure> {
    serde_json::from_value(envelope.data.object.clone()).map_err(|e| {
        JobFailure::permanent(format!(
            "{} event {} has an unexpected object: {e}",
            envelope.event_type, envelope.id
        ))
    })
}

/// The subscription as Stripe has it now. A 404 stays an error (the event is
/// kept as failed for an operator): it may as well mean a key of another
/// Stripe account as a deleted subscription, and an ending needs no asking.
async fn fetch_subscription(ctx: &JobContext, id: &str) -> Result<Subscription, JobFailure> {
    Ok(stripe_api(ctx)?.retrieve_subscription(id).await?)
}

fn stripe_api(ctx: &JobContext) -> Result<&StripeApi, JobFailure> {
    // Retried, not failed for good: Stripe was already answered 200 and will
    // not send the event again, and an instance without the key (a rolling
    // deploy, a separately configured worker) may be the one that claimed it.
    ctx.stripe.as_deref().ok_or_else(|| {
        JobFailure::retry(
            "billing is off on this instance (no STRIPE_SECRET_KEY): cannot ask Stripe for the subscription",
        )
    })
}

/// The organization a customer belongs to; failing that, the organization the
/// object claims in its metadata, if that organization exists and has no other
/// customer yet (checkout completing before our own record of the customer).
fn match_organization(
    conn: &mut DbConnection,
    customer: Option<&str>,
    claimed: Option<OrganizationId>,
) -> diesel::QueryResult<Option<OrganizationId>> {
    if let Some(customer) = customer
        && let Some(account) = BillingAccount::by_customer(conn, customer)?
    {
        return Ok(Some(account.organization_id));
    }
    let Some(org) = claimed else {
        return Ok(None);
    };
    if Organization::find(conn, org)?.is_none() {
        return Ok(None);
    }
    let account = BillingAccount::ensure(conn, org)?;
    let free = match (&account.stripe_customer_id, customer) {
        (None, _) => true,
        (Some(mine), Some(theirs)) => mine == theirs,
        (Some(_), None) => true,
    };
    Ok(free.then_some(org))
}

/// Records `customer` as the organization's if it has none yet; returns the account.
fn link_customer(
    conn: &mut DbConnection,
    org: OrganizationId,
    customer: &str,
) -> diesel::QueryResult<BillingAccount> {
    // Linked already (nearly always): no write, no write lock.
    let account = BillingAccount::ensure(conn, org)?;
    if account.stripe_customer_id.is_some() {
        return Ok(account);
    }
    crate::db::write_transaction(conn, |conn| {
        let (account, linked) = BillingAccount::claim_customer(conn, org, customer)?;
        if linked {
            audit(
                conn,
                Some(org),
                &STRIPE,
                "billing.customer_linked",
                Some(customer),
                None,
            )?;
        }
        Ok(account)
    })
}

/// What happened to an organization's subscription, in its audit log.
fn audit_change(
    conn: &mut DbConnection,
    org: OrganizationId,
    subscription: &str,
    detail: &str,
) -> diesel::QueryResult<()> {
    audit(
        conn,
        Some(org),
        &STRIPE,
        "billing.subscription_changed",
        Some(subscription),
        Some(detail),
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    Apply,
    Ignore(&'static str),
    /// Same timestamp as the state applied, but a different status; or
    /// another subscription whose state must come from Stripe.
    AskStripe,
    /// Both live: `sub` is newer and paid for, so it becomes the plan and the
    /// `older` one is canceled.
    Replace {
        older: String,
    },
    /// Both live: `sub` is older than the `newer` one that is the plan (and
    /// paid for), so `sub` is canceled.
    Outdated {
        newer: String,
    },
    /// The stored subscription is not the one read from Stripe (or none was
    /// read): run again.
    Recheck,
}

/// The stored subscription, when `sub` is another one and both may be live:
/// which one is the plan is then decided on both as Stripe has them now.
fn rival<'a>(account: &'a BillingAccount, sub: &Subscription) -> Option<&'a str> {
    account
        .stripe_subscription_id
        .as_deref()
        .filter(|current| *current != sub.id)
        .filter(|_| !sub.is_terminal() && !objects::is_terminal(&account.status))
}

/// The time a state just read from Stripe stands for.
fn fetched_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Whether a subscription state observed at `at` (the event's `created`, or
/// the time it was read from Stripe when `fresh`) may replace what is stored.
///
/// Of two live subscriptions the plan is the newest (by Stripe's `created`)
/// that is paid for, and an older one is canceled once a newer one is paid
/// for: whatever order the events come in, only ever an older subscription
/// is canceled, never the newest paid one. `current` is the stored
/// subscription as Stripe has it now, when [`rival`] asks for it.
fn decide(
    account: &BillingAccount,
    sub: &Subscription,
    at: i64,
    fresh: bool,
    current: Option<&Subscription>,
) -> Decision {
    match account.stripe_subscription_id.as_deref() {
        None => Decision::Apply,
        Some(stored) if stored != sub.id => {
            if sub.is_terminal() {
                Decision::Ignore("an earlier subscription ended; the current one is unchanged")
            } else if !fresh {
                // A late event of a long-ended subscription says "active" too:
                // another subscription takes over only as Stripe has it now.
                Decision::AskStripe
            } else if objects::is_terminal(&account.status) {
                Decision::Apply
            } else {
                match current {
                    None => Decision::Recheck,
                    Some(c) if c.id != stored => Decision::Recheck,
                    Some(c) if c.is_terminal() => Decision::Apply,
                    Some(c) if sub.is_newer_than(c) => {
                        if sub.is_paying() {
                            Decision::Replace {
                                older: c.id.clone(),
                            }
                        } else {
                            Decision::Ignore(
                                "a newer subscription, not paid for yet; the current one stays the plan",
                            )
                        }
                    }
                    Some(c) if c.is_paying() => Decision::Outdated {
                        newer: c.id.clone(),
                    },
                    // The newer one is not paid for: the plan is the paid one
                    // until it is (then it replaces this one, canceling it).
                    Some(_) if sub.is_paying() => Decision::Apply,
                    Some(_) => Decision::Ignore(
                        "older than the current subscription, and neither is paid for",
                    ),
                }
            }
        }
        Some(_) => {
            if objects::is_terminal(&account.status) && !sub.is_terminal() {
                Decision::Ignore("already canceled; a canceled subscription does not come back")
            } else if sub.is_terminal() {
                // An end is final whenever it is told: no need to ask Stripe
                // (which may no longer have the subscription at all).
                Decision::Apply
            } else if fresh {
                // Stripe's state now is the truth, whatever the clocks say.
                Decision::Apply
            } else if at < account.stripe_state_at {
                // Usually history; but a state fetched from Stripe is stamped
                // by this server's clock, which Stripe's event times are not
                // measured against: Stripe settles it.
                Decision::AskStripe
            } else if at == account.stripe_state_at {
                // Two changes in one second (a cancellation at period end and
                // its undoing, say): their order is Stripe's to tell.
                Decision::AskStripe
            } else {
                Decision::Apply
            }
        }
    }
}

fn organization_name(conn: &mut DbConnection, org: OrganizationId) -> diesel::QueryResult<String> {
    Ok(Organization::find(conn, org)?.map_or_else(|| "your organization".into(), |o| o.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(sub: Option<&str>, status: &str, at: i64) -> BillingAccount {
        let now = crate::domain::now();
        BillingAccount {
            organization_id: OrganizationId(1),
            stripe_customer_id: Some("cus_1".into()),
            stripe_subscription_id: sub.map(str::to_string),
            plan: "pro".into(),
            status: status.into(),
            price_id: None,
            current_period_start: None,
            current_period_end: None,
            cancel_at_period_end: false,
            trial_end: None,
            past_due_since: None,
            stripe_state_at: at,
            created_at: now,
            updated_at: now,
        }
    }

    fn sub(id: &str, status: &str) -> Subscription {
        serde_json::from_value(serde_json::json!({"id": id, "customer": "cus_1", "status": status}))
            .unwrap()
    }

    #[test]
    fn a_trial_end_is_told_only_while_the_trial_goes_on() {
        let trialing = account(Some("sub_1"), "trialing", 200);
        assert_eq!(trial_over(&trialing, &sub("sub_1", "trialing"), 300), None);
        // Paid early since the event was sent: the stored state is newer.
        let paid = account(Some("sub_1"), "active", 300);
        assert!(trial_over(&paid, &sub("sub_1", "trialing"), 300).is_some());
        // A stored state older than the event does not overrule it, nor does
        // another subscription's.
        assert_eq!(trial_over(&paid, &sub("sub_1", "trialing"), 400), None);
        let other = account(Some("sub_2"), "canceled", 500);
        assert_eq!(trial_over(&other, &sub("sub_1", "trialing"), 400), None);
        // The event's own object says the trial is over.
        assert!(trial_over(&trialing, &sub("sub_1", "canceled"), 300).is_some());
    }

    #[test]
    fn older_states_never_overwrite_newer_ones() {
        let a = account(Some("sub_1"), "canceled", 200);
        assert!(matches!(
            decide(&a, &sub("sub_1", "active"), 100, false, None),
            Decision::Ignore(_)
        ));
        // A canceled subscription stays canceled even with a later timestamp.
        assert!(matches!(
            decide(&a, &sub("sub_1", "active"), 300, false, None),
            Decision::Ignore(_)
        ));
        let b = account(Some("sub_1"), "active", 200);
        assert_eq!(
            decide(&b, &sub("sub_1", "past_due"), 300, false, None),
            Decision::Apply
        );
        // An older event asks Stripe (stored states may carry this server's
        // clock); what Stripe says now is applied whatever its time.
        assert_eq!(
            decide(&b, &sub("sub_1", "past_due"), 100, false, None),
            Decision::AskStripe
        );
        assert_eq!(
            decide(&b, &sub("sub_1", "past_due"), 100, true, None),
            Decision::Apply
        );
        assert_eq!(
            decide(&b, &sub("sub_1", "past_due"), 200, false, None),
            Decision::AskStripe
        );
        assert_eq!(
            decide(&b, &sub("sub_1", "active"), 200, false, None),
            Decision::AskStripe
        );
        // An end needs no asking, however old the event: it is final.
        assert_eq!(
            decide(&b, &sub("sub_1", "canceled"), 100, false, None),
            Decision::Apply
        );
    }

    #[test]
    fn a_new_subscription_replaces_an_old_one_but_an_old_ending_does_not_matter() {
        let a = account(Some("sub_2"), "active", 200);
        assert!(matches!(
            decide(&a, &sub("sub_1", "canceled"), 300, false, None),
            Decision::Ignore(_)
        ));
        // Another subscription takes over only once Stripe confirms it is live:
        // a late event of a long-ended one says "active" too.
        assert_eq!(
            decide(&a, &sub("sub_3", "active"), 300, false, None),
            Decision::AskStripe
        );
        // Confirmed live: the stored one's state in Stripe decides next.
        assert_eq!(
            decide(&a, &sub("sub_3", "active"), 300, true, None),
            Decision::Recheck
        );
        let ended = sub("sub_2", "canceled");
        assert_eq!(
            decide(&a, &sub("sub_3", "active"), 300, true, Some(&ended)),
            Decision::Apply
        );
        let ended = account(Some("sub_2"), "canceled", 200);
        assert_eq!(
            decide(&ended, &sub("sub_3", "active"), 100, false, None),
            Decision::AskStripe
        );
        assert_eq!(
            decide(&ended, &sub("sub_3", "active"), 100, true, None),
            Decision::Apply
        );
        let none = account(None, "none", 0);
        assert_eq!(
            decide(&none, &sub("sub_1", "active"), 1, false, None),
            Decision::Apply
        );
    }

    fn created(id: &str, status: &str, at: i64) -> Subscription {
        Subscription {
            created: Some(at),
            ..sub(id, status)
        }
    }

    #[test]
    fn of_two_live_subscriptions_the_newest_paid_one_is_the_plan_in_any_order() {
        let old = created("sub_old", "active", 1_000);
        let new = created("sub_new", "active", 2_000);
        // The newer one arrives second: it replaces the older, which is canceled.
        let on_old = account(Some("sub_old"), "active", 200);
        assert_eq!(
            decide(&on_old, &new, 300, true, Some(&old)),
            Decision::Replace {
                older: "sub_old".into()
            }
        );
        // The older one arrives (again) while the newer is the plan: it is
        // canceled and never becomes the plan again.
        let on_new = account(Some("sub_new"), "active", 300);
        assert_eq!(
            decide(&on_new, &old, 400, true, Some(&new)),
            Decision::Outdated {
                newer: "sub_new".into()
            }
        );
        // The stored one changed since Stripe was asked: ask again.
        assert_eq!(
            decide(&on_new, &old, 400, true, Some(&old)),
            Decision::Recheck
        );
    }

    #[test]
    fn a_subscription_not_paid_for_never_pushes_out_a_paid_one() {
        let paid = created("sub_paid", "active", 1_000);
        let pending = created("sub_pending", "incomplete", 2_000);
        let on_paid = account(Some("sub_paid"), "active", 200);
        assert!(matches!(
            decide(&on_paid, &pending, 300, true, Some(&paid)),
            Decision::Ignore(_)
        ));
        // The newer one stored but not paid for: the older paid one is the
        // plan until the newer is paid for (and then replaces it).
        let on_pending = account(Some("sub_pending"), "incomplete", 200);
        assert_eq!(
            decide(&on_pending, &paid, 300, true, Some(&pending)),
            Decision::Apply
        );
        let paid_now = created("sub_pending", "active", 2_000);
        assert_eq!(
            decide(
                &account(Some("sub_paid"), "active", 300),
                &paid_now,
                400,
                true,
                Some(&paid)
            ),
            Decision::Replace {
                older: "sub_paid".into()
            }
        );
        // Neither paid for: nothing changes, nothing is canceled.
        let stale = created("sub_stale", "unpaid", 500);
        assert!(matches!(
            decide(&on_pending, &stale, 300, true, Some(&pending)),
            Decision::Ignore(_)
        ));
    }
}

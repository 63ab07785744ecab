//! What an organization's plan allows, and the checks made where things are
//! created. Data over a limit (after a downgrade) is kept; only creation stops.

use chrono::NaiveDateTime;

use crate::config::StripeConfig;
use crate::db::DbConnection;
use crate::db::models::usage_counter::period_of;
use crate::db::models::{Agent, BillingAccount, Document, Invitation, Membership, UsageCounter};
use crate::domain::{Limits, OrganizationId, Plan, TenantScope};
use crate::wording::plural;

/// Subscription statuses under which the paid plan applies.
const PAYING: [&str; 2] = ["active", "trialing"];
pub const PAST_DUE: &str = "past_due";

/// The plan in force now, given the stored subscription state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entitlement {
    pub plan: Plan,
    pub limits: Limits,
    /// Billing is off (no `STRIPE_SECRET_KEY`): everything is unlimited.
    pub unlimited: bool,
    /// `past_due` but still inside the grace period: when it ends.
    pub grace_until: Option<NaiveDateTime>,
}

impl Entitlement {
    pub fn of(config: &StripeConfig, account: &BillingAccount, now: NaiveDateTime) -> Self {
        if !config.enabled() {
            return Self {
                plan: Plan::parse(&account.plan).unwrap_or(Plan::Free),
                limits: Limits::UNLIMITED,
                unlimited: true,
                grace_until: None,
            };
        }
        let subscribed = Plan::parse(&account.plan).unwrap_or(Plan::Free);
        let (plan, grace_until) = if PAYING.contains(&account.status.as_str()) {
            (subscribed, None)
        } else if account.status == PAST_DUE {
            let since = account.past_due_since.unwrap_or(account.updated_at);
            let until = since + config.grace;
            if now < until {
                (subscribed, Some(until))
            } else {
                (Plan::Free, None)
            }
        } else {
            (Plan::Free, None)
        };
        Self {
            plan,
            limits: config.limits(plan),
            unlimited: false,
            grace_until,
        }
    }
}

/// Something a plan counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Agent,
    Seat,
    /// An invited person joining: their invitation already held a seat, so
    /// only members count (after a downgrade, more were invited than now fit).
    Joining,
    /// Adding this many bytes to the knowledge base.
    Knowledge(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LimitReached {
    pub plan: Plan,
    pub limit: u64,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error(transparent)]
    Reached(#[from] LimitReached),
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

/// What the organization uses now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub agents: u64,
    /// Members plus open invitations (an invitation holds its seat).
    pub seats: u64,
    pub messages_this_month: u64,
    pub knowledge_bytes: u64,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub fn usage(conn: &mut DbConnection, scope: &TenantScope) -> diesel::QueryResult<Usage> {
    let period = period_of(crate::domain::now());
    Ok(Usage {
        agents: count(Agent::count(conn, scope)?),
        seats: count(Membership::count(conn, scope)? + Invitation::count_pending(conn, scope)?),
        messages_this_month: count(UsageCounter::messages(
            conn,
            scope.organization_id(),
            &period,
        )?),
        knowledge_bytes: count(Document::total_bytes(conn, scope)?),
    })
}

pub fn entitlement(
    conn: &mut DbConnection,
    config: &StripeConfig,
    org: OrganizationId,
) -> diesel::QueryResult<Entitlement> {
    let account = BillingAccount::ensure(conn, org)?;
    Ok(Entitlement::of(config, &account, crate::domain::now()))
}

/// Refuses to create one more `resource` past the plan's limit. Call it inside
/// the transaction that creates the thing: on PostgreSQL it holds the
/// organization's billing row, so concurrent creations are counted one by one.
pub fn ensure_room(
    conn: &mut DbConnection,
    config: &StripeConfig,
    scope: &TenantScope,
    resource: Resource,
) -> Result<(), LimitError> {
    if !config.enabled() {
        return Ok(());
    }
    let account = BillingAccount::lock(conn, scope.organization_id())?;
    let e = Entitlement::of(config, &account, crate::domain::now());
    let limit = match resource {
        Resource::Agent => e.limits.agents,
        Resource::Seat | Resource::Joining => e.limits.seats,
        Resource::Knowledge(_) => e.limits.knowledge_bytes,
    };
    let Some(limit) = limit else {
        return Ok(());
    };
    let (used, adding) = match resource {
        Resource::Agent => (count(Agent::count(conn, scope)?), 1),
        Resource::Seat => (
            count(Membership::count(conn, scope)? + Invitation::count_pending(conn, scope)?),
            1,
        ),
        Resource::Joining => (count(Membership::count(conn, scope)?), 1),
        Resource::Knowledge(bytes) => (count(Document::total_bytes(conn, scope)?), bytes),
    };
    if used.saturating_add(adding) <= limit {
        return Ok(());
    }
    let plan = e.plan.label();
    let message = match resource {
        Resource::Agent => format!(
            "The {plan} plan includes {limit} agent{}. Upgrade your plan to add more.",
            plural(limit)
        ),
        Resource::Seat => format!(
            "The {plan} plan includes {limit} seat{} (members and open invitations). Upgrade your plan to invite more people.",
            plural(limit)
        ),
        Resource::Joining => format!(
            "This organization's {plan} plan includes {limit} seat{}, and all are taken. Ask whoever invited you to upgrade the plan, then open this link again.",
            plural(limit)
        ),
        Resource::Knowledge(_) => format!(
            "The {plan} plan includes {} of knowledge; {} is used and this file needs {}. Upgrade your plan or delete documents.",
            crate::domain::text::human_bytes(limit),
            crate::domain::text::human_bytes(used),
            crate::domain::text::human_bytes(adding)
        ),
    };
    Err(LimitError::Reached(LimitReached {
        plan: e.plan,
        limit,
        message,
    }))
}

/// Counts one visitor message against the month's allowance, or refuses it.
/// The count and the check are one atomic statement; a refused message rolls
/// back with the caller's transaction and is not counted.
/// The message that uses the allowance up tells the owners, once a month.
pub fn count_message(
    conn: &mut DbConnection,
    config: &StripeConfig,
    org: OrganizationId,
    base_url: &url::Url,
) -> Result<(), LimitError> {
    let now = crate::domain::now();
    let period = period_of(now);
    let total = count(UsageCounter::add_message(conn, org, &period)?);
    if !config.enabled() {
        return Ok(());
    }
    let account = BillingAccount::ensure(conn, org)?;
    let e = Entitlement::of(config, &account, now);
    if e.limits.messages_per_month == Some(total) {
        let organization = crate::db::models::Organization::find(conn, org)?
            .map_or_else(|| "Your organization".into(), |o| o.name);
        super::email_owners(
            conn,
            org,
            &format!("allowance:{org}:{period}"),
            crate::services::mail::MailTemplate::AllowanceReached {
                organization,
                plan: e.plan.label().into(),
                limit: crate::views::billing::grouped(total),
            },
            base_url,
        )?;
    }
    match e.limits.messages_per_month {
        Some(limit) if total > limit => Err(LimitError::Reached(LimitReached {
            plan: e.plan,
            limit,
            message: "This assistant has reached its message allowance for this month. Please contact the business another way.".into(),
        })),
        _ => Ok(()),
    }
}

/// The plan and its monthly allowance when visitors used it all up this month.
pub fn messages_used_up(
    conn: &mut DbConnection,
    config: &StripeConfig,
    scope: &TenantScope,
) -> diesel::QueryResult<Option<(Plan, u64)>> {
    if !config.enabled() {
        return Ok(None);
    }
    let now = crate::domain::now();
    let e = entitlement(conn, config, scope.organization_id())?;
    let Some(limit) = e.limits.messages_per_month else {
        return Ok(None);
    };
    let used = count(UsageCounter::messages(
        conn,
        scope.organization_id(),
        &period_of(now),
    )?);
    Ok((used >= limit).then_some((e.plan, limit)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(enabled: bool) -> StripeConfig {
        StripeConfig {
            secret_key: enabled.then(|| crate::config::Secret::new("sk_test_x".to_string())),
            webhook_secrets: Vec::new(),
            api_base: url::Url::parse("http://127.0.0.1:1").unwrap(),
            prices: Default::default(),
            limits: Default::default(),
            grace: chrono::TimeDelta::days(7),
        }
    }

    fn account(plan: &str, status: &str, past_due_since: Option<NaiveDateTime>) -> BillingAccount {
        let now = crate::domain::now();
        BillingAccount {
            organization_id: OrganizationId(1),
            stripe_customer_id: Some("cus_1".into()),
            stripe_subscription_id: Some("sub_1".into()),
            plan: plan.into(),
            status: status.into(),
            price_id: None,
            current_period_start: None,
            current_period_end: None,
            cancel_at_period_end: false,
            trial_end: None,
            past_due_since,
            stripe_state_at: 0,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn paying_subscriptions_get_their_plan_and_others_free() {
        let now = crate::domain::now();
        let c = config(true);
        assert_eq!(
            Entitlement::of(&c, &account("pro", "active", None), now).plan,
            Plan::Pro
        );
        assert_eq!(
            Entitlement::of(&c, &account("pro", "trialing", None), now).plan,
            Plan::Pro
        );
        assert_eq!(
            Entitlement::of(&c, &account("pro", "canceled", None), now).plan,
            Plan::Free
        );
        assert_eq!(
            Entitlement::of(&c, &account("pro", "unpaid", None), now).plan,
            Plan::Free
        );
    }

    #[test]
    fn past_due_keeps_the_plan_for_the_grace_period_only() {
        let now = crate::domain::now();
        let c = config(true);
        let recent = Entitlement::of(&c, &account("business", PAST_DUE, Some(now)), now);
        assert_eq!(recent.plan, Plan::Business);
        assert!(recent.grace_until.is_some());
        let old = now - chrono::TimeDelta::days(8);
        let expired = Entitlement::of(&c, &account("business", PAST_DUE, Some(old)), now);
        assert_eq!(expired.plan, Plan::Free);
    }

    #[test]
    fn without_stripe_everything_is_unlimited() {
        let e = Entitlement::of(
            &config(false),
            &account("free", "none", None),
            crate::domain::now(),
        );
        assert!(e.unlimited);
        assert_eq!(e.limits, Limits::UNLIMITED);
    }
}

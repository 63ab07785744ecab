//! Upgrading through Stripe Checkout and managing through the Customer Portal.

use sha2::{Digest as _, Sha256};

use super::stripe::{CheckoutRequest, StripeApi, StripeError};
use crate::config::Config;
use crate::db::models::{BillingAccount, Organization};
use crate::db::{DbConnection, DbPool};
use crate::domain::{OrganizationId, Plan, TenantScope, UserId};
use crate::services::accounts::{Actor, audit};

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("Billing is not enabled on this server.")]
    Off,
    #[error("The {0} plan cannot be bought here.")]
    NotForSale(&'static str),
    #[error("This organization already has a subscription: change plans in Manage billing.")]
    AlreadySubscribed,
    #[error("This organization has no billing account yet: choose a plan first.")]
    NoCustomer,
    #[error("Stripe could not be reached; please try again in a moment.")]
    Stripe(#[source] StripeError),
    /// The cause is logged, never shown.
    #[error("Something went wrong on our side; please try again.")]
    Db(String),
}

impl From<diesel::result::Error> for CheckoutError {
    fn from(err: diesel::result::Error) -> Self {
        Self::Db(err.to_string())
    }
}

impl From<StripeError> for CheckoutError {
    fn from(err: StripeError) -> Self {
        Self::Stripe(err)
    }
}

/// The member doing it, for the audit log.
#[derive(Debug, Clone)]
pub struct Buyer {
    pub user_id: UserId,
    pub email: String,
    pub ip: String,
}

impl Buyer {
    fn actor(&self) -> Actor<'_> {
        Actor {
            user_id: Some(self.user_id),
            label: &self.email,
            ip: &self.ip,
        }
    }
}

/// Statuses with a live subscription: a second one through Checkout would
/// bill twice, so plan changes go through the Customer Portal.
pub fn has_live_subscription(account: &BillingAccount) -> bool {
    account.stripe_subscription_id.is_some()
        && matches!(
            account.status.as_str(),
            "active" | "trialing" | "past_due" | "unpaid" | "incomplete" | "paused"
        )
}

async fn db<T: Send + 'static>(
    pool: &DbPool,
    work: impl FnOnce(&mut DbConnection) -> Result<T, CheckoutError> + Send + 'static,
) -> Result<T, CheckoutError> {
    let pool = pool.clone();
    actix_web::rt::task::spawn_blocking(move || {
        let mut conn = pool.get().map_err(|e| CheckoutError::Db(e.to_string()))?;
        work(&mut conn)
    })
    .await
    .map_err(|e| CheckoutError::Db(e.to_string()))?
}

/// The organization's Stripe customer, created on first use.
async fn customer(
    api: &StripeApi,
    pool: &DbPool,
    scope: &TenantScope,
    buyer: &Buyer,
) -> Result<String, CheckoutError> {
    let org = scope.organization_id();
    let (account, organization) = db(pool, {
        let scope = scope.clone();
        move |conn| {
            let account = BillingAccount::of(conn, &scope)?;
            let organization = Organization::find(conn, org)?;
            Ok((account, organization))
        }
    })
    .await?;
    if let Some(id) = account.stripe_customer_id {
        return Ok(id);
    }
    let (name, created_at) = organization.map_or_else(
        || (format!("Organization {org}"), account.created_at),
        |o| (o.name, o.created_at),
    );
    // The idempotency key is per organization: two instances racing here get
    // the same customer back from Stripe.
    let created = api
        .create_customer(org, created_at, &name, &buyer.email)
        .await?;
    let buyer = buyer.clone();
    db(pool, move |conn| {
        crate::db::write_transaction(conn, |conn| {
            let (account, linked) = BillingAccount::claim_customer(conn, org, &created)?;
            if !linked {
                // Another request or a webhook linked one first: keep theirs.
                return Ok(account.stripe_customer_id.unwrap_or(created));
            }
            audit(
                conn,
                Some(org),
                &buyer.actor(),
                "billing.customer_created",
                Some(&created),
                None,
            )?;
            Ok(created)
        })
    })
    .await
}

/// Opens a Checkout Session for `plan`; returns where to send the browser.
/// `request_id` comes from the form: submitting the same form twice reuses
/// the same idempotency key, so Stripe answers with the same session.
pub async fn start_checkout(
    api: Option<&StripeApi>,
    pool: &DbPool,
    config: &Config,
    scope: &TenantScope,
    buyer: &Buyer,
    plan: Plan,
    request_id: &str,
) -> Result<String, CheckoutError> {
    let api = api.ok_or(CheckoutError::Off)?;
    let price = config
        .stripe
        .prices
        .get(&plan)
        .filter(|_| plan != Plan::Free)
        .ok_or(CheckoutError::NotForSale(plan.label()))?
        .clone();
    let account = db(pool, {
        let scope = scope.clone();
        move |conn| Ok(BillingAccount::of(conn, &scope)?)
    })
    .await?;
    if has_live_subscription(&account) {
        return Err(CheckoutError::AlreadySubscribed);
    }
    let customer = customer(api, pool, scope, buyer).await?;
    let org = scope.organization_id();
    let key = idempotency_key(&["checkout", &org.to_string(), plan.as_str(), request_id]);
    let billing = billing_url(config);
    let success = format!("{billing}?checkout=success");
    let cancel = format!("{billing}?checkout=canceled");
    let url = api
        .create_checkout_session(&CheckoutRequest {
            organization: org,
            plan,
            customer: &customer,
            price: &price,
            success_url: &success,
            cancel_url: &cancel,
            idempotency_key: &key,
        })
        .await?;
    record(pool, org, buyer, "billing.checkout_started", plan.as_str()).await?;
    Ok(url)
}

/// Opens the Customer Portal; returns where to send the browser.
pub async fn open_portal(
    api: Option<&StripeApi>,
    pool: &DbPool,
    config: &Config,
    scope: &TenantScope,
    buyer: &Buyer,
    request_id: &str,
) -> Result<String, CheckoutError> {
    let api = api.ok_or(CheckoutError::Off)?;
    let account = db(pool, {
        let scope = scope.clone();
        move |conn| Ok(BillingAccount::of(conn, &scope)?)
    })
    .await?;
    let customer = account
        .stripe_customer_id
        .ok_or(CheckoutError::NoCustomer)?;
    let org = scope.organization_id();
    let key = idempotency_key(&["portal", &org.to_string(), request_id]);
    let url = api
        .create_portal_session(&customer, &billing_url(config), &key)
        .await?;
    record(pool, org, buyer, "billing.portal_opened", &customer).await?;
    Ok(url)
}

/// Writes what the buyer did to the audit log.
async fn record(
    pool: &DbPool,
    org: OrganizationId,
    buyer: &Buyer,
    action: &'static str,
    target: &str,
) -> Result<(), CheckoutError> {
    let (buyer, target) = (buyer.clone(), target.to_string());
    db(pool, move |conn| {
        Ok(audit(
            conn,
            Some(org),
            &buyer.actor(),
            action,
            Some(&target),
            None,
        )?)
    })
    .await
}

fn billing_url(config: &Config) -> String {
    format!(
        "{}/app/billing",
        config.base_url.as_str().trim_end_matches('/')
    )
}

/// A key of at most 255 characters whatever the parts' lengths.
fn idempotency_key(parts: &[&str]) -> String {
    let digest = Sha256::digest(parts.join("\u{1f}").as_bytes());
    format!("frontdesk-{}-{}", parts[0], hex::encode(&digest[..16]))
}

#[cfg(test)]
mod tests {
    use super::idempotency_key;

    #[test]
    fn idempotency_keys_are_stable_bounded_and_distinct() {
        let a = idempotency_key(&["checkout", "1", "pro", "r1"]);
        assert_eq!(a, idempotency_key(&["checkout", "1", "pro", "r1"]));
        assert_ne!(a, idempotency_key(&["checkout", "1", "business", "r1"]));
        let long = "x".repeat(10_000);
        assert!(idempotency_key(&["portal", &long]).len() < 100);
    }
}

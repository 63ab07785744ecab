//! The Stripe API calls billing makes, through async-stripe over rustls. Every
//! call that creates something carries an idempotency key, so a retried request
//! (a double click, a timeout) never creates two of anything.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeRequest as _};
use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use stripe_billing::subscription::{CancelSubscription, RetrieveSubscription};
use stripe_checkout::CheckoutSessionMode;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionSubscriptionData,
};
use stripe_core::customer::CreateCustomer;

use super::objects::{self, List, Ref, SubscriptionItem};
use crate::config::StripeConfig;
use crate::domain::{OrganizationId, Plan};

const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, thiserror::Error)]
pub enum StripeError {
    /// Stripe answered with an error (HTTP status, Stripe's own message).
    #[error("Stripe answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("Stripe could not be reached: {0}")]
    Unreachable(String),
    #[error("Stripe's answer could not be read: {0}")]
    Unreadable(String),
    #[error("the Stripe client is misconfigured: {0}")]
    Config(String),
}

impl StripeError {
    /// Whether trying again later may succeed (rate limits, Stripe's own
    /// failures, the network), as Stripe's retry guidance says.
    pub fn is_retryable(&self) -> bool {
        match self {
            // 401/403: the key was revoked or rotated, which an operator
            // fixes; the events waiting on it must not be lost meanwhile.
            Self::Api { status, .. } => matches!(status, 401 | 403 | 409 | 429) || *status >= 500,
            Self::Unreachable(_) | Self::Unreadable(_) => true,
            Self::Config(_) => false,
        }
    }
}

/// A job that called Stripe: tried again later when that may help, buried
/// with Stripe's message when it cannot.
impl From<StripeError> for crate::services::jobs::JobFailure {
    fn from(e: StripeError) -> Self {
        if e.is_retryable() {
            Self::retry(e)
        } else {
            Self::permanent(e)
        }
    }
}

impl From<stripe::StripeError> for StripeError {
    fn from(err: stripe::StripeError) -> Self {
        match err {
            stripe::StripeError::Stripe(api, status) => Self::Api {
                status,
                message: api
                    .message
                    .clone()
                    .unwrap_or_else(|| api.type_.as_str().to_string()),
            },
            stripe::StripeError::JSONDeserialize(why) => Self::Unreadable(why),
            stripe::StripeError::ClientError(why) => Self::Unreachable(why),
            stripe::StripeError::Timeout => Self::Unreachable("timed out".into()),
            stripe::StripeError::ConfigError(why) => Self::Config(why),
        }
    }
}

/// What a Checkout Session is opened with.
pub struct CheckoutRequest<'a> {
    pub organization: OrganizationId,
    pub plan: Plan,
    pub customer: &'a str,
    pub price: &'a str,
    pub success_url: &'a str,
    pub cancel_url: &'a str,
    pub idempotency_key: &'a str,
}

pub struct StripeApi {
    client: Client,
}

fn idempotent(key: &str) -> Result<RequestStrategy, StripeError> {
    IdempotencyKey::new(key)
        .map(RequestStrategy::Idempotent)
        .map_err(|e| StripeError::Config(format!("idempotency key: {e}")))
}

/// The idempotency key of the Stripe customer made for `org`.
fn customer_idempotency_key(org: OrganizationId, created_at: chrono::NaiveDateTime) -> String {
    format!(
        "frontdesk-customer-{org}-{}",
        created_at.and_utc().timestamp_micros()
    )
}

fn organization_metadata(org: OrganizationId, plan: Option<Plan>) -> HashMap<String, String> {
    let mut metadata = HashMap::from([("organization_id".to_string(), org.to_string())]);
    if let Some(plan) = plan {
        metadata.insert("plan".into(), plan.as_str().into());
    }
    metadata
}

impl StripeApi {
    /// `None` when billing is off (no secret key) or the client cannot be built
    /// (logged; `frontdesk check` reports the configuration).
    pub fn from_config(config: &StripeConfig) -> Option<Arc<Self>> {
        let key = config.secret_key.as_ref()?;
        match ClientBuilder::new(key.expose().as_str())
            .url(config.api_base.as_str())
            .timeout(TIMEOUT)
            .build()
        {
            Ok(client) => Some(Arc::new(Self { client })),
            Err(e) => {
                tracing::error!(error = %StripeError::from(e), "cannot build the Stripe client: billing calls will fail");
                None
            }
        }
    }

    /// The Stripe API version this build speaks (set the webhook endpoint to it).
    pub fn api_version() -> &'static str {
        stripe_shared::version::VERSION.as_str()
    }

    /// One customer per organization: the key makes a retry return the same one.
    /// Stripe keeps idempotency keys per Stripe account, which several
    /// deployments (staging, CI, a laptop) may share and where each has an
    /// organization 1: the organization's creation time tells theirs apart.
    pub async fn create_customer(
        &self,
        org: OrganizationId,
        org_created_at: chrono::NaiveDateTime,
        name: &str,
        email: &str,
    ) -> Result<String, StripeError> {
        let key = customer_idempotency_key(org, org_created_at);
        let customer = CreateCustomer::new()
            .name(name)
            .email(email)
            .metadata(organization_metadata(org, None))
            .customize()
            .request_strategy(idempotent(&key)?)
            .send(&self.client)
            .await?;
        Ok(customer.id.as_str().to_string())
    }

    /// A subscription-mode Checkout Session; returns the URL to send the buyer to.
    pub async fn create_checkout_session(
        &self,
        req: &CheckoutRequest<'_>,
    ) -> Result<String, StripeError> {
        let mut item = CreateCheckoutSessionLineItems::new();
        item.price = Some(req.price.to_string());
        item.quantity = Some(1);
        let mut subscription = CreateCheckoutSessionSubscriptionData::new();
        subscription.metadata = Some(organization_metadata(req.organization, Some(req.plan)));
        let session = CreateCheckoutSession::new()
            .mode(CheckoutSessionMode::Subscription)
            .line_items(vec![item])
            .customer(req.customer)
            .client_reference_id(req.organization.to_string())
            .metadata(organization_metadata(req.organization, Some(req.plan)))
            .subscription_data(subscription)
            .success_url(req.success_url)
            .cancel_url(req.cancel_url)
            .customize()
            .request_strategy(idempotent(req.idempotency_key)?)
            .send(&self.client)
            .await?;
        session
            .url
            .ok_or_else(|| StripeError::Unreadable("the Checkout Session has no url".into()))
    }

    /// A Customer Portal session; returns its URL.
    pub async fn create_portal_session(
        &self,
        customer: &str,
        return_url: &str,
        idempotency_key: &str,
    ) -> Result<String, StripeError> {
        let session = CreateBillingPortalSession::new()
            .customer(customer)
            .return_url(return_url)
            .customize()
            .request_strategy(idempotent(idempotency_key)?)
            .send(&self.client)
            .await?;
        Ok(session.url)
    }

    /// Cancels a subscription now, crediting its unused time; returns the
    /// status Stripe reports afterwards. No idempotency key: Stripe would
    /// answer a retry with the first answer, a 500 included, for a day;
    /// canceling twice cannot bill anyone, and callers look first.
    pub async fn cancel_subscription(&self, id: &str) -> Result<String, StripeError> {
        let sub = CancelSubscription::new(id)
            .prorate(true)
            .send(&self.client)
            .await?;
        Ok(sub.status.as_str().to_string())
    }

    /// The subscription as Stripe holds it now, or `None` when Stripe has no
    /// such subscription (deleted with its customer, or test data cleared).
    pub async fn find_subscription(
        &self,
        id: &str,
    ) -> Result<Option<objects::Subscription>, StripeError> {
        match self.retrieve_subscription(id).await {
            Ok(sub) => Ok(Some(sub)),
            Err(StripeError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The subscription as Stripe holds it now (the source of truth when
    /// events disagree).
    pub async fn retrieve_subscription(
        &self,
        id: &str,
    ) -> Result<objects::Subscription, StripeError> {
        let sub = RetrieveSubscription::new(id).send(&self.client).await?;
        let metadata = sub.metadata.into_iter().collect();
        Ok(objects::Subscription {
            id: sub.id.as_str().to_string(),
            customer: Ref(sub.customer.id().as_str().to_string()),
            status: sub.status.as_str().to_string(),
            created: Some(sub.created),
            cancel_at_period_end: sub.cancel_at_period_end,
            current_period_start: None,
            current_period_end: None,
            trial_end: sub.trial_end,
            items: Some(List {
                data: sub
                    .items
                    .data
                    .iter()
                    .map(|item| SubscriptionItem {
                        price: Some(Ref(item.price.id.as_str().to_string())),
                        current_period_start: Some(item.current_period_start),
                        current_period_end: Some(item.current_period_end),
                    })
                    .collect(),
            }),
            metadata: Some(metadata),
        })
    }
}

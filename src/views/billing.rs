//! The billing page.

use askama::Template;
use askama_web::WebTemplate;

use super::account::AppChrome;

/// One usage bar: what is used against what the plan allows.
pub struct UsageBar {
    pub label: &'static str,
    pub used: u64,
    pub used_label: String,
    /// `None` is unlimited.
    pub limit: Option<u64>,
    pub limit_label: String,
    pub over: bool,
}

pub struct PlanCard {
    pub plan: &'static str,
    pub label: &'static str,
    pub features: Vec<String>,
    pub current: bool,
    /// A Stripe price is configured, so Checkout can sell it.
    pub purchasable: bool,
}

pub struct InvoiceRow {
    pub number: String,
    pub date: String,
    pub amount: String,
    pub status: String,
    pub url: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "app/billing.html")]
pub struct BillingPage {
    pub chrome: AppChrome,
    pub enabled: bool,
    pub webhook_url: String,
    pub plan_label: &'static str,
    pub status: String,
    pub status_label: String,
    pub period_end: Option<String>,
    /// The period ended and Stripe has not told of the next one yet.
    pub period_over: bool,
    pub cancel_at_period_end: bool,
    pub grace_until: Option<String>,
    /// The subscription lapsed (past the grace period, unpaid, canceled).
    pub lapsed: bool,
    pub has_customer: bool,
    /// A live subscription: changes go through the Customer Portal.
    pub subscribed: bool,
    pub usage: Vec<UsageBar>,
    pub plans: Vec<PlanCard>,
    pub invoices: Vec<InvoiceRow>,
    /// Ties a Checkout form to one Stripe idempotency key: a double submit
    /// opens the same session instead of two.
    pub request_id: String,
}

/// `12,500`: counts read at a glance.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What a plan's limits allow, one line each (billing page and front page).
pub fn plan_features(limits: crate::domain::Limits) -> Vec<String> {
    let n = |v: Option<u64>, one: &str, many: &str| match v {
        Some(1) => format!("1 {one}"),
        Some(v) => format!("{} {many}", grouped(v)),
        None => format!("Unlimited {many}"),
    };
    vec![
        n(limits.agents, "agent", "agents"),
        n(limits.seats, "seat", "seats"),
        n(
            limits.messages_per_month,
            "message a month",
            "messages a month",
        ),
        match limits.knowledge_bytes {
            Some(b) => format!("{} of knowledge", crate::domain::text::human_bytes(b)),
            None => "Unlimited knowledge".into(),
        },
    ]
}

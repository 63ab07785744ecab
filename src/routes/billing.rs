//! The billing page, Checkout and the Customer Portal (owners and admins).

use actix_web::http::header;
use actix_web::{CustomizeResponder, HttpRequest, HttpResponse, Responder as _, web};
use serde::{Deserialize, Serialize};

use super::api::ErrorJson;

use super::app::{chrome, require};
use crate::auth::csrf::CsrfForm;
use crate::auth::extractors::{ApiCaller, Member, client_ip};
use crate::csrf_protected;
use crate::db::models::{BillingAccount, Invoice};
use crate::domain::text::human_bytes;
use crate::domain::{Permission, Plan};
use crate::error::AppResult;
use crate::routes::auth::see_other;
use crate::routes::flash;
use crate::security;
use crate::services::billing::Entitlement;
use crate::services::billing::checkout::{self, Buyer, CheckoutError};
use crate::services::billing::limits;
use crate::services::billing::objects::money;
use crate::startup::AppState;
use crate::views::account::Flash;
use crate::views::billing::grouped;
use crate::views::billing::{BillingPage, InvoiceRow, PlanCard, UsageBar};

#[derive(Deserialize)]
pub struct BillingQuery {
    #[serde(default)]
    checkout: Option<String>,
}

#[derive(Deserialize)]
pub struct CheckoutForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    plan: String,
    #[serde(default)]
    request_id: String,
}

#[derive(Deserialize)]
pub struct PortalForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    request_id: String,
}

csrf_protected!(CheckoutForm, PortalForm);

fn day(t: chrono::NaiveDateTime) -> String {
    t.format("%B %-d, %Y").to_string()
}

fn bar(label: &'static str, used: u64, limit: Option<u64>, show: fn(u64) -> String) -> UsageBar {
    UsageBar {
        label,
        used,
        used_label: show(used),
        limit,
        limit_label: limit.map_or_else(|| "unlimited".into(), show),
        over: limit.is_some_and(|l| used >= l),
    }
}

pub async fn page(
    state: web::Data<AppState>,
    member: Member,
    query: web::Query<BillingQuery>,
) -> AppResult<CustomizeResponder<BillingPage>> {
    require(&member, Permission::ManageSettings)?;
    let scope = member.scope.clone();
    let (account, usage, invoices) = state
        .db(move |conn| {
            Ok((
                BillingAccount::of(conn, &scope)?,
                limits::usage(conn, &scope)?,
                Invoice::recent(conn, &scope, 24)?,
            ))
        })
        .await?;
    let stripe = &state.config.stripe;
    let now = crate::domain::now();
    let e = Entitlement::of(stripe, &account, now);
    let flash = flash::take(&member.session).or_else(|| match query.checkout.as_deref() {
        Some("success") => Some(Flash {
            kind: "success",
            message: "Thank you! Your plan changes as soon as Stripe confirms the payment (usually within seconds).".into(),
        }),
        Some("canceled") => Some(Flash {
            kind: "info",
            message: "Checkout was canceled; nothing was charged.".into(),
        }),
        _ => None,
    });
    let subscribed = checkout::has_live_subscription(&account);
    let paid_plan = Plan::parse(&account.plan).unwrap_or(Plan::Free);
    let page = BillingPage {
        chrome: chrome(&member, "billing", flash)?,
        enabled: stripe.enabled(),
        webhook_url: format!(
            "{}/webhooks/stripe",
            state.config.base_url.as_str().trim_end_matches('/')
        ),
        plan_label: e.plan.label(),
        status: account.status.clone(),
        status_label: status_label(&account.status),
        period_end: account.current_period_end.map(day),
        period_over: account
            .current_period_end
            .is_some_and(|end| end < crate::domain::now()),
        cancel_at_period_end: account.cancel_at_period_end,
        grace_until: e.grace_until.map(day),
        lapsed: account.stripe_subscription_id.is_some()
            && paid_plan != Plan::Free
            && e.plan == Plan::Free,
        has_customer: account.stripe_customer_id.is_some(),
        subscribed,
        usage: vec![
            bar("Agents", usage.agents, e.limits.agents, grouped),
            bar("Seats", usage.seats, e.limits.seats, grouped),
            bar(
                "Messages this month",
                usage.messages_this_month,
                e.limits.messages_per_month,
                grouped,
            ),
            bar(
                "Knowledge storage",
                usage.knowledge_bytes,
                e.limits.knowledge_bytes,
                human_bytes,
            ),
        ],
        plans: Plan::ALL
            .into_iter()
            .map(|plan| PlanCard {
                plan: plan.as_str(),
                label: plan.label(),
                features: crate::views::billing::plan_features(stripe.limits(plan)),
                current: plan == e.plan,
                purchasable: plan != Plan::Free && stripe.prices.contains_key(&plan),
            })
            .collect(),
        invoices: invoices
            .into_iter()
            .map(|i| InvoiceRow {
                number: i.number.unwrap_or(i.stripe_invoice_id),
                date: crate::services::billing::objects::timestamp(i.stripe_created)
                    .map(day)
                    .unwrap_or_default(),
                amount: money(&i.currency, i.amount_due),
                status: i.status,
                url: i.hosted_invoice_url,
            })
            .collect(),
        request_id: hex::encode(rand::random::<[u8; 12]>()),
    };
    Ok(page.customize().insert_header((
        header::CONTENT_SECURITY_POLICY,
        security::BILLING_CONTENT_SECURITY_POLICY,
    )))
}

fn status_label(status: &str) -> String {
    match status {
        "none" => "no subscription".into(),
        other => other.replace('_', " "),
    }
}

/// One counted resource: used now, and the plan's limit (`null`: unlimited).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageJson {
    used: u64,
    limit: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BillingJson {
    /// Billing is on for this server; when off, every limit is `null`.
    enabled: bool,
    /// The plan in force now: `free`, `pro` or `business`.
    plan: String,
    /// Stripe's subscription status (`none` before the first subscription).
    status: String,
    current_period_end: Option<String>,
    cancel_at_period_end: bool,
    /// While a failed payment is retried, the paid plan lasts until then.
    grace_until: Option<String>,
    agents: UsageJson,
    seats: UsageJson,
    messages_this_month: UsageJson,
    knowledge_bytes: UsageJson,
}

/// `GET /api/v1/billing`: the plan in force and usage against its limits.
#[utoipa::path(get, path = "/api/v1/billing", tag = "billing", security(("api_key" = [])),
    responses((status = 200, body = BillingJson), (status = 401, body = ErrorJson)))]
pub async fn api_summary(state: web::Data<AppState>, caller: ApiCaller) -> AppResult<HttpResponse> {
    let scope = caller.scope.clone();
    let (account, usage) = state
        .db(move |conn| {
            Ok((
                BillingAccount::of(conn, &scope)?,
                limits::usage(conn, &scope)?,
            ))
        })
        .await?;
    let e = Entitlement::of(&state.config.stripe, &account, crate::domain::now());
    let iso = |t: chrono::NaiveDateTime| t.and_utc().to_rfc3339();
    let pair = |used, limit| UsageJson { used, limit };
    Ok(HttpResponse::Ok().json(BillingJson {
        enabled: state.config.stripe.enabled(),
        plan: e.plan.as_str().into(),
        status: account.status,
        current_period_end: account.current_period_end.map(iso),
        cancel_at_period_end: account.cancel_at_period_end,
        grace_until: e.grace_until.map(iso),
        agents: pair(usage.agents, e.limits.agents),
        seats: pair(usage.seats, e.limits.seats),
        messages_this_month: pair(usage.messages_this_month, e.limits.messages_per_month),
        knowledge_bytes: pair(usage.knowledge_bytes, e.limits.knowledge_bytes),
    }))
}

fn buyer(member: &Member, req: &HttpRequest) -> Buyer {
    Buyer {
        user_id: member.user.id,
        email: member.user.email.clone(),
        ip: client_ip(req),
    }
}

/// To Stripe's hosted page, or back to the billing page with the reason.
fn to_stripe(member: &Member, url: Result<String, CheckoutError>) -> HttpResponse {
    match url {
        Ok(url) => see_other(&url),
        Err(e) => refused(member, &e),
    }
}

/// Where a failed attempt goes: back to the page with the reason.
fn refused(member: &Member, e: &CheckoutError) -> HttpResponse {
    match e {
        CheckoutError::Stripe(cause) => {
            tracing::error!(error = %cause, "a Stripe call for billing failed")
        }
        CheckoutError::Db(cause) => tracing::error!(error = %cause, "billing: database error"),
        _ => {}
    }
    flash::set(&member.session, "error", &e.to_string());
    see_other("/app/billing")
}

pub async fn start_checkout(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    CsrfForm(form): CsrfForm<CheckoutForm>,
) -> AppResult<HttpResponse> {
    require(&member, Permission::ManageSettings)?;
    let Ok(plan) = Plan::parse(&form.plan) else {
        return Ok(refused(&member, &CheckoutError::NotForSale("chosen")));
    };
    let url = checkout::start_checkout(
        state.stripe.as_deref(),
        &state.pool,
        &state.config,
        &member.scope,
        &buyer(&member, &req),
        plan,
        &valid_request_id(&form.request_id),
    )
    .await;
    Ok(to_stripe(&member, url))
}

pub async fn open_portal(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    CsrfForm(form): CsrfForm<PortalForm>,
) -> AppResult<HttpResponse> {
    require(&member, Permission::ManageSettings)?;
    let url = checkout::open_portal(
        state.stripe.as_deref(),
        &state.pool,
        &state.config,
        &member.scope,
        &buyer(&member, &req),
        &valid_request_id(&form.request_id),
    )
    .await;
    Ok(to_stripe(&member, url))
}

/// The form's request id, or a fresh one if it is missing or not ours.
fn valid_request_id(raw: &str) -> String {
    if (8..=64).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        raw.to_string()
    } else {
        hex::encode(rand::random::<[u8; 12]>())
    }
}

#[cfg(test)]
mod tests {
    use super::grouped;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(10_000), "10,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }
}

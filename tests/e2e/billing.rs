//! Stripe billing over HTTP on both backends: signed webhooks stored once and
//! applied in any order, Checkout and the Customer Portal against a local fake
//! Stripe API, and plan limits enforced and lifted.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use frontdesk::db::models::BillingAccount;
use frontdesk::db::schema::{audit_log, invoices, jobs, stripe_events};
use frontdesk::domain::OrganizationId;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::accounts::{Browser, organization_with_key};
use crate::backend_tests;
use crate::chat::{Api, say, support_chat};
use crate::fake_stripe::{FakeStripe, fixture, subscription};
use crate::helpers::{Backend, TestApp, eventually, spawn_app};

backend_tests!(
    webhooks_refuse_bad_signatures_and_bodies_and_store_nothing,
    a_replayed_event_is_applied_once_and_order_does_not_matter,
    a_second_live_subscription_cancels_the_one_it_replaces,
    a_stored_subscription_stripe_no_longer_has_gives_way_to_a_new_one,
    every_handled_event_type_is_applied,
    the_same_event_delivered_to_two_instances_at_once_is_applied_once,
    an_event_whose_job_gave_up_is_queued_again_by_maintenance,
    a_failed_event_is_applied_when_an_operator_retries_its_job,
    checkout_and_portal_send_stripe_the_exact_parameters,
    plan_limits_are_enforced_and_lifted_by_an_upgrade,
    without_stripe_billing_is_off_and_unlimited,
    a_state_stripe_gave_before_a_newer_event_does_not_overwrite_it,
    times_past_what_postgresql_holds_are_left_out_not_fatal,
);

const SECRET: &str = "whsec_test_current_0123456789";
const OLD_SECRET: &str = "whsec_test_previous_0123456789";
const PRICE_PRO: &str = "price_pro_test";
const PRICE_BUSINESS: &str = "price_business_test";
const BASE_URL: &str = "https://desk.harbor.test";
const ORG: &str = "Harbor Bikes";
const OWNER: &str = "owner@harbor.test";

/// A server with billing on, pointed at the fake Stripe API.
pub(crate) async fn billing_app(
    backend: Backend,
    stripe: &FakeStripe,
    extra: &[(&'static str, &'static str)],
) -> Option<TestApp> {
    let secrets = format!("{SECRET},{OLD_SECRET}");
    let mut spawn = spawn_app(backend)
        .env("STRIPE_SECRET_KEY", "sk_test_frontdesk")
        .env("STRIPE_WEBHOOK_SECRET", &secrets)
        .env("STRIPE_API_BASE", &stripe.base_url)
        .env("STRIPE_PRICE_PRO", PRICE_PRO)
        .env("STRIPE_PRICE_BUSINESS", PRICE_BUSINESS)
        .env("BASE_URL", BASE_URL);
    for (k, v) in extra {
        spawn = spawn.env(k, v);
    }
    spawn.start().await
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Stripe's signature, computed here independently of the server's code.
fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// An event envelope in Stripe's schema around `object`.
fn event(id: &str, kind: &str, created: i64, object: Value) -> String {
    let mut e = fixture("event");
    e["id"] = json!(id);
    e["type"] = json!(kind);
    e["created"] = json!(created);
    e["api_version"] = json!(frontdesk::services::billing::StripeApi::api_version());
    e["data"] = json!({ "object": object });
    e.to_string()
}

async fn post_event(address: &str, body: &str, header: Option<String>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("{address}/webhooks/stripe"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(header) = header {
        req = req.header("stripe-signature", header);
    }
    req.send().await.unwrap()
}

async fn deliver(app: &TestApp, body: &str) -> reqwest::Response {
    post_event(&app.address, body, Some(signature(SECRET, now(), body))).await
}

/// Waits until the event's job has run; returns the event's final state.
async fn processed(app: &TestApp, id: &str) -> String {
    let pool = app.pool();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state: Option<String> = stripe_events::table
            .find(id)
            .select(stripe_events::state)
            .first(&mut pool.get().unwrap())
            .optional()
            .unwrap();
        match state.as_deref() {
            Some("received") | None => {}
            Some(done) => return done.to_string(),
        }
        assert!(Instant::now() < deadline, "event {id} was not processed");
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
}

fn org_id(app: &TestApp, slug: &str) -> OrganizationId {
    OrganizationId(app.org_id(slug))
}

/// Harbor Bikes signed up, its Stripe customer already linked.
async fn harbor_with_customer(app: &TestApp, customer: &str) -> OrganizationId {
    organization_with_key(app, ORG, OWNER).await;
    let org = org_id(app, "harbor-bikes");
    link_customer(app, org, customer);
    org
}

fn account(app: &TestApp, org: OrganizationId) -> BillingAccount {
    BillingAccount::ensure(&mut app.pool().get().unwrap(), org).unwrap()
}

/// The organization's plan, status and subscription, for one comparison.
fn plan_of(app: &TestApp, org: OrganizationId) -> (String, String, String) {
    let a = account(app, org);
    (
        a.plan,
        a.status,
        a.stripe_subscription_id.unwrap_or_default(),
    )
}

/// A subscription-mode Checkout Session that completed for `org`.
fn completed_checkout(id: &str, customer: &str, subscription: &str, org: OrganizationId) -> Value {
    let mut session = fixture("checkout_session");
    session["id"] = json!(id);
    session["mode"] = json!("subscription");
    session["status"] = json!("complete");
    session["customer"] = json!(customer);
    session["subscription"] = json!(subscription);
    session["client_reference_id"] = json!(org.0.to_string());
    session["metadata"] = json!({"organization_id": org.0.to_string()});
    session
}

fn on(plan: &str, status: &str, subscription: &str) -> (String, String, String) {
    (plan.into(), status.into(), subscription.into())
}

fn link_customer(app: &TestApp, org: OrganizationId, customer: &str) {
    BillingAccount::claim_customer(&mut app.pool().get().unwrap(), org, customer).unwrap();
}

fn audit_count(app: &TestApp, action: &str) -> i64 {
    audit_log::table
        .filter(audit_log::action.eq(action))
        .count()
        .get_result(&mut app.pool().get().unwrap())
        .unwrap()
}

/// Waits until the audit log holds `count` entries of `action` (written by a job).
async fn audited(app: &TestApp, action: &str, count: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while audit_count(app, action) < count {
        assert!(
            Instant::now() < deadline,
            "{action} was not recorded {count} time(s)"
        );
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
}

fn event_count(app: &TestApp) -> i64 {
    stripe_events::table
        .count()
        .get_result(&mut app.pool().get().unwrap())
        .unwrap()
}

/// The customer's subscription to Pro becomes active and its first invoice is
/// paid, as Stripe would report after a completed Checkout.
pub(crate) async fn subscribe_with_invoice(app: &TestApp, customer: &str) {
    assert_eq!(
        apply(
            app,
            "evt_sub_paid_1",
            "customer.subscription.created",
            now(),
            subscription("sub_paid", customer, PRICE_PRO, "active")
        )
        .await,
        "processed"
    );
    let mut invoice = fixture("invoice");
    invoice["id"] = json!("in_paid_1");
    invoice["customer"] = json!(customer);
    invoice["number"] = json!("HB-0001");
    invoice["status"] = json!("paid");
    invoice["currency"] = json!("usd");
    invoice["amount_due"] = json!(4900);
    invoice["amount_paid"] = json!(4900);
    invoice["hosted_invoice_url"] = json!("https://invoice.stripe.test/i/in_paid_1");
    assert_eq!(
        apply(app, "evt_sub_paid_2", "invoice.paid", now(), invoice).await,
        "processed"
    );
}

/// Delivers a signed event and waits for its job; returns the event's outcome.
async fn apply(app: &TestApp, id: &str, kind: &str, created: i64, object: Value) -> String {
    let body = event(id, kind, created, object);
    assert_eq!(deliver(app, &body).await.status(), 200);
    processed(app, id).await
}

async fn webhooks_refuse_bad_signatures_and_bodies_and_store_nothing(backend: Backend) {
    let stripe = FakeStripe::spawn().await;
    let Some(app) = billing_app(backend, &stripe, &[]).await else {
        return;
    };
    let body = event("evt_sig_1", "invoice.paid", now(), fixture("invoice"));
    let t = now();
    let refused = |res: reqwest::Response| async move {
        let status = res.status();
        let json: Value = res.json().await.unwrap();
        (
            status,
            json["code"].as_str().unwrap_or_default().to_string(),
            json,
        )
    };

    // Missing, malformed, wrong secret, stale, tampered.
    for header in [
        None,
        Some("garbage".to_string()),
        Some(format!("t={t}")),
        Some(format!("t={t},v1=not-hex")),
        Some(signature("whsec_someone_else", t, &body)),
        Some(signature(SECRET, t - 330, &body)),
        Some(signature(SECRET, t + 330, &body)),
        Some(signature(
            SECRET,
            t,
            &body.replace("invoice.paid", "invoice.voided"),
        )),
    ] {
        let (status, code, json) =
            refused(post_event(&app.address, &body, header.clone()).await).await;
        assert_eq!(status, 400, "{header:?}: {json}");
        assert_eq!(code, "BAD_REQUEST");
        assert!(json["correlationId"].is_string());
    }
    // A truncated body no longer matches the signature of the whole one.
    let header = signature(SECRET, t, &body);
    let (status, _, _) =
        refused(post_event(&app.address, &body[..body.len() / 2], Some(header)).await).await;
    assert_eq!(status, 400);
    // Signed but not an event: refused for good (Stripe should not retry).
    for junk in [
        "not json",
        "{\"hello\": 1}",
        "{\"id\":\"nope\",\"type\":\"x\",\"created\":1}",
        // JSON can carry a NUL; no id has one, and PostgreSQL cannot store it.
        "{\"id\":\"evt_\\u0000x\",\"type\":\"invoice.paid\",\"created\":1}",
    ] {
        let (status, _, json) =
            refused(post_event(&app.address, junk, Some(signature(SECRET, t, junk))).await).await;
        assert_eq!(status, 400, "{junk}: {json}");
    }
    // Larger than any event: 413 before anything is read into the database.
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(600 * 1024));
    let res = post_event(&app.address, &huge, Some(signature(SECRET, t, &huge))).await;
    assert_eq!(res.status(), 413);
    assert_eq!(event_count(&app), 0, "nothing refused was stored");

    // The current secret, the previous one (a rotation), and a header carrying
    // several signatures are all accepted.
    let res = deliver(&app, &body).await;
    assert_eq!(res.status(), 200);
    let ack: Value = res.json().await.unwrap();
    assert_eq!(
        ack,
        json!({"received": true, "id": "evt_sig_1", "duplicate": false})
    );
    let second = event("evt_sig_2", "invoice.paid", now(), fixture("invoice"));
    let res = post_event(
        &app.address,
        &second,
        Some(signature(OLD_SECRET, now(), &second)),
    )
    .await;
    assert_eq!(res.status(), 200);
    let third = event("evt_sig_3", "invoice.paid", now(), fixture("invoice"));
    let t = now();
    let both = format!(
        "{},v1={}",
        signature("whsec_unknown_new", t, &third),
        signature(SECRET, t, &third).split("v1=").nth(1).unwrap()
    );
    assert_eq!(
        post_event(&app.address, &third, Some(both)).await.status(),
        200
    );
    assert_eq!(event_count(&app), 3);
    // The fixture's customer is nobody's: stored, acknowledged, kept as unmatched.
    assert_eq!(processed(&app, "evt_sig_1").await, "unmatched");
    // A NUL in the type or API version is left out of what is stored, not
    // a 500 for Stripe to retry for days.
    let mut odd: Value = serde_json::from_str(&event(
        "evt_sig_4",
        "invoice.pa\u{0}id",
        now(),
        fixture("invoice"),
    ))
    .unwrap();
    odd["api_version"] = json!("2025-\u{0}01");
    let odd = odd.to_string();
    let res = deliver(&app, &odd).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    assert_eq!(event_count(&app), 4);
}

async fn a_replayed_event_is_applied_once_and_order_does_not_matter(backend: Backend) {
    let stripe = FakeStripe::spawn().await;
    let Some(app) = billing_app(backend, &stripe, &[]).await else {
        return;
    };
    let org = harbor_with_customer(&app, "cus_harbor").await;

    let t0 = now() - 100;
    let active = event(
        "evt_order_1",
        "customer.subscription.updated",
        t0,
        subscription("sub_harbor", "cus_harbor", PRICE_PRO, "active"),
    );
    assert_eq!(deliver(&app, &active).await.status(), 200);
    assert_eq!(processed(&app, "evt_order_1").await, "processed");
    let a = account(&app, org);
    assert_eq!((a.plan.as_str(), a.status.as_str()), ("pro", "active"));
    assert_eq!(a.stripe_subscription_id.as_deref(), Some("sub_harbor"));
    assert!(a.current_period_end.is_some());

    // Replayed three times: acknowledged as duplicates, applied once.
    for _ in 0..3 {
        let res = deliver(&app, &active).await;
        assert_eq!(res.status(), 200);
        let ack: Value = res.json().await.unwrap();
        assert_eq!(ack["duplicate"], true);
    }
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(audit_count(&app, "billing.subscription_changed"), 1);
    let counted = crate::helpers::metrics_json(&app.address).await["webhooks"].clone();
    assert_eq!(
        (
            &counted["stored"],
            &counted["duplicate"],
            &counted["processed"]
        ),
        (&Value::from(1), &Value::from(3), &Value::from(1)),
        "{counted}"
    );
    let job_count: i64 = jobs::table
        .filter(jobs::kind.eq("billing.stripe_event"))
        .count()
        .get_result(&mut app.pool().get().unwrap())
        .unwrap();
    assert_eq!(job_count, 1);

    // Deleted at t0+60, then an update made at t0+30 arrives late.
    assert_eq!(
        apply(
            &app,
            "evt_order_3",
            "customer.subscription.deleted",
            t0 + 60,
            subscription("sub_harbor", "cus_harbor", PRICE_PRO, "canceled")
        )
        .await,
        "processed"
    );
    assert_eq!(
        apply(
            &app,
            "evt_order_2",
            "customer.subscription.updated",
            t0 + 30,
            subscription("sub_harbor", "cus_harbor", PRICE_BUSINESS, "active")
        )
        .await,
        "ignored"
    );
    let a = account(&app, org);
    assert_eq!(a.status, "canceled", "the late update does not revive it");

    // A new subscription after the old one ended takes over, once Stripe
    // confirms it is live.
    stripe.set_subscription(subscription(
        "sub_harbor",
        "cus_harbor",
        PRICE_PRO,
        "canceled",
    ));
    stripe.set_subscription(subscription(
        "sub_harbor_2",
        "cus_harbor",
        PRICE_BUSINESS,
        "active",
    ));
    assert_eq!(
        apply(
            &app,
            "evt_order_5",
            "customer.subscription.created",
            t0 + 90,
            subscription("sub_harbor_2", "cus_harbor", PRICE_BUSINESS, "active")
        )
        .await,
        "processed"
    );
    assert_eq!(plan_of(&app, org), on("business", "active", "sub_harbor_2"));
    let fetched = |id: &str| {
        stripe
            .requests_to("GET", &format!("/v1/subscriptions/{id}"))
            .len()
    };
    assert_eq!(fetched("sub_harbor_2"), 1);

    // A late "active" of the ended subscription: Stripe says it is over.
    assert_eq!(
        apply(
            &app,
            "evt_order_6",
            "customer.subscription.updated",
            now(),
            subscription("sub_harbor", "cus_harbor", PRICE_PRO, "active")
        )
        .await,
        "ignored"
    );
    assert_eq!(fetched("sub_harbor"), 1);
    let a = account(&app, org);
    assert_eq!(a.stripe_subscription_id.as_deref(), Some("sub_harbor_2"));
    assert_eq!(a.plan, "business");

    // Same second as the state applied, another status: Stripe decides (active).
    let same_second = a.stripe_state_at;
    assert_eq!(
        apply(
            &app,
            "evt_order_7",
            "customer.subscription.updated",
            same_second,
            subscription("sub_harbor_2", "cus_harbor", PRICE_BUSINESS, "past_due")
        )
        .await,
        "processed"
    );
    assert_eq!(fetched("sub_harbor_2"), 2, "Stripe was asked");
    assert_eq!(account(&app, org).status, "active");
}

/// Checkout finished in two tabs: two live subscriptions. The newer one is
/// the plan once it is paid for; the older is canceled in Stripe, once,
/// whatever order the events come in.
async fn a_second_live_subscription_cancels_the_one_it_replaces(backend: Backend) {
    let stripe = FakeStripe::spawn().await;
    let Some(app) = billing_app(backend, &stripe, &[]).await else {
        return;
    };
    let org = harbor_with_customer(&app, "cus_harbor").await;
    let t0 = now() - 60;
    let live = |id: &str, price: &str, status: &str, created: i64| {
        let mut sub = subscription(id, "cus_harbor", price, status);
        sub["created"] = json!(created);
        sub
    };
    let first = live("sub_tab_1", PRICE_PRO, "active", t0);
    let second = live("sub_tab_2", PRICE_BUSINESS, "active", t0 + 5);
    stripe.set_subscription(first.clone());
    stripe.set_subscription(second.clone());
    let deletes = |id: &str| {
        stripe
            .requests_to("DELETE", &format!("/v1/subscriptions/{id}"))
            .len()
    };
    let plan = || plan_of(&app, org);

    // The newer one's event comes first, then the older one's: the older is
    // not the plan, and is canceled.
    assert_eq!(
        apply(
            &app,
            "evt_tab_1",
            "customer.subscription.created",
            t0 + 5,
            second.clone()
        )
        .await,
        "processed"
    );
    assert_eq!(
        apply(
            &app,
            "evt_tab_2",
            "customer.subscription.created",
            t0,
            first.clone()
        )
        .await,
        "ignored"
    );
    assert_eq!(plan(), on("business", "active", "sub_tab_2"));
    audited(&app, "billing.subscription_canceled", 1).await;
    let canceled = stripe.requests_to("DELETE", "/v1/subscriptions/sub_tab_1");
    assert_eq!(canceled.len(), 1, "{canceled:?}");
    assert_eq!(canceled[0].param("prorate"), Some("true"));
    assert_eq!(deletes("sub_tab_2"), 0, "the newer one is never canceled");

    // Later news of either changes nothing more: the older one's end, an
    // update of the newer one, and an "active" of the older one sent before
    // it was canceled.
    let mut ended = first.clone();
    ended["status"] = json!("canceled");
    assert_eq!(
        apply(
            &app,
            "evt_tab_3",
            "customer.subscription.deleted",
            now(),
            ended
        )
        .await,
        "ignored"
    );
    assert_eq!(
        apply(
            &app,
            "evt_tab_4",
            "customer.subscription.updated",
            now(),
            second.clone()
        )
        .await,
        "processed"
    );
    assert_eq!(
        apply(
            &app,
            "evt_tab_5",
            "customer.subscription.updated",
            now(),
            first
        )
        .await,
        "ignored"
    );
    assert_eq!(plan(), on("business", "active", "sub_tab_2"));
    assert_eq!(deletes("sub_tab_1"), 1);

    // A third checkout not paid for yet does not push out the paid plan;
    // once paid for, it replaces it.
    let mut third = live("sub_tab_3", PRICE_PRO, "incomplete", t0 + 30);
    stripe.set_subscription(third.clone());
    assert_eq!(
        apply(
            &app,
            "evt_tab_6",
            "customer.subscription.created",
            now(),
            third.clone()
        )
        .await,
        "ignored"
    );
    assert_eq!(plan(), on("business", "active", "sub_tab_2"));
    third["status"] = json!("active");
    stripe.set_subscription(third.clone());
    assert_eq!(
        apply(
            &app,
            "evt_tab_7",
            "customer.subscription.updated",
            now(),
            third
        )
        .await,
        "processed"
    );
    assert_eq!(plan(), on("pro", "active", "sub_tab_3"));
    audited(&app, "billing.subscription_canceled", 2).await;
    assert_eq!(deletes("sub_tab_2"), 1);
    assert_eq!(deletes("sub_tab_3"), 0);
    assert_eq!(audit_count(&app, "billing.subscription_canceled"), 2);
}

async fn a_stored_subscription_stripe_no_longer_has_gives_way_to_a_new_one(backend: Backend) {
    let stripe = FakeStripe::spawn().await;
    let Some(app) = billing_app(backend, &stripe, &[]).await else {
        return;
    };
    let org = harbor_with_customer(&app, "cus_harbor").await;
    let old = subscription("sub_gone_1", "cus_harbor", PRICE_PRO, "active");
    stripe.set_subscription(old.clone());
    assert_eq!(
        apply(
            &app,
            "evt_gone_1",
            "customer.subscription.created",
            now() - 30,
            old
        )
        .await,
        "processed"
    );
    assert_eq!(account(&app, org).plan, "pro");

    // Stripe lost the stored one (deleted with test data, say) without an
    // event: a new live subscription still becomes the plan, instead of
    // failing for ever on the 404 when the stored one is looked up.
    stripe.forget_subscription("sub_gone_1");
    let new = subscription("sub_gone_2", "cus_harbor", PRICE_BUSINESS, "active");
    stripe.set_subscription(new.clone());
    assert_eq!(
        apply(
            &app,
            "evt_gone_2",
            "customer.subscription.created",
            now(),
            new
        )
        .await,
        "processed"
    );
    assert_eq!(plan_of(&app, org), on("business", "active", "sub_gone_2"));
    assert_eq!(
        stripe
            .requests_to("GET", "/v1/subscriptions/sub_gone_1")
            .len(),
        1,
        "the stored one is looked up once"
    );
    assert!(
        stripe
            .requests_to("DELETE", "/v1/subscriptions/sub_gone_2")
            .is_empty()
    );
}

async fn every_handled_event_type_is_applied(backend: Backend) {
    let stripe = FakeStripe::spawn().await;
    let Some(app) = billing_app(backend, &stripe, &[]).await else {
        return;
    };
    // The front page sells the plans with the limits this server enforces.
    let landing = app.get("/").await.text().await.unwrap();
    for line in [
        "25 agents",
        "10,000 messages a month",
        "Start with Business",
    ] {
        assert!(landing.contains(line), "{line}: {landing}");
    }
    let (owner, _) = organization_with_key(&app, ORG, OWNER).await;
    let org = org_id(&app, "harbor-bikes");

    // A session only a payer's link names the organization in (a Payment
    // Link's client_reference_id, which whoever opens it sets), for a customer
    // nobody here knows: not attached to that organization.
    stripe.set_subscription(subscription(
        "sub_link",
        "cus_stranger",
        PRICE_PRO,
        "active",
    ));
    let mut foreign = completed_checkout("cs_test_link", "cus_stranger", "sub_link", org);
    foreign["metadata"] = json!({});
    assert_eq!(
        apply(
            &app,
            "evt_all_0",
            "checkout.session.completed",
            now(),
            foreign
        )
        .await,
        "unmatched"
    );
    assert_eq!(account(&app, org).stripe_customer_id, None);
    assert_eq!(account(&app, org).plan, "free");

    // checkout.session.completed: the session names the organization and the
    // subscription; the subscription's state is fetched from Stripe.
    stripe.set_subscription(subscription("sub_new", "cus_new", PRICE_PRO, "trialing"));
    let session = completed_checkout("cs_test_done", "cus_new", "sub_new", org);
    assert_eq!(
        apply(
            &app,
            "evt_all_1",
            "checkout.session.completed",
            now(),
            session
        )
        .await,
        "processed"
    );
    let a = account(&app, org);
    assert_eq!(a.stripe_customer_id.as_deref(), Some("cus_new"));
    assert_eq!((a.plan.as_str(), a.status.as_str()), ("pro", "trialing"));
    assert_eq!(
        stripe.requests_to("GET", "/v1/subscriptions/sub_new").len(),
        1
    );

    // invoice.paid: listed on the billing page with its hosted link.
    let mut invoice = fixture("invoice");
    invoice["id"] = json!("in_paid_1");
    invoice["customer"] = json!("cus_new");
    invoice["number"] = json!("HB-0001");
    invoice["status"] = json!("paid");
    invoice["currency"] = json!("usd");
    invoice["amount_due"] = json!(4900);
    invoice["amount_paid"] = json!(4900);
    invoice["hosted_invoice_url"] = json!("https://invoice.stripe.test/i/in_paid_1");
    assert_eq!(
        apply(&app, "evt_all_2", "invoice.paid", now(), invoice.clone()).await,
        "processed"
    );
    let (status, page) = owner.get("/app/billing").await;
    assert_eq!(status, 200);
    assert!(page.contains("HB-0001"), "{page}");
    assert!(page.contains("USD 49.00"));
    assert!(page.contains("https://invoice.stripe.test/i/in_paid_1"));

    // invoice.payment_failed: recorded, and every owner is emailed once.
    let mut failed = invoice.clone();
    failed["id"] = json!("in_failed_2");
    failed["number"] = json!("HB-0002");
    failed["status"] = json!("open");
    failed["amount_paid"] = json!(0);
    failed["hosted_invoice_url"] = json!("https://invoice.stripe.test/i/in_failed_2");
    assert_eq!(
        apply(&app, "evt_all_3", "invoice.payment_failed", now(), failed).await,
        "processed"
    );
    let mail =
        crate::accounts::wait_for_mail(&app.data_dir().join("mail"), OWNER, "Payment failed").await;
    assert!(mail.contains("USD 49.00"), "{mail}");
    assert!(mail.contains("https://invoice.stripe.test/i/in_failed_2"));
    let status: String = invoices::table
        .filter(invoices::stripe_invoice_id.eq("in_failed_2"))
        .select(invoices::status)
        .first(&mut app.pool().get().unwrap())
        .unwrap();
    assert_eq!(status, "open");
    // A late payment_failed for an invoice already paid does not unpay it.
    let mut stale = invoice.clone();
    stale["status"] = json!("open");
    apply(&app, "evt_all_4", "invoice.payment_failed", now(), stale).await;
    let status: String = invoices::table
        .filter(invoices::stripe_invoice_id.eq("in_paid_1"))
        .select(invoices::status)
        .first(&mut app.pool().get().unwrap())
        .unwrap();
    assert_eq!(status, "paid");
    // ... nor tells the owners it failed: one failure noted, one email queued.
    assert_eq!(audit_count(&app, "billing.payment_failed"), 1);
    let queued = |event: &str| -> i64 {
        jobs::table
            .filter(jobs::kind.eq("email.send"))
            .filter(jobs::idempotency_key.like(format!("stripe:{event}:%")))
            .count()
            .get_result(&mut app.pool().get().unwrap())
            .unwrap()
    };
    assert_eq!(queued("evt_all_3"), 1);
    assert_eq!(
        queued("evt_all_4"),
        0,
        "no email for a failure of a paid invoice"
    );

    // trial_will_end: the owners hear about it.
    let mut trial = subscription("sub_new", "cus_new", PRICE_PRO, "trialing");
    trial["trial_end"] = json!(now() + 3 * 86_400);
    assert_eq!(
        apply(
            &app,
            "evt_all_5",
            "customer.subscription.trial_will_end",
            now(),
            trial.clone()
        )
        .await,
        "processed"
    );
    crate::accounts::wait_for_mail(&app.data_dir().join("mail"), OWNER, "trial ends").await;
    assert_eq!(queued("evt_all_5"), 1);
    // Paid early: the same news told again afterwards is none, and no email.
    assert_eq!(
        apply(
            &app,
            "evt_all_5a",
            "customer.subscription.updated",
            now() + 60,
            subscription("sub_new", "cus_new", PRICE_PRO, "active")
        )
        .await,
        "processed"
    );
    assert_eq!(
        apply(
            &app,
            "evt_all_5b",
            "customer.subscription.trial_will_end",
            now() + 30,
            trial
        )
        .await,
        "ignored"
    );
    assert_eq!(queued("evt_all_5b"), 0);

    // Unknown types are stored and acknowledged; unknown customers are kept.
    assert_eq!(
        apply(&app, "evt_all_6", "plan.created", now(), fixture("price")).await,
        "ignored"
    );
    // So are "thin" (API v2) events, whose time is text and which carry no data.
    let thin = json!({
        "id": "evt_all_thin",
        "object": "v2.core.event",
        "type": "v1.billing.meter.no_meter_found",
        "created": "2026-12-07T06:20:52.246Z",
        "livemode": false,
        "related_object": {"id": "mtr_1", "type": "billing.meter", "url": "/v1/billing/meters/mtr_1"}
    })
    .to_string();
    assert_eq!(deliver(&app, &thin).await.status(), 200);
    assert_eq!(processed(&app, "evt_all_thin").await, "ignored");
    assert_eq!(
        apply(
            &app,
            "evt_all_7",
            "customer.subscription.updated",
            now(),
            subscription("sub_ghost", "cus_ghost", PRICE_PRO, "active")
        )
        .await,
        "unmatched"
    );
    // An object that is not a subscription: acknowledged, then kept as failed
    // with the reason, and its job is dead for an operator to see.
    assert_eq!(
        apply(
            &app,
            "evt_all_8",
            "customer.subscription.updated",
            now(),
            json!({"id": "sub_broken"})
        )
        .await,
        "failed"
    );

    // Every billing change is in the audit log.
    for action in [
        "billing.subscription_changed",
        "billing.invoice_paid",
        "billing.payment_failed",
        "billing.trial_will_end",
        "billing.customer_linked",
    ] {
        assert!(audit_count(&app, action) >= 1, "{action} is audited");
    }
    let (_, audit) = owner.get("/app/audit").await;
    assert!(audit.contains(r#"<span title="billing.payment_failed">Payment failed</span>"#));
}

async fn the_same_event_delivered_to_two_instances_at_once_is_applied_once(backend: Backend) {
    let stripe = FakeStripe::spawn().await;
    let Some(app) = billing_app(backend, &stripe, &[]).await else {
        return;
    };
    harbor_with_customer(&app, "cus_twice").await;
    let secrets = format!("{SECRET},{OLD_SECRET}");
    let second = app
        .another_instance(&[
            ("STRIPE_SECRET_KEY", "sk_test_frontdesk"),
            ("STRIPE_WEBHOOK_SECRET", &secrets),
            ("STRIPE_API_BASE", &stripe.base_url),
            ("STRIPE_PRICE_PRO", PRICE_PRO),
        ])
        .await;
    for n in 0..10 {
        let id = format!("evt_twice_{n}");
        let body = event(
            &id,
            "customer.subscription.updated",
            now() + n,
            subscription("sub_twice", "cus_twice", PRICE_PRO, "active"),
        );
        let (a, b) = tokio::join!(
            post_event(&app.address, &body, Some(signature(SECRET, now(), &body))),
            post_event(&second, &body, Some(signature(SECRET, now(), &body))),
        );
        assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
        let a: Value = a.json().await.unwrap();
        let b: Value = b.json().await.unwrap();
        assert_ne!(
            a["duplicate"], b["duplicate"],
            "exactly one instance stored it"
        );
        assert_eq!(processed(&app, &id).await, "processed");
    }
    assert_eq!(event_count(&app), 10);
    assert_eq!(audit_count(&app, "billing.subscription_changed"), 10);
    let job_count: i64 = jobs::table
        .filter(jobs::kind.eq("billing.stripe_event"))
        .count()
        .get_result(&mut app.pool().get().unwrap())
        .unwrap();
    assert_eq!(job_count, 10);
}

async fn an_event_whose_job_gave_up_is_queued_again_by_maintenance(backend: Backend) {
    use frontdesk::db::models::{NewStripeEvent, StripeEvent};
    use frontdesk::services::jobs::{CleanupFinishedJobs, EnqueueOptions, enqueue};
    let stripe = FakeStripe::spawn().await;
    let Some(app) = billing_app(backend, &stripe, &[]).await else {
        return;
    };
    let org = harbor_with_customer(&app, "cus_stuck").await;
    let mut conn = app.pool().get().unwrap();

    // Stored and acknowledged an hour ago; its job used every attempt and is
    // gone (retention), so nothing would ever apply it.
    let body = event(
        "evt_stuck",
        "customer.subscription.updated",
        now() - 3600,
        subscription("sub_stuck", "cus_stuck", PRICE_PRO, "active"),
    );
    assert!(
        StripeEvent::insert(
            &mut conn,
            &NewStripeEvent {
                id: "evt_stuck",
                event_type: "customer.subscription.updated",
                api_version: None,
                livemode: false,
                stripe_created: now() - 3600,
                payload: &body,
            },
        )
        .unwrap()
    );
    // And one that just arrived, whose own job is still to come: left alone.
    assert!(
        StripeEvent::insert(
            &mut conn,
            &NewStripeEvent {
                id: "evt_fresh",
                event_type: "customer.subscription.updated",
                api_version: None,
                livemode: false,
                stripe_created: now(),
                payload: &body,
            },
        )
        .unwrap()
    );
    let hour_ago = frontdesk::domain::now() - chrono::TimeDelta::hours(1);
    diesel::update(stripe_events::table.find("evt_stuck"))
        .set(stripe_events::received_at.eq(hour_ago))
        .execute(&mut conn)
        .unwrap();

    enqueue(
        &mut conn,
        &CleanupFinishedJobs {},
        EnqueueOptions::default(),
    )
    .unwrap();
    assert_eq!(processed(&app, "evt_stuck").await, "processed");
    assert_eq!(account(&app, org).plan, "pro");
    let fresh: String = stripe_events::table
        .find("evt_fresh")
        .select(stripe_events::state)
        .first(&mut conn)
        .unwrap();
    assert_eq!(fresh, "received", "an event this recent is not touched");
    let redriven: i64 = jobs::table
        .filter(jobs::kind.eq("billing.stripe_event"))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(redriven, 1);
}

async fn a_failed_event_is_applied_when_an_operator_retries_its_job(backend: Backend) {
    use frontdesk::db::models::job::Job as JobRow;
    use frontdesk::domain::JobId;
    let stripe = FakeStripe::spawn().await;
    let Some(app) = billing_app(backend, &stripe, &[]).await else {
        return;
    };
    let org = harbor_with_customer(&app, "cus_later").await;
    // The checkout names a subscription Stripe does not know (yet): a 404 no
    // retry mends, so the event is kept as failed and its job is dead.
    let session = completed_checkout("cs_test_later", "cus_later", "sub_later", org);
    assert_eq!(
        apply(
            &app,
            "evt_later",
            "checkout.session.completed",
            now(),
            session
        )
        .await,
        "failed"
    );
    let mut conn = app.pool().get().unwrap();
    let dead: i64 = jobs::table
        .filter(jobs::kind.eq("billing.stripe_event"))
        .filter(jobs::state.eq("dead"))
        .select(jobs::id)
        .first(&mut conn)
        .unwrap();

    // Mended (Stripe answers now), the operator retries the job: the event
    // is applied as if it had just come in, instead of being skipped as done.
    stripe.set_subscription(subscription("sub_later", "cus_later", PRICE_PRO, "active"));
    assert!(JobRow::revive(&mut conn, JobId(dead)).unwrap());
    crate::helpers::eventually("the retried event applied", Duration::from_secs(30), || {
        stripe_events::table
            .find("evt_later")
            .select(stripe_events::state)
            .first::<String>(&mut conn)
            .unwrap()
            == "processed"
    })
    .await;
    let a = account(&app, org);
    assert_eq!(
        (a.plan.as_str(), a.stripe_subscription_id.as_deref()),
        ("pro", Some("sub_later"))
    );
}

async fn checkout_and_portal_send_stripe_the_exact_parameters(backend: Backend) {
    let stripe = FakeStripe::spawn().await;
    let Some(app) = billing_app(backend, &stripe, &[]).await else {
        return;
    };
    let (owner, _) = organization_with_key(&app, ORG, OWNER).await;
    let org = org_id(&app, "harbor-bikes");

    let (status, page) = owner.get("/app/billing").await;
    assert_eq!(status, 200);
    assert!(page.contains("Upgrade to Pro") && page.contains("Upgrade to Business"));
    assert!(!page.contains("Manage billing"), "no customer yet");
    let request_id = page
        .split("name=\"request_id\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    let csrf = owner.csrf("/app/billing").await;
    let checkout = |plan: &'static str| {
        let (csrf, request_id) = (csrf.clone(), request_id.clone());
        let owner = &owner;
        async move {
            owner
                .post(
                    "/app/billing/checkout",
                    &[
                        ("csrf_token", &csrf),
                        ("plan", plan),
                        ("request_id", &request_id),
                    ],
                )
                .await
        }
    };
    let res = checkout("pro").await;
    assert_eq!(res.status(), 303);
    let to = res.headers()["location"].to_str().unwrap().to_string();
    assert!(
        to.starts_with("https://checkout.stripe.com/c/pay/cs_test_"),
        "{to}"
    );

    let customers = stripe.requests_to("POST", "/v1/customers");
    assert_eq!(customers.len(), 1);
    let c = &customers[0];
    assert_eq!(c.param("email"), Some(OWNER));
    assert_eq!(c.param("name"), Some(ORG));
    assert_eq!(
        c.param("metadata[organization_id]"),
        Some(org.0.to_string().as_str())
    );
    // Keyed by the organization and its creation time: another deployment on
    // the same Stripe account, with its own organization of this id, gets its
    // own customer.
    let created_at = frontdesk::db::models::organization::Organization::find(
        &mut app.pool().get().unwrap(),
        org,
    )
    .unwrap()
    .unwrap()
    .created_at;
    assert_eq!(
        c.idempotency_key.as_deref(),
        Some(
            format!(
                "frontdesk-customer-{}-{}",
                org.0,
                created_at.and_utc().timestamp_micros()
            )
            .as_str()
        )
    );
    assert_eq!(c.authorization.as_deref(), Some("Bearer sk_test_frontdesk"));

    let sessions = stripe.requests_to("POST", "/v1/checkout/sessions");
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    let base = BASE_URL;
    let org_s = org.0.to_string();
    for (key, value) in [
        ("mode", "subscription"),
        ("line_items[0][price]", PRICE_PRO),
        ("line_items[0][quantity]", "1"),
        ("customer", "cus_fake1"),
        ("client_reference_id", org_s.as_str()),
        ("metadata[organization_id]", org_s.as_str()),
        ("metadata[plan]", "pro"),
        (
            "subscription_data[metadata][organization_id]",
            org_s.as_str(),
        ),
        ("subscription_data[metadata][plan]", "pro"),
        (
            "success_url",
            &format!("{base}/app/billing?checkout=success"),
        ),
        (
            "cancel_url",
            &format!("{base}/app/billing?checkout=canceled"),
        ),
    ] {
        assert_eq!(s.param(key), Some(value), "{key} in {:?}", s.form);
    }
    let key = s.idempotency_key.clone().expect("an idempotency key");
    assert!(key.starts_with("frontdesk-checkout-"));

    // A double submit of the same form reuses the key: the same session.
    let again = checkout("pro").await;
    assert_eq!(again.headers()["location"].to_str().unwrap(), to);
    let sessions = stripe.requests_to("POST", "/v1/checkout/sessions");
    assert_eq!(sessions[1].idempotency_key.as_deref(), Some(key.as_str()));
    assert_eq!(
        stripe.requests_to("POST", "/v1/customers").len(),
        1,
        "the customer is reused"
    );
    // Free cannot be bought; an unknown plan is refused with a message.
    for plan in ["free", "enterprise"] {
        let res = checkout(plan).await;
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], "/app/billing");
        let (_, page) = owner.get("/app/billing").await;
        assert!(page.contains("cannot be bought"), "{page}");
    }

    // Coming back from Checkout.
    let (_, page) = owner.get("/app/billing?checkout=success").await;
    assert!(page.contains("as soon as Stripe confirms"));

    // The Customer Portal for the organization's customer.
    let csrf = owner.csrf("/app/billing").await;
    let res = owner
        .post(
            "/app/billing/portal",
            &[("csrf_token", &csrf), ("request_id", "abcdef0123456789")],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert!(
        res.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("https://billing.stripe.com/p/session/")
    );
    let portal = stripe.requests_to("POST", "/v1/billing_portal/sessions");
    assert_eq!(portal.len(), 1);
    assert_eq!(portal[0].param("customer"), Some("cus_fake1"));
    assert_eq!(
        portal[0].param("return_url"),
        Some(format!("{base}/app/billing").as_str())
    );
    assert!(portal[0].idempotency_key.is_some());
    assert!(audit_count(&app, "billing.checkout_started") >= 1);
    assert_eq!(audit_count(&app, "billing.portal_opened"), 1);

    // With a live subscription, Checkout is not offered again.
    apply(
        &app,
        "evt_co_1",
        "customer.subscription.created",
        now(),
        subscription("sub_co", "cus_fake1", PRICE_PRO, "active"),
    )
    .await;
    let (_, page) = owner.get("/app/billing").await;
    assert!(page.contains("Pro plan") && page.contains("Manage billing"));
    assert!(!page.contains("Upgrade to Business"));
    let res = checkout("business").await;
    assert_eq!(res.headers()["location"], "/app/billing");
    assert_eq!(stripe.requests_to("POST", "/v1/checkout/sessions").len(), 2);

    // Viewers and agents cannot reach billing; forms need the CSRF token.
    let res = owner
        .post(
            "/app/billing/portal",
            &[("csrf_token", "wrong"), ("request_id", "x")],
        )
        .await;
    assert_eq!(res.status(), 403);
    let stranger = Browser::new(&app);
    assert_eq!(stranger.get("/app/billing").await.0, 303);
    let org = org_id(&app, "harbor-bikes").0;
    for (email, role) in [
        ("agent@harbor.test", frontdesk::domain::Role::Agent),
        ("viewer@harbor.test", frontdesk::domain::Role::Viewer),
    ] {
        let (_, member) = crate::accounts::signed_in_member(&app, org, email, role).await;
        assert_eq!(member.get("/app/billing").await.0, 403, "{email}");
        let res = member
            .submit("/app", "/app/billing/checkout", &[("plan", "pro")])
            .await;
        assert_eq!(res.status(), 403, "{email}");
    }
    assert_eq!(
        stripe.requests_to("POST", "/v1/checkout/sessions").len(),
        2,
        "nothing more was asked of Stripe"
    );
}

async fn plan_limits_are_enforced_and_lifted_by_an_upgrade(backend: Backend) {
    let stripe = FakeStripe::spawn().await;
    let Some(app) = billing_app(
        backend,
        &stripe,
        &[(
            "PLAN_FREE_LIMITS",
            "agents=1,seats=2,messages=3,storage_mb=1",
        )],
    )
    .await
    else {
        return;
    };
    let landing = app.get("/").await.text().await.unwrap();
    assert!(
        landing.contains("3 messages a month") && landing.contains("1.0 MB of knowledge"),
        "the front page shows the configured limits: {landing}"
    );
    let (owner, key) = organization_with_key(&app, ORG, OWNER).await;
    let api = Api { app: &app, key };
    let org = org_id(&app, "harbor-bikes");

    // Agents: one on Free; the second is refused with 402 in the API…
    api.agent(json!({"name": "Support"})).await;
    let (status, body) = api
        .json(Method::POST, "/api/v1/agents", json!({"name": "Sales"}))
        .await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["code"], "PLAN_LIMIT_REACHED");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Free plan includes 1 agent")
    );
    // …and with a banner linking to billing in the pages, nothing created.
    let res = owner
        .submit("/app/agents", "/app/agents", &[("name", "Sales")])
        .await;
    assert_eq!(res.status(), 303);
    let (_, page) = owner.get("/app/agents").await;
    assert!(
        page.contains("alert-limit") && page.contains("href=\"/app/billing\""),
        "{page}"
    );
    let (_, list) = api.get("/api/v1/agents").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    // Knowledge: over 1 MB in all is refused.
    let agent = list["data"][0]["id"].as_i64().unwrap();
    let big = "word ".repeat(220 * 1024).into_bytes();
    let (status, body) = api.upload(agent, "Big", "text/plain", big).await;
    assert_eq!(status, 402, "{body}");
    assert!(body["message"].as_str().unwrap().contains("of knowledge"));
    // In the page, pasted text comes back with the banner, not lost.
    let page = format!("/app/agents/{agent}");
    let pasted = "Opening hours: 9 to 5. ".repeat(50_000);
    let res = owner
        .submit(
            &page,
            &format!("{page}/documents"),
            &[("title", "Everything"), ("text", &pasted)],
        )
        .await;
    assert_eq!(res.status(), 402);
    let html = res.text().await.unwrap();
    assert!(html.contains("alert-limit"), "{html}");
    assert!(html.contains("value=\"Everything\""));
    assert!(html.contains(&pasted[..200]));

    // Seats: the owner plus one invitation fill two.
    let invite = |email: &'static str| {
        api.json(
            Method::POST,
            "/api/v1/invitations",
            json!({"email": email, "role": "agent"}),
        )
    };
    assert_eq!(invite("one@harbor.test").await.0, 201);
    let (status, body) = invite("two@harbor.test").await;
    assert_eq!(status, 402, "{body}");

    // Messages: three visitor messages a month, then a clear refusal.
    let chat = support_chat(&app).await;
    for n in 0..3 {
        let res = say(
            &app,
            "harbor-bikes",
            "support",
            &chat,
            &format!("Question {n}"),
        )
        .await;
        assert_eq!(res.status(), 200);
    }
    let res = say(&app, "harbor-bikes", "support", &chat, "One more").await;
    assert_eq!(res.status(), 402);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("message allowance")
    );
    // The owners hear about it once, and the dashboard says so with a way out.
    let mail = crate::accounts::wait_for_mail(
        &app.data_dir().join("mail"),
        OWNER,
        "used this month's Frontdesk messages",
    )
    .await;
    assert!(
        mail.contains("/app/billing") && mail.contains("3 visitor messages"),
        "{mail}"
    );
    assert_eq!(
        say(&app, "harbor-bikes", "support", &chat, "And now?")
            .await
            .status(),
        402
    );
    let queued: i64 = jobs::table
        .filter(jobs::kind.eq("email.send"))
        .filter(jobs::idempotency_key.like("allowance:%"))
        .count()
        .get_result(&mut app.pool().get().unwrap())
        .unwrap();
    assert_eq!(queued, 1, "one email per owner and month");
    let (_, dashboard) = owner.get("/app").await;
    assert!(
        dashboard.contains("alert-limit") && dashboard.contains("answered the 3 visitor messages"),
        "{dashboard}"
    );

    // The API reports the same, and documents it.
    let (status, summary) = api.get("/api/v1/billing").await;
    assert_eq!(status, 200);
    assert_eq!(summary["enabled"], true);
    assert_eq!(summary["plan"], "free");
    assert_eq!(summary["agents"], json!({"used": 1, "limit": 1}));
    assert_eq!(summary["seats"], json!({"used": 2, "limit": 2}));
    assert_eq!(summary["messagesThisMonth"], json!({"used": 3, "limit": 3}));
    let (_, doc) = api.get("/api/v1/openapi.json").await;
    assert!(doc["paths"]["/api/v1/billing"]["get"].is_object());
    assert!(doc["paths"]["/api/v1/agents"]["post"]["responses"]["402"].is_object());

    // The billing page draws usage against the limits.
    let (_, page) = owner.get("/app/billing").await;
    assert!(page.contains("<meter"), "{page}");
    assert!(page.contains("1 of 1") && page.contains("3 of 3"), "{page}");

    // An upgrade event lifts the limits.
    link_customer(&app, org, "cus_limits");
    let t0 = now();
    assert_eq!(
        apply(
            &app,
            "evt_limits_1",
            "customer.subscription.updated",
            t0,
            subscription("sub_limits", "cus_limits", PRICE_PRO, "active")
        )
        .await,
        "processed"
    );
    api.agent(json!({"name": "Sales"})).await;
    assert_eq!(invite("two@harbor.test").await.0, 201);
    let (_, summary) = api.get("/api/v1/billing").await;
    assert_eq!(
        (summary["plan"].as_str(), summary["status"].as_str()),
        (Some("pro"), Some("active"))
    );
    assert_eq!(summary["agents"], json!({"used": 2, "limit": 5}));
    let res = say(&app, "harbor-bikes", "support", &chat, "Now?").await;
    assert_eq!(res.status(), 200);
    // The fixture's period ended on 2025-12-24: not "renews" on a past day.
    let (_, page) = owner.get("/app/billing").await;
    assert!(
        page.contains("Renewal was due on December 24, 2025") && !page.contains("Renews on"),
        "{page}"
    );

    // past_due keeps the plan during the grace period.
    apply(
        &app,
        "evt_limits_2",
        "customer.subscription.updated",
        t0 + 10,
        subscription("sub_limits", "cus_limits", PRICE_PRO, "past_due"),
    )
    .await;
    api.agent(json!({"name": "Returns"})).await;
    let (_, page) = owner.get("/app/billing").await;
    assert!(page.contains("The last payment failed"), "{page}");

    // Canceled: back to Free. Data over the limit stays; creating is blocked.
    apply(
        &app,
        "evt_limits_3",
        "customer.subscription.deleted",
        t0 + 20,
        subscription("sub_limits", "cus_limits", PRICE_PRO, "canceled"),
    )
    .await;
    let (_, list) = api.get("/api/v1/agents").await;
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        3,
        "nothing is deleted"
    );
    let (status, _) = api
        .json(Method::POST, "/api/v1/agents", json!({"name": "Fourth"}))
        .await;
    assert_eq!(status, 402);
    let (_, page) = owner.get("/app/billing").await;
    assert!(page.contains("subscription has ended"), "{page}");

    // Invitations sent on Pro: on Free only as many people join as seats allow.
    let mut outcomes = Vec::new();
    for email in ["one@harbor.test", "two@harbor.test"] {
        let accept = crate::accounts::invitation_link(&app, email).await;
        let token = accept.split("token=").nth(1).unwrap().to_string();
        let joiner = Browser::new(&app);
        let res = joiner
            .submit(
                &accept,
                "/invitations/accept",
                &[
                    ("token", &token),
                    ("name", "Newcomer"),
                    ("password", "a long enough passphrase"),
                ],
            )
            .await;
        outcomes.push((res.status().as_u16(), res.text().await.unwrap()));
    }
    assert_eq!(
        outcomes[0].0, 303,
        "the owner and one more fill the 2 seats"
    );
    assert_eq!(outcomes[1].0, 402, "{}", outcomes[1].1);
    assert!(outcomes[1].1.contains("all are taken"), "{}", outcomes[1].1);
    let (_, summary) = api.get("/api/v1/billing").await;
    assert_eq!(summary["seats"]["limit"], 2);
}

async fn without_stripe_billing_is_off_and_unlimited(backend: Backend) {
    let Some(app) = spawn_app(backend)
        .env("PLAN_FREE_LIMITS", "agents=1")
        .start()
        .await
    else {
        return;
    };
    let (owner, key) = organization_with_key(&app, ORG, OWNER).await;
    let api = Api { app: &app, key };
    for name in ["One", "Two", "Three"] {
        api.agent(json!({ "name": name })).await;
    }
    let (_, summary) = api.get("/api/v1/billing").await;
    assert_eq!(summary["enabled"], false);
    assert_eq!(summary["agents"], json!({"used": 3, "limit": null}));
    let (status, page) = owner.get("/app/billing").await;
    assert_eq!(status, 200);
    assert!(page.contains("Billing is off on this server"));
    assert!(page.contains("STRIPE_SECRET_KEY"));
    assert!(page.contains("/webhooks/stripe"));
    // Webhooks cannot be verified: 503, so Stripe keeps retrying until it is set up.
    let body = event("evt_off_1", "invoice.paid", now(), fixture("invoice"));
    let res = post_event(&app.address, &body, Some(signature(SECRET, now(), &body))).await;
    assert_eq!(res.status(), 503);
    assert_eq!(event_count(&app), 0);
}

async fn a_state_stripe_gave_before_a_newer_event_does_not_overwrite_it(backend: Backend) {
    let stripe = FakeStripe::spawn().await;
    let Some(app) = billing_app(backend, &stripe, &[("JOB_RETRY_BASE_MS", "200")]).await else {
        return;
    };
    let org = harbor_with_customer(&app, "cus_harbor").await;
    let pro = subscription("sub_race", "cus_harbor", PRICE_PRO, "active");
    let t = now();
    assert_eq!(
        apply(
            &app,
            "evt_race_1",
            "customer.subscription.created",
            t,
            pro.clone()
        )
        .await,
        "processed"
    );
    // A late event makes the server ask Stripe, which answers slowly: Pro,
    // as it was when asked.
    stripe.set_subscription(pro.clone());
    stripe.delay_lookups(Duration::from_secs(3));
    let late = event(
        "evt_race_late",
        "customer.subscription.updated",
        t - 100,
        pro,
    );
    assert_eq!(deliver(&app, &late).await.status(), 200);
    eventually("Stripe is asked", Duration::from_secs(10), || {
        !stripe
            .requests_to("GET", "/v1/subscriptions/sub_race")
            .is_empty()
    })
    .await;
    // Meanwhile the customer upgrades: Stripe has Business, and its event is
    // applied while the slow answer is on its way.
    let business = subscription("sub_race", "cus_harbor", PRICE_BUSINESS, "active");
    stripe.set_subscription(business.clone());
    stripe.delay_lookups(Duration::ZERO);
    assert_eq!(
        apply(
            &app,
            "evt_race_2",
            "customer.subscription.updated",
            t + 5,
            business
        )
        .await,
        "processed"
    );
    assert_eq!(account(&app, org).plan, "business");
    // The slow answer arrives after the upgrade: it is not laid over it.
    let late_outcome = processed(&app, "evt_race_late").await;

    assert_eq!(late_outcome, "processed");
    assert_eq!(
        plan_of(&app, org),
        on("business", "active", "sub_race"),
        "Stripe was asked again rather than its older answer applied"
    );
    assert!(
        stripe
            .requests_to("GET", "/v1/subscriptions/sub_race")
            .len()
            >= 2
    );
}

async fn times_past_what_postgresql_holds_are_left_out_not_fatal(backend: Backend) {
    let stripe = FakeStripe::spawn().await;
    let Some(app) = billing_app(backend, &stripe, &[]).await else {
        return;
    };
    let org = harbor_with_customer(&app, "cus_harbor").await;
    // Years 7537 BC and 11476: chrono reads them, PostgreSQL's timestamps stop
    // at 4713 BC and a date that far out means nothing anyway.
    let mut pro = subscription("sub_far", "cus_harbor", PRICE_PRO, "trialing");
    pro["trial_end"] = json!(-300_000_000_000_i64);
    pro["items"]["data"][0]["current_period_end"] = json!(300_000_000_000_i64);
    assert_eq!(
        apply(
            &app,
            "evt_far_1",
            "customer.subscription.created",
            now(),
            pro
        )
        .await,
        "processed"
    );
    assert_eq!(plan_of(&app, org), on("pro", "trialing", "sub_far"));
    let a = account(&app, org);
    assert_eq!((a.trial_end, a.current_period_end), (None, None));
    assert!(a.current_period_start.is_some());
}

/// An event the server cannot store is not acknowledged: while the database
/// is out the webhook answers 503, so Stripe delivers it again, and the same
/// delivery once the database is back is stored and applied once.
#[actix_web::test]
async fn an_event_that_cannot_be_stored_answers_503_and_is_kept_when_stripe_retries() {
    let stripe = FakeStripe::spawn().await;
    let Some(app) = billing_app(Backend::Postgres, &stripe, &[]).await else {
        return;
    };
    let org = harbor_with_customer(&app, "cus_outage").await;
    let body = event(
        "evt_outage",
        "customer.subscription.updated",
        now(),
        subscription("sub_outage", "cus_outage", PRICE_PRO, "active"),
    );

    app.db.set_reachable(false);
    let res = deliver(&app, &body).await;
    assert_eq!(res.status(), 503, "a retry can help: Stripe should retry");
    let error: Value = res.json().await.unwrap();
    assert_eq!(error["code"], "SERVICE_UNAVAILABLE");
    app.db.set_reachable(true);

    // Stripe's next attempt, once the pool has its connections again.
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..100 {
        status = deliver(&app, &body).await.status();
        if status != StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::OK);
    assert_eq!(processed(&app, "evt_outage").await, "processed");
    assert_eq!(deliver(&app, &body).await.status(), 200, "and once more");
    assert_eq!(event_count(&app), 1);
    let a = account(&app, org);
    assert_eq!((a.plan.as_str(), a.status.as_str()), ("pro", "active"));
    assert_eq!(audit_count(&app, "billing.subscription_changed"), 1);
}

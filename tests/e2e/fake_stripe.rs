//! A fake Stripe API for the tests: a local HTTP server that answers the few
//! endpoints Frontdesk calls with objects in Stripe's exact schema (the
//! fixtures in `tests/fixtures/stripe/`, taken from Stripe's OpenAPI fixtures),
//! and keeps every request with its form parameters and headers.

#![allow(dead_code)] // a kit: each test uses only some of it

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub idempotency_key: Option<String>,
    pub authorization: Option<String>,
    /// The form parameters in order, keys as sent (`line_items[0][price]`).
    pub form: Vec<(String, String)>,
}

impl Recorded {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Recorded>>,
    subscriptions: Mutex<HashMap<String, Value>>,
    /// Sessions already created per idempotency key: Stripe answers a repeated
    /// key with the first result.
    idempotent: Mutex<HashMap<String, Value>>,
    counter: Mutex<u64>,
    /// How long a subscription lookup takes to answer, with the state it read
    /// when asked (a slow network: the answer can be overtaken by events).
    lookup_delay: Mutex<std::time::Duration>,
}

pub struct FakeStripe {
    pub base_url: String,
    state: Arc<State>,
    handle: actix_web::dev::ServerHandle,
}

pub fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/stripe")
        .join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture exists"))
        .expect("fixture is JSON")
}

/// A subscription in Stripe's schema for `customer` on `price`.
pub fn subscription(id: &str, customer: &str, price: &str, status: &str) -> Value {
    let mut sub = fixture("subscription");
    sub["id"] = json!(id);
    sub["customer"] = json!(customer);
    sub["status"] = json!(status);
    sub["cancel_at_period_end"] = json!(false);
    sub["items"]["data"][0]["price"]["id"] = json!(price);
    sub["items"]["data"][0]["subscription"] = json!(id);
    sub["items"]["data"][0]["current_period_start"] = json!(1_764_000_000);
    sub["items"]["data"][0]["current_period_end"] = json!(1_766_592_000);
    sub
}

impl FakeStripe {
    pub async fn spawn() -> Self {
        let state = Arc::new(State::default());
        let data = web::Data::from(state.clone());
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(data.clone())
                .default_service(web::to(handle))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind fake stripe");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Self {
            base_url: format!("http://127.0.0.1:{port}"),
            state,
            handle,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn requests_to(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path == path)
            .collect()
    }

    /// What `GET /v1/subscriptions/{id}` answers from now on.
    pub fn set_subscription(&self, sub: Value) {
        let id = sub["id"].as_str().expect("subscription id").to_string();
        self.state
            .subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, sub);
    }

    /// Subscription lookups answer after `delay`, with the state of when they were asked.
    pub fn delay_lookups(&self, delay: std::time::Duration) {
        *self
            .state
            .lookup_delay
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = delay;
    }

    /// Stripe no longer has the subscription: it answers 404 from now on.
    pub fn forget_subscription(&self, id: &str) {
        self.state
            .subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

fn next(state: &State) -> u64 {
    let mut n = state.counter.lock().unwrap_or_else(PoisonError::into_inner);
    *n += 1;
    *n
}

fn stripe_error(status: u16, message: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status"))
        .json(json!({"error": {"type": "invalid_request_error", "message": message}}))
}

async fn handle(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body)
        .chain(url::form_urlencoded::parse(req.query_string().as_bytes()))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    // Read before the request is recorded: a test that sees it recorded and
    // then changes the delay does not change this request's.
    let lookup_delay = *state
        .lookup_delay
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let recorded = Recorded {
        method: req.method().to_string(),
        path: req.path().to_string(),
        idempotency_key: header("idempotency-key"),
        authorization: header("authorization"),
        form,
    };
    state
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(recorded.clone());
    if !recorded
        .authorization
        .as_deref()
        .is_some_and(|a| a.starts_with("Bearer sk_test_"))
    {
        return stripe_error(401, "Invalid API Key provided");
    }
    if let Some(key) = &recorded.idempotency_key
        && let Some(previous) = state
            .idempotent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&format!("{} {key}", recorded.path))
    {
        return HttpResponse::Ok().json(previous.clone());
    }
    let p = |k: &str| recorded.param(k).map(str::to_string);
    let n = next(&state);
    let answer = match (recorded.method.as_str(), recorded.path.as_str()) {
        ("POST", "/v1/customers") => {
            let mut c = fixture("customer");
            c["id"] = json!(format!("cus_fake{n}"));
            c["email"] = json!(p("email"));
            c["name"] = json!(p("name"));
            c["metadata"] = json!({"organization_id": p("metadata[organization_id]")});
            c
        }
        ("POST", "/v1/checkout/sessions") => {
            let id = format!("cs_test_fake{n}");
            let mut s = fixture("checkout_session");
            s["id"] = json!(id);
            s["mode"] = json!(p("mode"));
            s["customer"] = json!(p("customer"));
            s["client_reference_id"] = json!(p("client_reference_id"));
            s["success_url"] = json!(p("success_url"));
            s["cancel_url"] = json!(p("cancel_url"));
            s["url"] = json!(format!("https://checkout.stripe.com/c/pay/{id}"));
            s
        }
        ("POST", "/v1/billing_portal/sessions") => {
            let id = format!("bps_fake{n}");
            let mut s = fixture("billing_portal_session");
            s["id"] = json!(id);
            s["customer"] = json!(p("customer"));
            s["return_url"] = json!(p("return_url"));
            s["url"] = json!(format!("https://billing.stripe.com/p/session/{id}"));
            s
        }
        ("GET", path) if path.starts_with("/v1/subscriptions/") => {
            let id = path.trim_start_matches("/v1/subscriptions/");
            // Read, and the lock let go, before the answer's delay.
            let found = state
                .subscriptions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(id)
                .cloned();
            match found {
                Some(sub) => {
                    actix_web::rt::time::sleep(lookup_delay).await;
                    sub
                }
                None => return stripe_error(404, &format!("No such subscription: '{id}'")),
            }
        }
        ("DELETE", path) if path.starts_with("/v1/subscriptions/") => {
            let id = path.trim_start_matches("/v1/subscriptions/");
            match state
                .subscriptions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_mut(id)
            {
                Some(sub) if sub["status"] == "canceled" => {
                    return stripe_error(400, &format!("Subscription {id} is already canceled"));
                }
                Some(sub) => {
                    sub["status"] = json!("canceled");
                    sub["canceled_at"] = json!(chrono::Utc::now().timestamp());
                    sub.clone()
                }
                None => return stripe_error(404, &format!("No such subscription: '{id}'")),
            }
        }
        _ => return stripe_error(404, "Unrecognized request URL"),
    };
    if let Some(key) = &recorded.idempotency_key {
        state
            .idempotent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(format!("{} {key}", recorded.path), answer.clone());
    }
    HttpResponse::Ok().json(answer)
}

//! Tenant isolation checked against the route table itself: every route under
//! `/app` and `/api/v1` that takes an id is read out of `src/routes/mod.rs` and
//! called by one organization with another organization's ids. Each answers
//! 404 and changes nothing. A route this walk does not know yet (a new id kind,
//! a new path) fails the test until it is added here, so none escapes it.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::accounts::{Browser, OrgRows, org_with_rows};
use crate::backend_tests;
use crate::chat::{Api, escalate, say, start_chat, upload_form};
use crate::helpers::{Backend, TestApp, spawn_app};

backend_tests!(every_route_with_an_id_answers_404_for_another_organizations_ids);

/// A route as registered: its full path and methods.
#[derive(Debug)]
struct Route {
    path: String,
    methods: Vec<Method>,
}

/// Reads the routes out of the source that registers them: each
/// `web::resource("…")` with the `.get(`/`.post(`/… calls that follow it,
/// under the `web::scope("…")` it sits in.
fn route_table() -> Vec<Route> {
    const SOURCE: &str = include_str!("../../src/routes/mod.rs");
    let quoted = |s: &str| -> String {
        let start = s.find('"').expect("a quoted path") + 1;
        let end = start + s[start..].find('"').expect("a closing quote");
        s[start..end].to_string()
    };
    let mut routes = Vec::new();
    let mut scope = String::new();
    let mut rest = SOURCE;
    loop {
        let next_scope = rest.find("web::scope(");
        let next_resource = rest.find("web::resource(");
        let at = match (next_scope, next_resource) {
            (None, None) => break,
            (Some(s), Some(r)) => s.min(r),
            (Some(s), None) => s,
            (None, Some(r)) => r,
        };
        let tail = &rest[at..];
        let body_end = tail[1..]
            .find("web::resource(")
            .into_iter()
            .chain(tail[1..].find("web::scope("))
            .chain(tail[1..].find("\n}"))
            .min()
            .map_or(tail.len(), |e| e + 1);
        if next_scope == Some(at) {
            scope = quoted(tail);
        } else {
            let methods = [
                (".get(", Method::GET),
                (".post(", Method::POST),
                (".put(", Method::PUT),
                (".patch(", Method::PATCH),
                (".delete(", Method::DELETE),
            ]
            .into_iter()
            .filter(|(call, _)| tail[..body_end].contains(call))
            .map(|(_, m)| m)
            .collect();
            routes.push(Route {
                path: format!("{scope}{}", quoted(tail)),
                methods,
            });
        }
        rest = &tail[1..];
    }
    routes
}

/// What one organization owns, by the kind of id a path takes.
struct Rows {
    org: OrgRows,
    agent: i64,
    document: i64,
    conversation: i64,
    ticket: i64,
}

impl Rows {
    /// The id for the `{id}` in `path`, by the segment before it.
    fn id_for(&self, path: &str) -> i64 {
        let segments: Vec<&str> = path.split('/').collect();
        let at = segments
            .iter()
            .position(|s| *s == "{id}")
            .expect("an {id} segment");
        match segments[at - 1] {
            "agents" => self.agent,
            "documents" => self.document,
            "conversations" => self.conversation,
            "tickets" => self.ticket,
            "members" => self.org.membership,
            "invitations" => self.org.invitation,
            "api-keys" => self.org.api_key,
            other => panic!("{path}: add a row of kind {other:?} to the tenancy walk"),
        }
    }
}

/// What a request to a route carries besides the id.
enum Payload {
    Empty,
    Form(&'static [(&'static str, &'static str)]),
    Multipart,
    Json(Value),
    Text,
}

/// Each id route with a payload that would succeed on one's own row: a 404
/// must come from the tenancy check, not from a malformed request.
fn payload(method: &Method, path: &str) -> Payload {
    use Payload::{Empty, Form, Json, Multipart, Text};
    match (method.as_str(), path) {
        ("GET", _) => Empty,
        ("POST", "/app/agents/{id}") => Form(&[("name", "Renamed")]),
        ("POST", "/app/agents/{id}/documents") => Form(&[("title", "Pasted"), ("text", "Hello")]),
        ("POST", "/app/agents/{id}/upload") => Multipart,
        ("POST", "/app/documents/{id}/reindex") => Form(&[]),
        (
            "POST",
            "/app/documents/{id}/delete"
            | "/app/conversations/{id}/delete"
            | "/app/agents/{id}/delete",
        ) => Form(&[("confirm", "yes")]),
        ("POST", "/app/conversations/{id}/status") => Form(&[("status", "resolved")]),
        ("POST", "/app/tickets/{id}/reply") => Form(&[("content", "Hello")]),
        ("POST", "/app/tickets/{id}/notes") => Form(&[("note", "Hello")]),
        ("POST", "/app/tickets/{id}/assign") => Form(&[("assignee", "")]),
        ("POST", "/app/tickets/{id}/status") => Form(&[("status", "solved")]),
        ("POST", "/app/members/{id}/role") => Form(&[("role", "viewer")]),
        (
            "POST",
            "/app/members/{id}/remove"
            | "/app/invitations/{id}/revoke"
            | "/app/api-keys/{id}/revoke",
        ) => Form(&[]),
        ("PUT", "/api/v1/agents/{id}") => Json(json!({"name": "Renamed"})),
        ("POST", "/api/v1/agents/{id}/documents") => Text,
        ("POST", "/api/v1/documents/{id}/reindex") => Empty,
        ("POST", "/api/v1/conversations/{id}/messages") => Json(json!({"content": "Hello"})),
        ("PUT", "/api/v1/conversations/{id}/status") => Json(json!({"status": "resolved"})),
        ("PATCH", "/api/v1/tickets/{id}") => Json(json!({"status": "solved"})),
        ("POST", "/api/v1/tickets/{id}/replies" | "/api/v1/tickets/{id}/notes") => {
            Json(json!({"content": "Hello"}))
        }
        ("PATCH", "/api/v1/members/{id}") => Json(json!({"role": "viewer"})),
        ("DELETE", _) => Empty,
        _ => panic!("{method} {path} takes an id: add it to the tenancy walk with what it is sent"),
    }
}

/// Path parameters that are not row ids: the public chat scope is keyed by
/// slugs and a visitor's token (tested in `chat`), provider keys by name.
fn is_org_scoped_id_route(path: &str) -> bool {
    let scoped = path.starts_with("/app/") || path.starts_with("/api/v1/");
    if !scoped || path.starts_with("/api/v1/chat/") || !path.contains('{') {
        return false;
    }
    let params: Vec<&str> = path.split('/').filter(|s| s.starts_with('{')).collect();
    match params.as_slice() {
        ["{id}"] => true,
        ["{provider}"] => false,
        other => panic!("{path}: path parameters {other:?} are new to the tenancy walk"),
    }
}

/// Beta's organization with one of everything: an agent with an indexed
/// document, a visitor's conversation and the ticket it became.
async fn beta(app: &TestApp) -> (Rows, String) {
    let bob = Browser::new(app);
    let org = org_with_rows(app, &bob, "Beta", "bob@beta.test", "b2@beta.test").await;
    let key = bob.api_key("walk", "write").await;
    let api = Api {
        app,
        key: key.clone(),
    };
    let agent = api.agent(json!({"name": "Support"})).await["id"]
        .as_i64()
        .unwrap();
    let document = api
        .indexed(
            agent,
            "Returns",
            "text/markdown",
            b"# Returns\n\nBikes can be returned within 30 days.\n",
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let chat: Value = start_chat(app, "beta", "support", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        say(app, "beta", "support", &chat, "Returns?")
            .await
            .status(),
        200
    );
    assert_eq!(escalate(app, "beta", "support", &chat).await, 200);
    let (_, tickets) = api.get("/api/v1/tickets").await;
    let rows = Rows {
        org,
        agent,
        document,
        conversation: chat["conversationId"].as_i64().unwrap(),
        ticket: tickets["data"][0]["id"].as_i64().unwrap(),
    };
    (rows, key)
}

async fn every_route_with_an_id_answers_404_for_another_organizations_ids(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let routes: Vec<Route> = route_table()
        .into_iter()
        .filter(|r| is_org_scoped_id_route(&r.path))
        .collect();
    // The parse found the table (a change to how routes are written must not
    // quietly leave nothing to walk).
    assert!(routes.len() >= 25, "{routes:#?}");
    assert!(routes.iter().all(|r| !r.methods.is_empty()), "{routes:#?}");

    let alice = Browser::new(&app);
    org_with_rows(&app, &alice, "Alpha", "alice@alpha.test", "a2@alpha.test").await;
    let alice_key = alice.api_key("walk", "write").await;
    let (beta, beta_key) = beta(&app).await;

    let mut walked = 0;
    for route in &routes {
        let path = route
            .path
            .replace("{id}", &beta.id_for(&route.path).to_string());
        for method in &route.methods {
            let status = if route.path.starts_with("/app/") {
                app_request(&alice, method, &route.path, &path).await
            } else {
                let (status, body) =
                    api_request(&app, &alice_key, method, &route.path, &path).await;
                if status == StatusCode::NOT_FOUND {
                    assert_eq!(body["code"], "NOT_FOUND", "{method} {path}: {body}");
                }
                status
            };
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "{method} {} with Beta's id",
                route.path
            );
            walked += 1;
        }
    }
    assert!(walked >= 35, "{walked} requests");

    // Ids sent in bodies, forms and query strings rather than paths.
    let alice_api = Api {
        app: &app,
        key: alice_key.clone(),
    };
    let (status, body) = alice_api
        .json(
            Method::POST,
            "/api/v1/conversations",
            json!({"agentId": beta.agent}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "start on Beta's agent: {body}"
    );
    // Tickets filter by assignee: Beta's owner is no one Alice's tickets have.
    let beta_owner: i64 = {
        use diesel::prelude::*;
        use frontdesk::db::schema::memberships;
        memberships::table
            .find(beta.org.membership)
            .select(memberships::user_id)
            .first(&mut app.pool().get().unwrap())
            .unwrap()
    };
    for query in [
        format!("/api/v1/conversations?agent={}", beta.agent),
        format!("/api/v1/tickets?assigned={beta_owner}&status=all"),
    ] {
        let (status, list) = alice_api.get(&query).await;
        assert!(
            status == StatusCode::NOT_FOUND
                || (status == StatusCode::OK && list["data"].as_array().is_some_and(Vec::is_empty)),
            "{query}: {status} {list}"
        );
    }
    let (_, page) = alice
        .get(&format!("/app/conversations?agent={}", beta.agent))
        .await;
    assert!(
        !page.contains("Returns?"),
        "Beta's visitor is not listed: {page}"
    );
    let switch = alice
        .submit(
            "/app",
            "/app/switch",
            &[(
                "organization_id",
                beta.org.organization.to_string().as_str(),
            )],
        )
        .await;
    assert_eq!(
        switch.status(),
        StatusCode::NOT_FOUND,
        "no switching into Beta"
    );

    // The ids were real: Beta reads every one of them, and nothing changed.
    for route in routes.iter().filter(|r| r.path.starts_with("/api/v1/")) {
        if route.methods.contains(&Method::GET) {
            let path = route
                .path
                .replace("{id}", &beta.id_for(&route.path).to_string());
            let (status, body) =
                api_request(&app, &beta_key, &Method::GET, &route.path, &path).await;
            assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        }
    }
    let beta_api = Api {
        app: &app,
        key: beta_key,
    };
    let (_, agent) = beta_api
        .get(&format!("/api/v1/agents/{}", beta.agent))
        .await;
    assert_eq!(agent["name"], "Support");
    let (_, ticket) = beta_api
        .get(&format!("/api/v1/tickets/{}", beta.ticket))
        .await;
    assert_eq!(ticket["status"], "open", "{ticket}");
    let (_, docs) = beta_api
        .get(&format!("/api/v1/agents/{}/documents", beta.agent))
        .await;
    assert_eq!(docs["data"].as_array().unwrap().len(), 1, "{docs}");
    let (_, members) = beta_api.get("/api/v1/members").await;
    assert!(members.to_string().contains("bob@beta.test"), "{members}");
    assert!(
        members["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["role"] == "owner"),
        "{members}"
    );
    let (_, invitations) = beta_api.get("/api/v1/invitations").await;
    assert!(
        invitations.to_string().contains("b2@beta.test"),
        "{invitations}"
    );
    let (_, keys) = beta_api.get("/api/v1/api-keys").await;
    assert!(
        keys["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["revokedAt"].is_null()),
        "{keys}"
    );
}

/// A page request or form post from a signed-in browser, with its CSRF token.
async fn app_request(browser: &Browser, method: &Method, template: &str, path: &str) -> StatusCode {
    match payload(method, template) {
        Payload::Empty if *method == Method::GET => browser.get(path).await.0,
        Payload::Empty => browser.submit("/app/members", path, &[]).await.status(),
        Payload::Form(fields) => browser.submit("/app/members", path, fields).await.status(),
        Payload::Multipart => {
            let csrf = browser.csrf("/app/members").await;
            let file = ("hello.txt", "text/plain", b"Hello".to_vec());
            upload_form(browser, path, csrf, file).await.status()
        }
        Payload::Json(_) | Payload::Text => panic!("{template}: pages take forms"),
    }
}

/// An API call with an organization's key.
async fn api_request(
    app: &TestApp,
    key: &str,
    method: &Method,
    template: &str,
    path: &str,
) -> (StatusCode, Value) {
    let url = if template.ends_with("/search") {
        app.url(&format!("{path}?q=returns"))
    } else if matches!(payload(method, template), Payload::Text) {
        app.url(&format!("{path}?title=Notes"))
    } else {
        app.url(path)
    };
    let mut req = app.client.request(method.clone(), url).bearer_auth(key);
    req = match payload(method, template) {
        Payload::Json(body) => req.json(&body),
        Payload::Text => req.header("content-type", "text/plain").body("Hello"),
        Payload::Empty => req,
        Payload::Form(_) | Payload::Multipart => panic!("{template}: the API takes JSON"),
    };
    let res = req.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

//! The API's edge: the request budget and the headers that tell a client where
//! it stands, and which browser origins may call it.

use serde_json::Value;

use crate::accounts::organization_with_key;
use crate::backend_tests;
use crate::helpers::{Backend, TestApp, spawn_app};

backend_tests!(
    each_api_key_has_a_budget_and_hears_when_it_is_spent,
    forwarded_addresses_count_only_from_trusted_proxies,
    cors_origins_may_call_the_api_with_a_key_and_others_may_not,
    without_cors_origins_the_api_grants_no_site,
    made_up_keys_and_csp_reports_do_not_escape_the_address_budget,
    nul_and_other_control_characters_never_reach_the_database,
    starting_a_public_chat_takes_no_body_or_the_documented_one,
    request_bodies_are_read_as_their_content_encoding_says,
    the_documented_limits_are_the_ones_enforced,
    a_query_parameter_an_endpoint_does_not_take_is_refused,
);

async fn request_bodies_are_read_as_their_content_encoding_says(backend: Backend) {
    use std::io::Write as _;
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let (_, key) = organization_with_key(&app, "Harbor Bikes", "owner@harbor.test").await;
    let create = |encoding: &'static str, body: Vec<u8>| {
        app.client
            .post(app.url("/api/v1/agents"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(body)
            .send()
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(br#"{"name": "Compressed"}"#).unwrap();
    let res = create("gzip", gz.finish().unwrap()).await.unwrap();
    assert_eq!(res.status(), 201, "a gzip body is decoded");
    let agent: Value = res.json().await.unwrap();
    assert_eq!(agent["name"], "Compressed");

    // Plain bytes that claim to be gzip: a plain sentence, not an I/O error's
    // debug form.
    let res = create("gzip", br#"{"name": "Plain"}"#.to_vec())
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("Content-Encoding"), "{message}");
    assert!(
        !message.contains("Custom") && !message.contains("kind"),
        "{message}"
    );

    // A coding the server does not decode is refused, not read as plain.
    for coding in ["zstd", "x-unknown", "gzip, br"] {
        let res = create(coding, br#"{"name": "Unknown"}"#.to_vec())
            .await
            .unwrap();
        assert_eq!(res.status(), 415, "{coding}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "UNSUPPORTED_MEDIA_TYPE", "{coding}");
        assert!(body["message"].as_str().unwrap().contains("gzip"), "{body}");
    }
    let res = app
        .client
        .get(app.url("/api/v1/agents"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let agents: Value = res.json().await.unwrap();
    let names: Vec<&str> = agents["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Compressed"], "nothing else was created");

    // What serde says, without the server's own type names.
    for (body, said) in [
        ("null", "expected a JSON object"),
        // serde alone would take the fields in order and create "Listed".
        (r#"["Listed", "Be brief"]"#, "expected a JSON object"),
        (
            r#"{"name": "X", "temperature": "hot"}"#,
            "expected a number",
        ),
    ] {
        let res = create("identity", body.as_bytes().to_vec()).await.unwrap();
        assert_eq!(res.status(), 422, "{body}");
        let json: Value = res.json().await.unwrap();
        let message = json["message"].as_str().unwrap();
        assert!(message.contains(said), "{message}");
        assert!(
            !message.contains("AgentForm") && !message.contains("f64"),
            "{message}"
        );
    }
    let res = app
        .client
        .get(app.url("/api/v1/conversations?page=abc"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let json: Value = res.json().await.unwrap();
    let message = json["message"].as_str().unwrap();
    assert!(!message.contains("deserialize"), "{message}");
    // A raw body over its limit says so in the error shape's own words.
    let res = app
        .client
        .post(app.url("/api/v1/chat/harbor-bikes/nobody/conversations"))
        .header("content-type", "application/json")
        .body(vec![b' '; 300 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let json: Value = res.json().await.unwrap();
    assert_eq!(json["code"], "PAYLOAD_TOO_LARGE", "{json}");
    assert_eq!(
        json["message"], "The body exceeds the size limit.",
        "{json}"
    );
}

async fn starting_a_public_chat_takes_no_body_or_the_documented_one(backend: Backend) {
    use crate::chat::Api;
    use serde_json::json;
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let (_, key) = organization_with_key(&app, "Harbor Bikes", "owner@harbor.test").await;
    Api { app: &app, key }
        .agent(json!({"name": "Support"}))
        .await;
    let start = |body: &'static str| {
        app.client
            .post(app.url("/api/v1/chat/harbor-bikes/support/conversations"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (body, status) in [
        ("", 201),
        (r#"{}"#, 201),
        (r#"{"channel": "page", "visitorId": "visitor-0001"}"#, 201),
        ("garbage", 400),
        (r#"{"channel": "page""#, 400),
        ("[]", 422),
        // The fields in order: what serde's derive alone would take.
        (r#"["page", "visitor-0001"]"#, 422),
        ("1", 422),
        (r#"{"zzz": 1}"#, 422),
        (r#"{"visitorId": 5}"#, 422),
        (r#"{"channel": "evil"}"#, 422),
    ] {
        let res = start(body).await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{body:?}");
        let json: Value = res.json().await.unwrap();
        if status != 201 {
            assert!(
                json["code"].is_string() && json["message"].is_string(),
                "{json}"
            );
        } else {
            assert!(json["conversationId"].is_i64(), "{json}");
        }
    }
}

fn header(res: &reqwest::Response, name: &str) -> Option<u64> {
    res.headers().get(name)?.to_str().ok()?.parse().ok()
}

async fn get_with(
    app: &TestApp,
    path: &str,
    key: Option<&str>,
    forwarded: Option<&str>,
) -> reqwest::Response {
    let mut req = app.client.get(app.url(path));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    if let Some(forwarded) = forwarded {
        req = req.header("x-forwarded-for", forwarded);
    }
    req.send().await.unwrap()
}

async fn each_api_key_has_a_budget_and_hears_when_it_is_spent(backend: Backend) {
    let Some(app) = spawn_app(backend)
        .env("RATE_LIMIT_PER_MINUTE", "5")
        .start()
        .await
    else {
        return;
    };
    let (_, key) = organization_with_key(&app, "Harbor Bikes", "owner@harbor.example").await;
    for remaining in (0..5).rev() {
        let res = get_with(&app, "/api/v1/agents", Some(&key), None).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-ratelimit-limit"), Some(5));
        assert_eq!(header(&res, "x-ratelimit-remaining"), Some(remaining));
        let reset = header(&res, "x-ratelimit-reset").unwrap();
        assert!((1..=60).contains(&reset), "reset {reset}");
    }
    let refused = get_with(&app, "/api/v1/agents", Some(&key), None).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "x-ratelimit-remaining"), Some(0));
    let retry = header(&refused, "retry-after").unwrap();
    assert!((1..=12).contains(&retry), "retry after {retry}");
    assert_eq!(header(&refused, "x-ratelimit-reset"), Some(retry));
    assert!(refused.headers().contains_key("x-correlation-id"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "RATE_LIMITED", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("5 requests per minute"),
        "{body}"
    );

    // Calls without a key spend from the address's budget, not the key's.
    let anonymous = get_with(&app, "/api/v1/openapi.json", None, None).await;
    assert_eq!(anonymous.status(), 200);
    assert_eq!(header(&anonymous, "x-ratelimit-remaining"), Some(4));
    // Probes and pages are outside the API budget.
    for path in ["/health", "/live", "/"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 200, "{path}");
        assert!(!res.headers().contains_key("x-ratelimit-limit"), "{path}");
    }
}

async fn forwarded_addresses_count_only_from_trusted_proxies(backend: Backend) {
    let Some(direct) = spawn_app(backend)
        .env("RATE_LIMIT_PER_MINUTE", "2")
        .start()
        .await
    else {
        return;
    };
    // Without TRUSTED_PROXIES a client cannot buy budgets with made-up headers.
    for (i, status) in [200, 200, 429].into_iter().enumerate() {
        let forged = format!("203.0.113.{i}");
        let res = get_with(&direct, "/api/v1/openapi.json", None, Some(&forged)).await;
        assert_eq!(res.status(), status, "request {i}");
    }

    let Some(proxied) = spawn_app(backend)
        .env("RATE_LIMIT_PER_MINUTE", "2")
        .env("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")
        .start()
        .await
    else {
        return;
    };
    // Behind the proxy each client has its own budget; what the client wrote
    // to the left of the proxy's entry does not count.
    for (forwarded, status) in [
        ("203.0.113.1", 200),
        ("198.51.100.77, 203.0.113.1", 200),
        ("203.0.113.1, 10.1.2.3", 429),
        ("203.0.113.2", 200),
    ] {
        let res = get_with(&proxied, "/api/v1/openapi.json", None, Some(forwarded)).await;
        assert_eq!(res.status(), status, "{forwarded}");
    }
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/agents"))
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap()
}

async fn cors_origins_may_call_the_api_with_a_key_and_others_may_not(backend: Backend) {
    let Some(app) = spawn_app(backend)
        .env(
            "CORS_ORIGINS",
            "https://app.harbor.example/, https://ops.harbor.example",
        )
        .start()
        .await
    else {
        return;
    };
    let (_, key) = organization_with_key(&app, "Harbor Bikes", "owner@harbor.example").await;
    let allowed = "https://app.harbor.example";

    let res = preflight(&app, allowed).await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(res.headers()["access-control-allow-origin"], allowed);
    let headers = res.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(headers.contains("authorization"), "{headers}");
    assert!(
        !res.headers()
            .contains_key("access-control-allow-credentials")
    );

    let res = app
        .client
        .get(app.url("/api/v1/agents"))
        .header("origin", allowed)
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["access-control-allow-origin"], allowed);
    let exposed = res.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        exposed.contains("x-ratelimit-remaining") && exposed.contains("x-correlation-id"),
        "{exposed}"
    );

    // Another site gets no grant; its preflight is refused in the JSON shape.
    let res = preflight(&app, "https://evil.example").await;
    assert_eq!(res.status(), 400);
    assert!(!res.headers().contains_key("access-control-allow-origin"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "BAD_REQUEST", "{body}");
    let res = app
        .client
        .get(app.url("/api/v1/agents"))
        .header("origin", "https://evil.example")
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert!(!res.headers().contains_key("access-control-allow-origin"));
}

async fn without_cors_origins_the_api_grants_no_site(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let res = preflight(&app, "https://app.harbor.example").await;
    assert!(!res.headers().contains_key("access-control-allow-origin"));
    let res = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .header("origin", "https://app.harbor.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(!res.headers().contains_key("access-control-allow-origin"));
}

async fn made_up_keys_and_csp_reports_do_not_escape_the_address_budget(backend: Backend) {
    let Some(app) = spawn_app(backend)
        .env("RATE_LIMIT_PER_MINUTE", "2")
        .env("TRUSTED_PROXIES", "127.0.0.1")
        .start()
        .await
    else {
        return;
    };
    // Each made-up key names a budget of its own; once they fail, they count
    // against the address they come from, which is then refused.
    let mut statuses = Vec::new();
    for n in 0..4 {
        let key = format!("fd_madeup{n:08}xxxxxxxxxxxxxxxx");
        let res = get_with(&app, "/api/v1/agents", Some(&key), Some("203.0.113.50")).await;
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    // A working key from another address (another tenant behind another
    // NAT, say) is not held back by it.
    let (_, key) = organization_with_key(&app, "Harbor Bikes", "owner@harbor.example").await;
    let res = get_with(&app, "/api/v1/agents", Some(&key), Some("198.51.100.60")).await;
    assert_eq!(res.status(), 200);

    // CSP reports have a budget of their own per address, not none.
    let report = serde_json::json!({"csp-report": {"document-uri": "https://x.test/", "violated-directive": "script-src"}});
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let res = app
            .client
            .post(app.url("/api/v1/csp-reports"))
            .header("content-type", "application/csp-report")
            .body(report.to_string())
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses[2], 429, "{statuses:?}");
    assert!(statuses[..2].iter().all(|s| *s < 300), "{statuses:?}");
}

/// PostgreSQL refuses NUL in text and SQLite's `length()` stops at it: typed or
/// pasted into a name, a title, a message, a search or a sign-in, it is cleaned
/// away or refused with a 4xx, never a 500 on either backend.
async fn nul_and_other_control_characters_never_reach_the_database(backend: Backend) {
    use crate::chat::{Api, say, support_chat};
    use reqwest::Method;
    use serde_json::json;
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let (owner, key) = organization_with_key(&app, "Harbor Bikes", "owner@harbor.test").await;
    let api = Api { app: &app, key };

    // Names: nothing but a NUL is no name; around one, the NUL goes.
    let (status, body) = api
        .json(Method::POST, "/api/v1/agents", json!({"name": "\u{0}"}))
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, agent) = api
        .json(
            Method::POST,
            "/api/v1/agents",
            json!({"name": "Support\u{0}Desk", "slug": "support", "greeting": "Hi\u{0}!\nAsk away.\u{7}"}),
        )
        .await;
    assert_eq!(status, 201, "{agent}");
    assert_eq!(agent["name"], "Support Desk");
    assert_eq!(agent["greeting"], "Hi!\nAsk away.");
    let id = agent["id"].as_i64().unwrap();
    let (status, body) = api
        .json(
            Method::PUT,
            &format!("/api/v1/agents/{id}"),
            json!({"name": "\u{0}\u{0}"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    // Characters that only disguise a name go with the control characters.
    let (status, disguised) = api
        .json(
            Method::PUT,
            &format!("/api/v1/agents/{id}"),
            json!({"name": "\u{202e}gnp.exe\u{200b}"}),
        )
        .await;
    assert_eq!(status, 200, "{disguised}");
    assert_eq!(disguised["name"], "gnp.exe");
    let (status, body) = api
        .json(
            Method::PATCH,
            "/api/v1/organization",
            json!({"name": "\u{200b}\u{feff}"}),
        )
        .await;
    assert_eq!(status, 422, "an invisible name is no name: {body}");

    // A model's name is refused, not cleaned: a changed name is another model.
    for model in ["gpt\u{0}4o", "a\u{1b}[31mb", "gpt 4o"] {
        for (method, path) in [
            (Method::PUT, format!("/api/v1/agents/{id}")),
            (Method::POST, "/api/v1/agents".to_string()),
        ] {
            let (status, body) = api
                .json(method, &path, json!({"name": "Modelled", "model": model}))
                .await;
            assert_eq!(status, 422, "{model:?}: {body}");
            assert!(
                body["message"].as_str().unwrap().contains("model"),
                "{body}"
            );
        }
    }

    // Document titles, from the query or the file name.
    let (status, body) = api.upload(id, "%00", "text/plain", b"hello".to_vec()).await;
    assert_eq!(status, 422, "{body}");
    let (status, doc) = api
        .upload(
            id,
            "Opening%00hours",
            "text/plain",
            b"Open daily from 9 to 5.".to_vec(),
        )
        .await;
    assert_eq!(status, 201, "{doc}");
    assert_eq!(doc["title"], "Opening hours");

    // Searches: the agent's knowledge and the conversations.
    for path in [
        format!("/api/v1/agents/{id}/search?q=%00"),
        format!("/api/v1/agents/{id}/search?q=open%00daily"),
        "/api/v1/conversations?q=%00".to_string(),
        "/api/v1/conversations?q=bike%00".to_string(),
    ] {
        let (status, body) = api.get(&path).await;
        assert!(
            status.is_success() || status.is_client_error(),
            "{path}: {status} {body}"
        );
    }

    // A visitor's messages, and the team's answer.
    let chat = support_chat(&app).await;
    let res = say(&app, "harbor-bikes", "support", &chat, "\u{0}").await;
    assert_eq!(res.status(), 422);
    let res = say(
        &app,
        "harbor-bikes",
        "support",
        &chat,
        "When\u{0} are you open?",
    )
    .await;
    assert_eq!(res.status(), 200);
    let (_, messages) = api
        .get(&format!(
            "/api/v1/conversations/{}/messages",
            chat["conversationId"]
        ))
        .await;
    assert_eq!(
        messages["data"][0]["content"], "When are you open?",
        "{messages}"
    );
    let res = crate::chat::escalate(&app, "harbor-bikes", "support", &chat).await;
    assert_eq!(res, 200);
    let (_, tickets) = api.get("/api/v1/tickets").await;
    let ticket = tickets["data"][0]["id"].as_i64().unwrap();
    let (status, reply) = api
        .json(
            Method::POST,
            &format!("/api/v1/tickets/{ticket}/replies"),
            json!({"content": "We open\u{0} at nine."}),
        )
        .await;
    assert_eq!(status, 201, "{reply}");

    // Signing in with one typed into the address.
    let res = crate::accounts::Browser::new(&app)
        .login("owner\u{0}@harbor.test", "whatever it is")
        .await;
    assert!(res.status().is_client_error(), "{}", res.status());
    // The pages' filters.
    for path in [
        "/app/conversations?q=%00&status=%00&agent=%00",
        "/app/tickets?status=%00&assigned=%00",
        "/app/audit?action=%00&user=%00",
        "/api/v1/tickets?status=%00",
        "/api/v1/conversations?status=%00&agentId=%00",
    ] {
        let (status, body) = owner.get(path).await;
        assert!(!status.is_server_error(), "{path}: {status} {body}");
    }
    // Still signed in and working: nothing above broke the server.
    let (status, _) = owner.get("/app").await;
    assert_eq!(status, 200);
}

/// The limits `schema` documents, as (field, keyword, limit).
fn documented_limits(doc: &Value, schema: &str) -> Vec<(String, &'static str, f64)> {
    let properties = doc["components"]["schemas"][schema]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{schema} is documented"));
    let mut limits = Vec::new();
    for (field, property) in properties {
        for keyword in ["maxLength", "maximum", "minimum", "maxItems"] {
            if let Some(limit) = property[keyword].as_f64() {
                limits.push((field.clone(), keyword, limit));
            }
        }
    }
    limits
}

/// A value for `keyword`'s `limit`, `past` it by one step or right at it.
fn at_limit(field: &str, keyword: &str, limit: f64, past: bool) -> Value {
    use serde_json::json;
    let step = if past { 1 } else { 0 };
    // The documented counts are small, exact integers.
    let count = limit as usize + step;
    match keyword {
        "maxLength" => json!("a".repeat(count)),
        "maxItems" => json!(
            (0..count)
                .map(|i| format!("https://shop{i}.example"))
                .collect::<Vec<_>>()
        ),
        "maximum" => json!(if past { limit + 0.01 } else { limit }),
        "minimum" => json!(if past { limit - 0.01 } else { limit }),
        other => panic!("{field}: no value for {other}"),
    }
}

async fn the_documented_limits_are_the_ones_enforced(backend: Backend) {
    use crate::chat::Api;
    use reqwest::Method;
    use serde_json::json;
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let (owner, key) = organization_with_key(&app, "Harbor Bikes", "owner@harbor.test").await;
    let api = Api { app: &app, key };
    let (_, doc) = api.get("/api/v1/openapi.json").await;

    let agent = api.agent(json!({"name": "Limits"})).await;
    let path = format!("/api/v1/agents/{}", agent["id"]);
    let limits = documented_limits(&doc, "AgentForm");
    for field in [
        "name",
        "slug",
        "greeting",
        "instructions",
        "model",
        "temperature",
        "handoffThreshold",
        "allowedOrigins",
    ] {
        assert!(
            limits.iter().any(|(f, ..)| f == field),
            "{field} has a documented limit: {limits:?}"
        );
    }
    for (field, keyword, limit) in &limits {
        let mut body = json!({"name": "Limits"});
        body[field] = at_limit(field, keyword, *limit, false);
        let (status, answer) = api.json(Method::PUT, &path, body.clone()).await;
        assert_eq!(status, 200, "{field} at its {keyword} {limit}: {answer}");
        body[field] = at_limit(field, keyword, *limit, true);
        let (status, answer) = api.json(Method::PUT, &path, body).await;
        assert_eq!(status, 422, "{field} past its {keyword} {limit}: {answer}");
        assert_eq!(answer["code"], "VALIDATION_FAILED", "{answer}");
    }

    // Keys are made by people signed in (with the page's CSRF token).
    let limits = documented_limits(&doc, "NewApiKey");
    assert_eq!(limits, [("name".to_string(), "maxLength", 80.0)]);
    let token = owner.csrf("/app/api-keys").await;
    for past in [false, true] {
        let name = at_limit("name", "maxLength", 80.0, past);
        let res = owner
            .client
            .post(app.url("/api/v1/api-keys"))
            .header("x-csrf-token", &token)
            .json(&json!({"name": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), if past { 422 } else { 201 }, "past: {past}");
    }

    let limits = documented_limits(&doc, "OrganizationUpdate");
    for (field, keyword, limit) in &limits {
        for past in [false, true] {
            let mut value = at_limit(field, keyword, *limit, past);
            if field == "slug" && !past {
                value = json!("h".repeat(*limit as usize));
            }
            let (status, answer) = api
                .json(Method::PATCH, "/api/v1/organization", json!({field: value}))
                .await;
            assert_eq!(
                status,
                if past { 422 } else { 200 },
                "{field} {keyword} {limit} (past: {past}): {answer}"
            );
        }
    }
    assert!(limits.iter().any(|(f, ..)| f == "name"), "{limits:?}");
    assert!(limits.iter().any(|(f, ..)| f == "slug"), "{limits:?}");

    // Messages and ticket texts are counted as their schema says, too.
    for schema in ["ApiMessage", "SendMessage"] {
        assert_eq!(
            documented_limits(&doc, schema),
            [("content".to_string(), "maxLength", 4000.0)],
            "{schema}"
        );
    }
    assert_eq!(
        documented_limits(&doc, "TicketText"),
        [("content".to_string(), "maxLength", 8000.0)]
    );
}

async fn a_query_parameter_an_endpoint_does_not_take_is_refused(backend: Backend) {
    use crate::chat::Api;
    use serde_json::json;
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let (_, key) = organization_with_key(&app, "Harbor Bikes", "owner@harbor.test").await;
    let api = Api { app: &app, key };
    api.agent(json!({"name": "Support"})).await;

    // A misspelt filter would otherwise list everything.
    let (status, body) = api.get("/api/v1/conversations?stauts=resolved").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "BAD_REQUEST");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("`stauts`") && message.contains("status") && message.contains("per_page"),
        "the parameter and the ones taken are named: {message}"
    );
    let (status, body) = api.get("/api/v1/agents?include=documents").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no query parameters"),
        "{body}"
    );
    // The documented ones, and none, pass.
    for path in [
        "/api/v1/conversations?status=resolved&page=1&per_page=10",
        "/api/v1/conversations",
        "/api/v1/tickets?status=open&assigned=anyone",
        "/api/v1/agents",
    ] {
        let (status, body) = api.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    // The public chat too, where the widget reads its answer.
    let res = app
        .client
        .post(app.url("/api/v1/chat/harbor-bikes/support/conversations?debug=1"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("`debug`"),
        "{body}"
    );
}

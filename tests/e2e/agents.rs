//! Editing an agent's settings, what it finds for a question, and what a
//! model's output may leave in its transcript, over HTTP on both backends.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts::organization_with_key;
use crate::backend_tests;
use crate::chat::{Api, say, support_chat};
use crate::fake_llm::{self, Reply};
use crate::helpers::{Backend, TestApp, spawn_app};

backend_tests!(
    a_blank_provider_and_model_return_an_agent_to_the_servers_defaults,
    edits_of_different_fields_sent_at_once_all_land,
    control_characters_a_model_sends_never_reach_the_transcript,
    the_section_that_answers_comes_before_one_that_only_shares_the_title,
    an_agent_is_deleted_from_its_page_once_the_box_is_ticked,
    what_the_api_creates_says_where_it_is_read,
);

async fn harbor(
    backend: Backend,
    env: &[(&'static str, &'static str)],
) -> Option<(TestApp, String)> {
    let mut spawn = spawn_app(backend);
    for (k, v) in env {
        spawn = spawn.env(k, v);
    }
    let app = spawn.start().await?;
    let (_, key) = organization_with_key(&app, "Harbor Bikes", "owner@harbor.test").await;
    Some((app, key))
}

async fn put_agent(api: &Api<'_>, id: i64, body: Value) -> Value {
    let (status, agent) = api
        .json(Method::PUT, &format!("/api/v1/agents/{id}"), body)
        .await;
    assert_eq!(status, 200, "{agent}");
    agent
}

async fn a_blank_provider_and_model_return_an_agent_to_the_servers_defaults(backend: Backend) {
    let Some((app, key)) = harbor(backend, &[]).await else {
        return;
    };
    let api = Api { app: &app, key };
    let agent = api
        .agent(json!({"name": "Support", "provider": "openai", "model": "gpt-4o"}))
        .await;
    let id = agent["id"].as_i64().unwrap();
    assert_eq!(
        (&agent["provider"], &agent["model"]),
        (&json!("openai"), &json!("gpt-4o"))
    );

    // Left out: kept.
    let kept = put_agent(&api, id, json!({"name": "Support", "greeting": "Hi!"})).await;
    assert_eq!(
        (&kept["provider"], &kept["model"]),
        (&json!("openai"), &json!("gpt-4o"))
    );

    // Blank ("Server default" on the page): cleared, and stays cleared.
    let cleared = put_agent(
        &api,
        id,
        json!({"name": "Support", "provider": "", "model": ""}),
    )
    .await;
    assert_eq!(cleared["provider"], Value::Null, "{cleared}");
    assert_eq!(cleared["model"], Value::Null, "{cleared}");
    let (_, read) = api.get(&format!("/api/v1/agents/{id}")).await;
    assert_eq!(
        (&read["provider"], &read["model"]),
        (&Value::Null, &Value::Null),
        "{read}"
    );
    assert_eq!(read["greeting"], "Hi!");
}

async fn edits_of_different_fields_sent_at_once_all_land(backend: Backend) {
    let Some((app, key)) = harbor(backend, &[]).await else {
        return;
    };
    let api = Api { app: &app, key };
    let id = api.agent(json!({"name": "Support"})).await["id"]
        .as_i64()
        .unwrap();
    // Each edit names one field: the other's must not be written back as it
    // was when this one read the agent.
    for round in 0..8 {
        let (greeting, instructions) = (format!("Hello #{round}"), format!("Be brief #{round}"));
        let (a, b) = tokio::join!(
            put_agent(&api, id, json!({"name": "Support", "greeting": greeting})),
            put_agent(
                &api,
                id,
                json!({"name": "Support", "instructions": instructions})
            ),
        );
        assert_eq!(a["greeting"], greeting);
        assert_eq!(b["instructions"], instructions);
        let (_, now) = api.get(&format!("/api/v1/agents/{id}")).await;
        assert_eq!(
            (&now["greeting"], &now["instructions"]),
            (&json!(greeting), &json!(instructions)),
            "round {round}: {now}"
        );
    }
}

async fn control_characters_a_model_sends_never_reach_the_transcript(backend: Backend) {
    let Some((app, key)) = harbor(backend, &[("CONVERSATION_IDLE_SECS", "0")]).await else {
        return;
    };
    let api = Api { app: &app, key };
    // A NUL is text to JSON but not to PostgreSQL; the escape and the
    // right-to-left override would only garble or disguise what is shown.
    let llm = fake_llm::spawn(vec![
        Reply::Text(vec![
            "Returns take\u{0} ".into(),
            "30\u{1b}[2J days\u{202e}.".into(),
        ]),
        Reply::Text(vec!["Asked\u{0} about returns.".into()]),
    ])
    .await;
    let (status, saved) = api
        .json(
            Method::PUT,
            "/api/v1/provider-keys/openai",
            json!({"apiKey": "sk-test-abcdef123456", "baseUrl": llm.base_url}),
        )
        .await;
    assert_eq!(status, 200, "{saved}");
    api.agent(json!({"name": "Support", "provider": "openai"}))
        .await;
    let chat = support_chat(&app).await;

    let res = say(
        &app,
        "harbor-bikes",
        "support",
        &chat,
        "How long do returns take?",
    )
    .await;
    assert_eq!(res.status(), 200);
    let reply: Value = res.json().await.unwrap();
    assert_eq!(reply["provider"], "openai", "{reply}");
    assert_eq!(reply["content"], "Returns take 30[2J days.", "{reply}");

    let conversation = format!("/api/v1/conversations/{}", chat["conversationId"]);
    let (_, messages) = api.get(&format!("{conversation}/messages")).await;
    assert_eq!(
        messages["data"][1]["content"], reply["content"],
        "{messages}"
    );
    for _ in 0..100 {
        let (_, read) = api.get(&conversation).await;
        if let Some(summary) = read["summary"].as_str() {
            assert_eq!(summary, "Asked about returns.");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no summary was written");
}

async fn the_section_that_answers_comes_before_one_that_only_shares_the_title(backend: Backend) {
    let Some((app, key)) = harbor(backend, &[]).await else {
        return;
    };
    let api = Api { app: &app, key };
    let id = api.agent(json!({"name": "Support"})).await["id"]
        .as_i64()
        .unwrap();
    let policy = "# Shipping policy\n\nWe ship to Canada in 5 to 8 business days. Express \
        shipping takes 2 to 3 days for a flat fee of $15.\n\n## Returns\n\nYou can return \
        unused items within 30 days for a full refund. Email returns@acme.example with your \
        order number.\n\n## Warranty\n\nAll widgets carry a two-year warranty against \
        manufacturing defects.\n";
    api.indexed(
        id,
        "Shipping and returns",
        "text/markdown",
        policy.as_bytes(),
    )
    .await;
    // "returns" is in the title every passage carries: it must not make the
    // warranty (which has "widgets") look like the whole answer.
    let (_, found) = api
        .get(&format!(
            "/api/v1/agents/{id}/search?q=Can%20I%20return%20a%20widget%3F"
        ))
        .await;
    let found = found["data"].as_array().unwrap();
    assert_eq!(
        found[0]["heading"], "Shipping policy › Returns",
        "{found:?}"
    );
    let warranty = found
        .iter()
        .find(|p| p["heading"] == "Shipping policy › Warranty")
        .unwrap_or_else(|| panic!("{found:?}"));
    assert!(warranty["score"].as_f64().unwrap() < 0.51, "{warranty}");
}

async fn an_agent_is_deleted_from_its_page_once_the_box_is_ticked(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let (owner, key) = organization_with_key(&app, "Harbor Bikes", "owner@harbor.test").await;
    let api = Api { app: &app, key };
    let id = api.agent(json!({"name": "Support"})).await["id"]
        .as_i64()
        .unwrap();
    api.indexed(id, "Hours", "text/plain", b"We open at nine on weekdays.")
        .await;
    let chat = support_chat(&app).await;
    assert_eq!(
        say(&app, "harbor-bikes", "support", &chat, "When do you open?")
            .await
            .status(),
        200
    );
    let page = format!("/app/agents/{id}");
    let (_, html) = owner.get(&page).await;
    assert!(
        html.contains(&format!("action=\"{page}/delete\"")),
        "{html}"
    );

    // Those who may only read see no such form, and cannot post it.
    let (_, viewer) = crate::accounts::signed_in_member(
        &app,
        app.org_id("harbor-bikes"),
        "viewer@harbor.test",
        frontdesk::domain::Role::Viewer,
    )
    .await;
    let (_, html) = viewer.get(&page).await;
    assert!(!html.contains("/delete\""), "{html}");
    let res = viewer
        .submit(&page, &format!("{page}/delete"), &[("confirm", "yes")])
        .await;
    assert_eq!(res.status(), 403);

    // Unticked: nothing happens, and the page says why.
    let res = owner.submit(&page, &format!("{page}/delete"), &[]).await;
    assert_eq!(res.status(), 303);
    let (_, html) = owner.get(&page).await;
    assert!(html.contains("Tick the box to confirm"), "{html}");
    assert_eq!(api.get(&format!("/api/v1/agents/{id}")).await.0, 200);

    let res = owner
        .submit(&page, &format!("{page}/delete"), &[("confirm", "yes")])
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"].to_str().unwrap(), "/app/agents");
    let (_, list) = owner.get("/app/agents").await;
    assert!(list.contains("was deleted"), "{list}");
    assert_eq!(api.get(&format!("/api/v1/agents/{id}")).await.0, 404);
    assert_eq!(app.get("/c/harbor-bikes/support").await.status(), 404);
    let (_, conversations) = api.get("/api/v1/conversations").await;
    assert!(
        conversations["data"].as_array().unwrap().is_empty(),
        "{conversations}"
    );
    let (_, audit) = owner.get("/app/audit").await;
    assert!(
        audit.contains("agent.deleted") || audit.contains("Agent deleted"),
        "{audit}"
    );
}

async fn what_the_api_creates_says_where_it_is_read(backend: Backend) {
    let Some((app, key)) = harbor(backend, &[]).await else {
        return;
    };
    let post = |path: &str| app.client.post(app.url(path)).bearer_auth(&key);
    let follow = |res: reqwest::Response| async {
        assert_eq!(res.status(), 201);
        let location = res.headers()["location"].to_str().unwrap().to_string();
        let created: Value = res.json().await.unwrap();
        let read: Value = app
            .client
            .get(app.url(&location))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(read["id"], created["id"], "{location}");
        (location, created)
    };
    let (at, agent) = follow(
        post("/api/v1/agents")
            .json(&json!({"name": "Support"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(at, format!("/api/v1/agents/{}", agent["id"]));
    let (at, doc) = follow(
        post(&format!(
            "/api/v1/agents/{}/documents?title=Hours",
            agent["id"]
        ))
        .header("content-type", "text/plain")
        .body("We open at nine.")
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(at, format!("/api/v1/documents/{}", doc["id"]));
    let (at, conversation) = follow(
        post("/api/v1/conversations")
            .json(&json!({"agentId": agent["id"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(at, format!("/api/v1/conversations/{}", conversation["id"]));
}

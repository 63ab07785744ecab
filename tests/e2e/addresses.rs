//! Organizations and agents change their public address (slug); the old one
//! keeps leading to them and no one else can take it.

use diesel::prelude::*;
use frontdesk::db::schema::{agents, audit_log, organizations};
use frontdesk::domain::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::accounts::{Browser, add_member, organization_with_key};
use crate::backend_tests;
use crate::chat::{Api, say, start_chat};
use crate::helpers::{Backend, TestApp, spawn_app};

backend_tests!(
    an_organization_moves_and_its_old_address_keeps_working,
    former_addresses_are_nobody_elses_and_new_ones_are_bounded,
    one_address_claimed_at_once_goes_to_one_organization,
    an_agent_moves_and_its_old_address_keeps_working,
    address_changes_are_checked_over_the_api,
);

/// Where `GET path` sends a browser: the status and `Location`.
async fn redirect_of(app: &TestApp, path: &str) -> (StatusCode, String) {
    let res = app.client.get(app.url(path)).send().await.unwrap();
    let location = res
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (res.status(), location)
}

/// Moves the browser's organization to `slug` on the organization page.
async fn move_to(browser: &Browser, slug: &str) -> reqwest::Response {
    browser
        .submit(
            "/app/organization",
            "/app/organization/address",
            &[("slug", slug)],
        )
        .await
}

fn slug_of(app: &TestApp, org: i64) -> String {
    organizations::table
        .find(org)
        .select(organizations::slug)
        .first(&mut app.pool().get().unwrap())
        .unwrap()
}

async fn an_organization_moves_and_its_old_address_keeps_working(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let (owner, key) = organization_with_key(&app, "Harbor Bikes", "owner@harbor.test").await;
    let api = Api { app: &app, key };
    api.agent(json!({"name": "Support"})).await;
    let org = app.org_id("harbor-bikes");
    // A visitor's conversation from before the move.
    let before: Value = start_chat(&app, "harbor-bikes", "support", None)
        .await
        .json()
        .await
        .unwrap();

    // Refused beside the field, with what was typed kept.
    for (typed, message) in [
        ("x", "must be 2 to 63 characters long"),
        (
            "Harbor Bikes!",
            "may contain only letters, digits and hyphens",
        ),
        ("-harbor", "cannot start or end with a hyphen"),
    ] {
        let res = move_to(&owner, typed).await;
        assert_eq!(res.status(), 422, "{typed:?}");
        let html = res.text().await.unwrap();
        assert!(
            html.contains("org-slug-error") && html.contains(message),
            "{typed:?}: {html}"
        );
        let typed_html = typed.replace('!', "&#33;");
        assert!(
            html.contains(&format!("value=\"{typed}\""))
                || html.contains(&format!("value=\"{typed_html}\"")),
            "what was typed is kept: {html}"
        );
    }
    assert_eq!(slug_of(&app, org), "harbor-bikes");

    let res = move_to(&owner, " Harbor-Cycles ").await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        slug_of(&app, org),
        "harbor-cycles",
        "trimmed and lower-cased"
    );
    let (_, page) = owner.get("/app/organization").await;
    assert!(
        page.contains("Your chat pages now live at /c/harbor-cycles/")
            && page.contains("Former addresses that still lead here: <code>harbor-bikes</code>"),
        "{page}"
    );
    let (_, audit) = owner
        .get("/app/audit?action=organization.address_changed")
        .await;
    assert!(audit.contains("harbor-bikes → harbor-cycles"), "{audit}");

    // The chat page moved; the old address sends browsers there for good.
    assert_eq!(app.get("/c/harbor-cycles/support").await.status(), 200);
    assert_eq!(
        redirect_of(&app, "/c/harbor-bikes/support").await,
        (
            StatusCode::PERMANENT_REDIRECT,
            "/c/harbor-cycles/support?fd_from=harbor-bikes%2Fsupport".to_string()
        )
    );
    // Widgets embedded with the old slug go on working, old conversations too.
    let res = start_chat(&app, "harbor-bikes", "support", None).await;
    assert_eq!(res.status(), 201);
    let res = say(&app, "harbor-bikes", "support", &before, "Still there?").await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let res = say(&app, "harbor-cycles", "support", &before, "And here?").await;
    assert_eq!(res.status(), 200);

    // Saving the same address again changes nothing.
    let res = move_to(&owner, "harbor-cycles").await;
    assert_eq!(res.status(), 303);
    let (_, page) = owner.get("/app/organization").await;
    assert!(page.contains("that is already the address"), "{page}");

    // Taking the old one back is allowed, and the other becomes former.
    let res = move_to(&owner, "harbor-bikes").await;
    assert_eq!(res.status(), 303);
    assert_eq!(slug_of(&app, org), "harbor-bikes");
    assert_eq!(
        redirect_of(&app, "/c/harbor-cycles/support").await.1,
        "/c/harbor-bikes/support?fd_from=harbor-cycles%2Fsupport"
    );
    let (_, page) = owner.get("/app/organization").await;
    assert!(
        page.contains("Former addresses that still lead here: <code>harbor-cycles</code>."),
        "one former address, not two: {page}"
    );

    // Agents and viewers cannot move it.
    add_member(
        &mut app.pool().get().unwrap(),
        org,
        "agent@harbor.test",
        Role::Agent,
    );
    let agent = Browser::new(&app);
    assert_eq!(
        agent
            .login("agent@harbor.test", crate::accounts::PASSWORD)
            .await
            .status(),
        303
    );
    let res = agent
        .submit("/app", "/app/organization/address", &[("slug", "hijacked")])
        .await;
    assert_eq!(res.status(), 403);
    assert_eq!(slug_of(&app, org), "harbor-bikes");
}

async fn former_addresses_are_nobody_elses_and_new_ones_are_bounded(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let (harbor, key) = organization_with_key(&app, "Harbor Bikes", "owner@harbor.test").await;
    Api { app: &app, key }
        .agent(json!({"name": "Support"}))
        .await;
    let (rival, rival_key) = organization_with_key(&app, "Rival Bikes", "owner@rival.test").await;
    Api {
        app: &app,
        key: rival_key,
    }
    .agent(json!({"name": "Support"}))
    .await;
    assert_eq!(move_to(&harbor, "harbor-cycles").await.status(), 303);

    // Another organization can take neither the address nor the former one:
    // an old snippet must never reach someone else's agent.
    for taken in ["harbor-cycles", "harbor-bikes"] {
        let res = move_to(&rival, taken).await;
        assert_eq!(res.status(), 422, "{taken}");
        let html = res.text().await.unwrap();
        assert!(
            html.contains("Another organization uses or used this address"),
            "{html}"
        );
    }
    assert_eq!(slug_of(&app, app.org_id("rival-bikes")), "rival-bikes");
    // The page hands its script only a former address of its own agent, so a
    // link naming another business's cannot pass that one's visitor id on.
    let vouched = |query: &'static str| {
        let app = &app;
        async move {
            let page = app
                .get(&format!("/c/harbor-cycles/support?{query}"))
                .await
                .text()
                .await
                .unwrap();
            page.split("data-from=\"")
                .nth(1)
                .map(|rest| rest.split('"').next().unwrap_or_default().to_string())
        }
    };
    assert_eq!(
        vouched("fd_from=harbor-bikes%2Fsupport").await.as_deref(),
        Some("harbor-bikes/support")
    );
    for query in [
        "fd_from=rival-bikes%2Fsupport",
        "fd_from=harbor-cycles%2Fsupport",
        "fd_from=harbor-bikes",
        "fd_from=%22%3E%3Cscript%3E%2Fx",
    ] {
        assert_eq!(vouched(query).await, None, "{query}");
    }
    // A new organization named like the old one gets a slug of its own.
    let newcomer = Browser::new(&app);
    assert_eq!(
        newcomer
            .signup("Harbor Bikes", "owner@newcomer.test")
            .await
            .status(),
        303
    );
    let slugs: Vec<String> = organizations::table
        .order(organizations::id.asc())
        .select(organizations::slug)
        .load(&mut app.pool().get().unwrap())
        .unwrap();
    assert_eq!(slugs, ["harbor-cycles", "rival-bikes", "harbor-bikes-1"]);
    assert_eq!(
        redirect_of(&app, "/c/harbor-bikes/support").await.1,
        "/c/harbor-cycles/support?fd_from=harbor-bikes%2Fsupport",
        "the old address still leads to Harbor"
    );

    // Each former address stays reserved, so only five new ones in 30 days.
    for n in 1..=4 {
        let res = move_to(&harbor, &format!("harbor-{n}")).await;
        assert_eq!(res.status(), 303);
    }
    let res = move_to(&harbor, "harbor-5").await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("already changed 5 times in the last 30 days"),
        "{html}"
    );
    // Beside the field, on the organization page, with what was typed.
    assert!(
        html.contains("slug-error") && html.contains(r#"value="harbor-5""#),
        "{html}"
    );
    // Taking one back reserves nothing new: still allowed.
    assert_eq!(move_to(&harbor, "harbor-bikes").await.status(), 303);
    for former in [
        "harbor-cycles",
        "harbor-1",
        "harbor-2",
        "harbor-3",
        "harbor-4",
    ] {
        assert_eq!(
            redirect_of(&app, &format!("/c/{former}/support")).await,
            (
                StatusCode::PERMANENT_REDIRECT,
                format!("/c/harbor-bikes/support?fd_from={former}%2Fsupport")
            ),
            "{former}"
        );
        assert_eq!(move_to(&rival, former).await.status(), 422, "{former}");
    }
    // The redirect keeps the query and is not cached (moving back would loop).
    let res = app
        .client
        .get(app.url("/c/harbor-1/support?utm_source=mail&lang=en"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["location"],
        "/c/harbor-bikes/support?utm_source=mail&lang=en&fd_from=harbor-1%2Fsupport"
    );
    assert_eq!(res.headers()["cache-control"], "no-store");

    // Deleting the organization frees its addresses, former ones included.
    let harbor_id = app.org_id("harbor-bikes");
    let res = harbor
        .submit(
            "/app/organization",
            "/app/organization/delete",
            &[("confirmation", "harbor-bikes")],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        organizations::table
            .find(harbor_id)
            .count()
            .get_result::<i64>(&mut app.pool().get().unwrap())
            .unwrap(),
        0
    );
    assert_eq!(app.get("/c/harbor-4/support").await.status(), 404);
    assert_eq!(move_to(&rival, "harbor-4").await.status(), 303);
}

async fn an_agent_moves_and_its_old_address_keeps_working(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let (owner, key) = organization_with_key(&app, "Harbor Bikes", "owner@harbor.test").await;
    let api = Api { app: &app, key };
    let support = api.agent(json!({"name": "Support"})).await;
    let sales = api.agent(json!({"name": "Sales"})).await;
    let before: Value = start_chat(&app, "harbor-bikes", "support", None)
        .await
        .json()
        .await
        .unwrap();

    // On the agent's page, beside the field.
    let page = format!("/app/agents/{}", support["id"]);
    let fields = |slug: &'static str| {
        vec![
            ("name", "Support"),
            ("slug", slug),
            ("temperature", "0.2"),
            ("handoff_threshold", "0.5"),
            ("enabled", "on"),
        ]
    };
    let res = owner.submit(&page, &page, &fields("sales")).await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("agent-slug-error")
            && html.contains("Is taken by another agent (its address now or before)"),
        "{html}"
    );
    let res = owner.submit(&page, &page, &fields("Help Desk")).await;
    assert_eq!(res.status(), 422);
    let res = owner.submit(&page, &page, &fields("help")).await;
    assert_eq!(res.status(), 303);
    let (_, html) = owner.get(&page).await;
    assert!(
        html.contains("/c/harbor-bikes/help")
            && html.contains("still leading here: <code>support</code>"),
        "{html}"
    );

    assert_eq!(
        redirect_of(&app, "/c/harbor-bikes/support").await,
        (
            StatusCode::PERMANENT_REDIRECT,
            "/c/harbor-bikes/help?fd_from=harbor-bikes%2Fsupport".to_string()
        )
    );
    assert_eq!(
        start_chat(&app, "harbor-bikes", "support", None)
            .await
            .status(),
        201
    );
    assert_eq!(
        say(&app, "harbor-bikes", "support", &before, "Hello again")
            .await
            .status(),
        200
    );
    // A new agent named like the old one gets an address of its own.
    let newcomer = api.agent(json!({"name": "Support"})).await;
    assert_eq!(newcomer["slug"], "support-1");
    let (status, _) = api
        .json(
            Method::DELETE,
            &format!("/api/v1/agents/{}", newcomer["id"]),
            json!({}),
        )
        .await;
    assert_eq!(status, 204);
    // The conversation stays with its agent, whatever address reaches it.
    let res = say(&app, "harbor-bikes", "sales", &before, "Wrong agent").await;
    assert_eq!(res.status(), 404);

    // Over the API: the former address belongs to Support, not to Sales.
    let (status, body) = api
        .json(
            Method::PUT,
            &format!("/api/v1/agents/{}", sales["id"]),
            json!({"name": "Sales", "slug": "support"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("slug"), "{body}");
    let (status, body) = api
        .json(
            Method::PUT,
            &format!("/api/v1/agents/{}", support["id"]),
            json!({"name": "Support", "slug": "support"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["slug"], "support", "taken back");
    assert_eq!(body["formerSlugs"], json!(["help"]));
    let (_, list) = api.get("/api/v1/agents").await;
    let listed: Vec<(Value, Value)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["slug"].clone(), a["formerSlugs"].clone()))
        .collect();
    assert_eq!(
        listed,
        [
            (json!("sales"), json!([])),
            (json!("support"), json!(["help"]))
        ]
    );
    assert_eq!(app.get("/c/harbor-bikes/support").await.status(), 200);
    assert_eq!(
        redirect_of(&app, "/c/harbor-bikes/help").await.1,
        "/c/harbor-bikes/support?fd_from=harbor-bikes%2Fhelp"
    );
    let changes: i64 = audit_log::table
        .filter(audit_log::action.eq("agent.address_changed"))
        .count()
        .get_result(&mut app.pool().get().unwrap())
        .unwrap();
    assert_eq!(changes, 2);

    // Deleting an agent frees its former addresses for the others.
    let (status, _) = api
        .json(
            Method::DELETE,
            &format!("/api/v1/agents/{}", support["id"]),
            json!({}),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(app.get("/c/harbor-bikes/help").await.status(), 404);
    let (status, body) = api
        .json(
            Method::PUT,
            &format!("/api/v1/agents/{}", sales["id"]),
            json!({"name": "Sales", "slug": "help"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let slugs: Vec<String> = agents::table
        .select(agents::slug)
        .load(&mut app.pool().get().unwrap())
        .unwrap();
    assert_eq!(slugs, ["help"]);

    // Five new former addresses in 30 days; taking one back is not counted.
    let sales_path = format!("/api/v1/agents/{}", sales["id"]);
    for n in 1..=4 {
        let slug = format!("sales-{n}");
        let (status, body) = api
            .json(
                Method::PUT,
                &sales_path,
                json!({"name": "Sales", "slug": slug}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = api
        .json(
            Method::PUT,
            &sales_path,
            json!({"name": "Sales", "slug": "sales-5"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("already changed 5 times in the last 30 days"),
        "{body}"
    );
    let (status, body) = api
        .json(
            Method::PUT,
            &sales_path,
            json!({"name": "Sales", "slug": "sales"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for former in ["help", "sales-1", "sales-4"] {
        assert_eq!(
            redirect_of(&app, &format!("/c/harbor-bikes/{former}"))
                .await
                .1,
            format!("/c/harbor-bikes/sales?fd_from=harbor-bikes%2F{former}")
        );
    }
}

async fn address_changes_are_checked_over_the_api(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let (owner, key) = organization_with_key(&app, "Harbor Bikes", "owner@harbor.test").await;
    let (rival, _) = organization_with_key(&app, "Rival Bikes", "owner@rival.test").await;
    assert_eq!(move_to(&rival, "rival-cycles").await.status(), 303);
    let read_key = owner.api_key("read", "read").await;
    let api = Api { app: &app, key };
    let patch = |body: Value| api.json(Method::PATCH, "/api/v1/organization", body);

    for (body, status) in [
        (json!({}), 422),
        (json!({"colour": "red"}), 422),
        (json!({"slug": "x"}), 422),
        (json!({"slug": "rival-cycles"}), 409),
        (json!({"slug": "rival-bikes"}), 409),
        (json!({"slug": "ok-slug", "name": ""}), 422),
        (json!({"slug": 7}), 422),
    ] {
        let (got, answer) = patch(body.clone()).await;
        assert_eq!(got.as_u16(), status, "{body}: {answer}");
        assert!(answer["code"].is_string(), "the error shape: {answer}");
    }
    let res = app
        .client
        .patch(app.url("/api/v1/organization"))
        .bearer_auth(&read_key)
        .json(&json!({"slug": "read-only"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "a read key cannot move it");
    assert_eq!(slug_of(&app, app.org_id("harbor-bikes")), "harbor-bikes");

    let (status, body) = patch(json!({"slug": "harbor-cycles", "name": "Harbor Cycles"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["slug"], "harbor-cycles");
    assert_eq!(body["name"], "Harbor Cycles");
    assert_eq!(body["formerSlugs"], json!(["harbor-bikes"]));
    let (_, body) = api.get("/api/v1/organization").await;
    assert_eq!(body["formerSlugs"], json!(["harbor-bikes"]));
    // Only the name: the address stays.
    let (status, body) = patch(json!({"name": "Harbor Cycles Ltd"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["slug"], "harbor-cycles");
    // What GET answered, sent back changed: the read-only fields are ignored.
    let mut read = body.clone();
    read["name"] = json!("Harbor Cycles");
    let (status, body) = patch(read).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "Harbor Cycles");
    assert_eq!(body["formerSlugs"], json!(["harbor-bikes"]));
    // A field GET does not answer with is a mistake, not something to ignore.
    let (status, body) = patch(json!({"name": "Harbor Bicycles", "bogus": 1})).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("bogus"),
        "{body}"
    );
    let (_, body) = api.get("/api/v1/organization").await;
    assert_eq!(body["name"], "Harbor Cycles", "nothing changed");
}

async fn one_address_claimed_at_once_goes_to_one_organization(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let (_, harbor_key) = organization_with_key(&app, "Harbor Bikes", "owner@harbor.test").await;
    let (_, rival_key) = organization_with_key(&app, "Rival Bikes", "owner@rival.test").await;
    let harbor = Api {
        app: &app,
        key: harbor_key,
    };
    let rival = Api {
        app: &app,
        key: rival_key,
    };
    let claims = (0..8).map(|n| {
        let api = if n % 2 == 0 { &harbor } else { &rival };
        api.json(
            Method::PATCH,
            "/api/v1/organization",
            json!({"slug": "contested"}),
        )
    });
    let answers = futures_util::future::join_all(claims).await;
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| s.as_u16()).collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "taken answers 409, never 500: {statuses:?}"
    );
    let holders: Vec<String> = organizations::table
        .filter(organizations::slug.eq("contested"))
        .select(organizations::name)
        .load(&mut app.pool().get().unwrap())
        .unwrap();
    assert_eq!(holders.len(), 1, "{holders:?}");
    let winner_even = holders[0] == "Harbor Bikes";
    for (n, status) in statuses.iter().enumerate() {
        assert_eq!(*status == 200, (n % 2 == 0) == winner_even, "{statuses:?}");
    }

    // One agent moved two ways at once: each move sees the one before it.
    let support = harbor.agent(json!({"name": "Support"})).await;
    let path = format!("/api/v1/agents/{}", support["id"]);
    let moves = (0..8).map(|n| {
        let slug = if n % 2 == 0 { "help" } else { "care" };
        harbor.json(Method::PUT, &path, json!({"name": "Support", "slug": slug}))
    });
    let answers = futures_util::future::join_all(moves).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
    let (_, agent) = harbor.get(&path).await;
    let now = agent["slug"].as_str().unwrap().to_string();
    let other = if now == "help" { "care" } else { "help" };
    let mut former: Vec<String> = frontdesk::db::schema::agent_former_slugs::table
        .select(frontdesk::db::schema::agent_former_slugs::slug)
        .load(&mut app.pool().get().unwrap())
        .unwrap();
    former.sort();
    let mut expected = vec![other.to_string(), "support".to_string()];
    expected.sort();
    assert_eq!(former, expected, "now at {now}");
}

//! Pages in a real headless Chromium, driven by tests/browser/*.mjs (playwright-core).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{Backend, spawn_app};

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Where screenshots land, to be looked at after a run.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots")
}

/// `false` (with a message) when the browser toolchain is missing outside CI;
/// in CI a missing browser is a failure, never a skip.
pub fn browser_available() -> bool {
    let driver = browser_dir().join("node_modules/playwright-core");
    let missing: Vec<String> = [
        (chromium(), "Chromium (apt-get install chromium)"),
        (driver, "playwright-core (npm ci in tests/browser)"),
    ]
    .into_iter()
    .filter(|(path, _)| !path.exists())
    .map(|(_, what)| what.to_string())
    .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !crate::helpers::ci(),
        "CI=true but the browser tests cannot run: missing {}",
        missing.join(", ")
    );
    eprintln!("skipping browser test: missing {}", missing.join(", "));
    false
}

/// Runs one browser script against a running server and fails with its output.
pub async fn run_script(script: &str, base_url: &str, extra_env: &[(&str, PathBuf)]) {
    let script = browser_dir().join(script);
    let base_url = base_url.to_string();
    let shots = screenshot_dir();
    let extra: Vec<(String, PathBuf)> = extra_env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let output = actix_web::rt::task::spawn_blocking(move || {
        std::fs::create_dir_all(&shots).ok();
        Command::new("node")
            .arg(&script)
            .env("BASE_URL", base_url)
            .env("SCREENSHOT_DIR", &shots)
            .env("CHROMIUM_PATH", chromium())
            .envs(extra)
            .output()
    })
    .await
    .expect("browser task")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser checks failed:\n{stdout}\n{stderr}"
    );
}

#[actix_web::test]
async fn landing_and_error_pages_in_headless_chromium() {
    if !browser_available() {
        return;
    }
    let app = spawn_app(Backend::Sqlite)
        .start()
        .await
        .expect("sqlite always runs");
    run_script("landing.mjs", &app.address, &[]).await;
}

#[actix_web::test]
async fn sign_up_verify_sign_in_invite_and_accept_in_headless_chromium() {
    if !browser_available() {
        return;
    }
    let app = spawn_app(Backend::Sqlite)
        .start()
        .await
        .expect("sqlite always runs");
    run_script(
        "accounts.mjs",
        &app.address,
        &[("MAIL_DIR", app.data_dir().join("mail"))],
    )
    .await;
}

#[actix_web::test]
async fn the_widget_answers_on_an_allowed_site_and_is_refused_elsewhere_in_headless_chromium() {
    if !browser_available() {
        return;
    }
    let app = spawn_app(Backend::Sqlite)
        .start()
        .await
        .expect("sqlite always runs");
    let (_, key) =
        crate::accounts::organization_with_key(&app, "Harbor Bikes", "owner@harbor.test").await;
    // A free port for the embedding site, served by the script itself.
    let host_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let api = |method: reqwest::Method, path: &str| {
        app.client.request(method, app.url(path)).bearer_auth(&key)
    };
    let agent: serde_json::Value = api(reqwest::Method::POST, "/api/v1/agents")
        .json(&serde_json::json!({
            "name": "Support",
            "greeting": "Hi! I'm the Harbor Bikes assistant.",
            "allowedOrigins": [format!("http://127.0.0.1:{host_port}")],
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = agent["id"].as_i64().unwrap();
    let policy = "# Returns\n\nBikes can be returned within 30 days with the original receipt.\n\n# Repairs\n\nA basic tune-up costs 49 euros.\n";
    let res = api(
        reqwest::Method::POST,
        &format!("/api/v1/agents/{id}/documents?title=Returns%20policy"),
    )
    .header("content-type", "text/markdown")
    .body(policy)
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 201);
    for _ in 0..100 {
        let docs: serde_json::Value = api(
            reqwest::Method::GET,
            &format!("/api/v1/agents/{id}/documents"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        if docs["data"][0]["status"] == "ready" {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    run_script(
        "widget.mjs",
        &app.address,
        &[
            ("ORG", PathBuf::from("harbor-bikes")),
            ("AGENT", PathBuf::from("support")),
            ("HOST_PORT", PathBuf::from(host_port.to_string())),
            ("QUESTION", PathBuf::from("Can I return a bike?")),
            ("EXPECT_TEXT", PathBuf::from("30 days")),
            ("EXPECT_CITATION", PathBuf::from("Returns policy")),
        ],
    )
    .await;
    // The team reads that conversation in /app.
    run_script(
        "conversations.mjs",
        &app.address,
        &[
            ("EMAIL", PathBuf::from("owner@harbor.test")),
            ("PASSWORD", PathBuf::from(crate::accounts::PASSWORD)),
            ("EXPECT_TEXT", PathBuf::from("30 days")),
            ("EXPECT_CITATION", PathBuf::from("Returns policy")),
        ],
    )
    .await;
    // Then the team resolves conversations under the widget's feet.
    run_script(
        "widget.mjs",
        &app.address,
        &[
            ("ORG", PathBuf::from("harbor-bikes")),
            ("AGENT", PathBuf::from("support")),
            ("HOST_PORT", PathBuf::from(host_port.to_string())),
            ("QUESTION", PathBuf::from("Can I return a bike?")),
            ("API_KEY", PathBuf::from(&key)),
            ("PARTS", PathBuf::from("team,resolved")),
        ],
    )
    .await;
}

#[actix_web::test]
async fn billing_page_upgrade_and_portal_in_headless_chromium() {
    if !browser_available() {
        return;
    }
    let stripe = crate::fake_stripe::FakeStripe::spawn().await;
    let app = crate::billing::billing_app(Backend::Sqlite, &stripe, &[])
        .await
        .expect("sqlite always runs");
    let email = "owner@harbor.test";
    crate::accounts::organization_with_key(&app, "Harbor Bikes", email).await;
    let login = |mode: &str| {
        vec![
            ("EMAIL", PathBuf::from(email)),
            ("PASSWORD", PathBuf::from(crate::accounts::PASSWORD)),
            ("MODE", PathBuf::from(mode)),
        ]
    };
    run_script("billing.mjs", &app.address, &login("free")).await;
    assert_eq!(stripe.requests_to("POST", "/v1/checkout/sessions").len(), 1);
    crate::billing::subscribe_with_invoice(&app, "cus_fake1").await;
    run_script("billing.mjs", &app.address, &login("subscribed")).await;
    assert_eq!(
        stripe
            .requests_to("POST", "/v1/billing_portal/sessions")
            .len(),
        1
    );
}

#[actix_web::test]
async fn every_app_page_and_filter_form_works_on_desktop_and_phone_in_headless_chromium() {
    use diesel::prelude::*;
    use frontdesk::db::schema::knowledge_documents;
    if !browser_available() {
        return;
    }
    let app = spawn_app(Backend::Sqlite)
        .demo(true)
        .start()
        .await
        .expect("sqlite always runs");
    // The demo's documents are indexed by the job workers within moments.
    for _ in 0..200 {
        let waiting: i64 = knowledge_documents::table
            .filter(knowledge_documents::status.ne("ready"))
            .count()
            .get_result(&mut app.pool().get().unwrap())
            .unwrap();
        if waiting == 0 {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A document whose indexing has not finished, so the tour sees the agent
    // page follow it (the tour deletes it to see the list change).
    {
        use frontdesk::db::schema::agents;
        let mut conn = app.pool().get().unwrap();
        let (agent, org): (i64, i64) = agents::table
            .filter(agents::slug.eq(frontdesk::services::demo::AGENT_SLUG))
            .select((agents::id, agents::organization_id))
            .first(&mut conn)
            .unwrap();
        let now = frontdesk::domain::now();
        diesel::insert_into(knowledge_documents::table)
            .values((
                knowledge_documents::organization_id.eq(org),
                knowledge_documents::agent_id.eq(agent),
                knowledge_documents::title.eq("Stuck upload"),
                knowledge_documents::format.eq("text"),
                knowledge_documents::size_bytes.eq(12),
                knowledge_documents::content.eq("Still coming"),
                knowledge_documents::status.eq("indexing"),
                knowledge_documents::chunk_count.eq(0),
                knowledge_documents::created_at.eq(now),
                knowledge_documents::updated_at.eq(now),
            ))
            .execute(&mut conn)
            .unwrap();
    }
    // A platform admin too, so the tour takes in /admin.
    {
        use frontdesk::db::schema::users;
        diesel::update(users::table.filter(users::email.eq(frontdesk::services::demo::EMAIL)))
            .set(users::is_platform_admin.eq(true))
            .execute(&mut app.pool().get().unwrap())
            .unwrap();
    }
    // A second organization of the owner's, so the tour takes in the switcher
    // and an emailed ticket link opened while the other one is current.
    let (ticket_org, other_org) = {
        use frontdesk::db::models::User;
        let mut conn = app.pool().get().unwrap();
        let email = frontdesk::domain::Email::parse(frontdesk::services::demo::EMAIL).unwrap();
        let owner = User::find_by_email(&mut conn, &email).unwrap().unwrap();
        let other = frontdesk::services::accounts::create_organization(
            &mut conn,
            &owner,
            // After the demo's name: the demo stays the one open at sign-in.
            "Wharf Cycles",
            "127.0.0.1",
        )
        .unwrap();
        (app.org_id("lighthouse-coffee-roasters"), other.id.0)
    };
    // A visitor who asked for a person, so the tour has a ticket to open.
    let chat: serde_json::Value =
        crate::chat::start_chat(&app, "lighthouse-coffee-roasters", "barista", None)
            .await
            .json()
            .await
            .unwrap();
    let said = crate::chat::say(
        &app,
        "lighthouse-coffee-roasters",
        "barista",
        &chat,
        "My order of Harbour Blend arrived damaged, the bag is torn.",
    )
    .await;
    assert_eq!(said.status(), 200);
    let escalated =
        crate::chat::escalate(&app, "lighthouse-coffee-roasters", "barista", &chat).await;
    assert_eq!(escalated, 200);
    // A word longer than any screen (a key held down): the ticket and the
    // transcript wrap it rather than widen the page.
    let long_word = crate::chat::say(
        &app,
        "lighthouse-coffee-roasters",
        "barista",
        &chat,
        &"y".repeat(4000),
    )
    .await;
    assert_eq!(long_word.status(), 200);
    run_script(
        "tour.mjs",
        &app.address,
        &[
            ("EMAIL", PathBuf::from(frontdesk::services::demo::EMAIL)),
            (
                "PASSWORD",
                PathBuf::from(frontdesk::services::demo::PASSWORD),
            ),
            (
                "CHAT_PATH",
                PathBuf::from(format!(
                    "/c/lighthouse-coffee-roasters/{}",
                    frontdesk::services::demo::AGENT_SLUG
                )),
            ),
            ("TICKET_ORG", PathBuf::from(ticket_org.to_string())),
            ("OTHER_ORG", PathBuf::from(other_org.to_string())),
        ],
    )
    .await;
}

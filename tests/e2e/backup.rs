//! `frontdesk backup` and `frontdesk export`, run as the operator would run them
//! while the server keeps serving.

use std::path::Path;

use diesel::prelude::*;
use frontdesk::db::schema::billing_accounts;
use serde_json::Value;

use crate::backend_tests;
use crate::chat::{say, start_chat};
use crate::cli::{SECRETS, assert_clean_failure, frontdesk, stderr, stdout};
use crate::helpers::{Backend, TestApp, spawn_app};

backend_tests!(
    export_writes_one_organization_and_no_secrets,
    backup_copies_sqlite_while_serving_and_points_postgres_to_pg_dump,
);

const DEMO: &str = "lighthouse-coffee-roasters";

fn run(app: &TestApp, args: &[&str]) -> std::process::Output {
    frontdesk(app.dir.path())
        .env("DATABASE_URL", &app.db.url)
        .envs(SECRETS)
        .args(args)
        .output()
        .unwrap()
}

#[cfg(unix)]
fn assert_owner_only(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", path.display());
}

#[cfg(not(unix))]
fn assert_owner_only(_: &Path) {}

async fn export_writes_one_organization_and_no_secrets(backend: Backend) {
    let Some(app) = spawn_app(backend).demo(true).start().await else {
        return;
    };
    // Another tenant with an API key: none of it may appear in the export.
    let (_, other_key) =
        crate::accounts::organization_with_key(&app, "Harbor Bikes", "owner@harbor.example").await;
    let chat: Value = start_chat(&app, DEMO, "barista", None)
        .await
        .json()
        .await
        .unwrap();
    let res = say(
        &app,
        DEMO,
        "barista",
        &chat,
        "Do you roast decaf <b>beans</b>?",
    )
    .await;
    assert_eq!(res.status(), 200);

    // A subscription in its trial: the export says when what ends.
    let at = |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
    diesel::insert_into(billing_accounts::table)
        .values((
            billing_accounts::organization_id.eq(app.org_id(DEMO)),
            billing_accounts::stripe_customer_id.eq(Some("cus_lighthouse")),
            billing_accounts::stripe_subscription_id.eq(Some("sub_lighthouse")),
            billing_accounts::plan.eq("pro"),
            billing_accounts::status.eq("trialing"),
            billing_accounts::current_period_start.eq(Some(at("2026-12-01 00:00:00"))),
            billing_accounts::current_period_end.eq(Some(at("2027-01-01 00:00:00"))),
            billing_accounts::trial_end.eq(Some(at("2026-12-15 00:00:00"))),
            billing_accounts::cancel_at_period_end.eq(false),
            billing_accounts::stripe_state_at.eq(1_i64),
            billing_accounts::created_at.eq(at("2026-12-01 00:00:00")),
            billing_accounts::updated_at.eq(at("2026-12-01 00:00:00")),
        ))
        .execute(&mut app.pool().get().unwrap())
        .unwrap();

    let out = app.dir.path().join("lighthouse.json");
    let out_arg = out.to_str().unwrap();
    let done = run(&app, &["export", "--org", DEMO, "--out", out_arg]);
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(
        stdout(&done).contains("1 conversations, 2 messages"),
        "{}",
        stdout(&done)
    );
    assert_owner_only(&out);
    assert!(!app.dir.path().join("lighthouse.json.partial").exists());

    let raw = std::fs::read_to_string(&out).unwrap();
    let doc: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(doc["format"], "frontdesk.organization-export");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["organization"]["slug"], DEMO);
    let members = doc["members"].as_array().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["email"], "demo@lighthouse-coffee.example");
    assert_eq!(members[0]["role"], "owner");
    assert_eq!(doc["agents"][0]["slug"], "barista");
    let billing = &doc["billing"];
    assert_eq!(billing["plan"], "pro", "{billing}");
    assert_eq!(billing["status"], "trialing", "{billing}");
    assert!(
        billing["currentPeriodStart"]
            .as_str()
            .is_some_and(|t| t.starts_with("2026-12-01")),
        "{billing}"
    );
    assert!(
        billing["currentPeriodEnd"]
            .as_str()
            .is_some_and(|t| t.starts_with("2027-01-01")),
        "{billing}"
    );
    assert!(
        billing["trialEnd"]
            .as_str()
            .is_some_and(|t| t.starts_with("2026-12-15")),
        "{billing}"
    );
    assert!(billing["pastDueSince"].is_null(), "{billing}");
    let documents = doc["knowledgeDocuments"].as_array().unwrap();
    assert!(!documents.is_empty());
    assert!(
        documents.iter().all(
            |d| d["agent"] == "barista" && d["content"].as_str().is_some_and(|c| !c.is_empty())
        )
    );
    let conversations = doc["conversations"].as_array().unwrap();
    assert_eq!(conversations.len(), 1);
    let messages = conversations[0]["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "visitor");
    assert_eq!(messages[0]["content"], "Do you roast decaf <b>beans</b>?");
    // Each visitor message says who sent it and from where (personal data).
    assert_eq!(
        messages[0]["visitorId"], conversations[0]["visitorId"],
        "{}",
        messages[0]
    );
    assert!(messages[0]["visitorId"].is_string(), "{}", messages[0]);
    assert_eq!(messages[0]["visitorIp"], "127.0.0.1");
    assert_eq!(messages[1]["role"], "agent");
    assert!(messages[1]["visitorIp"].is_null());
    assert!(messages[1]["citations"].is_array());
    // Secrets and the other tenant never leave.
    for absent in [
        "$argon2",
        "passwordHash",
        "password_hash",
        "token_hash",
        "tokenHash",
        "keyHash",
        "sealed",
        "Harbor Bikes",
        "owner@harbor.example",
        &other_key,
        &other_key[..12],
    ] {
        assert!(!raw.contains(absent), "{absent:?} is in the export");
    }

    // Never overwritten; the export itself is in the audit log.
    let again = run(&app, &["export", "--org", DEMO, "--out", out_arg]);
    assert_clean_failure(&again, "already exists");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), raw);
    let to_stdout = run(&app, &["export", "--org", DEMO, "--out", "-"]);
    assert!(to_stdout.status.success(), "{}", stderr(&to_stdout));
    let doc: Value = serde_json::from_slice(&to_stdout.stdout).unwrap();
    let audit = doc["auditLog"].as_array().unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "organization.exported"
                && e["actor"] == "operator (command line)"),
        "{audit:?}"
    );

    let unknown = run(&app, &["export", "--org", "no-such-shop", "--out", "-"]);
    assert_clean_failure(&unknown, "no organization has the slug \"no-such-shop\"");
    let malformed = run(&app, &["export", "--org", "Not A Slug!", "--out", "-"]);
    assert_clean_failure(&malformed, "is not an organization slug");
}

async fn backup_copies_sqlite_while_serving_and_points_postgres_to_pg_dump(backend: Backend) {
    let Some(app) = spawn_app(backend).demo(true).start().await else {
        return;
    };
    let out = app.dir.path().join("backup.db");
    let out_arg = out.to_str().unwrap();
    if backend == Backend::Postgres {
        let refused = run(&app, &["backup", "--out", out_arg]);
        assert_clean_failure(&refused, "pg_dump");
        assert!(!out.exists());
        return;
    }

    // Writes go on while the copy is taken.
    let writer = {
        let address = app.address.clone();
        actix_web::rt::spawn(async move {
            for i in 0..40 {
                let res = reqwest::Client::new()
                    .post(format!("{address}/api/v1/chat/{DEMO}/barista/conversations"))
                    .json(&serde_json::json!({"channel": "widget", "visitorId": format!("visitor-{i:04}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201);
            }
        })
    };
    let done = run(&app, &["backup", "--out", out_arg]);
    writer.await.unwrap();
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(
        stdout(&done).contains("integrity checked"),
        "{}",
        stdout(&done)
    );
    assert_owner_only(&out);
    assert!(!app.dir.path().join("backup.db.partial").exists());

    // The copy is a whole database on its own: the demo is there, and the
    // binary finds nothing to migrate in it.
    let mut copy = diesel::SqliteConnection::establish(out_arg).unwrap();
    let orgs: i64 = frontdesk::db::schema::organizations::table
        .filter(frontdesk::db::schema::organizations::slug.eq(DEMO))
        .count()
        .get_result(&mut copy)
        .unwrap();
    assert_eq!(orgs, 1);
    let documents: i64 = frontdesk::db::schema::knowledge_documents::table
        .count()
        .get_result(&mut copy)
        .unwrap();
    assert!(documents > 0);
    let dry_run = frontdesk(app.dir.path())
        .env("DATABASE_URL", format!("sqlite://{out_arg}"))
        .envs(SECRETS)
        .args(["migrate", "--dry-run"])
        .output()
        .unwrap();
    assert!(
        stdout(&dry_run).contains("no pending migrations"),
        "{}",
        stderr(&dry_run)
    );

    let before = std::fs::read(&out).unwrap();
    let again = run(&app, &["backup", "--out", out_arg]);
    assert_clean_failure(&again, "already exists");
    assert_eq!(std::fs::read(&out).unwrap(), before);

    let missing = frontdesk(app.dir.path())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", app.dir.path().join("none.db").display()),
        )
        .envs(SECRETS)
        .args([
            "backup",
            "--out",
            app.dir.path().join("x.db").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_clean_failure(&missing, "there is no database");
    assert!(!app.dir.path().join("none.db").exists());
}

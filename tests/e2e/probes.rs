use std::time::Duration;

use serde_json::Value;

use crate::backend_tests;
use crate::helpers::{Backend, spawn_app};

backend_tests!(
    live_reports_pid_and_uptime,
    ready_when_database_answers_and_migrations_applied,
    health_reports_every_check,
    health_db_reports_the_backend,
    production_without_migrate_is_not_ready_until_migrated,
    probes_carry_correlation_ids_and_are_never_cached,
);

async fn live_reports_pid_and_uptime(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let res = app.get("/live").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["pid"], std::process::id());
    assert!(body["uptimeSeconds"].is_u64());
    // Load balancers and monitors that probe with HEAD get the same answer.
    for path in ["/live", "/ready", "/health", "/health/db"] {
        let res = app.client.head(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "HEAD {path}");
    }
}

async fn ready_when_database_answers_and_migrations_applied(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    for path in ["/ready", "/readiness"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 200, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], "ready");
    }
}

async fn health_reports_every_check(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let res = app.get("/health").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["environment"], "development");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    let checks = &body["checks"];
    assert_eq!(checks["database"]["status"], "ok");
    let expected_backend = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(checks["database"]["backend"], expected_backend);
    assert_eq!(checks["migrations"]["status"], "ok");
    assert_eq!(checks["migrations"]["pending"], serde_json::json!([]));
    assert!(checks["pool"]["max"].as_u64().unwrap() >= 1);
    assert!(checks["memory"]["rssBytes"].as_u64().unwrap() > 1_000_000);
}

async fn health_db_reports_the_backend(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let res = app.get("/health/db").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert!(body["latencyMs"].is_number());
}

async fn production_without_migrate_is_not_ready_until_migrated(backend: Backend) {
    let Some(app) = spawn_app(backend)
        .env("APP_ENV", "production")
        .env("BASE_URL", "https://support.example.com")
        .start()
        .await
    else {
        return;
    };

    let res = app.get("/ready").await;
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.contains("pending migrations"), "{reason}");
    assert!(reason.contains("create_accounts"), "{reason}");

    let health = app.get("/health").await;
    assert_eq!(health.status(), 503);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["checks"]["migrations"]["status"], "pending");
    // Liveness is about the process, not its dependencies.
    assert_eq!(app.get("/live").await.status(), 200);

    // A release phase elsewhere applies the migrations; readiness notices.
    let url = frontdesk::db::DatabaseUrl::parse(Some(&app.db.url), &app.data_dir()).unwrap();
    let pool = frontdesk::db::connect(&url, Some(1)).unwrap();
    let mut conn = pool.get().unwrap();
    let applied = frontdesk::db::migrations::run_pending(&mut conn, |_| {}).unwrap();
    assert_eq!(applied.len(), crate::helpers::migration_names().len());

    let mut ready = false;
    for _ in 0..40 {
        if app.get("/ready").await.status() == 200 {
            ready = true;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "/ready never turned 200 after migrating");

    // The job workers waited for the schema too, and now run jobs.
    let id = frontdesk::services::jobs::enqueue(
        &mut conn,
        &frontdesk::services::jobs::Diagnostic::default(),
        frontdesk::services::jobs::EnqueueOptions::default(),
    )
    .unwrap()
    .unwrap();
    let mut done = false;
    for _ in 0..100 {
        let job = frontdesk::db::models::Job::find(&mut conn, id)
            .unwrap()
            .unwrap();
        if job.state == "done" {
            done = true;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done, "the workers never started after migrating");
}

async fn probes_carry_correlation_ids_and_are_never_cached(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let res = app
        .client
        .get(app.url("/health"))
        .header("X-Correlation-Id", "client-chosen-id-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-correlation-id"], "client-chosen-id-42");
    assert_eq!(res.headers()["cache-control"], "no-store");

    let res = app
        .client
        .get(app.url("/live"))
        .header("X-Correlation-Id", "bad id\twith spaces")
        .send()
        .await
        .unwrap();
    let generated = res.headers()["x-correlation-id"].to_str().unwrap();
    assert_eq!(generated.len(), 32);
    assert!(generated.bytes().all(|b| b.is_ascii_hexdigit()));
}

/// Only PostgreSQL can vanish under a running server; in CI this test must run.
#[actix_web::test]
async fn unreachable_database_makes_ready_and_health_503() {
    let Some(mut app) = spawn_app(Backend::Postgres).start().await else {
        return;
    };
    assert_eq!(app.get("/ready").await.status(), 200);
    let production = app
        .another_instance(&[
            ("APP_ENV", "production"),
            ("BASE_URL", "https://support.example.com"),
        ])
        .await;
    app.db.drop_now();

    for path in ["/ready", "/health", "/health/db"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 503, "{path}");
        let body: Value = res.json().await.unwrap();
        let text = body.to_string();
        assert!(text.contains("database"), "{path}: {text}");
    }
    let body: Value = app.get("/ready").await.json().await.unwrap();
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .starts_with("database unreachable")
    );

    // Probes answer anyone: in production the cause stays in the server log.
    let db_name = app.db.url.rsplit('/').next().unwrap().to_string();
    for path in ["/ready", "/health", "/health/db"] {
        let res = app
            .client
            .get(format!("{production}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 503, "{path}");
        let text = res.text().await.unwrap();
        assert!(
            text.contains("the cause is in the server log"),
            "{path}: {text}"
        );
        assert!(
            !text.contains("127.0.0.1") && !text.contains(&db_name),
            "{path}: {text}"
        );
    }
}

/// A signed-in visitor during a database outage gets the application's own 503
/// (page or JSON shape, correlation id, security headers), and is still signed
/// in once the database is back.
#[actix_web::test]
async fn a_database_outage_answers_503_and_keeps_sessions() {
    let Some(app) = spawn_app(Backend::Postgres).start().await else {
        return;
    };
    let b = crate::accounts::Browser::new(&app);
    assert_eq!(
        b.signup("Outage Co", "owner@outage.test").await.status(),
        303
    );
    assert_eq!(b.get("/app").await.0, 200);

    app.db.set_reachable(false);
    let res = b.client.get(app.url("/app")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("x-correlation-id"));
    assert!(res.headers().contains_key("content-security-policy"));
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("cannot reach its database")
    );
    let res = b
        .client
        .get(app.url("/api/v1/members"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "SERVICE_UNAVAILABLE");
    assert!(body["correlationId"].is_string());

    app.db.set_reachable(true);
    let mut back = false;
    for _ in 0..50 {
        if b.get("/app").await.0 == 200 {
            back = true;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "still signed in once the database is back");
}

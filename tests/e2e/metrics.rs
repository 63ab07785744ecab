use serde_json::Value;

use crate::backend_tests;
use crate::helpers::{Backend, metrics_json, spawn_app};

backend_tests!(
    requests_are_counted_by_route_pattern_and_status,
    a_metrics_token_guards_both_formats,
);

async fn requests_are_counted_by_route_pattern_and_status(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    for _ in 0..2 {
        assert_eq!(app.get("/live").await.status(), 200);
    }
    assert_eq!(app.get("/c/no-such-org/no-agent").await.status(), 404);
    assert_eq!(app.get("/wp-login.php").await.status(), 404);
    assert_eq!(app.get("/health").await.status(), 200);

    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(res.headers()["cache-control"], "no-store");
    let text = res.text().await.unwrap();
    assert!(
        text.contains(
            r#"frontdesk_http_requests_total{method="GET",route="/live",status="200"} 2"#
        ),
        "{text}"
    );
    // Paths become their route pattern, and unknown paths share one label.
    assert!(text.contains(
        r#"frontdesk_http_requests_total{method="GET",route="/c/{org}/{agent}",status="404"} 1"#
    ));
    assert!(text.contains(
        r#"frontdesk_http_requests_total{method="GET",route="unmatched",status="404"} 1"#
    ));
    assert!(!text.contains("wp-login") && !text.contains("no-such-org"));
    assert!(text.contains(
        r#"frontdesk_http_request_duration_seconds_bucket{method="GET",route="/live",status="200",le="+Inf"} 2"#
    ));
    for gauge in [
        "frontdesk_db_pool_connections ",
        "frontdesk_db_pool_max_connections ",
        "frontdesk_jobs_due ",
        "frontdesk_jobs_oldest_due_age_seconds ",
        "frontdesk_resident_memory_bytes ",
        "frontdesk_uptime_seconds ",
    ] {
        assert!(text.contains(gauge), "{gauge} missing in\n{text}");
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "not a sample: {line}");
    }

    let json = metrics_json(&app.address).await;
    let live: Vec<&Value> = json["http"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["route"] == "/live" && s["status"] == 200)
        .collect();
    assert_eq!(live.len(), 1, "{json}");
    assert_eq!(live[0]["count"], 2);
    assert!(live[0]["p95Seconds"].as_f64().is_some());
    assert_eq!(
        live[0]["cumulative"].as_array().unwrap().len(),
        json["buckets"].as_array().unwrap().len()
    );
    assert_eq!(json["gauges"]["queue"]["dead"], 0);
    assert!(json["gauges"]["poolMax"].as_u64().unwrap() >= 1);
    assert!(json["jobs"]["succeeded"].is_u64());
    assert_eq!(json["webhooks"]["stored"], 0);
}

async fn a_metrics_token_guards_both_formats(backend: Backend) {
    let token = "scrape-token-0123456789";
    let Some(app) = spawn_app(backend).env("METRICS_TOKEN", token).start().await else {
        return;
    };
    for path in ["/metrics", "/metrics/json"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 401, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "UNAUTHORIZED", "{body}");
        assert!(body["correlationId"].is_string());

        let wrong = app
            .client
            .get(app.url(path))
            .bearer_auth("scrape-token-wrong-guess")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path}");

        let right = app
            .client
            .get(app.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(right.status(), 200, "{path}");
        // The scheme's name is case-insensitive.
        let lower = app
            .client
            .get(app.url(path))
            .header("authorization", format!("bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(lower.status(), 200, "{path}");
    }
}

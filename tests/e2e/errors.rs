use serde_json::Value;

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, spawn_app};

backend_tests!(
    unknown_page_is_a_friendly_html_404,
    unknown_api_route_is_the_json_error_shape,
    wrong_method_is_405_in_both_forms,
    oversized_json_body_is_413,
    malformed_json_body_is_400,
    wrong_content_type_is_415,
    well_formed_but_wrong_json_is_422,
    csp_reports_are_accepted,
);

fn assert_error_shape(body: &Value, status_text: &str, code: &str) {
    assert_eq!(body["error"], status_text, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(!body["message"].as_str().unwrap().is_empty(), "{body}");
    assert_eq!(body["correlationId"].as_str().unwrap().len(), 32, "{body}");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'), "{body}");
}

async fn post_report(
    app: &TestApp,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/csp-reports"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn unknown_page_is_a_friendly_html_404(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let res = app.get("/no/such/page").await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    let id = res.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_string();
    let html = res.text().await.unwrap();
    assert!(html.contains("Page not found"));
    assert!(html.contains("Back to the home page"));
    assert!(
        html.contains(&id),
        "the page shows the reference to quote to support"
    );
}

async fn unknown_api_route_is_the_json_error_shape(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let res = app.get("/api/v1/does-not-exist").await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/json");
    let id = res.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = res.json().await.unwrap();
    assert_error_shape(&body, "Not Found", "NOT_FOUND");
    assert_eq!(body["correlationId"], id.as_str());
}

async fn wrong_method_is_405_in_both_forms(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let res = app.client.post(app.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert!(res.text().await.unwrap().contains("Method not allowed"));

    let res = app.get("/api/v1/csp-reports").await;
    assert_eq!(res.status(), 405);
    let body: Value = res.json().await.unwrap();
    assert_error_shape(&body, "Method Not Allowed", "METHOD_NOT_ALLOWED");
}

async fn oversized_json_body_is_413(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let huge = format!(
        "{{\"csp-report\": {{\"document-uri\": \"{}\"}}}}",
        "x".repeat(frontdesk::startup::JSON_LIMIT_BYTES + 1)
    );
    let res = post_report(&app, "application/json", huge).await;
    assert_eq!(res.status(), 413);
    let body: Value = res.json().await.unwrap();
    assert_error_shape(&body, "Payload Too Large", "PAYLOAD_TOO_LARGE");
    assert!(body["message"].as_str().unwrap().contains("limit"));
}

async fn malformed_json_body_is_400(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    for broken in ["{\"csp-report\": ", "not json at all", ""] {
        let res = post_report(&app, "application/json", broken).await;
        assert_eq!(res.status(), 400, "{broken:?}");
        let body: Value = res.json().await.unwrap();
        assert_error_shape(&body, "Bad Request", "BAD_REQUEST");
    }
}

async fn wrong_content_type_is_415(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let res = post_report(&app, "text/plain", "{\"csp-report\": {}}").await;
    assert_eq!(res.status(), 415);
    let body: Value = res.json().await.unwrap();
    assert_error_shape(&body, "Unsupported Media Type", "UNSUPPORTED_MEDIA_TYPE");
}

async fn well_formed_but_wrong_json_is_422(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let res = post_report(&app, "application/json", "{\"hello\": \"world\"}").await;
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    assert_error_shape(&body, "Unprocessable Entity", "VALIDATION_FAILED");
}

async fn csp_reports_are_accepted(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let legacy = r#"{"csp-report":{"document-uri":"https://x.test/","violated-directive":"script-src","blocked-uri":"inline"}}"#;
    assert_eq!(
        post_report(&app, "application/csp-report", legacy)
            .await
            .status(),
        204
    );
    let modern = r#"[{"type":"csp-violation","body":{"documentURL":"https://x.test/","effectiveDirective":"script-src-elem","blockedURL":"https://evil.test/x.js"}}]"#;
    assert_eq!(
        post_report(&app, "application/reports+json", modern)
            .await
            .status(),
        204
    );
}

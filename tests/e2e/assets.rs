use std::io::Read as _;

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, spawn_app};

backend_tests!(
    landing_page_links_hashed_assets,
    assets_are_served_in_the_best_accepted_encoding,
    unchanged_assets_answer_304,
    unknown_and_variant_names_are_404,
    head_is_answered_wherever_get_is,
);

async fn css_path(app: &TestApp) -> String {
    let html = app.get("/").await.text().await.unwrap();
    let start = html
        .find("/static/app.")
        .expect("stylesheet link on the landing page");
    let end = start + html[start..].find('"').unwrap();
    html[start..end].to_string()
}

async fn landing_page_links_hashed_assets(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let res = app.get("/").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    let html = res.text().await.unwrap();
    assert!(html.contains("<title>"));
    assert!(html.contains("/static/favicon."));
    let css = css_path(&app).await;
    let hash = css
        .trim_start_matches("/static/app.")
        .trim_end_matches(".css");
    assert_eq!(hash.len(), 10, "{css}");
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{css}");
    // Self-hosted without Stripe: no plans to sell, and no demo loaded to link to.
    assert!(html.contains("Self-hosted: everything included"), "{html}");
    assert!(!html.contains("/mo<"), "no prices without billing");
    assert!(!html.contains("Try the live demo"), "no demo, no dead link");
}

async fn fetch(app: &TestApp, path: &str, accept: Option<&str>) -> reqwest::Response {
    let mut req = app.client.get(app.url(path));
    if let Some(accept) = accept {
        req = req.header("accept-encoding", accept);
    }
    req.send().await.unwrap()
}

async fn assets_are_served_in_the_best_accepted_encoding(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let css = css_path(&app).await;

    let identity = fetch(&app, &css, None).await;
    assert_eq!(identity.status(), 200);
    let h = identity.headers().clone();
    assert_eq!(h["content-type"], "text/css; charset=utf-8");
    assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(h["vary"], "Accept-Encoding");
    assert_eq!(h["content-encoding"], "identity");
    assert!(h.contains_key("etag"));
    let original = identity.bytes().await.unwrap();
    assert!(!original.is_empty());
    let text = std::str::from_utf8(&original).unwrap();
    assert!(!text.contains("\n\n"), "stylesheet is minified");

    let br = fetch(&app, &css, Some("gzip, deflate, br")).await;
    assert_eq!(br.headers()["content-encoding"], "br");
    assert_ne!(br.headers()["etag"], h["etag"]);
    let compressed = br.bytes().await.unwrap();
    assert!(compressed.len() < original.len());
    let mut decoded = Vec::new();
    brotli::Decompressor::new(&compressed[..], 4096)
        .read_to_end(&mut decoded)
        .unwrap();
    assert_eq!(decoded, original);

    let gz = fetch(&app, &css, Some("gzip")).await;
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    let compressed = gz.bytes().await.unwrap();
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_end(&mut decoded)
        .unwrap();
    assert_eq!(decoded, original);
}

async fn unchanged_assets_answer_304(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let css = css_path(&app).await;
    let first = fetch(&app, &css, Some("br")).await;
    let etag = first.headers()["etag"].clone();
    let again = app
        .client
        .get(app.url(&css))
        .header("accept-encoding", "br")
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());
}

async fn unknown_and_variant_names_are_404(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let css = css_path(&app).await;
    for path in [
        "/static/app.css".to_string(),
        "/static/nope.0123456789.css".to_string(),
        format!("{css}.br"),
        "/static/..%2Fsecrets.env".to_string(),
    ] {
        assert_eq!(fetch(&app, &path, None).await.status(), 404, "{path}");
    }
}

async fn head_is_answered_wherever_get_is(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let css = css_path(&app).await;
    for path in ["/", "/login", "/signup", "/widget.js", css.as_str()] {
        let get = app.get(path).await;
        assert_eq!(get.status(), 200, "GET {path}");
        let head = app.client.head(app.url(path)).send().await.unwrap();
        assert_eq!(head.status(), 200, "HEAD {path}");
        assert_eq!(
            head.headers()["content-type"],
            get.headers()["content-type"],
            "HEAD {path}"
        );
        assert!(
            head.headers().contains_key("x-correlation-id"),
            "HEAD {path}"
        );
        assert!(
            head.bytes().await.unwrap().is_empty(),
            "HEAD {path} has no body"
        );
    }
    // A route without GET still says which methods it has.
    let head = app.client.head(app.url("/logout")).send().await.unwrap();
    assert_eq!(head.status(), 405);
    assert_eq!(head.headers()["allow"], "POST");
}

use crate::backend_tests;
use crate::helpers::{Backend, spawn_app};

backend_tests!(
    pages_carry_security_headers_and_no_store,
    production_adds_hsts,
    dynamic_responses_are_compressed,
);

async fn pages_carry_security_headers_and_no_store(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    for path in ["/", "/api/v1/missing", "/missing"] {
        let res = app.get(path).await;
        let h = res.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        let script_src = csp
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("script-src"))
            .expect("script-src directive");
        assert!(!script_src.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "strict-origin-when-cross-origin");
        assert_eq!(h["cache-control"], "no-store", "{path}");
        assert!(
            h.get("strict-transport-security").is_none(),
            "no HSTS over plain http in development"
        );
        assert!(h.contains_key("x-correlation-id"));
    }
}

async fn production_adds_hsts(backend: Backend) {
    let Some(app) = spawn_app(backend)
        .env("APP_ENV", "production")
        .env("BASE_URL", "https://support.example.com")
        .migrate(true)
        .start()
        .await
    else {
        return;
    };
    let res = app.get("/").await;
    assert_eq!(res.status(), 200);
    let hsts = res.headers()["strict-transport-security"].to_str().unwrap();
    assert!(hsts.contains("max-age=63072000"));
}

async fn dynamic_responses_are_compressed(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let plain = app.get("/").await.text().await.unwrap();
    let res = app
        .client
        .get(app.url("/"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-encoding"], "gzip");
    let bytes = res.bytes().await.unwrap();
    assert!(bytes.len() < plain.len());
    let mut decoded = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut decoded)
        .unwrap();
    assert_eq!(decoded, plain);
}

//! The API fuzzed from its own OpenAPI document by Schemathesis (pinned in
//! `tests/fuzz/requirements.txt`, installed by `.ci/run`): thousands of
//! generated requests, well formed and not, against the real server. None
//! may get a 5xx or an answer the document does not describe (status,
//! content type, headers, body), reach anything without the key, or find a
//! deleted thing still there.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::backend_tests;
use crate::helpers::{Backend, spawn_app};

backend_tests!(the_api_keeps_to_its_openapi_document_under_generated_requests);

/// The fuzzer, or `None` (with a message) outside CI; in CI a missing fuzzer
/// is a failure, never a skip.
fn schemathesis() -> Option<PathBuf> {
    let installed = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/.venv/bin/schemathesis");
    let path = std::env::var_os("SCHEMATHESIS").map_or(installed, PathBuf::from);
    if path.exists() {
        return Some(path);
    }
    assert!(
        !crate::helpers::ci(),
        "CI=true but {} is missing (python3 -m venv tests/fuzz/.venv && tests/fuzz/.venv/bin/pip install -r tests/fuzz/requirements.txt)",
        path.display()
    );
    eprintln!(
        "skipping the API fuzzing test: {} is missing",
        path.display()
    );
    None
}

async fn the_api_keeps_to_its_openapi_document_under_generated_requests(backend: Backend) {
    let Some(fuzzer) = schemathesis() else {
        return;
    };
    // Rate limits would answer most of the run with (documented) 429s.
    let Some(app) = spawn_app(backend)
        .env("RATE_LIMIT_PER_MINUTE", "1000000")
        .start()
        .await
    else {
        return;
    };
    let (_, key) =
        crate::accounts::organization_with_key(&app, "Fuzz Roasters", "owner@fuzz.test").await;
    // An agent with knowledge, whose public chat the run talks to.
    let api = crate::chat::Api {
        app: &app,
        key: key.clone(),
    };
    let agent = api.agent(serde_json::json!({"name": "Support"})).await;
    let id = agent["id"].as_i64().unwrap();
    api.indexed(
        id,
        "Returns",
        "text/markdown",
        b"# Returns\n\nBeans can be returned within 30 days.\n",
    )
    .await;
    let schema = app.url("/api/v1/openapi.json");
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[parameters]\n\"path.org\" = \"fuzz-roasters\"\n\"path.agent\" = \"{}\"\n",
            agent["slug"].as_str().unwrap()
        ),
    )
    .unwrap();
    // Fixed so CI is repeatable; FUZZ_SEED and FUZZ_EXAMPLES explore further.
    let seed = std::env::var("FUZZ_SEED").unwrap_or_else(|_| "20261207".into());
    let examples = std::env::var("FUZZ_EXAMPLES").unwrap_or_else(|_| "25".into());
    let output = actix_web::rt::task::spawn_blocking(move || {
        Command::new(fuzzer)
            .current_dir(work.path())
            .arg("--config-file")
            .arg(&config)
            .args(["run", &schema, "--no-color", "--workers", "2"])
            .args(["--header", &format!("Authorization: Bearer {key}")])
            // Every check but the two that want the document to state each
            // cross-field rule (from before to, say) as a schema.
            .args(["--checks", "all"])
            .args([
                "--exclude-checks",
                "negative_data_rejection,positive_data_acceptance",
            ])
            // Revoking the key the run uses would end it early.
            .args(["--exclude-path", "/api/v1/api-keys/{id}"])
            .args(["--max-examples", &examples, "--seed", &seed])
            .args(["--generation-database", "none", "--request-timeout", "10"])
            .output()
    })
    .await
    .unwrap()
    .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the fuzzer found answers the document does not allow:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("passed"),
        "the fuzzer ran no test cases:\n{stdout}"
    );
}

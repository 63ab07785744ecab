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
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(
        !ci,
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

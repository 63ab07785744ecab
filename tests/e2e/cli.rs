//! The binary itself: commands, start-up failures and graceful shutdown.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::backend_tests;
use crate::helpers::{Backend, TestDb};

pub(crate) const SECRETS: [(&str, &str); 2] = [
    (
        "SESSION_SECRET",
        "cli-test-session-secret-0123456789abcdefgh",
    ),
    (
        "ENCRYPTION_KEY",
        "3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d",
    ),
];

/// The binary with an empty environment, run from `dir`.
pub(crate) fn frontdesk(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_frontdesk"));
    cmd.env_clear().current_dir(dir).env("LOG_LEVEL", "warn");
    cmd
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A start-up failure is a clear sentence and a non-zero exit, never a panic.
pub(crate) fn assert_clean_failure(out: &Output, expected: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "should fail: {err}");
    assert!(
        err.contains(expected),
        "stderr should mention {expected:?}: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("RUST_BACKTRACE"), "{err}");
}

/// Minimal blocking HTTP/1.1 GET, enough for probes.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(mut cmd: Command, port: u16) -> Server {
    let child = cmd
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn frontdesk");
    let mut server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if http_get(port, "/live").is_some_and(|(s, _)| s == 200) {
            return server;
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            let mut err = String::new();
            let _ = server
                .0
                .stderr
                .take()
                .map(|mut e| e.read_to_string(&mut err));
            panic!("frontdesk exited early with {status}: {err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("frontdesk did not answer /live within 20 s");
}

fn signal(server: &Server, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), server.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn wait_exit(server: &mut Server, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "frontdesk did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for (args, expected) in [
        (vec!["--help"], "serve"),
        (vec!["serve", "--help"], "--migrate"),
        (vec!["migrate", "--help"], "--dry-run"),
        (vec!["check", "--help"], "every problem"),
        (vec!["serve", "--help"], "--demo"),
        (vec!["demo", "--help"], "Refused in production"),
        (vec!["backup", "--help"], "--out"),
        (vec!["export", "--help"], "--org"),
        (vec!["keys", "rotate", "--help"], "ENCRYPTION_KEY_PREVIOUS"),
    ] {
        let out = frontdesk(dir.path()).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            stdout(&out).contains(expected),
            "{args:?}: {}",
            stdout(&out)
        );
    }
}

#[test]
fn fresh_directory_with_no_environment_serves_on_embedded_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = start(frontdesk(dir.path()), port);
    let (status, body) = http_get(port, "/health").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"backend\":\"sqlite\""), "{body}");
    assert!(dir.path().join("data/frontdesk.db").exists());
    let secrets = std::fs::read_to_string(dir.path().join("data/secrets.env")).unwrap();
    assert!(secrets.contains("SESSION_SECRET="));

    signal(&server, "INT");
    assert!(wait_exit(&mut server, Duration::from_secs(10)).success());
}

#[test]
fn malformed_database_url_is_one_clear_sentence() {
    let dir = tempfile::tempdir().unwrap();
    for url in ["mysql://root@localhost/app", "postgres://", "sqlite://"] {
        let out = frontdesk(dir.path())
            .env("DATABASE_URL", url)
            .arg("serve")
            .output()
            .unwrap();
        assert_clean_failure(&out, "DATABASE_URL");
    }
}

#[test]
fn unreachable_postgres_is_one_clear_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = frontdesk(dir.path())
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{port}/frontdesk"),
        )
        .env("PORT", free_port().to_string())
        .arg("serve")
        .output()
        .unwrap();
    assert_clean_failure(
        &out,
        "cannot connect to PostgreSQL at postgres://postgres@127.0.0.1",
    );
}

#[test]
fn unwritable_data_directory_is_one_clear_sentence() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blocker"), "a file, not a directory").unwrap();
    let out = frontdesk(dir.path())
        .env("DATA_DIR", "blocker/data")
        .envs(SECRETS)
        .arg("serve")
        .output()
        .unwrap();
    assert_clean_failure(&out, "cannot create the data directory blocker/data");

    // Without secrets the same directory is needed for the generated ones.
    let out = frontdesk(dir.path())
        .env("DATA_DIR", "blocker/data")
        .arg("serve")
        .output()
        .unwrap();
    assert_clean_failure(&out, "cannot create the data directory blocker/data");
}

#[test]
fn port_in_use_is_one_clear_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = frontdesk(dir.path())
        .env("PORT", port.to_string())
        .arg("serve")
        .output()
        .unwrap();
    assert_clean_failure(
        &out,
        &format!("cannot listen on 127.0.0.1:{port}: the address is already in use"),
    );
}

#[test]
fn production_lists_every_missing_value_and_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = frontdesk(dir.path())
        .env("APP_ENV", "production")
        .env("SESSION_SECRET", "too-short")
        .env("PORT", "not-a-port")
        .env("SMTP_URL", "mail.example.com:25")
        .arg("serve")
        .output()
        .unwrap();
    assert_clean_failure(&out, "configuration is invalid (5 problems)");
    let err = stderr(&out);
    for variable in [
        "BASE_URL",
        "SESSION_SECRET",
        "ENCRYPTION_KEY",
        "PORT",
        "SMTP_URL",
    ] {
        assert!(
            err.contains(&format!("[config] FATAL {variable}")),
            "{variable}: {err}"
        );
    }
    assert!(
        !err.contains("too-short"),
        "secrets never appear in output: {err}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing is written in production"
    );
}

backend_tests!(
    migrate_lists_then_applies_each_migration,
    check_reports_every_problem_at_once,
    demo_loads_once_and_is_refused_in_production
);

async fn demo_loads_once_and_is_refused_in_production(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = TestDb::create(backend, &dir) else {
        return;
    };
    let run = |env: &[(&str, &str)]| {
        frontdesk(dir.path())
            .env("DATABASE_URL", &db.url)
            .envs(SECRETS)
            .envs(env.iter().copied())
            .arg("demo")
            .output()
            .unwrap()
    };
    let first = run(&[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let out = stdout(&first);
    assert!(out.contains("Loaded the demo organization"), "{out}");
    assert!(
        out.contains("/c/lighthouse-coffee-roasters/barista"),
        "{out}"
    );
    assert!(
        out.contains("demo@lighthouse-coffee.example / harbour-beans-espresso"),
        "{out}"
    );
    let again = run(&[]);
    assert!(again.status.success());
    assert!(stdout(&again).contains("loaded before; nothing changed"));

    let refused = run(&[
        ("APP_ENV", "production"),
        ("BASE_URL", "https://support.example.com"),
    ]);
    assert_clean_failure(&refused, "not available in production");
    let out = frontdesk(dir.path())
        .env("DATABASE_URL", &db.url)
        .env("APP_ENV", "production")
        .env("BASE_URL", "https://support.example.com")
        .envs(SECRETS)
        .args(["serve", "--demo"])
        .output()
        .unwrap();
    assert_clean_failure(&out, "not available in production");
}

async fn migrate_lists_then_applies_each_migration(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = TestDb::create(backend, &dir) else {
        return;
    };
    let run = |args: &[&str]| {
        let out = frontdesk(dir.path())
            .env("DATABASE_URL", &db.url)
            .env("APP_ENV", "production")
            .env("BASE_URL", "https://support.example.com")
            .envs(SECRETS)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let names = crate::helpers::migration_names();
    let listed = run(&["migrate", "--dry-run"]);
    assert!(
        listed.contains(&format!("{} pending migration(s)", names.len())),
        "{listed}"
    );
    let still = run(&["migrate", "--dry-run"]);
    assert_eq!(listed, still, "a dry run changes nothing");
    if backend == Backend::Sqlite {
        let file = db.url.trim_start_matches("sqlite://");
        assert!(
            !std::path::Path::new(file).exists(),
            "a dry run does not create the database"
        );
    }

    let applied = run(&["migrate"]);
    for name in &names {
        assert!(listed.contains(name.as_str()), "{listed}");
        assert!(applied.contains(&format!("applied {name}")), "{applied}");
    }
    assert!(run(&["migrate"]).contains("already up to date"));
    assert!(run(&["migrate", "--dry-run"]).contains("no pending migrations"));

    // Before going back to an older binary: the newest migration is undone,
    // and the next migrate applies it again.
    let newest = names.last().unwrap();
    let reverted = run(&["migrate", "--revert"]);
    assert!(
        reverted.contains(&format!("reverted {newest}")),
        "{reverted}"
    );
    let pending = run(&["migrate", "--dry-run"]);
    assert!(
        pending.contains("1 pending migration(s)") && pending.contains(newest.as_str()),
        "{pending}"
    );
    assert!(run(&["migrate"]).contains(&format!("applied {newest}")));
}

async fn check_reports_every_problem_at_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = TestDb::create(backend, &dir) else {
        return;
    };
    if backend == Backend::Sqlite {
        // A check looks, it does not create: the file appears with the first migrate.
        let file = dir.path().join("test.db");
        let fresh = frontdesk(dir.path())
            .env("DATABASE_URL", &db.url)
            .arg("check")
            .output()
            .unwrap();
        assert!(fresh.status.success(), "{}", stderr(&fresh));
        assert!(
            stdout(&fresh).contains("does not exist yet"),
            "{}",
            stdout(&fresh)
        );
        assert!(!file.exists(), "check created {}", file.display());
        std::fs::File::create(&file).unwrap();

        // Nothing can be written under /proc, not even by root.
        let nowhere = frontdesk(dir.path())
            .env("DATABASE_URL", "sqlite:///proc/frontdesk/test.db")
            .arg("check")
            .output()
            .unwrap();
        assert!(!nowhere.status.success());
        assert!(
            stderr(&nowhere).contains("cannot be created"),
            "{}",
            stderr(&nowhere)
        );
    }
    let good = frontdesk(dir.path())
        .env("DATABASE_URL", &db.url)
        .arg("check")
        .output()
        .unwrap();
    assert!(good.status.success(), "{}", stderr(&good));
    assert!(stdout(&good).contains("all checks passed"));
    assert!(
        stdout(&good).contains("pending migration"),
        "{}",
        stdout(&good)
    );

    let closed = free_port();
    let bad = frontdesk(dir.path())
        .env("DATABASE_URL", &db.url)
        .env("SMTP_URL", format!("smtp://127.0.0.1:{closed}"))
        .env("STRIPE_SECRET_KEY", "pk_live_publishable_not_secret")
        .env("LLM_PROVIDER", "gpt")
        .arg("check")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = stderr(&bad);
    assert!(err.contains("STRIPE_SECRET_KEY"), "{err}");
    assert!(err.contains("LLM_PROVIDER"), "{err}");
    // Broken settings do not hide connection problems: all of them at once.
    assert!(err.contains("SMTP: cannot connect to 127.0.0.1"), "{err}");
    assert!(
        stdout(&bad).contains("ok    database"),
        "the database is still tried: {}",
        stdout(&bad)
    );

    // With valid configuration, connectivity problems are listed too.
    let unreachable = frontdesk(dir.path())
        .env("DATABASE_URL", &db.url)
        .env("SMTP_URL", format!("smtp://127.0.0.1:{closed}"))
        .arg("check")
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    assert!(
        stderr(&unreachable).contains("SMTP: cannot connect to 127.0.0.1"),
        "{}",
        stderr(&unreachable)
    );

    // A malformed SMTP_URL is reported as such, and nothing is dialed for it.
    for (raw, says) in [
        ("smtp//mail.example.com", "SMTP_URL"),
        ("http://mail.example.com", "SMTP_URL"),
    ] {
        let malformed = frontdesk(dir.path())
            .env("DATABASE_URL", &db.url)
            .env("SMTP_URL", raw)
            .arg("check")
            .output()
            .unwrap();
        assert!(!malformed.status.success(), "{raw}");
        let err = stderr(&malformed);
        assert!(err.contains(says), "{raw}: {err}");
        assert!(!err.contains("cannot connect"), "{raw}: {err}");
    }
}

#[test]
fn serve_migrate_flag_applies_migrations_in_production() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = frontdesk(dir.path());
    cmd.env("APP_ENV", "production")
        .env("HOST", "127.0.0.1")
        .env("BASE_URL", "https://support.example.com")
        .env("DATA_DIR", "data")
        .envs(SECRETS);
    let mut with_flag = frontdesk(dir.path());
    with_flag
        .env("APP_ENV", "production")
        .env("HOST", "127.0.0.1")
        .env("BASE_URL", "https://support.example.com")
        .env("DATA_DIR", "data")
        .envs(SECRETS)
        .args(["serve", "--migrate"]);

    let port = free_port();
    let server = start(cmd, port);
    let (status, body) = http_get(port, "/ready").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("pending migrations"), "{body}");
    // Nothing else runs against the missing schema: pages and the API answer
    // 503 (the HTML page, the JSON error shape), the probes still answer.
    let (status, page) = http_get(port, "/login").unwrap();
    assert_eq!(status, 503, "{page}");
    assert!(page.contains("being upgraded"), "{page}");
    let (status, body) = http_get(port, "/api/v1/agents").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"code\":\"SERVICE_UNAVAILABLE\""), "{body}");
    assert_eq!(http_get(port, "/live").unwrap().0, 200);
    assert_eq!(http_get(port, "/widget.js").unwrap().0, 200);

    // The release phase runs elsewhere: the running server notices and serves.
    let mut migrate = frontdesk(dir.path());
    migrate
        .env("APP_ENV", "production")
        .env("HOST", "127.0.0.1")
        .env("BASE_URL", "https://support.example.com")
        .env("DATA_DIR", "data")
        .envs(SECRETS)
        .arg("migrate");
    let migrated = migrate.output().unwrap();
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let deadline = Instant::now() + Duration::from_secs(15);
    while http_get(port, "/login").map(|(s, _)| s) != Some(200) {
        assert!(Instant::now() < deadline, "still refusing after migrate");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(http_get(port, "/ready").unwrap().0, 200);
    drop(server);
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();

    let port = free_port();
    let _server = start(with_flag, port);
    assert_eq!(http_get(port, "/ready").unwrap().0, 200);
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = start(frontdesk(dir.path()), port);

    let body = br#"{"csp-report":{"document-uri":"https://x.test/","violated-directive":"script-src","blocked-uri":"inline"}}"#;
    let (first, rest) = body.split_at(20);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /api/v1/csp-reports HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/csp-report\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(first).unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));

    signal(&server, "TERM");
    // New connections are refused once the listener is closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }

    // The request that was already in flight completes normally.
    stream.write_all(rest).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 204"), "{response}");

    let status = wait_exit(&mut server, Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
}

#[test]
fn production_logs_one_json_line_per_request_and_warns_when_slow() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = frontdesk(dir.path());
    cmd.env("APP_ENV", "production")
        .env("HOST", "127.0.0.1")
        .env("BASE_URL", "https://support.example.com")
        .env("DATA_DIR", "data")
        .env("LOG_LEVEL", "info")
        .env("SLOW_REQUEST_MS", "0")
        .env("SLOW_QUERY_MS", "0")
        .envs(SECRETS)
        .args(["serve", "--migrate"])
        .env("PORT", port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut server = Server(cmd.spawn().unwrap());
    // Read while it runs: every statement logs a line here, and a full pipe
    // would stop the server mid-write.
    let mut stdout = server.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut logs = String::new();
        stdout.read_to_string(&mut logs).unwrap();
        logs
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(port, "/live").is_none() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Correlation-Id: trace-me-0042\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    // Five hundred CSP reports in one body are a few log lines, not five hundred.
    let flood = serde_json::Value::Array(
        (0..500)
            .map(|n| serde_json::json!({"type": "csp-violation", "body": {"documentURL": format!("https://x.test/{n}")}}))
            .collect(),
    )
    .to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST /api/v1/csp-reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/reports+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{flood}",
        flood.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 204"), "{response}");

    // A request no parser can read: the client's fault, a WARN and not an ERROR.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: many\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");

    signal(&server, "TERM");
    assert!(wait_exit(&mut server, Duration::from_secs(10)).success());
    let logs = reader.join().unwrap();

    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let request = lines
        .iter()
        .find(|l| l["correlation_id"] == "trace-me-0042")
        .unwrap_or_else(|| panic!("no line for the request: {logs}"));
    assert_eq!(
        request["level"], "WARN",
        "SLOW_REQUEST_MS=0 makes every request slow"
    );
    assert_eq!(request["message"], "slow request");
    assert_eq!(request["method"], "GET");
    assert_eq!(request["path"], "/health");
    assert_eq!(request["status"], 200);
    assert!(request["latency_ms"].is_number());
    assert!(!logs.contains(SECRETS[0].1), "secrets never reach the log");
    let violations = lines
        .iter()
        .filter(|l| l["message"] == "content security policy violation")
        .count();
    assert_eq!(violations, 5, "{logs}");
    let malformed = lines
        .iter()
        .find(|l| l["message"] == "connection closed over a malformed request")
        .unwrap_or_else(|| panic!("the malformed request is not logged: {logs}"));
    assert_eq!(malformed["level"], "WARN");
    assert!(
        malformed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("parse error")),
        "{malformed}"
    );
    assert!(
        lines.iter().all(|l| l["level"] != "ERROR"),
        "nothing went wrong on our side: {logs}"
    );

    // SLOW_QUERY_MS=0 makes every statement slow: logged with its SQL, never its values.
    let slow: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "slow query")
        .collect();
    assert!(!slow.is_empty(), "no slow query lines: {logs}");
    assert!(slow.iter().all(|l| {
        l["level"] == "WARN"
            && l["elapsed_ms"].is_number()
            && l["sql"]
                .as_str()
                .is_some_and(|q| !q.is_empty() && !q.contains("-- binds"))
    }));
    // Lines written while a request runs carry its correlation id too.
    assert!(
        slow.iter()
            .any(|l| l["span"]["correlation_id"] == "trace-me-0042"),
        "a query run for the request names it: {logs}"
    );
}

/// `frontdesk mail test` against `smtp_url`, trusting `ca` (a PEM file) if given.
fn mail_test(dir: &Path, smtp_url: &str, ca: Option<&Path>) -> Output {
    let mut cmd = frontdesk(dir);
    cmd.env("SMTP_URL", smtp_url)
        .envs(SECRETS)
        .args(["mail", "test", "--to", "ops@example.test"]);
    if let Some(ca) = ca {
        cmd.env("SMTP_CA_FILE", ca);
    }
    cmd.output().unwrap()
}

#[test]
fn mail_goes_out_over_starttls_or_implicit_tls_and_never_in_clear_when_tls_is_required() {
    use crate::smtp::{SmtpSink, TestCertificates, TlsMode};
    let dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate();
    let ca = dir.path().join("relay-ca.pem");
    std::fs::write(&ca, &certificates.ca_pem).unwrap();

    let starttls = SmtpSink::start_tls(TlsMode::StartTls, &certificates);
    let url = format!("smtp://localhost:{}", starttls.port);
    let out = mail_test(dir.path(), &url, Some(&ca));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("test email sent to ops@example.test"));
    assert_eq!(starttls.encrypted(), [true], "upgraded before MAIL FROM");
    assert!(starttls.messages()[0].contains("Subject: Frontdesk test email"));

    let implicit = SmtpSink::start_tls(TlsMode::Implicit, &certificates);
    let url = format!("smtps://localhost:{}", implicit.port);
    let out = mail_test(dir.path(), &url, Some(&ca));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(implicit.encrypted(), [true]);

    // A certificate nobody vouches for is refused: one sentence, nothing sent.
    let untrusted = SmtpSink::start_tls(TlsMode::StartTls, &certificates);
    let out = mail_test(
        dir.path(),
        &format!("smtp://localhost:{}", untrusted.port),
        None,
    );
    assert_clean_failure(&out, "certificate");
    assert!(untrusted.messages().is_empty());

    // STARTTLS is required unless the URL says otherwise: a relay that does
    // not offer it gets nothing, rather than the message in clear text.
    let plain = SmtpSink::start();
    let out = mail_test(
        dir.path(),
        &format!("smtp://localhost:{}", plain.port),
        Some(&ca),
    );
    assert_clean_failure(&out, "STARTTLS");
    assert!(plain.messages().is_empty());

    let out = mail_test(
        dir.path(),
        &format!("smtp://localhost:{}", plain.port),
        Some(&dir.path().join("missing.pem")),
    );
    assert_clean_failure(&out, "SMTP_CA_FILE");
}

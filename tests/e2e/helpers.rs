//! Starts the real server on a random port with its own fresh database, and talks
//! to it over HTTP. Every data test runs once per backend (see `backend_tests!`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use diesel::{Connection as _, PgConnection, RunQueryDsl as _};
use frontdesk::config::Config;
use frontdesk::startup::{Application, ServeOptions};
use tempfile::TempDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test: a temp SQLite file, or a PostgreSQL
/// database created on the server from `TEST_DATABASE_URL` and dropped afterwards.
pub struct TestDb {
    pub url: String,
    pg: Option<(String, String)>,
}

/// Whether this is a CI run, where a missing tool fails instead of skipping.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

impl TestDb {
    /// `None` only outside CI when no PostgreSQL is configured; in CI that panics.
    pub fn create(backend: Backend, dir: &TempDir) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self {
                url: format!("sqlite://{}", dir.path().join("test.db").display()),
                pg: None,
            }),
            Backend::Postgres => {
                let Some(admin_url) = std::env::var("TEST_DATABASE_URL")
                    .ok()
                    .filter(|u| !u.is_empty())
                else {
                    assert!(
                        !ci(),
                        "CI=true but TEST_DATABASE_URL is not set: PostgreSQL tests cannot be skipped in CI"
                    );
                    eprintln!("skipping PostgreSQL variant: TEST_DATABASE_URL is not set");
                    return None;
                };
                let name = format!("fd_test_{}", hex_id());
                frontdesk::db::init_tls();
                let mut admin = PgConnection::establish(&admin_url).unwrap_or_else(|e| {
                    panic!("TEST_DATABASE_URL is set but PostgreSQL is unreachable: {e}")
                });
                diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut admin)
                    .expect("create test database");
                let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
                url.set_path(&name);
                Some(Self {
                    url: url.to_string(),
                    pg: Some((admin_url, name)),
                })
            }
        }
    }

    /// A pool on this database with every migration applied.
    pub fn pool(&self) -> frontdesk::db::DbPool {
        let url =
            frontdesk::db::DatabaseUrl::parse(Some(&self.url), std::path::Path::new(".")).unwrap();
        let pool = frontdesk::db::connect(&url, Some(4)).unwrap();
        frontdesk::db::migrations::run_pending(&mut pool.get().unwrap(), |_| {}).unwrap();
        pool
    }

    /// Refuses (`false`) or allows again new connections to the database, and on
    /// refusal ends the open ones: an outage the server lives through
    /// (PostgreSQL only).
    pub fn set_reachable(&self, reachable: bool) {
        let Some((admin_url, name)) = &self.pg else {
            return;
        };
        let mut admin = PgConnection::establish(admin_url).expect("admin connection");
        diesel::sql_query(format!(
            "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS {reachable}"
        ))
        .execute(&mut admin)
        .expect("alter test database");
        if !reachable {
            diesel::sql_query(format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            ))
            .execute(&mut admin)
            .expect("end connections");
        }
    }

    /// Makes the database disappear under a running server (PostgreSQL only).
    pub fn drop_now(&mut self) {
        if let Some((admin_url, name)) = self.pg.take() {
            let mut admin = PgConnection::establish(&admin_url).expect("admin connection");
            diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut admin)
                .expect("drop test database");
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.pg.take()
            && let Ok(mut admin) = PgConnection::establish(&admin_url)
        {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut admin);
        }
    }
}

pub fn hex_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{}_{:x}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Configuration for a test server: development defaults, a random port, the
/// given database, plus overrides.
pub fn test_config(db_url: &str, data_dir: &std::path::Path, overrides: &[(&str, &str)]) -> Config {
    let mut vars: BTreeMap<String, String> = BTreeMap::from([
        ("PORT".into(), "0".into()),
        ("DATABASE_URL".into(), db_url.into()),
        ("DATA_DIR".into(), data_dir.display().to_string()),
        ("LOG_LEVEL".into(), "warn".into()),
        ("JOB_POLL_MS".into(), "50".into()),
        ("JOB_RETRY_BASE_MS".into(), "50".into()),
        // The fake model providers listen on loopback (the refusal is tested
        // with this set back to false).
        ("ALLOW_PRIVATE_PROVIDER_URLS".into(), "true".into()),
        (
            "SESSION_SECRET".into(),
            "test-session-secret-0123456789abcdefghijkl".into(),
        ),
        ("ENCRYPTION_KEY".into(), "1f".repeat(16) + &"2e".repeat(16)),
    ]);
    for (k, v) in overrides {
        vars.insert((*k).into(), (*v).into());
    }
    Config::from_lookup(&|k| vars.get(k).cloned()).expect("test configuration is valid")
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: TestDb,
    pub dir: TempDir,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Another server instance on this test's database (as a second process
    /// behind a load balancer would be); returns its address.
    pub async fn another_instance(&self, overrides: &[(&str, &str)]) -> String {
        let data = self.dir.path().join(format!("data-{}", hex_id()));
        let config = test_config(&self.db.url, &data, overrides);
        let app = Application::build(
            config,
            ServeOptions {
                migrate: false,
                demo: false,
                http_workers: Some(1),
                run_jobs: true,
            },
        )
        .await
        .expect("second instance starts");
        let address = format!("http://127.0.0.1:{}", app.port());
        actix_web::rt::spawn(app.run_until_stopped(None));
        address
    }

    /// A separate pool on the test's database, as another process would have.
    pub fn pool(&self) -> frontdesk::db::DbPool {
        self.db.pool()
    }

    /// The id of the organization with `slug`.
    pub fn org_id(&self, slug: &str) -> i64 {
        use diesel::{ExpressionMethods as _, QueryDsl as _};
        use frontdesk::db::schema::organizations;
        organizations::table
            .filter(organizations::slug.eq(slug))
            .select(organizations::id)
            .first(&mut self.pool().get().expect("a connection"))
            .expect("the organization exists")
    }
}

pub struct Spawn<'a> {
    backend: Backend,
    overrides: Vec<(&'a str, &'a str)>,
    options: ServeOptions,
}

impl<'a> Spawn<'a> {
    pub fn env(mut self, key: &'a str, value: &'a str) -> Self {
        self.overrides.push((key, value));
        self
    }

    /// Whether this server runs background job workers (default: yes).
    pub fn jobs(mut self, run: bool) -> Self {
        self.options.run_jobs = run;
        self
    }

    /// Load the demo organization before serving (`serve --demo`).
    pub fn demo(mut self, demo: bool) -> Self {
        self.options.demo = demo;
        self
    }

    pub fn migrate(mut self, migrate: bool) -> Self {
        self.options.migrate = migrate;
        self
    }

    pub async fn start(self) -> Option<TestApp> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = TestDb::create(self.backend, &dir)?;
        let data = dir.path().join("data");
        let config = test_config(&db.url, &data, &self.overrides);
        let app = Application::build(config, self.options)
            .await
            .expect("application starts");
        let address = format!("http://127.0.0.1:{}", app.port());
        actix_web::rt::spawn(app.run_until_stopped(None));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client");
        Some(TestApp {
            address,
            client,
            db,
            dir,
        })
    }
}

/// A server with a fresh database on `backend`; `None` means the PostgreSQL
/// variant is skipped (never in CI).
pub fn spawn_app<'a>(backend: Backend) -> Spawn<'a> {
    Spawn {
        backend,
        overrides: Vec::new(),
        options: ServeOptions {
            migrate: false,
            demo: false,
            http_workers: Some(1),
            run_jobs: true,
        },
    }
}

/// Generates `sqlite` and `postgres` tests for each `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[actix_web::test]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }

                #[actix_web::test]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        )+
    };
}

/// Migration names as shipped, oldest first; both backends must have the same set.
pub fn migration_names() -> Vec<String> {
    let list = |backend: &str| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("migrations folder")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let sqlite = list("sqlite");
    assert_eq!(
        sqlite,
        list("postgres"),
        "migration folders must match across backends"
    );
    sqlite
}

/// `GET /metrics/json` of a server without a metrics token.
pub async fn metrics_json(address: &str) -> serde_json::Value {
    let res = reqwest::get(format!("{address}/metrics/json"))
        .await
        .expect("metrics scraped");
    assert_eq!(res.status(), 200);
    res.json().await.expect("metrics are JSON")
}

/// Polls (blocking the test thread, not the server's) until `done` holds.
pub async fn eventually(what: &str, within: std::time::Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

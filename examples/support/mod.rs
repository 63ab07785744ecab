//! Shared by the benchmarks in `examples/`: knobs from the environment and a
//! throw-away PostgreSQL database.

#![allow(dead_code)] // each benchmark uses only part of it

use std::collections::BTreeMap;

use anyhow::Context as _;
use diesel::prelude::*;

/// Settings every benchmark starts from: development defaults, fixed secrets,
/// quiet logs, the given database and data directory.
pub fn base_vars(database_url: &str, data_dir: &std::path::Path) -> BTreeMap<String, String> {
    [
        ("DATABASE_URL", database_url.to_string()),
        ("DATA_DIR", data_dir.display().to_string()),
        (
            "SESSION_SECRET",
            "bench-session-secret-0123456789abcdefghij".into(),
        ),
        ("ENCRYPTION_KEY", "3c".repeat(16) + &"a7".repeat(16)),
        ("LOG_LEVEL", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The configuration of a benchmark's server: [`base_vars`] on a random port,
/// plus `extra`.
pub fn server_config(
    database_url: &str,
    data_dir: &std::path::Path,
    extra: &[(&str, &str)],
) -> anyhow::Result<frontdesk::config::Config> {
    let mut vars = base_vars(database_url, data_dir);
    vars.insert("PORT".into(), "0".into());
    for (k, v) in extra {
        vars.insert((*k).to_string(), (*v).to_string());
    }
    Ok(frontdesk::config::Config::from_lookup(&|k| {
        vars.get(k).cloned()
    })?)
}

/// Starts the real server of a benchmark (2 HTTP workers, migrations applied);
/// returns its address, its state and the handle that stops it.
pub async fn start_server(
    config: frontdesk::config::Config,
    run_jobs: bool,
) -> anyhow::Result<(
    String,
    actix_web::web::Data<frontdesk::startup::AppState>,
    actix_web::dev::ServerHandle,
)> {
    let app = frontdesk::startup::Application::build(
        config,
        frontdesk::startup::ServeOptions {
            migrate: true,
            demo: false,
            http_workers: Some(2),
            run_jobs,
        },
    )
    .await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let (state, handle) = (app.state(), app.handle());
    actix_web::rt::spawn(app.run_until_stopped(None));
    Ok((base, state, handle))
}

/// A whole number from the environment, or `default`.
pub fn env_count(key: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(key) {
        Ok(raw) if !raw.trim().is_empty() => raw
            .trim()
            .parse()
            .with_context(|| format!("{key} must be a whole number, got {raw:?}")),
        _ => Ok(default),
    }
}

/// `BENCH_DATABASE_URL`, else `TEST_DATABASE_URL`: the PostgreSQL server to use.
pub fn pg_admin_url() -> Option<String> {
    ["BENCH_DATABASE_URL", "TEST_DATABASE_URL"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
}

/// A database `fd_bench_<pid>` created on the server for one run and dropped
/// afterwards (the admin URL's own database is only used to create and drop it).
pub struct PgBenchDb {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgBenchDb {
    pub fn create(admin_url: &str) -> anyhow::Result<Self> {
        let name = format!("fd_bench_{}", std::process::id());
        frontdesk::db::init_tls();
        let mut admin = diesel::PgConnection::establish(admin_url)
            .context("connecting to BENCH_DATABASE_URL / TEST_DATABASE_URL")?;
        diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut admin)?;
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .with_context(|| format!("creating database {name}"))?;
        let mut url = url::Url::parse(admin_url).context("the PostgreSQL URL")?;
        url.set_path(&format!("/{name}"));
        Ok(Self {
            admin_url: admin_url.to_string(),
            name,
            url: url.to_string(),
        })
    }
}

impl Drop for PgBenchDb {
    fn drop(&mut self) {
        let dropped = diesel::PgConnection::establish(&self.admin_url)
            .map_err(|e| e.to_string())
            .and_then(|mut admin| {
                diesel::sql_query(format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                ))
                .execute(&mut admin)
                .map_err(|e| e.to_string())
            });
        if let Err(e) = dropped {
            eprintln!("[bench] could not drop database {}: {e}", self.name);
        }
    }
}

/// The `q`-quantile (0..=1) of sorted samples.
pub fn quantile(sorted: &[std::time::Duration], q: f64) -> std::time::Duration {
    if sorted.is_empty() {
        return std::time::Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Warnings only, on stderr: result lines keep stdout to themselves.
pub fn quiet_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .compact()
        .try_init();
}

/// Names the build in each benchmark's heading.
pub const BUILD: &str = if cfg!(debug_assertions) {
    "DEBUG build: numbers mean little"
} else {
    "release"
};

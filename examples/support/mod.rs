//! Shared by the benchmarks in `examples/`: knobs from the environment and a
//! throw-away PostgreSQL database.

#![allow(dead_code)] // each benchmark uses only part of it

use anyhow::Context as _;
use diesel::prelude::*;

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

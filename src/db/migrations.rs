//! Embedded migrations, one set per backend with matching names.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::{DbConnection, DbError, DbPool};

const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Serialises `migrate` across instances sharing one PostgreSQL (a release phase
/// and a booting web process may both try).
const PG_MIGRATION_LOCK: i64 = 0x0066_726f_6e74_646b;

/// Names of migrations not yet applied, oldest first.
pub fn pending(conn: &mut DbConnection) -> Result<Vec<String>, DbError> {
    let names = match conn {
        DbConnection::Sqlite(c) => c
            .pending_migrations(SQLITE)
            .map(|ms| ms.iter().map(|m| m.name().to_string()).collect()),
        DbConnection::Postgres(c) => c
            .pending_migrations(POSTGRES)
            .map(|ms| ms.iter().map(|m| m.name().to_string()).collect()),
    };
    names.map_err(|e| DbError::Migration(e.to_string()))
}

/// Every SQLite migration, oldest first: what a database not yet created has
/// pending.
pub fn all_sqlite() -> Result<Vec<String>, DbError> {
    use diesel::migration::MigrationSource as _;
    let migrations: Vec<Box<dyn diesel::migration::Migration<diesel::sqlite::Sqlite>>> = SQLITE
        .migrations()
        .map_err(|e| DbError::Migration(e.to_string()))?;
    let mut names: Vec<String> = migrations.iter().map(|m| m.name().to_string()).collect();
    names.sort();
    Ok(names)
}

/// Applies every pending migration, calling `applied` with each name as it lands.
pub fn run_pending(
    conn: &mut DbConnection,
    mut applied: impl FnMut(&str),
) -> Result<Vec<String>, DbError> {
    let lock = matches!(conn, DbConnection::Postgres(_));
    if lock {
        conn.batch_execute(&format!("SELECT pg_advisory_lock({PG_MIGRATION_LOCK})"))?;
    }
    let result = apply_all(conn, &mut applied);
    if lock {
        conn.batch_execute(&format!("SELECT pg_advisory_unlock({PG_MIGRATION_LOCK})"))?;
    }
    result
}

fn apply_all(
    conn: &mut DbConnection,
    applied: &mut impl FnMut(&str),
) -> Result<Vec<String>, DbError> {
    let mut names = Vec::new();
    macro_rules! apply {
        ($c:expr, $source:expr) => {{
            let pending = $c
                .pending_migrations($source)
                .map_err(|e| DbError::Migration(e.to_string()))?;
            for migration in pending {
                let name = migration.name().to_string();
                $c.run_migration(&migration)
                    .map_err(|e| DbError::Migration(format!("{name}: {e}")))?;
                applied(&name);
                names.push(name);
            }
        }};
    }
    match conn {
        DbConnection::Sqlite(c) => apply!(c, SQLITE),
        DbConnection::Postgres(c) => apply!(c, POSTGRES),
    }
    Ok(names)
}

/// What readiness knows about migrations, re-read at most every few seconds while
/// migrations are pending so a release phase on another machine is noticed.
pub struct MigrationStatus {
    state: Mutex<(Vec<String>, Instant)>,
    /// Set once nothing is pending (it never becomes unset): read on every
    /// request, so without the lock.
    up_to_date: AtomicBool,
}

const RECHECK_EVERY: Duration = Duration::from_secs(2);

impl MigrationStatus {
    pub fn new(pending: Vec<String>) -> Self {
        Self {
            up_to_date: AtomicBool::new(pending.is_empty()),
            state: Mutex::new((pending, Instant::now())),
        }
    }

    /// The pending list; re-queried (blocking) when stale and not yet empty.
    pub fn current(&self, pool: &DbPool) -> Result<Vec<String>, DbError> {
        {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.0.is_empty() || state.1.elapsed() < RECHECK_EVERY {
                return Ok(state.0.clone());
            }
        }
        let mut conn = pool.get()?;
        let fresh = pending(&mut conn)?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if fresh.is_empty() {
            self.up_to_date.store(true, Ordering::Release);
        }
        *state = (fresh.clone(), Instant::now());
        Ok(fresh)
    }

    /// Cheap check that never touches the database.
    pub fn known_up_to_date(&self) -> bool {
        self.up_to_date.load(Ordering::Acquire)
    }
}

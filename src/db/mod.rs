//! The database layer: one binary, SQLite or PostgreSQL chosen at run time.

pub mod backup;
mod connection;
pub mod migrations;
pub mod models;
pub mod schema;
mod slow_query;

use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel::r2d2::{self, Pool, PooledConnection};

pub use connection::{ConnectionManager, DbConnection, init_tls};

pub type DbPool = Pool<ConnectionManager>;
pub type PooledConn = PooledConnection<ConnectionManager>;

/// How long a request waits for a pooled connection before giving up.
const POOL_CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite waits this long on a locked database instead of failing at once.
pub(crate) const SQLITE_BUSY_TIMEOUT_MS: u32 = 5000;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open the SQLite database at {path}: {reason}")]
    SqliteOpen { path: String, reason: String },
    #[error("cannot connect to PostgreSQL at {target}: {reason}")]
    PostgresConnect { target: String, reason: String },
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("no database connection available: {0}")]
    Pool(#[from] r2d2::PoolError),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("the database did not answer within {0:?}")]
    Unresponsive(std::time::Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// `DATABASE_URL`, parsed once: the scheme picks the backend.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl DatabaseUrl {
    /// `None` means the embedded default under the data directory.
    pub fn parse(raw: Option<&str>, data_dir: &Path) -> Result<Self, String> {
        let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
            return Ok(Self::Sqlite(data_dir.join("frontdesk.db")));
        };
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            let url = url::Url::parse(raw).map_err(|e| {
                format!("DATABASE_URL is not a valid PostgreSQL URL ({e}); expected postgres://user:password@host:5432/database")
            })?;
            if url.path().trim_start_matches('/').is_empty() {
                return Err(
                    "DATABASE_URL must name a database, as in postgres://user@host:5432/frontdesk"
                        .into(),
                );
            }
            return Ok(Self::Postgres(raw.to_string()));
        }
        if let Some(path) = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"))
        {
            if path.is_empty() || path.contains('?') {
                return Err(format!(
                    "DATABASE_URL {raw:?} must name a file, as in sqlite://./data/frontdesk.db"
                ));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = raw.split_once("://") {
            return Err(format!(
                "DATABASE_URL uses the unsupported scheme {scheme:?}; use postgres://…, sqlite://PATH or a file path"
            ));
        }
        Ok(Self::Sqlite(PathBuf::from(raw)))
    }

    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    /// Safe to log: the passwords of a PostgreSQL URL are masked, in the user
    /// part and in the query (libpq takes `?password=` and `?sslpassword=`).
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite://{}", path.display()),
            Self::Postgres(raw) => match url::Url::parse(raw) {
                Ok(mut url) => {
                    if url.password().is_some() {
                        let _ = url.set_password(Some("***"));
                    }
                    if url.query().is_some() {
                        let pairs: Vec<(String, String)> = url
                            .query_pairs()
                            .map(|(k, v)| {
                                let secret = k.to_ascii_lowercase().contains("password");
                                (
                                    k.into_owned(),
                                    if secret { "***".into() } else { v.into_owned() },
                                )
                            })
                            .collect();
                        url.query_pairs_mut().clear().extend_pairs(pairs);
                    }
                    url.to_string()
                }
                Err(_) => "postgres://(unparsable)".into(),
            },
        }
    }
}

/// Builds the pool after proving one connection works, so a wrong URL or a stopped
/// server is reported with its real cause instead of an r2d2 timeout.
pub fn connect(url: &DatabaseUrl, pool_size: Option<u32>) -> Result<DbPool, DbError> {
    connect_with(url, pool_size, DEFAULT_SLOW_QUERY)
}

/// `SLOW_QUERY_MS`'s default.
pub const DEFAULT_SLOW_QUERY: Duration = Duration::from_millis(500);

/// [`connect`], logging statements slower than `slow_query` (`SLOW_QUERY_MS`).
pub fn connect_with(
    url: &DatabaseUrl,
    pool_size: Option<u32>,
    slow_query: Duration,
) -> Result<DbPool, DbError> {
    let manager = ConnectionManager::new(url.clone(), slow_query);
    if let DatabaseUrl::Sqlite(path) = url
        && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(|source| DbError::DataDir {
            path: parent.display().to_string(),
            source,
        })?;
    }
    // Opening once up front also switches SQLite to WAL before the pool fills:
    // several connections racing to set journal_mode fail with "database is locked".
    manager.open_first()?;

    let (max_size, test_on_check_out) = match url.backend() {
        // WAL allows many readers and one writer; busy_timeout queues the writers.
        Backend::Sqlite => (pool_size.unwrap_or(8), false),
        Backend::Postgres => (pool_size.unwrap_or(10), true),
    };
    Pool::builder()
        .max_size(max_size)
        .min_idle(Some(1))
        .test_on_check_out(test_on_check_out)
        .connection_timeout(POOL_CHECKOUT_TIMEOUT)
        .build(manager)
        .map_err(|e| match url.backend() {
            Backend::Sqlite => DbError::SqliteOpen {
                path: url.redacted(),
                reason: e.to_string(),
            },
            Backend::Postgres => DbError::PostgresConnect {
                target: url.redacted(),
                reason: e.to_string(),
            },
        })
}

/// The cheapest round trip that proves the database answers.
pub fn ping(pool: &DbPool, timeout: Duration) -> Result<(), DbError> {
    use diesel::connection::SimpleConnection as _;
    let mut conn = pool.get_timeout(timeout)?;
    conn.batch_execute("SELECT 1")?;
    Ok(())
}

/// Inside a transaction: waits for, and holds until it ends, a lock named by
/// `key`. Rate limits that count rows and then insert one stay exact on
/// PostgreSQL, where concurrent transactions would otherwise all see the same
/// count; SQLite's write transaction already runs them one at a time. Callers
/// taking several keys take them in one fixed order, so no two wait on each other.
pub fn lock_until_commit(conn: &mut DbConnection, key: &str) -> diesel::QueryResult<()> {
    use diesel::RunQueryDsl as _;
    if conn.backend() == Backend::Postgres {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind::<diesel::sql_types::Text, _>(key)
            .execute(conn)?;
    }
    Ok(())
}

/// A transaction that writes. On SQLite it takes the write lock with its first
/// statement: a deferred transaction that reads, then writes after another
/// connection committed, fails at once with "database is locked" (the busy
/// timeout does not apply to that upgrade). Waiting for the lock up front does.
pub fn write_transaction<T, E>(
    conn: &mut DbConnection,
    work: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    use diesel::Connection as _;
    use diesel::connection::SimpleConnection as _;
    conn.transaction(|conn| {
        if conn.backend() == Backend::Sqlite {
            // A write that changes nothing but makes this transaction the writer.
            conn.batch_execute("DELETE FROM login_failures WHERE 0")?;
        }
        work(conn)
    })
}

#[cfg(test)]
mod tests {
    use super::DatabaseUrl;

    #[test]
    fn passwords_never_reach_the_log() {
        let url = DatabaseUrl::parse(
            Some("postgres://app:s3cret@db.internal:5432/frontdesk?sslmode=require&password=other&sslpassword=keypass"),
            std::path::Path::new("data"),
        )
        .unwrap();
        let shown = url.redacted();
        for secret in ["s3cret", "other", "keypass"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("sslmode=require"), "{shown}");
        assert!(shown.contains("db.internal:5432/frontdesk"), "{shown}");
        assert!(!format!("{url:?}").contains("s3cret"));
    }
}

//! The two-backend connection and the r2d2 manager that opens it by URL scheme.

use diesel::connection::SimpleConnection as _;
use diesel::r2d2::{ManageConnection, R2D2Connection as _};
use diesel::{Connection as _, PgConnection, SqliteConnection};

use std::time::Duration;

use super::slow_query::SlowQueryLog;
use super::{Backend, DatabaseUrl, DbError, SQLITE_BUSY_TIMEOUT_MS};

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

impl DbConnection {
    pub fn backend(&self) -> Backend {
        match self {
            Self::Postgres(_) => Backend::Postgres,
            Self::Sqlite(_) => Backend::Sqlite,
        }
    }
}

/// Picks the backend by scheme; diesel's own `establish` on the enum tries each
/// variant in turn and hides the real error behind "invalid connection url".
#[derive(Debug, Clone)]
pub struct ConnectionManager {
    url: DatabaseUrl,
    slow_query: Duration,
}

impl ConnectionManager {
    pub fn new(url: DatabaseUrl, slow_query: Duration) -> Self {
        Self { url, slow_query }
    }

    fn open(&self) -> Result<DbConnection, DbError> {
        match &self.url {
            DatabaseUrl::Sqlite(path) => {
                let shown = path.display().to_string();
                let mut conn =
                    SqliteConnection::establish(&shown).map_err(|e| DbError::SqliteOpen {
                        path: shown.clone(),
                        reason: e.to_string(),
                    })?;
                // busy_timeout first: the other pragmas may already need the lock.
                // synchronous=FULL: in WAL mode NORMAL may lose the last commits
                // to a power cut, and what was committed has been answered for
                // (a Stripe event acknowledged with 200 is not sent again).
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;"
                ))
                .map_err(|e| DbError::SqliteOpen {
                    path: shown,
                    reason: e.to_string(),
                })?;
                unicode::register(&mut conn).map_err(|e| DbError::SqliteOpen {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                conn.set_instrumentation(SlowQueryLog::new(self.slow_query));
                Ok(DbConnection::Sqlite(conn))
            }
            DatabaseUrl::Postgres(raw) => {
                init_tls();
                let mut conn =
                    PgConnection::establish(&with_connect_timeout(raw)).map_err(|e| {
                        DbError::PostgresConnect {
                            target: self.url.redacted(),
                            reason: first_sentence(&e.to_string()),
                        }
                    })?;
                conn.set_instrumentation(SlowQueryLog::new(self.slow_query));
                Ok(DbConnection::Postgres(conn))
            }
        }
    }

    /// Opens the first connection and, for SQLite, turns on WAL once.
    pub(super) fn open_first(&self) -> Result<(), DbError> {
        let mut conn = self.open()?;
        if let (DbConnection::Sqlite(c), DatabaseUrl::Sqlite(path)) = (&mut conn, &self.url) {
            c.batch_execute("PRAGMA journal_mode = WAL;")
                .map_err(|e| DbError::SqliteOpen {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
        }
        Ok(())
    }
}

/// Seconds libpq waits for a connection unless the URL says otherwise.
const PG_CONNECT_TIMEOUT_SECS: u32 = 5;

/// libpq waits as long as the kernel does for an unanswered connection (two
/// minutes and more): start-up, `migrate` and the probes would hang on a
/// database host that drops packets instead of saying so. A `connect_timeout`
/// the user set is kept.
fn with_connect_timeout(url: &str) -> String {
    let (_, query) = url.split_once('?').unwrap_or((url, ""));
    if query
        .split('&')
        .any(|pair| pair.split('=').next() == Some("connect_timeout"))
    {
        return url.to_string();
    }
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joiner}connect_timeout={PG_CONNECT_TIMEOUT_SECS}")
}

/// SQLite's own `lower()` folds ASCII only, PostgreSQL's all of Unicode: a
/// search for "émile" found "Émile" on one backend and not the other. The
/// same SQL means the same thing on both once SQLite's `lower` is Rust's.
mod unicode {
    use diesel::SqliteConnection;
    use diesel::sql_types::{Nullable, Text};

    diesel::define_sql_function! {
        fn lower(text: Nullable<Text>) -> Nullable<Text>;
    }

    pub(super) fn register(conn: &mut SqliteConnection) -> diesel::QueryResult<()> {
        lower_utils::register_impl(conn, |text: Option<String>| text.map(|t| t.to_lowercase()))
    }
}

/// libpq writes multi-line messages with hints; keep the first line for stderr.
fn first_sentence(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown error")
        .trim_end_matches('.')
        .to_string()
}

impl ManageConnection for ConnectionManager {
    type Connection = DbConnection;
    type Error = DbError;

    fn connect(&self) -> Result<DbConnection, DbError> {
        self.open()
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), DbError> {
        conn.batch_execute("SELECT 1").map_err(DbError::Query)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        std::thread::panicking()
            || match conn {
                DbConnection::Postgres(c) => c.is_broken(),
                DbConnection::Sqlite(c) => c.is_broken(),
            }
    }
}

/// Initialises OpenSSL (libpq's TLS) without its `atexit` clean-up. By default
/// OpenSSL frees its global state when the process exits, while pool threads may
/// still be closing TLS connections: that race aborts with "double free". The
/// first initialisation decides, so this runs before any PostgreSQL connection.
pub fn init_tls() {
    openssl_sys::init();
}

#[cfg(test)]
mod tests {
    use super::with_connect_timeout;

    #[test]
    fn a_postgres_url_gets_a_connect_timeout_unless_it_has_one() {
        assert_eq!(
            with_connect_timeout("postgres://u@db/app"),
            "postgres://u@db/app?connect_timeout=5"
        );
        assert_eq!(
            with_connect_timeout("postgres://u@db/app?sslmode=require"),
            "postgres://u@db/app?sslmode=require&connect_timeout=5"
        );
        assert_eq!(
            with_connect_timeout("postgres://u@db/app?connect_timeout=20"),
            "postgres://u@db/app?connect_timeout=20"
        );
    }
}

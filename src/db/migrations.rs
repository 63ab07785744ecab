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
    with_migration_lock(conn, |conn| {
        let names = apply_all(conn, &mut applied)?;
        let index = super::models::knowledge_index::reconcile(conn)?;
        if index != Default::default() {
            tracing::info!(
                built = index.built,
                dropped = index.dropped,
                "knowledge indexes reconciled"
            );
        }
        Ok(names)
    })
}

/// Undoes the newest applied migration (its `down.sql`) and returns its name,
/// or `None` when none is applied: run with the newer binary before deploying
/// an older one. Nothing else runs after it, so the schema is the one the older
/// binary knows.
pub fn revert_last(conn: &mut DbConnection) -> Result<Option<String>, DbError> {
    macro_rules! revert {
        ($c:expr, $source:expr, $db:ty) => {{
            let error =
                |e: Box<dyn std::error::Error + Send + Sync>| DbError::Migration(e.to_string());
            if $c.applied_migrations().map_err(error)?.is_empty() {
                return Ok(None);
            }
            let version = $c.revert_last_migration($source).map_err(error)?;
            let name = diesel::migration::MigrationSource::<$db>::migrations(&$source)
                .map_err(error)?
                .iter()
                .map(|m| m.name().to_string())
                .find(|name| name.replace('-', "").starts_with(&version.to_string()))
                .unwrap_or_else(|| version.to_string());
            Ok(Some(name))
        }};
    }
    with_migration_lock(conn, |conn| match conn {
        DbConnection::Sqlite(c) => revert!(c, SQLITE, diesel::sqlite::Sqlite),
        DbConnection::Postgres(c) => revert!(c, POSTGRES, diesel::pg::Pg),
    })
}

/// Runs `work` holding the lock that keeps instances sharing one PostgreSQL
/// from migrating at once (SQLite's write lock does that there).
fn with_migration_lock<T>(
    conn: &mut DbConnection,
    work: impl FnOnce(&mut DbConnection) -> Result<T, DbError>,
) -> Result<T, DbError> {
    let lock = matches!(conn, DbConnection::Postgres(_));
    if lock {
        conn.batch_execute(&format!("SELECT pg_advisory_lock({PG_MIGRATION_LOCK})"))?;
    }
    let result = work(conn);
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
                $c.run_migration(&migration).map_err(|e| {
                    if !migration.metadata().run_in_transaction() {
                        restore_after_own_transaction(&mut *$c);
                    }
                    DbError::Migration(format!("{name}: {e}"))
                })?;
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

/// A migration that takes its own transaction (to rebuild SQLite tables with
/// foreign keys off) and failed half-way leaves that transaction open and the
/// checks off on a pooled connection: both are put back. The rollback fails
/// harmlessly when no transaction was open.
fn restore_after_own_transaction(conn: &mut impl diesel::connection::SimpleConnection) {
    let _ = conn.batch_execute("ROLLBACK");
    if let Err(e) = conn.batch_execute("PRAGMA foreign_keys = ON") {
        tracing::error!(error = %e, "could not turn foreign keys back on after a failed migration");
    }
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

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection as _;
    use diesel::sql_types::{BigInt, Text};
    use diesel::sqlite::SqliteConnection;
    use diesel::{Connection as _, QueryableByName, RunQueryDsl as _, sql_query};
    use diesel_migrations::MigrationHarness as _;

    const IDS_NEVER_REUSED: &str = "2026-12-07-000011_ids_never_reused";

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    #[derive(QueryableByName)]
    struct Definition {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Text)]
        sql: String,
    }

    fn count(conn: &mut SqliteConnection, query: &str) -> i64 {
        sql_query(query).get_result::<Count>(conn).unwrap().n
    }

    const INDEX_PER_AGENT: &str = "2026-12-07-000012_knowledge_index_per_agent";

    /// A database as the release before `migration` kept it: every migration
    /// up to it applied.
    fn before(path: &std::path::Path, migration: &str) -> SqliteConnection {
        let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        conn.batch_execute("PRAGMA foreign_keys = ON").unwrap();
        for pending in conn.pending_migrations(super::SQLITE).unwrap() {
            if pending.name().to_string() == migration {
                break;
            }
            conn.run_migration(&pending).unwrap();
        }
        conn
    }

    fn before_ids_never_reused(path: &std::path::Path) -> SqliteConnection {
        before(path, IDS_NEVER_REUSED)
    }

    const ROWS: &str = "
        INSERT INTO organizations (id, slug, name, created_at, updated_at) VALUES
            (1, 'kept', 'Kept', '2026-12-01 00:00:00', '2026-12-01 00:00:00'),
            (2, 'gone', 'Gone', '2026-12-01 00:00:00', '2026-12-01 00:00:00');
        INSERT INTO agents (id, organization_id, name, slug, created_at, updated_at) VALUES
            (1, 1, 'Support', 'support', '2026-12-01 00:00:00', '2026-12-01 00:00:00'),
            (2, 2, 'Other', 'other', '2026-12-01 00:00:00', '2026-12-01 00:00:00');
        INSERT INTO knowledge_documents (id, organization_id, agent_id, title, format, size_bytes,
            content, status, created_at, updated_at) VALUES
            (1, 1, 1, 'Returns', 'text', 10, 'Bikes return', 'ready', '2026-12-01 00:00:00', '2026-12-01 00:00:00');
        INSERT INTO knowledge_chunks (id, organization_id, agent_id, document_id, ordinal, heading, content)
            VALUES (1, 1, 1, 1, 0, 'Returns', 'Bikes can be returned within thirty days');
        INSERT INTO conversations (id, organization_id, agent_id, channel, visitor_id, visitor_ip,
            token_hash, status, created_at, updated_at) VALUES
            (1, 1, 1, 'page', 'visitor-1', '127.0.0.1', 'x', 'open', '2026-12-01 00:00:00', '2026-12-01 00:00:00'),
            (2, 1, 1, 'page', 'visitor-2', '127.0.0.1', 'y', 'open', '2026-12-01 00:00:00', '2026-12-01 00:00:00');
        INSERT INTO messages (id, organization_id, conversation_id, role, content, created_at) VALUES
            (1, 1, 1, 'visitor', 'Can I return a bike?', '2026-12-01 00:00:00');
        -- The newest of each, deleted before the upgrade: their ids were free
        -- to come back until now.
        DELETE FROM conversations WHERE id = 2;
        DELETE FROM organizations WHERE id = 2;
    ";

    #[test]
    fn the_upgrade_keeps_every_row_and_link_and_no_id_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let mut conn = before_ids_never_reused(&path);
        conn.batch_execute(ROWS).unwrap();
        assert_eq!(
            count(&mut conn, "SELECT count(*) AS n FROM agents"),
            1,
            "cascaded"
        );

        let applied = super::run_pending(&mut super::DbConnection::Sqlite(conn), |_| {}).unwrap();
        assert!(applied.iter().any(|m| m == IDS_NEVER_REUSED), "{applied:?}");
        let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        conn.batch_execute("PRAGMA foreign_keys = ON").unwrap();

        // Every row and every reference survived the rebuild.
        for (table, rows) in [
            ("organizations", 1),
            ("agents", 1),
            ("knowledge_documents", 1),
            ("knowledge_chunks", 1),
            ("conversations", 1),
            ("messages", 1),
        ] {
            let n = count(&mut conn, &format!("SELECT count(*) AS n FROM {table}"));
            assert_eq!(n, rows, "{table}");
        }
        assert_eq!(
            count(
                &mut conn,
                "SELECT count(*) AS n FROM pragma_foreign_key_check"
            ),
            0
        );
        // The knowledge index kept its passage (in the agent's own index now).
        let found =
            "SELECT count(*) AS n FROM knowledge_fts_1 WHERE knowledge_fts_1 MATCH 'returned'";
        assert_eq!(count(&mut conn, found), 1);

        // Ids deleted before the upgrade, and after it, stay used.
        conn.batch_execute(
            "INSERT INTO organizations (slug, name, created_at, updated_at)
             VALUES ('next', 'Next', '2026-12-02 00:00:00', '2026-12-02 00:00:00');
             INSERT INTO conversations (organization_id, agent_id, channel, visitor_id, visitor_ip,
                token_hash, status, created_at, updated_at)
             VALUES (1, 1, 'page', 'visitor-3', '127.0.0.1', 'z', 'open',
                '2026-12-02 00:00:00', '2026-12-02 00:00:00')",
        )
        .unwrap();
        let newest = |conn: &mut SqliteConnection, table: &str| {
            count(conn, &format!("SELECT max(id) AS n FROM {table}"))
        };
        // The rows that held 2 were deleted before the upgrade, when nothing
        // remembered them: the table's largest id then was 1.
        assert_eq!(newest(&mut conn, "organizations"), 2);
        assert_eq!(newest(&mut conn, "conversations"), 2);
        conn.batch_execute(
            "DELETE FROM conversations WHERE id = 2;
             INSERT INTO conversations (organization_id, agent_id, channel, visitor_id, visitor_ip,
                token_hash, status, created_at, updated_at)
             VALUES (1, 1, 'page', 'visitor-4', '127.0.0.1', 'w', 'open',
                '2026-12-02 00:00:00', '2026-12-02 00:00:00')",
        )
        .unwrap();
        assert_eq!(
            newest(&mut conn, "conversations"),
            3,
            "2 is not handed out again"
        );

        // Foreign keys still cascade.
        conn.batch_execute("DELETE FROM organizations WHERE id = 1")
            .unwrap();
        assert_eq!(count(&mut conn, "SELECT count(*) AS n FROM messages"), 0);
    }

    #[test]
    fn every_table_with_an_integer_id_never_reuses_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        conn.run_pending_migrations(super::SQLITE).unwrap();
        let tables: Vec<Definition> = sql_query(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql IS NOT NULL \
             AND name NOT LIKE 'knowledge_fts%'",
        )
        .load(&mut conn)
        .unwrap();
        let with_ids: Vec<&Definition> = tables
            .iter()
            .filter(|t| t.sql.contains("id INTEGER PRIMARY KEY"))
            .collect();
        assert!(with_ids.len() >= 18, "{}", with_ids.len());
        for table in with_ids {
            assert!(
                table.sql.contains("id INTEGER PRIMARY KEY AUTOINCREMENT"),
                "{} would hand a deleted row's id to the next one",
                table.name
            );
        }
        // And the migration's own transaction put the checks back.
        assert_eq!(
            count(
                &mut conn,
                "SELECT foreign_keys AS n FROM pragma_foreign_keys"
            ),
            1
        );
    }

    /// How many passages `table` finds for `word`.
    fn matches(conn: &mut SqliteConnection, table: &str, word: &str) -> i64 {
        count(
            conn,
            &format!("SELECT count(*) AS n FROM {table} WHERE {table} MATCH '{word}'"),
        )
    }

    fn tables(conn: &mut SqliteConnection) -> Vec<String> {
        let found: Vec<Definition> = sql_query(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' \
             AND name LIKE 'knowledge_fts%' AND name NOT LIKE '%\\_%\\_%\\_%' ESCAPE '\\' \
             ORDER BY name",
        )
        .load(conn)
        .unwrap();
        found.into_iter().map(|t| t.name).collect()
    }

    const TWO_TENANTS: &str = "
        INSERT INTO organizations (id, slug, name, created_at, updated_at) VALUES
            (1, 'bikes', 'Bikes', '2026-12-01 00:00:00', '2026-12-01 00:00:00'),
            (2, 'boats', 'Boats', '2026-12-01 00:00:00', '2026-12-01 00:00:00');
        INSERT INTO agents (id, organization_id, name, slug, created_at, updated_at) VALUES
            (1, 1, 'Support', 'support', '2026-12-01 00:00:00', '2026-12-01 00:00:00'),
            (2, 2, 'Support', 'support', '2026-12-01 00:00:00', '2026-12-01 00:00:00');
        INSERT INTO knowledge_documents (id, organization_id, agent_id, title, format, size_bytes,
            content, status, created_at, updated_at) VALUES
            (1, 1, 1, 'Returns', 'text', 10, 'x', 'ready', '2026-12-01 00:00:00', '2026-12-01 00:00:00'),
            (2, 2, 2, 'Returns', 'text', 10, 'x', 'ready', '2026-12-01 00:00:00', '2026-12-01 00:00:00');
        INSERT INTO knowledge_chunks (id, organization_id, agent_id, document_id, ordinal, heading, content)
            VALUES (1, 1, 1, 1, 0, 'Returns', 'Bikes can be returned within thirty days'),
                   (2, 2, 2, 2, 0, 'Returns', 'Boats are returned to the marina');
    ";

    #[test]
    fn the_upgrade_gives_every_agent_its_own_index_and_a_downgrade_and_upgrade_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.db");
        let mut conn = before(&path, INDEX_PER_AGENT);
        conn.batch_execute(TWO_TENANTS).unwrap();
        assert_eq!(matches(&mut conn, "knowledge_fts", "returned"), 2);

        let mut db = super::DbConnection::Sqlite(conn);
        super::run_pending(&mut db, |_| {}).unwrap();
        let super::DbConnection::Sqlite(conn) = &mut db else {
            unreachable!()
        };
        assert_eq!(tables(conn), ["knowledge_fts_1", "knowledge_fts_2"]);
        assert_eq!(matches(conn, "knowledge_fts_1", "bikes"), 1);
        assert_eq!(
            matches(conn, "knowledge_fts_1", "boats"),
            0,
            "the other tenant's"
        );
        assert_eq!(matches(conn, "knowledge_fts_2", "marina"), 1);

        // Back to the shared index, and a passage added while there...
        conn.revert_last_migration(super::SQLITE).unwrap();
        assert_eq!(matches(conn, "knowledge_fts", "returned"), 2);
        conn.batch_execute(
            "INSERT INTO knowledge_chunks (id, organization_id, agent_id, document_id, ordinal, \
             heading, content) VALUES (3, 1, 1, 1, 1, 'Helmets', 'Helmets are never returned')",
        )
        .unwrap();
        assert_eq!(matches(conn, "knowledge_fts", "helmets"), 1);
        // ...is in the agent's index after the next upgrade, though the
        // downgrade left that index behind.
        super::run_pending(&mut db, |_| {}).unwrap();
        let super::DbConnection::Sqlite(conn) = &mut db else {
            unreachable!()
        };
        assert_eq!(tables(conn), ["knowledge_fts_1", "knowledge_fts_2"]);
        assert_eq!(matches(conn, "knowledge_fts_1", "helmets"), 1);
        assert_eq!(matches(conn, "knowledge_fts_1", "returned"), 2);

        // Later runs repair: a missing index is built, a dead agent's dropped.
        conn.batch_execute("DROP TABLE knowledge_fts_1; DELETE FROM agents WHERE id = 2")
            .unwrap();
        let fixed = crate::db::models::knowledge_index::reconcile(&mut db).unwrap();
        assert_eq!((fixed.built, fixed.dropped), (1, 1));
        let super::DbConnection::Sqlite(conn) = &mut db else {
            unreachable!()
        };
        assert_eq!(tables(conn), ["knowledge_fts_1"]);
        assert_eq!(matches(conn, "knowledge_fts_1", "helmets"), 1);
        assert_eq!(
            crate::db::models::knowledge_index::reconcile(&mut db).unwrap(),
            Default::default(),
            "nothing left to do"
        );
    }
}

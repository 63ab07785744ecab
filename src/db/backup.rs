//! `frontdesk backup`: a consistent copy of the embedded SQLite database, taken
//! while the server keeps serving.
//!
//! `VACUUM INTO` reads one snapshot (WAL lets writers carry on meanwhile) and
//! writes a compact, self-contained database file. It is written beside the
//! target under a temporary name, checked, synced, and only then renamed into
//! place, so a crash or a full disk never leaves a half-written file under the
//! name an operator would restore from.

use std::path::Path;

use diesel::sql_types::Text;
use diesel::{Connection as _, QueryableByName, RunQueryDsl as _, SqliteConnection};

use super::{Backend, DbConnection};
use crate::files::{create_partial, publish};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "backup copies the embedded SQLite database; for PostgreSQL use its own tools, e.g. `pg_dump --format=custom --file {out} \"$DATABASE_URL\"`"
    )]
    Postgres { out: String },
    #[error("{0} already exists; choose another file or move it away first")]
    Exists(String),
    #[error("cannot write the backup to {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("the backup at {path} failed its integrity check: {reason}")]
    Corrupt { path: String, reason: String },
}

#[derive(QueryableByName)]
struct Check {
    #[diesel(sql_type = Text)]
    integrity_check: String,
}

/// Writes a consistent copy of the database to `out`, readable by its owner
/// only; returns its size in bytes.
pub fn backup_sqlite(conn: &mut DbConnection, out: &Path) -> Result<u64, BackupError> {
    let shown = out.display().to_string();
    if conn.backend() == Backend::Postgres {
        return Err(BackupError::Postgres { out: shown });
    }
    if out.exists() {
        return Err(BackupError::Exists(shown));
    }
    let write_error = |reason: String| BackupError::Write {
        path: shown.clone(),
        reason,
    };
    // VACUUM INTO writes into an existing empty file, keeping its mode.
    let (partial, file) = create_partial(out).map_err(|e| write_error(e.to_string()))?;
    drop(file);
    let target = partial
        .to_str()
        .ok_or_else(|| write_error("the path is not valid UTF-8".into()))?
        .to_string();

    diesel::sql_query("VACUUM INTO $1")
        .bind::<Text, _>(&target)
        .execute(conn)
        .map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            write_error(e.to_string())
        })?;

    if let Err(e) = verify(&target) {
        let _ = std::fs::remove_file(&partial);
        return Err(BackupError::Corrupt {
            path: shown,
            reason: e,
        });
    }
    let size = std::fs::File::open(&partial)
        .and_then(|f| {
            f.sync_all()?;
            f.metadata()
        })
        .map(|m| m.len())
        .map_err(|e| write_error(e.to_string()))?;
    match publish(&partial, out) {
        Ok(()) => Ok(size),
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Err(BackupError::Exists(shown))
            } else {
                Err(write_error(e.to_string()))
            }
        }
    }
}

/// Opens the copy on its own and asks SQLite whether it is sound.
fn verify(path: &str) -> Result<(), String> {
    let mut copy = SqliteConnection::establish(path).map_err(|e| e.to_string())?;
    let rows: Vec<Check> = diesel::sql_query("PRAGMA integrity_check")
        .load(&mut copy)
        .map_err(|e| e.to_string())?;
    match rows.first() {
        Some(row) if row.integrity_check == "ok" => Ok(()),
        Some(row) => Err(row.integrity_check.clone()),
        None => Err("no answer".into()),
    }
}

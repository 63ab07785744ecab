//! SQLite's full-text index of the knowledge base: one FTS5 table per agent.
//!
//! bm25 weighs a word by how many passages *of its table* hold it. One table
//! shared by every organization let another tenant's documents move an agent's
//! ranking (a word-frequency oracle across tenants) and made every question pay
//! for the posting lists of everyone's passages; a table per agent ranks with the
//! agent's own knowledge base alone. Every agent has its table from creation to
//! deletion ([`reconcile`] builds the ones a database from before lacks).
//! PostgreSQL needs none of this: `ts_rank_cd` looks at one passage at a time, and
//! its index lives in `knowledge_chunks.search`.

use std::collections::HashSet;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::db::schema::{agents, knowledge_chunks};
use crate::db::{Backend, DbConnection};
use crate::domain::{AgentId, DocumentId, OrganizationId};

/// Shared by every agent's table name; the agent id follows.
const PREFIX: &str = "knowledge_fts_";

/// The index of one agent's passages, keyed by chunk id. Contentless: the text
/// stays in `knowledge_chunks`, and a passage leaves the index by its id alone.
#[derive(Debug, Clone, Copy)]
pub struct AgentIndex(AgentId);

impl AgentIndex {
    pub fn of(agent: AgentId) -> Self {
        Self(agent)
    }

    /// The table's name: an integer id, so it is safe in SQL text.
    pub fn table(self) -> String {
        format!("{PREFIX}{}", self.0.0)
    }

    /// Creates the (empty) table unless it exists.
    pub fn create(self, conn: &mut DbConnection) -> QueryResult<()> {
        if conn.backend() != Backend::Sqlite {
            return Ok(());
        }
        diesel::sql_query(format!(
            "CREATE VIRTUAL TABLE IF NOT EXISTS {} USING fts5(\
                 heading, content, content = '', contentless_delete = 1, \
                 tokenize = 'porter unicode61')",
            self.table()
        ))
        .execute(conn)
        .map(|_| ())
    }

    /// Indexes the document's passages as they now stand in `knowledge_chunks`.
    pub fn add_document(self, conn: &mut DbConnection, document: DocumentId) -> QueryResult<()> {
        if conn.backend() != Backend::Sqlite {
            return Ok(());
        }
        diesel::sql_query(self.insert_passages("AND document_id = $2"))
            .bind::<BigInt, _>(self.0.0)
            .bind::<BigInt, _>(document.0)
            .execute(conn)
            .map(|_| ())
    }

    /// The statement copying the agent's passages (`$1`) that also meet
    /// `condition` from `knowledge_chunks` into the index.
    fn insert_passages(self, condition: &str) -> String {
        format!(
            "INSERT INTO {} (rowid, heading, content) \
                 SELECT id, coalesce(heading, ''), content FROM knowledge_chunks \
                 WHERE agent_id = $1 {condition}",
            self.table()
        )
    }

    /// Takes the document's passages out of the index; call it before they
    /// leave `knowledge_chunks`, which is where their ids are read.
    pub fn remove_document(self, conn: &mut DbConnection, document: DocumentId) -> QueryResult<()> {
        if conn.backend() != Backend::Sqlite {
            return Ok(());
        }
        let ids: Vec<i64> = knowledge_chunks::table
            .filter(knowledge_chunks::document_id.eq(document))
            .filter(knowledge_chunks::agent_id.eq(self.0))
            .select(knowledge_chunks::id)
            .load(conn)?;
        let delete = format!("DELETE FROM {} WHERE rowid = $1", self.table());
        for id in ids {
            diesel::sql_query(&delete)
                .bind::<BigInt, _>(id)
                .execute(conn)?;
        }
        Ok(())
    }

    /// Removes the table with everything in it (the agent is being deleted).
    pub fn drop_table(self, conn: &mut DbConnection) -> QueryResult<()> {
        if conn.backend() != Backend::Sqlite {
            return Ok(());
        }
        diesel::sql_query(format!("DROP TABLE IF EXISTS {}", self.table()))
            .execute(conn)
            .map(|_| ())
    }
}

/// Drops the index of every agent of the organization (which is being deleted:
/// the cascade removes rows, not tables).
pub fn drop_organization(conn: &mut DbConnection, organization: OrganizationId) -> QueryResult<()> {
    if conn.backend() != Backend::Sqlite {
        return Ok(());
    }
    let ids: Vec<AgentId> = agents::table
        .filter(agents::organization_id.eq(organization))
        .select(agents::id)
        .load(conn)?;
    ids.into_iter()
        .try_for_each(|id| AgentIndex::of(id).drop_table(conn))
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

/// The full-text tables SQLite holds: the agents' and the shared one.
fn index_tables(conn: &mut DbConnection) -> QueryResult<Vec<String>> {
    let tables: Vec<Name> = diesel::sql_query(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name LIKE 'knowledge\\_fts%' ESCAPE '\\'",
    )
    .load(conn)?;
    Ok(tables.into_iter().map(|t| t.name).collect())
}

/// The agents named by `tables`. Shadow tables (`…_data`, `…_idx`) share the
/// prefix; only a bare number after it names an agent's index.
fn agent_ids(tables: &[String]) -> impl Iterator<Item = i64> + '_ {
    tables
        .iter()
        .filter_map(|t| t.strip_prefix(PREFIX)?.parse::<i64>().ok())
}

/// The agents that have an index table, in id order (none on PostgreSQL).
pub fn indexed_agents(conn: &mut DbConnection) -> QueryResult<Vec<AgentId>> {
    if conn.backend() != Backend::Sqlite {
        return Ok(Vec::new());
    }
    let mut ids: Vec<AgentId> = agent_ids(&index_tables(conn)?).map(AgentId).collect();
    ids.sort();
    Ok(ids)
}

/// What [`reconcile`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Agents whose index was built from their passages.
    pub built: usize,
    /// Tables dropped: left by agents that no longer exist, or stale.
    pub dropped: usize,
}

/// The index every organization shared before, which the migration to one
/// index per agent left in place: while it exists, the agents' tables (which a
/// downgrade may have left behind, out of date) are rebuilt from the passages.
const SHARED: &str = "knowledge_fts";

/// Gives every agent its index, built from its passages, and drops tables
/// whose agent is gone: the upgrade from the shared index, and a repair should
/// the two ever disagree. Runs after every migration run, in one transaction.
pub fn reconcile(conn: &mut DbConnection) -> QueryResult<Reconciled> {
    if conn.backend() != Backend::Sqlite {
        return Ok(Reconciled::default());
    }
    // Writing from the start: two processes starting at once on one file
    // (a server and a worker) then take turns instead of one failing.
    crate::db::write_transaction(conn, |conn| {
        let mut done = Reconciled::default();
        let tables = index_tables(conn)?;
        let upgrading = tables.iter().any(|t| t == SHARED);
        let agents: HashSet<i64> = agents::table
            .select(agents::id)
            .load::<AgentId>(conn)?
            .into_iter()
            .map(|a| a.0)
            .collect();
        let mut kept = HashSet::new();
        for id in agent_ids(&tables) {
            if agents.contains(&id) && !upgrading {
                kept.insert(id);
            } else {
                AgentIndex::of(AgentId(id)).drop_table(conn)?;
                done.dropped += 1;
            }
        }
        for &agent in agents.iter().filter(|id| !kept.contains(id)) {
            let index = AgentIndex::of(AgentId(agent));
            index.create(conn)?;
            diesel::sql_query(index.insert_passages(""))
                .bind::<BigInt, _>(agent)
                .execute(conn)?;
            done.built += 1;
        }
        if upgrading {
            diesel::sql_query(format!("DROP TABLE {SHARED}")).execute(conn)?;
        }
        Ok(done)
    })
}

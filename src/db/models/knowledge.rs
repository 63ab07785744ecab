//! Knowledge documents, their chunks, and full-text search over them: FTS5 with
//! bm25 on SQLite (an index per agent, see `knowledge_index`), a weighted
//! tsvector with ts_rank_cd on PostgreSQL.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Nullable, Text};

use super::knowledge_index::AgentIndex;
use crate::db::schema::{knowledge_chunks, knowledge_documents};
use crate::db::{Backend, DbConnection};
use crate::domain::{AgentId, DocumentId, OrganizationId, TenantScope};

pub const PENDING: &str = "pending";
pub const INDEXING: &str = "indexing";
pub const READY: &str = "ready";
pub const FAILED: &str = "failed";
pub const DOCUMENT_STATUSES: [&str; 4] = [PENDING, INDEXING, READY, FAILED];

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = knowledge_documents)]
pub struct Document {
    pub id: DocumentId,
    pub organization_id: OrganizationId,
    pub agent_id: AgentId,
    pub title: String,
    pub format: String,
    pub size_bytes: i32,
    pub content: String,
    pub status: String,
    pub chunk_count: i32,
    pub error: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A passage found by search, with its rank (higher is better, backend-specific scale).
#[derive(Debug, Clone, QueryableByName, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Passage {
    #[diesel(sql_type = BigInt)]
    pub chunk_id: i64,
    #[diesel(sql_type = BigInt)]
    pub document_id: DocumentId,
    #[diesel(sql_type = Text)]
    pub title: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub heading: Option<String>,
    #[diesel(sql_type = Text)]
    pub content: String,
    #[diesel(sql_type = Double)]
    pub rank: f64,
}

impl Document {
    pub fn create(
        conn: &mut DbConnection,
        scope: &TenantScope,
        agent_id: AgentId,
        title: &str,
        format: &str,
        size_bytes: i32,
        content: &str,
    ) -> QueryResult<Document> {
        let now = crate::domain::now();
        diesel::insert_into(knowledge_documents::table)
            .values((
                knowledge_documents::organization_id.eq(scope.organization_id()),
                knowledge_documents::agent_id.eq(agent_id),
                knowledge_documents::title.eq(title),
                knowledge_documents::format.eq(format),
                knowledge_documents::size_bytes.eq(size_bytes),
                knowledge_documents::content.eq(content),
                knowledge_documents::status.eq(PENDING),
                knowledge_documents::created_at.eq(now),
                knowledge_documents::updated_at.eq(now),
            ))
            .get_result(conn)
    }

    pub fn list(
        conn: &mut DbConnection,
        scope: &TenantScope,
        agent_id: AgentId,
    ) -> QueryResult<Vec<Document>> {
        knowledge_documents::table
            .filter(knowledge_documents::organization_id.eq(scope.organization_id()))
            .filter(knowledge_documents::agent_id.eq(agent_id))
            .order(knowledge_documents::created_at.desc())
            .select(Document::as_select())
            .load(conn)
    }

    /// Bytes uploaded into the organization's knowledge base.
    pub fn total_bytes(conn: &mut DbConnection, scope: &TenantScope) -> QueryResult<i64> {
        knowledge_documents::table
            .filter(knowledge_documents::organization_id.eq(scope.organization_id()))
            .select(diesel::dsl::sum(knowledge_documents::size_bytes))
            .first::<Option<i64>>(conn)
            .map(Option::unwrap_or_default)
    }

    pub fn find(
        conn: &mut DbConnection,
        scope: &TenantScope,
        id: DocumentId,
    ) -> QueryResult<Option<Document>> {
        knowledge_documents::table
            .filter(knowledge_documents::organization_id.eq(scope.organization_id()))
            .filter(knowledge_documents::id.eq(id))
            .select(Document::as_select())
            .first(conn)
            .optional()
    }

    /// For the ingestion job, which holds only the id it was given.
    pub fn find_for_indexing(
        conn: &mut DbConnection,
        id: DocumentId,
    ) -> QueryResult<Option<Document>> {
        knowledge_documents::table
            .find(id)
            .select(Document::as_select())
            .first(conn)
            .optional()
    }

    pub fn delete(
        conn: &mut DbConnection,
        scope: &TenantScope,
        id: DocumentId,
    ) -> QueryResult<bool> {
        let agent: Option<AgentId> = knowledge_documents::table
            .filter(knowledge_documents::organization_id.eq(scope.organization_id()))
            .filter(knowledge_documents::id.eq(id))
            .select(knowledge_documents::agent_id)
            .first(conn)
            .optional()?;
        let Some(agent) = agent else {
            return Ok(false);
        };
        // The index first: it finds the passages by their rows.
        AgentIndex::of(agent).remove_document(conn, id)?;
        diesel::delete(
            knowledge_chunks::table
                .filter(knowledge_chunks::organization_id.eq(scope.organization_id()))
                .filter(knowledge_chunks::document_id.eq(id)),
        )
        .execute(conn)?;
        diesel::delete(
            knowledge_documents::table
                .filter(knowledge_documents::organization_id.eq(scope.organization_id()))
                .filter(knowledge_documents::id.eq(id)),
        )
        .execute(conn)
        .map(|n| n == 1)
    }

    pub fn set_status(
        conn: &mut DbConnection,
        id: DocumentId,
        status: &str,
        chunks: i32,
        error: Option<&str>,
    ) -> QueryResult<usize> {
        diesel::update(knowledge_documents::table.find(id))
            .set((
                knowledge_documents::status.eq(status),
                knowledge_documents::chunk_count.eq(chunks),
                knowledge_documents::error.eq(error),
                knowledge_documents::updated_at.eq(crate::domain::now()),
            ))
            .execute(conn)
    }

    /// Replaces the document's chunks (re-indexing is idempotent).
    pub fn replace_chunks(
        conn: &mut DbConnection,
        doc: &Document,
        chunks: &[(Option<String>, String)],
    ) -> QueryResult<usize> {
        let index = AgentIndex::of(doc.agent_id);
        index.remove_document(conn, doc.id)?;
        diesel::delete(knowledge_chunks::table.filter(knowledge_chunks::document_id.eq(doc.id)))
            .execute(conn)?;
        for (ordinal, (heading, content)) in chunks.iter().enumerate() {
            diesel::insert_into(knowledge_chunks::table)
                .values((
                    knowledge_chunks::organization_id.eq(doc.organization_id),
                    knowledge_chunks::agent_id.eq(doc.agent_id),
                    knowledge_chunks::document_id.eq(doc.id),
                    knowledge_chunks::ordinal.eq(i32::try_from(ordinal).unwrap_or(i32::MAX)),
                    knowledge_chunks::heading.eq(heading),
                    knowledge_chunks::content.eq(content),
                ))
                .execute(conn)?;
        }
        index.add_document(conn, doc.id)?;
        Ok(chunks.len())
    }
}

/// Which passages a search considers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matching {
    /// Passages holding any of the terms: every one of them is ranked, which
    /// costs time in proportion to how common the terms are.
    Any,
    /// Passages holding every term but at most one: the index intersects the
    /// terms' lists and only the few passages found are ranked.
    AllButOne,
}

/// The boolean query over `terms`, in the backend's syntax.
fn full_text_query(terms: &[String], matching: Matching, backend: Backend) -> String {
    let (quote, and, or): (fn(&str) -> String, &str, &str) = match backend {
        Backend::Sqlite => (|t| format!("\"{t}\""), " AND ", " OR "),
        Backend::Postgres => (str::to_string, " & ", " | "),
    };
    let quoted: Vec<String> = terms.iter().map(|t| quote(t)).collect();
    match matching {
        Matching::Any => quoted.join(or),
        Matching::AllButOne => (0..quoted.len())
            .map(|skip| {
                let group: Vec<&str> = quoted
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != skip)
                    .map(|(_, t)| t.as_str())
                    .collect();
                format!("({})", group.join(and))
            })
            .collect::<Vec<_>>()
            .join(or),
    }
}

/// Full-text search in one agent's knowledge base (the agent was found in its
/// organization first, so the pair is consistent). `terms` are plain words (the
/// caller strips punctuation), so nothing a visitor types reaches the query syntax.
pub fn search(
    conn: &mut DbConnection,
    organization_id: OrganizationId,
    agent_id: AgentId,
    terms: &[String],
    matching: Matching,
    limit: i64,
) -> QueryResult<Vec<Passage>> {
    if terms.is_empty() {
        return Ok(Vec::new());
    }
    let query = full_text_query(terms, matching, conn.backend());
    match conn.backend() {
        // The agent's own index ranks with the agent's own passages; the
        // scope conditions stay as the second lock on the door.
        Backend::Sqlite => diesel::sql_query(format!(
            "SELECT c.id AS chunk_id, c.document_id, d.title, c.heading, c.content, \
                 -bm25({index}, 2.0, 1.0) AS rank \
                 FROM {index} \
                 JOIN knowledge_chunks c ON c.id = {index}.rowid \
                 JOIN knowledge_documents d ON d.id = c.document_id \
                 WHERE {index} MATCH $1 AND c.organization_id = $2 AND c.agent_id = $3 \
                 ORDER BY rank DESC LIMIT $4",
            index = AgentIndex::of(agent_id).table()
        ))
        .bind::<Text, _>(query)
        .bind::<BigInt, _>(organization_id.0)
        .bind::<BigInt, _>(agent_id.0)
        .bind::<BigInt, _>(limit)
        .load(conn),
        // Ranked against the plain any-word query: cover density over the
        // all-but-one query's nested groups costs about 30 µs per matching
        // passage (20 ms for a few hundred), the flat one a fifth of that, and
        // the coverage score orders the results by how many words they hold.
        Backend::Postgres => diesel::sql_query(
            "SELECT c.id AS chunk_id, c.document_id, d.title, c.heading, c.content, \
                 ts_rank_cd(c.search, r)::float8 AS rank \
                 FROM knowledge_chunks c \
                 JOIN knowledge_documents d ON d.id = c.document_id, \
                 to_tsquery('english', $1) q, to_tsquery('english', $2) r \
                 WHERE c.search @@ q AND c.organization_id = $3 AND c.agent_id = $4 \
                 ORDER BY rank DESC LIMIT $5",
        )
        .bind::<Text, _>(query)
        .bind::<Text, _>(full_text_query(terms, Matching::Any, Backend::Postgres))
        .bind::<BigInt, _>(organization_id.0)
        .bind::<BigInt, _>(agent_id.0)
        .bind::<BigInt, _>(limit)
        .load(conn),
    }
}

impl Document {
    /// After a document's passages were replaced, PostgreSQL must catch up on
    /// two things before questions are fast again. New passages first land in the
    /// GIN index's pending list (`fastupdate`), which every search scans in full
    /// until a vacuum or a 4 MB list moves it into the index: a freshly ingested
    /// knowledge base of 10,000 passages cost 10 to 40 ms per question that way
    /// instead of a quarter of a millisecond. And with stale statistics the
    /// planner filters every passage of the agent instead of using the index.
    /// Both need the owner of the table (the role that ran the migrations); the
    /// caller logs a failure, since results are right either way. SQLite's FTS5
    /// needs neither.
    pub fn prepare_for_search(conn: &mut DbConnection) -> QueryResult<()> {
        use diesel::connection::SimpleConnection as _;
        match conn.backend() {
            Backend::Postgres => conn.batch_execute(
                "SELECT gin_clean_pending_list('knowledge_chunks_search'::regclass); \
                 ANALYZE knowledge_chunks",
            ),
            Backend::Sqlite => Ok(()),
        }
    }

    /// Documents per status for the agent's knowledge page.
    pub fn total_chunks(
        conn: &mut DbConnection,
        scope: &TenantScope,
        agent_id: AgentId,
    ) -> QueryResult<i64> {
        knowledge_chunks::table
            .filter(knowledge_chunks::organization_id.eq(scope.organization_id()))
            .filter(knowledge_chunks::agent_id.eq(agent_id))
            .count()
            .get_result(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::{Backend, Matching, full_text_query};

    #[test]
    fn queries_ask_for_any_term_or_all_but_one() {
        let terms: Vec<String> = ["warranty", "amber", "grinder"].map(String::from).into();
        assert_eq!(
            full_text_query(&terms, Matching::Any, Backend::Sqlite),
            "\"warranty\" OR \"amber\" OR \"grinder\""
        );
        assert_eq!(
            full_text_query(&terms, Matching::AllButOne, Backend::Postgres),
            "(amber & grinder) | (warranty & grinder) | (warranty & amber)"
        );
    }
}

//! An agent's knowledge base: documents in, text extracted at upload, split and
//! full-text indexed by a job, searched with scores the chat engine can trust.

pub mod text;

use serde::{Deserialize, Serialize};

use crate::config::StripeConfig;
use crate::db::models::knowledge::{self, FAILED, INDEXING, Matching, READY};
use crate::db::models::{Agent, Document, Passage};
use crate::db::{DbConnection, lock_until_commit, write_transaction};
use crate::domain::{AgentId, DocumentId, OrganizationId, TenantScope};
use crate::services::billing::limits::{self, LimitError, LimitReached, Resource};
use crate::services::jobs::{self, EnqueueOptions, Job, JobContext, JobFailure};
pub use text::{ACCEPTED, SourceFormat, TextError, title_from_filename};

/// About a paragraph or two: small enough to quote, big enough to answer.
const CHUNK_CHARS: usize = 900;
const CHUNK_OVERLAP: usize = 150;
pub const MAX_TITLE_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error(transparent)]
    Text(#[from] TextError),
    #[error("The file is larger than the {} this server accepts.", crate::domain::text::human_bytes(*limit))]
    TooLarge { limit: u64 },
    #[error("A title is required (at most {MAX_TITLE_CHARS} characters).")]
    Title,
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Limit(LimitReached),
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

impl From<LimitError> for KnowledgeError {
    fn from(err: LimitError) -> Self {
        match err {
            LimitError::Reached(limit) => Self::Limit(limit),
            LimitError::Db(e) => Self::Db(e),
        }
    }
}

/// What a person uploaded or pasted, before extraction.
#[derive(Debug, Clone)]
pub struct Upload {
    pub title: String,
    pub format: SourceFormat,
    pub bytes: Vec<u8>,
}

/// Extracts the text now (so a bad file is refused while the person is still
/// there) and leaves the splitting and indexing to a job, enqueued with the row.
pub fn add_document(
    conn: &mut DbConnection,
    scope: &TenantScope,
    agent_id: AgentId,
    upload: Upload,
    max_bytes: u64,
    billing: &StripeConfig,
) -> Result<Document, KnowledgeError> {
    let prepared = prepare(upload, max_bytes)?;
    store(conn, scope, agent_id, prepared, billing)
}

/// An upload checked and turned into text, ready to be stored.
pub struct Prepared {
    title: String,
    format: SourceFormat,
    size: i32,
    content: String,
}

/// The checks and the text extraction of [`add_document`], which need no
/// database: callers run them before taking a connection, so a large PDF being
/// parsed does not hold one of the pool's few connections.
pub fn prepare(upload: Upload, max_bytes: u64) -> Result<Prepared, KnowledgeError> {
    let size = upload.bytes.len() as u64;
    if size > max_bytes {
        return Err(KnowledgeError::TooLarge { limit: max_bytes });
    }
    let title = crate::domain::text::clean(upload.title.trim(), false);
    let title = title.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
        return Err(KnowledgeError::Title);
    }
    let content = text::extract(upload.format, &upload.bytes)?;
    Ok(Prepared {
        title: title.to_string(),
        format: upload.format,
        size: i32::try_from(size).unwrap_or(i32::MAX),
        content,
    })
}

/// Stores a [`prepare`]d document and queues its indexing.
pub fn store(
    conn: &mut DbConnection,
    scope: &TenantScope,
    agent_id: AgentId,
    prepared: Prepared,
    billing: &StripeConfig,
) -> Result<Document, KnowledgeError> {
    let Prepared {
        title,
        format,
        size,
        content,
    } = prepared;
    write_transaction(conn, |conn| {
        Agent::find(conn, scope, agent_id)?.ok_or(KnowledgeError::NotFound)?;
        limits::ensure_room(
            conn,
            billing,
            scope,
            Resource::Knowledge(u64::try_from(size).unwrap_or(0)),
        )?;
        let doc = Document::create(
            conn,
            scope,
            agent_id,
            &title,
            format.as_str(),
            size,
            &content,
        )?;
        enqueue_index(conn, doc.id)?;
        Ok(doc)
    })
}

/// Splits and indexes the document again (after a chunking change, say).
pub fn reindex(
    conn: &mut DbConnection,
    scope: &TenantScope,
    id: DocumentId,
) -> Result<(), KnowledgeError> {
    write_transaction(conn, |conn| {
        let doc = Document::find(conn, scope, id)?.ok_or(KnowledgeError::NotFound)?;
        Document::set_status(conn, doc.id, knowledge::PENDING, doc.chunk_count, None)?;
        enqueue_index(conn, doc.id)?;
        Ok(())
    })
}

pub fn delete(
    conn: &mut DbConnection,
    scope: &TenantScope,
    id: DocumentId,
) -> Result<(), KnowledgeError> {
    write_transaction(conn, |conn| {
        // Before any row: the indexing job holds this while it writes the
        // document's passages (which lock the document row for it) and then
        // the document; a deletion that locked the document in between would
        // wait for the job while the job waited for it.
        lock_document(conn, id)?;
        if Document::delete(conn, scope, id)? {
            Ok(())
        } else {
            Err(KnowledgeError::NotFound)
        }
    })
}

/// Serializes the writers of one document's passages (the indexing job and
/// deletion) on PostgreSQL; SQLite's write transactions already take turns.
fn lock_document(conn: &mut DbConnection, id: DocumentId) -> diesel::QueryResult<()> {
    lock_until_commit(conn, &format!("document:{id}"))
}

fn enqueue_index(conn: &mut DbConnection, id: DocumentId) -> diesel::QueryResult<()> {
    jobs::enqueue(
        conn,
        &IndexDocument { document_id: id },
        EnqueueOptions::default(),
    )
    .map(|_| ())
}

/// Splits one document into passages and (re)builds its part of the index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IndexDocument {
    pub document_id: DocumentId,
}

impl Job for IndexDocument {
    const KIND: &'static str = "knowledge.index";
    const MAX_ATTEMPTS: i32 = 5;
}

impl IndexDocument {
    pub async fn run(self, ctx: &JobContext) -> Result<(), JobFailure> {
        let id = self.document_id;
        let Some(doc) = ctx
            .db(move |conn| Document::find_for_indexing(conn, id))
            .await?
        else {
            // Deleted since it was queued: nothing left to do.
            return Ok(());
        };
        ctx.db(move |conn| Document::set_status(conn, id, INDEXING, 0, None))
            .await?;
        let chunks = text::chunk(&doc.content, CHUNK_CHARS, CHUNK_OVERLAP);
        let rows: Vec<(Option<String>, String)> =
            chunks.into_iter().map(|c| (c.heading, c.content)).collect();
        let count = i32::try_from(rows.len()).unwrap_or(i32::MAX);
        let outcome = ctx
            .db(move |conn| {
                write_transaction(conn, |conn| {
                    // Two runs for one document at once (an upload's and a
                    // re-index's) would each delete only the chunks committed
                    // before they started on PostgreSQL, and both insert; a
                    // deletion in between would deadlock with this one.
                    // The agent first: its deletion, which takes no document's
                    // lock, must not commit between the check and the inserts.
                    Agent::lock(conn, doc.agent_id)?;
                    lock_document(conn, id)?;
                    if Document::find_for_indexing(conn, id)?.is_none() {
                        // Deleted (alone or with its agent) while it was split.
                        return Ok(false);
                    }
                    Document::replace_chunks(conn, &doc, &rows)?;
                    Document::set_status(conn, id, READY, count, None)?;
                    Ok(true)
                })
            })
            .await;
        match outcome {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => {
                let message = format!("indexing failed: {}", e.message);
                let stored = message.clone();
                ctx.db(move |conn| Document::set_status(conn, id, FAILED, 0, Some(&stored)))
                    .await?;
                return Err(JobFailure::retry(message));
            }
        }
        if let Err(e) = ctx.db(Document::prepare_for_search).await {
            // The index is right either way; only searches may be slower.
            tracing::warn!(error = %e.message, "could not settle the search index after indexing");
        }
        tracing::info!(document = %id, chunks = count, "document indexed");
        Ok(())
    }
}

/// Questions with more words than this go straight to the any-word search (the
/// all-but-one query grows with the square of the number of words).
const MAX_FOCUSED_TERMS: usize = 8;

/// A passage with a score in [0, 1]: the share of the question's words it holds.
/// Backend ranks (bm25, ts_rank_cd) order results but are not comparable across
/// backends or corpora; this score is, so a hand-off threshold means the same
/// thing everywhere.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoredPassage {
    #[serde(flatten)]
    pub passage: Passage,
    pub score: f64,
}

/// The best passages for `question` in one agent's knowledge base, best first.
pub fn retrieve(
    conn: &mut DbConnection,
    organization_id: OrganizationId,
    agent_id: AgentId,
    question: &str,
    limit: usize,
) -> diesel::QueryResult<Vec<ScoredPassage>> {
    let terms = text::terms(question);
    if terms.is_empty() {
        return Ok(Vec::new());
    }
    // Fetch more than asked: the coverage score may reorder the backend's ranking.
    let fetch = i64::try_from(limit.saturating_mul(4).max(8)).unwrap_or(32);
    // Passages holding (nearly) every word of the question come first and cost
    // little to find; ranking every passage that holds any word is the fallback,
    // since common words can match most of a large knowledge base.
    let mut found = if (3..=MAX_FOCUSED_TERMS).contains(&terms.len()) {
        knowledge::search(
            conn,
            organization_id,
            agent_id,
            &terms,
            Matching::AllButOne,
            fetch,
        )?
    } else {
        Vec::new()
    };
    if found.is_empty() {
        found = knowledge::search(
            conn,
            organization_id,
            agent_id,
            &terms,
            Matching::Any,
            fetch,
        )?;
    }
    let mut scored: Vec<ScoredPassage> = found
        .into_iter()
        .map(|passage| {
            let score = coverage(&terms, &passage);
            ScoredPassage { passage, score }
        })
        .collect();
    // Stable: equal coverage keeps the backend's rank order.
    scored.sort_by(|a, b| b.score.total_cmp(&a.score));
    scored.truncate(limit);
    Ok(scored)
}

/// Share of the terms found in the passage, matching word stems so "returns"
/// finds "returned" as the full-text index itself does. A term matches the
/// start of a word, never its middle: "art" is not in "spare parts".
///
/// The document's title stands in for a heading only where the passage has
/// none. In a document with sections every passage carries the same title, so
/// counting it would lift each passage that merely shares a word with it (the
/// warranty section of "Shipping & returns", asked about returning a widget)
/// over the section that answers, against the index's own ranking.
fn coverage(terms: &[String], passage: &Passage) -> f64 {
    let haystack = text::search_fold(&format!(
        "{} {}",
        passage.heading.as_deref().unwrap_or(&passage.title),
        passage.content
    ));
    let words: Vec<&str> = haystack
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let hits = terms
        .iter()
        .filter(|t| {
            let stem = stem(t);
            words.iter().any(|w| w.starts_with(stem))
        })
        .count();
    hits as f64 / terms.len() as f64
}

pub(crate) fn stem(term: &str) -> &str {
    let chars = term.chars().count();
    if chars <= 4 {
        return term;
    }
    let keep = (chars - 2).max(4);
    term.char_indices()
        .nth(keep)
        .map_or(term, |(i, _)| &term[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passage(content: &str) -> Passage {
        Passage {
            chunk_id: 1,
            document_id: DocumentId(1),
            title: "Returns".into(),
            heading: None,
            content: content.into(),
            rank: 1.0,
        }
    }

    #[test]
    fn coverage_counts_question_words_found_with_stems() {
        let terms = text::terms("Can I return my bike within 30 days?");
        let p = passage("Bikes can be returned within 30 days with the original receipt.");
        let score = coverage(&terms, &p);
        assert!(score > 0.99, "every word is there: {score} for {terms:?}");
        let unrelated = passage("Our shop opens at nine.");
        assert!(coverage(&terms, &unrelated) < 0.5);
    }

    #[test]
    fn coverage_matches_whole_words_not_their_middles() {
        let terms = text::terms("Do you sell art?");
        let p = passage("We sell spare parts for every bike.");
        let score = coverage(&terms, &p);
        assert!(
            score < 0.99,
            "\"art\" is not in \"parts\": {score} for {terms:?}"
        );
        let p = passage("We sell art prints.");
        assert!(coverage(&terms, &p) > 0.99);
    }

    #[test]
    fn a_title_counts_only_for_passages_without_a_heading() {
        let terms = text::terms("Can I return a widget?");
        let mut p = passage("All widgets carry a two-year warranty.");
        p.title = "Shipping & returns".into();
        assert!(
            coverage(&terms, &p) > 0.99,
            "no heading: the title is its context"
        );
        p.heading = Some("Shipping policy › Warranty".into());
        let score = coverage(&terms, &p);
        assert!(score < 0.51, "a heading of its own: {score}");
    }

    #[test]
    fn stems_are_char_safe() {
        assert_eq!(stem("returns"), "retur");
        assert_eq!(stem("bike"), "bike");
        assert_eq!(stem("größeres"), "größer");
    }
}

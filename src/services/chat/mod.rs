//! The chat engine: retrieval, one provider per agent (builtin, OpenAI-compatible
//! or Anthropic), streamed replies, persistence, hand-off and summaries. A remote
//! provider that fails degrades to the builtin answer plus the hand-off offer.

pub mod credentials;
pub mod prompt;
pub mod providers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::{Config, LlmProvider};
use crate::crypto::Keyring;
use crate::db::models::conversation::{ESCALATED, RESOLVED};
use crate::db::models::{Agent, Conversation, NewMessage, ProviderCredential};
use crate::db::{DbConnection, DbPool, write_transaction};
use crate::domain::{ConversationId, OrganizationId};
use crate::services::jobs::{self, EnqueueOptions, Job, JobContext, JobFailure};
use crate::services::knowledge::{self, ScoredPassage};
use crate::telemetry::metrics::Metrics;
use providers::builtin::{self, Builtin};
use providers::{
    ChatRequest, Provider, ProviderKind, Question, RemoteProvider, RemoteSettings, Role, Turn,
};

/// Passages retrieved per question.
const PASSAGES: usize = 4;
/// Earlier messages sent to a remote model as context.
const HISTORY: usize = 10;
pub const MAX_MESSAGE_CHARS: usize = 4000;
/// Per visitor id, across instances (counted in the database).
pub const VISITOR_MESSAGES_PER_MINUTE: i64 = 12;

/// A source quoted in a reply: `[n]` in the text refers to `n` here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Citation {
    pub n: usize,
    pub document_id: i64,
    pub title: String,
    pub heading: Option<String>,
    pub score: f64,
}

impl Citation {
    fn from_passage(n: usize, p: &ScoredPassage) -> Self {
        Self {
            n,
            document_id: p.passage.document_id.0,
            title: p.passage.title.clone(),
            heading: p.passage.heading.clone(),
            score: (p.score * 100.0).round() / 100.0,
        }
    }
}

/// How long a reply waits on a listener that stopped reading (a client that
/// holds the stream open without reading it) before it goes on without one:
/// the reply is still produced and stored, the stalled client just misses it.
const LISTENER_PATIENCE: Duration = Duration::from_secs(10);

/// The reply's side of the channel to whoever streams it.
struct Listener {
    events: mpsc::Sender<ReplyEvent>,
    patience: Duration,
    gone: bool,
}

impl Listener {
    fn new(events: mpsc::Sender<ReplyEvent>) -> Self {
        Self {
            events,
            patience: LISTENER_PATIENCE,
            gone: false,
        }
    }

    async fn tell(&mut self, event: ReplyEvent) {
        if self.gone {
            return;
        }
        if self
            .events
            .send_timeout(event, self.patience)
            .await
            .is_err()
        {
            self.gone = true;
        }
    }
}

/// What a reply sends to its listener while it is produced.
#[derive(Debug, Clone)]
pub enum ReplyEvent {
    Delta(String),
    Done(ReplyOutcome),
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplyOutcome {
    pub message_id: i64,
    pub content: String,
    pub citations: Vec<Citation>,
    pub handoff_offered: bool,
    pub latency_ms: i64,
    pub provider: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
    #[error("database: {0}")]
    Pool(String),
    /// The team erased the conversation while its reply was being written.
    #[error("the conversation was erased while its reply was written")]
    Erased,
}

/// Server-wide provider defaults (`LLM_*`) and the keyring that opens the
/// organizations' own provider keys.
pub struct ChatEngine {
    default_kind: ProviderKind,
    default_base_url: Option<String>,
    default_api_key: Option<String>,
    default_model: Option<String>,
    allowed_models: crate::config::AllowedModels,
    allow_private_urls: bool,
    timeouts: (Duration, Duration, Duration),
    keyring: Keyring,
    idle: Duration,
    metrics: Arc<Metrics>,
}

impl ChatEngine {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        Self {
            default_kind: match config.llm.provider {
                LlmProvider::Builtin => ProviderKind::Builtin,
                LlmProvider::OpenAi => ProviderKind::OpenAi,
                LlmProvider::Anthropic => ProviderKind::Anthropic,
            },
            default_base_url: config.llm.base_url.as_ref().map(|u| u.to_string()),
            default_api_key: config.llm.api_key.as_ref().map(|k| k.expose().clone()),
            default_model: config.llm.model.clone(),
            allowed_models: config.llm.allowed_models.clone(),
            allow_private_urls: config.llm.allow_private_urls,
            timeouts: (
                config.llm.first_byte_timeout,
                config.llm.idle_timeout,
                config.llm.total_timeout,
            ),
            keyring: config.keyring(),
            idle: config.conversation_idle,
            metrics,
        }
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The provider an agent uses: its own choice or the server's, with the
    /// organization's key when it stored one; builtin when a remote one is not
    /// set up or cannot be used.
    fn provider_for(
        &self,
        conn: &mut DbConnection,
        agent: &Agent,
    ) -> Result<Box<dyn Provider>, ChatError> {
        Ok(match self.remote_for(conn, agent)? {
            Some(remote) => Box::new(remote),
            None => Box::new(Builtin),
        })
    }

    /// The remote model an agent is set up for; `None` means builtin.
    fn remote_for(
        &self,
        conn: &mut DbConnection,
        agent: &Agent,
    ) -> Result<Option<RemoteProvider>, ChatError> {
        let kind = agent
            .provider
            .as_deref()
            .and_then(ProviderKind::parse)
            .unwrap_or(self.default_kind);
        if kind == ProviderKind::Builtin {
            return Ok(None);
        }
        let stored = ProviderCredential::find(conn, agent.organization_id, kind.as_str())?;
        // An address an organization typed in may only reach the public internet.
        let public_only = |url: &Option<String>| url.is_some() && !self.allow_private_urls;
        let own_key = stored.is_some();
        let (base_url, api_key, public_only) = match stored {
            Some(cred) => {
                let context = credential_context(agent.organization_id, kind);
                match self.keyring.open(&cred.sealed_key, &context) {
                    Ok(key) => {
                        let public_only = public_only(&cred.base_url);
                        (cred.base_url, Some(key), public_only)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, provider = kind.as_str(), "stored provider key cannot be opened; answering with builtin");
                        return Ok(None);
                    }
                }
            }
            None if kind == self.default_kind => (
                self.default_base_url.clone(),
                self.default_api_key.clone(),
                false,
            ),
            None => (None, None, false),
        };
        if base_url.is_none() && api_key.is_none() {
            tracing::warn!(
                provider = kind.as_str(),
                "no key or base URL for this provider; answering with builtin"
            );
            return Ok(None);
        }
        let base_url = base_url.unwrap_or_else(|| default_base_url(kind).to_string());
        let model = agent
            .model
            .clone()
            .filter(|m| !m.trim().is_empty())
            // On the server's key, only the models the operator offers.
            .filter(|m| own_key || self.allowed_models.allows(m))
            .or_else(|| self.default_model.clone())
            .unwrap_or_else(|| default_model(kind).to_string());
        let (first_byte_timeout, idle_timeout, total_timeout) = self.timeouts;
        let settings = RemoteSettings {
            base_url,
            api_key,
            model,
            public_only,
            first_byte_timeout,
            idle_timeout,
            total_timeout,
            ..RemoteSettings::default()
        };
        match RemoteProvider::new(kind, settings) {
            Ok(p) => Ok(Some(p)),
            Err(e) => {
                tracing::error!(error = %e, "provider settings are unusable; answering with builtin");
                Ok(None)
            }
        }
    }

    /// Answers the conversation's newest visitor message. Deltas and the final
    /// outcome go to `events`; the reply is stored even if the listener left.
    pub async fn reply(
        self: Arc<Self>,
        pool: DbPool,
        conversation: Conversation,
        agent: Agent,
        question: String,
        events: mpsc::Sender<ReplyEvent>,
    ) -> Result<ReplyOutcome, ChatError> {
        let started = Instant::now();
        let engine = self.clone();
        let (org, agent_id) = (agent.organization_id, agent.id);
        let (passages, history, provider, agent) = db(&pool, {
            let question = question.clone();
            let conversation = conversation.clone();
            move |conn| {
                let passages = knowledge::retrieve(conn, org, agent_id, &question, PASSAGES)?;
                let history = conversation.messages(conn)?;
                let provider = engine.provider_for(conn, &agent)?;
                Ok((passages, history, provider, agent))
            }
        })
        .await?;

        let terms = knowledge::text::terms(&question);
        let asked = Question {
            agent: &agent,
            history: &history,
            terms: &terms,
            passages: &passages,
        };
        let (tx, mut rx) = mpsc::channel::<String>(64);
        let forward = async move {
            let mut listener = Listener::new(events);
            let mut text = String::new();
            while let Some(delta) = rx.recv().await {
                // A model's text is stored and shown: no NUL (PostgreSQL
                // refuses it) nor any other control or disguising character.
                let delta = crate::domain::text::clean(&delta, true).into_owned();
                if delta.is_empty() {
                    continue;
                }
                text.push_str(&delta);
                listener.tell(ReplyEvent::Delta(delta)).await;
            }
            (text, listener)
        };
        let (result, (text, mut listener)) = tokio::join!(provider.answer(asked, tx), forward);
        // A model that failed partway was still paid for what it read and wrote.
        let spent = match &result {
            Ok(answered) => answered.usage,
            Err(failed) => failed.spent,
        };
        if let Some(usage) = spent {
            self.metrics.llm_tokens(
                provider.name(),
                "reply",
                usage.input_tokens,
                usage.output_tokens,
            );
        }
        let (text, citations, handoff, provider, usage) = match result {
            Ok(a) if !text.trim().is_empty() => (
                text,
                a.citations,
                a.handoff,
                provider.name().to_string(),
                a.usage,
            ),
            outcome => {
                if let Err(e) = &outcome {
                    tracing::warn!(error = %e, provider = provider.name(), "provider failed; answering with builtin");
                }
                let fallback = builtin::answer(&terms, &passages, agent.handoff_threshold);
                // Blanks a model sent before failing are not worth keeping.
                let mut full = if text.trim().is_empty() {
                    String::new()
                } else {
                    text
                };
                let model_text_kept = !full.is_empty();
                let addition = if full.is_empty() {
                    fallback.text.clone()
                } else {
                    format!("\n\n_The answer was interrupted._ {}", builtin::OFFER)
                };
                listener.tell(ReplyEvent::Delta(addition.clone())).await;
                let cited = prompt::cited(&full, &passages);
                full.push_str(&addition);
                let citations = if cited.is_empty() {
                    fallback.citations
                } else {
                    cited
                };
                // The message is the model's as long as some of its text is kept.
                let author = if model_text_kept {
                    provider.name()
                } else {
                    Builtin.name()
                };
                (full, citations, true, author.to_string(), spent)
            }
        };

        let elapsed = started.elapsed();
        self.metrics.chat_turn(&provider, elapsed);
        let latency_ms = i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX);
        let citations_json = serde_json::to_string(&citations).unwrap_or_else(|_| "[]".into());
        let idle = self.idle;
        let stored = db(&pool, {
            let text = text.clone();
            let provider = provider.clone();
            move |conn| {
                write_transaction(conn, |conn| {
                    // Erased meanwhile (its delete takes this lock too): the
                    // reply has nothing left to belong to.
                    Conversation::lock(conn, conversation.id)?;
                    if Conversation::find_in(conn, conversation.organization_id, conversation.id)?
                        .is_none()
                    {
                        return Err(ChatError::Erased);
                    }
                    let message = conversation.add_message(
                        conn,
                        &NewMessage {
                            role: "agent",
                            content: &text,
                            visitor_address: None,
                            provider: Some(&provider),
                            latency_ms: Some(i32::try_from(latency_ms).unwrap_or(i32::MAX)),
                            tokens_in: usage.map(|u| clamp(u.input_tokens)),
                            tokens_out: usage.map(|u| clamp(u.output_tokens)),
                            citations: &citations_json,
                            handoff_offered: handoff,
                        },
                    )?;
                    schedule_summary(conn, &conversation, message.id, idle)?;
                    Ok::<_, ChatError>(message)
                })
            }
        })
        .await?;

        let outcome = ReplyOutcome {
            message_id: stored.id,
            content: text,
            citations,
            handoff_offered: handoff,
            latency_ms,
            provider,
        };
        listener.tell(ReplyEvent::Done(outcome.clone())).await;
        Ok(outcome)
    }
}

/// A short account of the conversation: the provider's, or an extractive one.
async fn summarize(
    provider: &dyn Provider,
    agent: &Agent,
    messages: &[crate::db::models::Message],
    metrics: &Metrics,
) -> String {
    match provider.summarize(agent, messages).await {
        Ok(summary) => {
            if let Some(usage) = summary.usage {
                metrics.llm_tokens(
                    provider.name(),
                    "summary",
                    usage.input_tokens,
                    usage.output_tokens,
                );
            }
            let text = crate::domain::text::clean(&summary.text, true);
            if !text.trim().is_empty() {
                return text.into_owned();
            }
            tracing::warn!(
                provider = provider.name(),
                "provider returned an empty summary"
            );
        }
        Err(e) => {
            if let Some(usage) = e.spent {
                metrics.llm_tokens(
                    provider.name(),
                    "summary",
                    usage.input_tokens,
                    usage.output_tokens,
                );
            }
            tracing::warn!(
                error = %e,
                provider = provider.name(),
                "provider could not summarize; using an extractive summary"
            );
        }
    }
    builtin::summary(messages)
}

fn clamp(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

pub fn credential_context(org: OrganizationId, kind: ProviderKind) -> String {
    format!("provider-credential:{org}:{}", kind.as_str())
}

pub fn default_base_url(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Anthropic => "https://api.anthropic.com",
        _ => "https://api.openai.com",
    }
}

pub fn default_model(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Anthropic => "claude-haiku-4-5",
        _ => "gpt-4o-mini",
    }
}

async fn db<T: Send + 'static>(
    pool: &DbPool,
    work: impl FnOnce(&mut DbConnection) -> Result<T, ChatError> + Send + 'static,
) -> Result<T, ChatError> {
    let pool = pool.clone();
    actix_web::rt::task::spawn_blocking(move || {
        let mut conn = pool.get().map_err(|e| ChatError::Pool(e.to_string()))?;
        work(&mut conn)
    })
    .await
    .map_err(|e| ChatError::Pool(e.to_string()))?
}

/// The team's verdict: `resolved` closes the conversation to the visitor (a
/// new one must be started), `open` or `escalated` takes it up again. `None`
/// when `status` is none of the three.
pub fn parse_status(status: &str) -> Option<&'static str> {
    crate::db::models::conversation::STATUSES
        .into_iter()
        .find(|s| *s == status)
}

/// Sets a conversation's status in the organization; `None` when it is not one
/// of the organization's.
/// Its ticket follows: escalating opens one; resolving, or handing it back to
/// the agent (`open`), solves it.
pub fn set_status(
    conn: &mut DbConnection,
    scope: &crate::domain::TenantScope,
    who: &crate::services::accounts::Actor<'_>,
    id: ConversationId,
    status: &'static str,
) -> diesel::QueryResult<Option<Conversation>> {
    write_transaction(conn, |conn| {
        Conversation::lock(conn, id)?;
        let Some(conversation) = Conversation::find(conn, scope, id)? else {
            return Ok(None);
        };
        if conversation.status != status {
            conversation.set_status(conn, status)?;
            crate::services::tickets::conversation_status_changed(
                conn,
                &conversation,
                status,
                who,
            )?;
        }
        Conversation::find(conn, scope, id)
    })
}

/// Deletes a conversation and its messages (a visitor's erasure request, say),
/// recorded in the audit log; `false` when it is not one of the organization's.
pub fn delete_conversation(
    conn: &mut DbConnection,
    scope: &crate::domain::TenantScope,
    actor: &crate::services::accounts::Actor<'_>,
    id: ConversationId,
) -> diesel::QueryResult<bool> {
    crate::db::write_transaction(conn, |conn| {
        // A reply being stored, or a visitor's message, waits for it or is done.
        Conversation::lock(conn, id)?;
        let Some(conversation) = Conversation::find(conn, scope, id)? else {
            return Ok(false);
        };
        Conversation::delete(conn, scope, id)?;
        let target = format!("conversation {}", id.0);
        let detail = format!("visitor {}", conversation.visitor_id);
        crate::services::accounts::audit(
            conn,
            Some(scope.organization_id()),
            actor,
            "conversation.deleted",
            Some(&target),
            Some(&detail),
        )?;
        Ok(true)
    })
}

/// "Talk to a person": the team picks the conversation up from here, in its
/// ticket queue. `false` when the conversation is closed (resolved): the
/// visitor starts a new one to ask again.
pub fn escalate(conn: &mut DbConnection, conversation: &Conversation) -> diesel::QueryResult<bool> {
    write_transaction(conn, |conn| {
        Conversation::lock(conn, conversation.id)?;
        let Some(conversation) =
            Conversation::find_in(conn, conversation.organization_id, conversation.id)?
        else {
            return Ok(false);
        };
        if conversation.status == RESOLVED {
            return Ok(false);
        }
        if conversation.status != ESCALATED {
            conversation.set_status(conn, ESCALATED)?;
        }
        let visitor = crate::services::accounts::Actor {
            user_id: None,
            label: crate::services::tickets::VISITOR_LABEL,
            ip: &conversation.visitor_ip,
        };
        crate::services::tickets::open_for(conn, &conversation, &visitor)?;
        Ok(true)
    })
}

/// Queues the summary for when the conversation has been quiet for `idle`; a
/// later message queues a later one, and the earlier finds itself outdated.
pub(crate) fn schedule_summary(
    conn: &mut DbConnection,
    conversation: &Conversation,
    last_message: i64,
    idle: Duration,
) -> diesel::QueryResult<()> {
    let run_at = crate::domain::now()
        + chrono::TimeDelta::from_std(idle).unwrap_or(chrono::TimeDelta::minutes(10));
    // With the organization: on SQLite a deleted conversation's id (and its
    // messages') can be given again, to another organization's conversation.
    let org = conversation.organization_id;
    let key = format!("summary:{org}:{}:{last_message}", conversation.id);
    jobs::enqueue(
        conn,
        &SummarizeConversation {
            conversation_id: conversation.id,
            organization_id: Some(org),
            last_message_id: last_message,
        },
        EnqueueOptions {
            run_at: Some(run_at),
            idempotency_key: Some(&key),
        },
    )
    .map(|_| ())
}

/// Writes a conversation's summary once it went quiet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SummarizeConversation {
    pub conversation_id: ConversationId,
    /// Whose conversation: a job for a conversation since deleted must not
    /// summarize another organization's that was given its id. Optional only
    /// for jobs queued by versions that did not write it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<OrganizationId>,
    pub last_message_id: i64,
}

impl Job for SummarizeConversation {
    const KIND: &'static str = "conversation.summarize";
    const MAX_ATTEMPTS: i32 = 4;
}

impl SummarizeConversation {
    pub async fn run(self, ctx: &JobContext) -> Result<(), JobFailure> {
        let id = self.conversation_id;
        let engine = ctx.chat.clone();
        let loaded = db(&ctx.pool, move |conn| {
            use diesel::prelude::*;
            let Some(conversation) = crate::db::schema::conversations::table
                .find(id)
                .select(Conversation::as_select())
                .first(conn)
                .optional()?
                .filter(|c| {
                    self.organization_id
                        .is_none_or(|org| c.organization_id == org)
                })
            else {
                return Ok(None);
            };
            if conversation.last_message_id(conn)? != Some(self.last_message_id) {
                // The conversation went on; a later job summarizes it.
                return Ok(None);
            }
            let agent = crate::db::schema::agents::table
                .find(conversation.agent_id)
                .select(Agent::as_select())
                .first(conn)?;
            let messages = conversation.messages(conn)?;
            let provider = engine.provider_for(conn, &agent)?;
            Ok(Some((conversation, agent, messages, provider)))
        })
        .await
        .map_err(JobFailure::retry)?;
        let Some((conversation, agent, messages, provider)) = loaded else {
            return Ok(());
        };
        let summary = summarize(&*provider, &agent, &messages, &ctx.metrics).await;
        let last = self.last_message_id;
        db(&ctx.pool, move |conn| {
            write_transaction(conn, |conn| {
                // A message that came while the model wrote has its own job,
                // whose summary this one must not overwrite if it ran first.
                Conversation::lock(conn, conversation.id)?;
                if conversation.last_message_id(conn)? == Some(last) {
                    conversation.set_summary(conn, &summary)?;
                }
                Ok::<_, ChatError>(())
            })
        })
        .await
        .map_err(JobFailure::retry)?;
        tracing::info!(conversation = %id, "conversation summarized");
        Ok(())
    }
}

/// Keeps chat turns from `providers` in one vocabulary with stored messages.
pub(crate) fn turns(history: &[crate::db::models::Message], limit: usize) -> Vec<Turn> {
    let skip = history.len().saturating_sub(limit);
    history
        .iter()
        .skip(skip)
        .map(|m| Turn {
            role: if m.role == "visitor" {
                Role::User
            } else {
                Role::Assistant
            },
            content: m.content.clone(),
        })
        .collect()
}

pub(crate) fn new_request(system: String, turns: Vec<Turn>, temperature: f64) -> ChatRequest {
    ChatRequest {
        system,
        turns,
        temperature,
        max_tokens: 800,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::{Listener, ReplyEvent};

    #[tokio::test]
    async fn a_listener_that_stopped_reading_is_left_behind() {
        let (tx, mut rx) = mpsc::channel(1);
        let mut listener = Listener {
            patience: Duration::from_millis(50),
            ..Listener::new(tx)
        };
        listener.tell(ReplyEvent::Delta("one".into())).await;
        // The channel is full and nobody reads: the reply waits its patience,
        // then stops waiting for good.
        listener.tell(ReplyEvent::Delta("two".into())).await;
        assert!(listener.gone);
        let started = std::time::Instant::now();
        listener.tell(ReplyEvent::Delta("three".into())).await;
        assert!(started.elapsed() < Duration::from_millis(50));
        assert!(matches!(rx.recv().await, Some(ReplyEvent::Delta(d)) if d == "one"));
    }
}

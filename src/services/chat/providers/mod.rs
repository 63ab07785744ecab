//! Chat providers behind one trait, [`Provider`]: the offline [`builtin::Builtin`]
//! and [`RemoteProvider`] for remote models (OpenAI-compatible servers and
//! Anthropic, both streamed over server-sent events).
//!
//! The remote wire modules only know their formats (request body, events);
//! connecting, timeouts, retries and error reporting are shared here so both
//! behave the same way towards a conversation.

mod anthropic;
pub mod builtin;
pub mod egress;
mod openai;
pub mod sse;

use std::fmt;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use reqwest::header::{self, HeaderMap, HeaderValue};
use tokio::sync::mpsc;

use super::Citation;
use crate::db::models::{Agent, Message};
use crate::services::knowledge::ScoredPassage;
use sse::{SseEvent, SseParser};

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(20);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The whole reply, retries included: a model that trickles a token just
/// inside the idle timeout cannot keep a visitor (and a worker) waiting forever.
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_MAX_RETRIES: u32 = 2;

/// Longest upstream error message passed on, in characters.
const MAX_MESSAGE_CHARS: usize = 200;
/// A Retry-After longer than this is not waited for: a visitor is watching.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// How much of an error response is read to find its message.
const MAX_ERROR_BODY: usize = 16 * 1024;
/// Bound on one unfinished event, so a server that never ends a line cannot
/// make us buffer without limit.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Builtin,
    OpenAi,
    Anthropic,
}

impl ProviderKind {
    pub const ALL: [Self; 3] = [Self::Builtin, Self::OpenAi, Self::Anthropic];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Builtin => "builtin",
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(value))
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone)]
pub struct RemoteSettings {
    /// e.g. `https://api.openai.com`; a trailing `/v1` is accepted too.
    pub base_url: String,
    pub api_key: Option<String>,
    pub model: String,
    pub connect_timeout: Duration,
    /// Until the response headers arrive.
    pub first_byte_timeout: Duration,
    /// Longest gap between two pieces of the streamed body.
    pub idle_timeout: Duration,
    /// The whole reply, from the first attempt to the last piece.
    pub total_timeout: Duration,
    pub max_retries: u32,
    /// The address came from an organization, not the operator: only public
    /// internet addresses may be reached ([`egress`]).
    pub public_only: bool,
}

impl RemoteSettings {
    /// Settings with the default timeouts and retries.
    pub fn new(
        base_url: impl Into<String>,
        api_key: Option<String>,
        model: impl Into<String>,
    ) -> Self {
        Self {
            base_url: base_url.into(),
            api_key,
            model: model.into(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            first_byte_timeout: DEFAULT_FIRST_BYTE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            total_timeout: DEFAULT_TOTAL_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            public_only: false,
        }
    }
}

/// Empty address and model (which [`RemoteProvider::new`] refuses) with the
/// default timeouts and retries, for `..RemoteSettings::default()`.
impl Default for RemoteSettings {
    fn default() -> Self {
        Self::new(String::new(), None, String::new())
    }
}

// Written out so that logging settings can never print the key.
impl fmt::Debug for RemoteSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteSettings")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Turn {
    pub role: Role,
    pub content: String,
}

/// `turns` in the shape every chat API accepts. The Messages API and the strict
/// chat templates of self-hosted models (Mistral, Llama) refuse blank turns, two
/// turns of one role side by side and an assistant turn first; a conversation
/// makes all three: a reply cut off before any text, a visitor writing twice
/// while the team has it, a history window that begins after a visitor's turn.
fn wire_turns(turns: &[Turn]) -> Vec<Turn> {
    let mut wire: Vec<Turn> = Vec::with_capacity(turns.len());
    for turn in turns
        .iter()
        .filter(|t| !t.content.trim().is_empty())
        .skip_while(|t| t.role == Role::Assistant)
    {
        match wire.last_mut() {
            Some(last) if last.role == turn.role => {
                last.content.push_str("\n\n");
                last.content.push_str(&turn.content);
            }
            _ => wire.push(turn.clone()),
        }
    }
    wire
}

#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub system: String,
    pub turns: Vec<Turn>,
    pub temperature: f64,
    pub max_tokens: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
}

impl Usage {
    fn plus(self, other: Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens.saturating_add(other.input_tokens),
            output_tokens: self.output_tokens.saturating_add(other.output_tokens),
        }
    }
}

/// What a provider answers: the newest visitor message in `history`, with the
/// passages retrieval found for it (best first).
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    pub agent: &'a Agent,
    pub history: &'a [Message],
    /// The question's search terms, as retrieval used them.
    pub terms: &'a [String],
    pub passages: &'a [ScoredPassage],
}

impl Question<'_> {
    /// Nothing retrieved scores as well as the agent asks: a person is offered.
    pub fn weakly_answered(&self) -> bool {
        self.passages.first().map_or(0.0, |p| p.score) < self.agent.handoff_threshold
    }
}

/// What a provider says about the answer whose text it streamed.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    pub citations: Vec<Citation>,
    pub handoff: bool,
    /// `None` where no model ran (builtin).
    pub usage: Option<Usage>,
}

/// A conversation's summary and the tokens it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub text: String,
    /// `None` where no model ran (builtin).
    pub usage: Option<Usage>,
}

/// The one interface the chat engine talks to, whatever answers.
pub trait Provider: Send + Sync {
    /// Recorded with every message the provider writes.
    fn name(&self) -> &'static str;

    /// Streams the answer's text to `deltas` as it is produced: what was
    /// sent there is the answer the engine stores. On an error, whatever was
    /// already sent stays sent; the engine decides what follows.
    fn answer<'a>(
        &'a self,
        question: Question<'a>,
        deltas: mpsc::Sender<String>,
    ) -> BoxFuture<'a, Result<Answered, Failed>>;

    /// A short account of a conversation for the team.
    fn summarize<'a>(
        &'a self,
        agent: &'a Agent,
        messages: &'a [Message],
    ) -> BoxFuture<'a, Result<Summary, Failed>>;
}

/// A reply that could not be had, and what its attempts cost: a provider that
/// began answering before the stream broke bills those tokens all the same.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Failed {
    pub error: ProviderError,
    /// `None` when no attempt got as far as an answer (refused, 4xx/5xx).
    pub spent: Option<Usage>,
}

impl From<ProviderError> for Failed {
    fn from(error: ProviderError) -> Self {
        Self { error, spent: None }
    }
}

/// Why a reply could not be had. Messages may be shown to an operator: they
/// never carry the API key, request bodies, or more than a clipped upstream
/// message.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("The model provider did not respond in time ({0} timeout).")]
    Timeout(&'static str),
    #[error("The model provider could not be reached: {0}.")]
    Connect(String),
    #[error("The model provider answered HTTP {status}: {message}")]
    Status { status: u16, message: String },
    #[error("The model provider is rate-limiting or overloaded; try again shortly.")]
    RateLimited,
    #[error("The model provider sent a reply that could not be read: {0}.")]
    Malformed(String),
    #[error("The model provider's reply broke off: {0}.")]
    Interrupted(String),
    #[error("The model provider is not configured correctly: {0}.")]
    Config(String),
}

/// Stage names carried by [`ProviderError::Timeout`].
pub mod stage {
    pub const CONNECT: &str = "connect";
    /// Until the response headers arrive.
    pub const FIRST_BYTE: &str = "first byte";
    /// Between two pieces of a streamed body.
    pub const IDLE: &str = "idle";
    /// The whole reply.
    pub const TOTAL: &str = "total";
}

/// A remote chat model. Cloning shares the HTTP client and its connections.
#[derive(Clone)]
pub struct RemoteProvider {
    kind: ProviderKind,
    settings: RemoteSettings,
    http: reqwest::Client,
    endpoint: reqwest::Url,
    headers: HeaderMap,
}

impl fmt::Debug for RemoteProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteProvider")
            .field("kind", &self.kind)
            .field("endpoint", &self.endpoint.as_str())
            .field("model", &self.settings.model)
            .finish_non_exhaustive()
    }
}

impl RemoteProvider {
    pub fn new(kind: ProviderKind, settings: RemoteSettings) -> Result<Self, ProviderError> {
        let path = match kind {
            ProviderKind::OpenAi => openai::PATH,
            ProviderKind::Anthropic => anthropic::PATH,
            ProviderKind::Builtin => {
                return Err(ProviderError::Config(
                    "the built-in model is not a remote provider".into(),
                ));
            }
        };
        if settings.model.trim().is_empty() {
            return Err(ProviderError::Config("no model name is set".into()));
        }
        let endpoint = endpoint(&settings.base_url, path)?;
        let headers = request_headers(kind, settings.api_key.as_deref())?;
        let mut http = reqwest::Client::builder();
        if settings.public_only {
            egress::check_host(&endpoint).map_err(ProviderError::Config)?;
            // A proxy from HTTP(S)_PROXY would resolve the name itself, past
            // the resolver that keeps the request off private addresses.
            http = http
                .dns_resolver(std::sync::Arc::new(egress::PublicOnly))
                .no_proxy();
        }
        let http = http
            .use_rustls_tls()
            .connect_timeout(settings.connect_timeout)
            // A redirect would carry `x-api-key` to wherever it points (reqwest
            // only strips `Authorization`), and no real provider redirects.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("frontdesk/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                ProviderError::Config(format!(
                    "the HTTP client could not be built ({})",
                    root_cause(&e)
                ))
            })?;
        Ok(Self {
            kind,
            settings,
            http,
            endpoint,
            headers,
        })
    }

    pub fn kind(&self) -> ProviderKind {
        self.kind
    }

    pub fn model(&self) -> &str {
        &self.settings.model
    }

    /// Streams the reply: every text delta is sent on `deltas` as it arrives.
    /// If the receiver goes away, reading stops and what was produced so far
    /// counts as the result. Returns the token usage the provider reported,
    /// or an estimate (characters / 4) for whatever it did not report.
    ///
    /// Connect errors, timeouts before the response starts, 429 and 5xx are
    /// retried with exponential backoff, but only until the first delta has
    /// been sent: after that a retry would repeat text the listener already has.
    ///
    /// The whole reply has [`RemoteSettings::total_timeout`]; past it the
    /// reply ends with [`ProviderError::Timeout`] and whatever was sent stays sent.
    ///
    /// A failure carries the tokens of attempts the provider began answering
    /// (it bills them): its counts where it sent them, else estimates.
    pub async fn stream(
        &self,
        request: &ChatRequest,
        deltas: mpsc::Sender<String>,
    ) -> Result<Usage, Failed> {
        let mut tally = Tally {
            input_estimate: estimate_tokens(
                request.system.chars().count()
                    + request
                        .turns
                        .iter()
                        .map(|t| t.content.chars().count())
                        .sum::<usize>(),
            ),
            spent: None,
            progress: Progress::default(),
        };
        let within = tokio::time::timeout(
            self.settings.total_timeout,
            self.stream_within(request, deltas, &mut tally),
        )
        .await;
        within.unwrap_or_else(|_| {
            tracing::debug!(
                provider = self.kind.as_str(),
                model = %self.settings.model,
                "model reply exceeded its total time"
            );
            let cut = tally.progress;
            let spent = tally.add(Reported::default(), &cut);
            Err(Failed {
                error: ProviderError::Timeout(stage::TOTAL),
                spent,
            })
        })
    }

    async fn stream_within(
        &self,
        request: &ChatRequest,
        deltas: mpsc::Sender<String>,
        tally: &mut Tally,
    ) -> Result<Usage, Failed> {
        let body = match self.kind {
            ProviderKind::OpenAi => openai::request_body(
                &self.settings.model,
                request,
                openai::Dialect::of(&self.endpoint),
            ),
            ProviderKind::Anthropic => anthropic::request_body(&self.settings.model, request),
            ProviderKind::Builtin => {
                return Err(Failed::from(ProviderError::Config(
                    "the built-in model is not a remote provider".into(),
                )));
            }
        };
        let body = body.to_string();

        let mut attempt = 0;
        loop {
            tally.progress = Progress::default();
            let failure = match self.attempt(&body, &deltas, &mut tally.progress).await {
                Ok(reported) => {
                    let progress = tally.progress;
                    return Ok(tally.add(reported, &progress).unwrap_or_default());
                }
                Err(failure) => failure,
            };
            let progress = tally.progress;
            tally.progress = Progress::default();
            if let Some(reported) = failure.spent {
                tally.add(reported, &progress);
            }
            let error = self.redact(failure.error);
            let delay =
                if failure.retryable && !progress.sent_any && attempt < self.settings.max_retries {
                    backoff(attempt, failure.retry_after)
                } else {
                    None
                };
            let Some(delay) = delay else {
                // Debug only: the caller decides how loud a failed reply is.
                tracing::debug!(
                    provider = self.kind.as_str(),
                    model = %self.settings.model,
                    attempts = attempt + 1,
                    error = %error,
                    "model request failed"
                );
                return Err(Failed {
                    error,
                    spent: tally.spent,
                });
            };
            tracing::info!(
                provider = self.kind.as_str(),
                model = %self.settings.model,
                attempt = attempt + 1,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "model request failed; retrying"
            );
            tokio::select! {
                () = deltas.closed() => return Ok(tally.spent.unwrap_or_default()),
                () = tokio::time::sleep(delay) => {}
            }
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        body: &str,
        deltas: &mpsc::Sender<String>,
        progress: &mut Progress,
    ) -> Result<Reported, Failure> {
        let send = self
            .http
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .body(body.to_owned())
            .send();
        let response = match tokio::time::timeout(self.settings.first_byte_timeout, send).await {
            Err(_) => return Err(Failure::new(ProviderError::Timeout(stage::FIRST_BYTE))),
            Ok(Err(e)) => return Err(Failure::new(transport_error(&e))),
            Ok(Ok(response)) => response,
        };
        if !response.status().is_success() {
            return Err(self.status_failure(response).await);
        }
        let is_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if is_json {
            // Typically a proxy that ignored `stream: true`.
            return Err(Failure::new(ProviderError::Malformed(
                "it answered with JSON instead of an event stream".into(),
            )));
        }
        progress.answering = true;
        match self.kind {
            ProviderKind::Anthropic => {
                self.answering(response, anthropic::Decoder::default(), deltas, progress)
                    .await
            }
            _ => {
                self.answering(response, openai::Decoder::default(), deltas, progress)
                    .await
            }
        }
    }

    /// Reads an answer the provider began; a failure from here on carries
    /// what the provider counted so far (the caller estimates the rest).
    async fn answering<D: Decoder>(
        &self,
        response: reqwest::Response,
        mut decoder: D,
        deltas: &mpsc::Sender<String>,
        progress: &mut Progress,
    ) -> Result<Reported, Failure> {
        self.read_events(response, &mut decoder, deltas, progress)
            .await
            .map_err(|failure| Failure {
                spent: Some(decoder.reported(true)),
                ..failure
            })
    }

    async fn read_events<D: Decoder>(
        &self,
        response: reqwest::Response,
        decoder: &mut D,
        deltas: &mpsc::Sender<String>,
        progress: &mut Progress,
    ) -> Result<Reported, Failure> {
        let mut body = response.bytes_stream();
        let mut parser = SseParser::new();
        loop {
            // Waiting on `closed` too means a caller that stops listening
            // stops the generation now rather than at the provider's next
            // token. (The chat engine listens to the end: a reply is stored
            // whole even when the visitor left.)
            let next = tokio::select! {
                biased;
                () = deltas.closed() => return Ok(decoder.reported(true)),
                next = tokio::time::timeout(self.settings.idle_timeout, body.next()) => next,
            };
            let chunk = match next {
                Err(_) => return Err(Failure::fatal(ProviderError::Timeout(stage::IDLE))),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(broken_off(progress, &root_cause(&e))),
                Ok(Some(Ok(chunk))) => chunk,
            };
            for event in parser.feed(&chunk) {
                match deliver(decoder, event, deltas, progress).await? {
                    Flow::Continue => {}
                    Flow::Done => return Ok(decoder.reported(false)),
                    Flow::ListenerGone => return Ok(decoder.reported(true)),
                }
            }
            if parser.pending_len() > MAX_EVENT_BYTES {
                return Err(Failure::fatal(ProviderError::Malformed(
                    "an event was larger than 1 MiB".into(),
                )));
            }
        }
        if let Some(event) = parser.finish() {
            match deliver(decoder, event, deltas, progress).await? {
                Flow::Continue => {}
                Flow::Done => return Ok(decoder.reported(false)),
                Flow::ListenerGone => return Ok(decoder.reported(true)),
            }
        }
        if decoder.finished() {
            // The provider said why it stopped; only the end marker is missing.
            return Ok(decoder.reported(false));
        }
        Err(broken_off(
            progress,
            "the stream ended before the reply was complete",
        ))
    }

    async fn status_failure(&self, response: reqwest::Response) -> Failure {
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = read_limited(response, MAX_ERROR_BODY, self.settings.idle_timeout).await;
        let message = upstream_message(&body)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("no message").to_owned());
        let code = status.as_u16();
        let error = if code == 429 {
            ProviderError::RateLimited
        } else {
            ProviderError::Status {
                status: code,
                message,
            }
        };
        Failure {
            retry_after,
            retryable: code == 408 || code == 429 || status.is_server_error(),
            ..Failure::new(error)
        }
    }

    /// Belt and braces: a provider may echo the key back in an error message.
    fn redact(&self, error: ProviderError) -> ProviderError {
        let Some(key) = self.settings.api_key.as_deref().map(str::trim) else {
            return error;
        };
        if key.len() < 8 {
            return error;
        }
        let clean = |s: String| s.replace(key, "[redacted]");
        match error {
            ProviderError::Connect(m) => ProviderError::Connect(clean(m)),
            ProviderError::Status { status, message } => ProviderError::Status {
                status,
                message: clean(message),
            },
            ProviderError::Malformed(m) => ProviderError::Malformed(clean(m)),
            ProviderError::Interrupted(m) => ProviderError::Interrupted(clean(m)),
            ProviderError::Config(m) => ProviderError::Config(clean(m)),
            other @ (ProviderError::Timeout(_) | ProviderError::RateLimited) => other,
        }
    }
}

impl RemoteProvider {
    /// Runs `request`, passing its deltas on to `outward` (when there is one)
    /// and collecting them: citations are read from the whole text.
    async fn collected(
        &self,
        request: &ChatRequest,
        outward: Option<&mpsc::Sender<String>>,
    ) -> (Result<Usage, Failed>, String) {
        let (tx, mut rx) = mpsc::channel::<String>(64);
        let collect = async move {
            let mut text = String::new();
            while let Some(delta) = rx.recv().await {
                text.push_str(&delta);
                if let Some(outward) = outward {
                    // The engine listens to the end; if `outward` were gone,
                    // the text is still collected.
                    let _ = outward.send(delta).await;
                }
            }
            text
        };
        tokio::join!(self.stream(request, tx), collect)
    }
}

impl Provider for RemoteProvider {
    fn name(&self) -> &'static str {
        self.kind.as_str()
    }

    fn answer<'a>(
        &'a self,
        question: Question<'a>,
        deltas: mpsc::Sender<String>,
    ) -> BoxFuture<'a, Result<Answered, Failed>> {
        Box::pin(async move {
            let request = super::prompt::request(
                question.agent,
                question.passages,
                question.history,
                super::HISTORY,
            );
            let (result, text) = self.collected(&request, Some(&deltas)).await;
            let usage = result?;
            Ok(Answered {
                citations: super::prompt::cited(&text, question.passages),
                handoff: question.weakly_answered(),
                usage: Some(usage),
            })
        })
    }

    fn summarize<'a>(
        &'a self,
        agent: &'a Agent,
        messages: &'a [Message],
    ) -> BoxFuture<'a, Result<Summary, Failed>> {
        Box::pin(async move {
            let request = super::prompt::summary_request(agent, messages);
            let (result, text) = self.collected(&request, None).await;
            Ok(Summary {
                text: text.trim().to_string(),
                usage: Some(result?),
            })
        })
    }
}

/// What a provider's wire format makes of one event.
enum Decoded {
    Text(String),
    Nothing,
    /// The provider's end-of-stream marker.
    Done,
}

trait Decoder {
    fn event(&mut self, event: SseEvent) -> Result<Decoded, ProviderError>;
    /// The provider gave a finish or stop reason, so a stream that then ends
    /// without its end marker still carried the whole reply.
    fn finished(&self) -> bool;
    /// Token counts the provider reported; `cut_short` when we stopped reading
    /// early, where a running output count would understate the reply.
    fn reported(&self, cut_short: bool) -> Reported;
}

#[derive(Debug, Default)]
struct Reported {
    input_tokens: Option<u32>,
    output_tokens: Option<u32>,
}

impl Reported {
    fn resolve(self, input_estimate: u32, progress: &Progress) -> Usage {
        Usage {
            input_tokens: self.input_tokens.unwrap_or(input_estimate),
            output_tokens: self
                .output_tokens
                .unwrap_or_else(|| estimate_tokens(progress.chars_sent)),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    /// The provider accepted the request and began an answer.
    answering: bool,
    sent_any: bool,
    chars_sent: usize,
}

/// What one reply's attempts have cost so far.
struct Tally {
    input_estimate: u32,
    spent: Option<Usage>,
    /// The attempt under way: if the total timeout cuts it, only this is left.
    progress: Progress,
}

impl Tally {
    /// Counts an attempt that got an answer going; one that never did cost
    /// nothing. Returns the total so far.
    fn add(&mut self, reported: Reported, progress: &Progress) -> Option<Usage> {
        if progress.answering {
            let cost = reported.resolve(self.input_estimate, progress);
            self.spent = Some(self.spent.map_or(cost, |s| s.plus(cost)));
        }
        self.spent
    }
}

enum Flow {
    Continue,
    Done,
    ListenerGone,
}

async fn deliver<D: Decoder>(
    decoder: &mut D,
    event: SseEvent,
    deltas: &mpsc::Sender<String>,
    progress: &mut Progress,
) -> Result<Flow, Failure> {
    match decoder.event(event).map_err(Failure::new)? {
        Decoded::Nothing => Ok(Flow::Continue),
        Decoded::Done => Ok(Flow::Done),
        Decoded::Text(text) if text.is_empty() => Ok(Flow::Continue),
        Decoded::Text(text) => {
            let chars = text.chars().count();
            if deltas.send(text).await.is_err() {
                return Ok(Flow::ListenerGone);
            }
            progress.sent_any = true;
            progress.chars_sent += chars;
            Ok(Flow::Continue)
        }
    }
}

struct Failure {
    error: ProviderError,
    retry_after: Option<Duration>,
    retryable: bool,
    /// Set once the provider had begun answering.
    spent: Option<Reported>,
}

impl Failure {
    /// Retryable when the error says nothing about this request itself.
    fn new(error: ProviderError) -> Self {
        let retryable = match &error {
            ProviderError::Timeout(which) => *which != stage::IDLE,
            ProviderError::Connect(_) | ProviderError::RateLimited => true,
            ProviderError::Status { status, .. } => *status == 408 || *status >= 500,
            ProviderError::Malformed(_)
            | ProviderError::Interrupted(_)
            | ProviderError::Config(_) => false,
        };
        Self {
            error,
            retry_after: None,
            retryable,
            spent: None,
        }
    }

    fn fatal(error: ProviderError) -> Self {
        Self {
            retryable: false,
            ..Self::new(error)
        }
    }
}

/// The body stopped early. Before any text that is a transport failure like a
/// refused connection, so it may be retried; after some text it may not.
fn broken_off(progress: &Progress, why: &str) -> Failure {
    if progress.sent_any {
        Failure::fatal(ProviderError::Interrupted(clip(why)))
    } else {
        Failure {
            retryable: true,
            ..Failure::new(ProviderError::Interrupted(format!(
                "{} before any text arrived",
                clip(why)
            )))
        }
    }
}

fn endpoint(base_url: &str, path: &str) -> Result<reqwest::Url, ProviderError> {
    let base = base_url.trim().trim_end_matches('/');
    let joined = if base.ends_with("/v1") {
        format!("{base}/{path}")
    } else {
        format!("{base}/v1/{path}")
    };
    let url = reqwest::Url::parse(&joined)
        .map_err(|e| ProviderError::Config(format!("the base URL is not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(ProviderError::Config(
            "the base URL must be an http:// or https:// address".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ProviderError::Config(
            "the base URL must not have a query or fragment".into(),
        ));
    }
    Ok(url)
}

fn request_headers(kind: ProviderKind, api_key: Option<&str>) -> Result<HeaderMap, ProviderError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
    let key = api_key.map(str::trim).filter(|k| !k.is_empty());
    let secret = |value: String| {
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            ProviderError::Config("the API key contains characters not allowed in a header".into())
        })?;
        value.set_sensitive(true);
        Ok::<_, ProviderError>(value)
    };
    match kind {
        ProviderKind::OpenAi => {
            if let Some(key) = key {
                headers.insert(header::AUTHORIZATION, secret(format!("Bearer {key}"))?);
            }
        }
        ProviderKind::Anthropic => {
            if let Some(key) = key {
                headers.insert("x-api-key", secret(key.to_owned())?);
            }
            headers.insert(
                "anthropic-version",
                HeaderValue::from_static(anthropic::VERSION),
            );
        }
        ProviderKind::Builtin => {}
    }
    Ok(headers)
}

fn transport_error(error: &reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        ProviderError::Timeout(stage::CONNECT)
    } else {
        ProviderError::Connect(clip(&root_cause(error)))
    }
}

/// The innermost cause says what happened ("Connection refused"); the outer
/// layers only say where, and reqwest's own text would include the URL.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// `retry-after-ms` (OpenAI) is more precise than `retry-after`; HTTP dates are
/// not used by model providers and are ignored.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)?
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
    };
    if let Some(ms) = number("retry-after-ms") {
        return Some(Duration::from_secs_f64((ms / 1000.0).min(3600.0)));
    }
    number("retry-after").map(|s| Duration::from_secs_f64(s.min(3600.0)))
}

/// The wait before retry `attempt` (0-based), or `None` when the server asks
/// for a longer pause than a waiting visitor should sit through.
fn backoff(attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
    use rand::Rng as _;
    let base = BACKOFF_BASE.saturating_mul(2u32.saturating_pow(attempt.min(16)));
    let half = base / 2;
    // Jitter keeps many conversations that failed together from retrying together.
    let jitter = Duration::from_secs_f64(half.as_secs_f64() * rand::rng().random_range(0.0..=1.0));
    let delay = half + jitter;
    match retry_after {
        Some(wait) if wait > MAX_RETRY_AFTER => None,
        Some(wait) => Some(wait.max(delay)),
        None => Some(delay),
    }
}

async fn read_limited(response: reqwest::Response, limit: usize, idle: Duration) -> Vec<u8> {
    let mut body = response.bytes_stream();
    let mut out = Vec::new();
    while out.len() < limit {
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(Ok(chunk))) => out.extend_from_slice(&chunk),
            _ => break,
        }
    }
    out.truncate(limit);
    out
}

/// Finds the message in an error body: `{"error":{"message"}}` (OpenAI and
/// Anthropic), or the shapes compatible servers use instead.
fn upstream_message(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let message = value
        .pointer("/error/message")
        .or_else(|| value.get("message"))
        .or_else(|| value.get("error"))
        .or_else(|| value.get("detail"))?
        .as_str()?;
    Some(clip(message)).filter(|m| !m.is_empty())
}

/// One line, at most [`MAX_MESSAGE_CHARS`] characters.
fn clip(message: &str) -> String {
    crate::domain::text::one_line(message, MAX_MESSAGE_CHARS)
}

fn estimate_tokens(chars: usize) -> u32 {
    u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX)
}

fn saturating_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Maps an error that arrives inside a stream, where there is no HTTP status,
/// from the provider's error type.
fn stream_error(kind: Option<&str>, message: Option<&str>) -> ProviderError {
    let kind = kind.unwrap_or("");
    if kind.contains("rate_limit") || kind.contains("overloaded") {
        return ProviderError::RateLimited;
    }
    let status = match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        _ => 500,
    };
    ProviderError::Status {
        status,
        message: message
            .map(clip)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "the stream reported an error".into()),
    }
}

fn clamp_temperature(value: f64, max: f64) -> f64 {
    if value.is_finite() {
        value.clamp(0.0, max)
    } else {
        1.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod test_server {
    //! A raw HTTP/1.1 server over TCP that plays a script per connection, so
    //! tests decide exactly how the bytes are cut into writes.

    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    use super::{ProviderKind, RemoteProvider, RemoteSettings};

    pub enum Step {
        Write(Vec<u8>),
        Pause(Duration),
        /// Keep the connection open and say nothing more.
        Hang,
    }

    #[derive(Debug, Clone)]
    pub struct Received {
        pub request_line: String,
        /// Names lower-cased.
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Received {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }

        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).unwrap()
        }
    }

    pub struct Server {
        pub base_url: String,
        received: Arc<Mutex<Vec<Received>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Server {
        pub fn received(&self) -> Vec<Received> {
            self.received.lock().unwrap().clone()
        }

        pub fn settings(&self, model: &str) -> RemoteSettings {
            RemoteSettings {
                connect_timeout: Duration::from_millis(300),
                first_byte_timeout: Duration::from_millis(300),
                idle_timeout: Duration::from_millis(300),
                max_retries: 2,
                ..RemoteSettings::new(&self.base_url, Some("sk-test-secret-key".into()), model)
            }
        }

        pub fn provider(&self, kind: ProviderKind) -> RemoteProvider {
            RemoteProvider::new(kind, self.settings("test-model")).unwrap()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// Connection `i` is answered with `scripts[i]`; connections beyond the
    /// script are closed unanswered.
    pub async fn serve(scripts: Vec<Vec<Step>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let scripts = Arc::new(Mutex::new(VecDeque::from(scripts)));
        let log = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let script = scripts.lock().unwrap().pop_front();
                let log = log.clone();
                tokio::spawn(async move {
                    let _ = answer(stream, script, &log).await;
                });
            }
        });
        Server {
            base_url,
            received,
            task,
        }
    }

    async fn answer(
        mut stream: TcpStream,
        script: Option<Vec<Step>>,
        log: &Mutex<Vec<Received>>,
    ) -> std::io::Result<()> {
        stream.set_nodelay(true)?;
        let request = read_request(&mut stream).await?;
        log.lock().unwrap().push(request);
        for step in script.unwrap_or_default() {
            match step {
                Step::Write(bytes) => {
                    stream.write_all(&bytes).await?;
                    stream.flush().await?;
                }
                Step::Pause(d) => tokio::time::sleep(d).await,
                Step::Hang => std::future::pending::<()>().await,
            }
        }
        stream.shutdown().await
    }

    async fn read_request(stream: &mut TcpStream) -> std::io::Result<Received> {
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = buf[head_end + 4..].to_vec();
        while body.len() < length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        Ok(Received {
            request_line,
            headers,
            body,
        })
    }

    fn head(status: &str, headers: &[(&str, &str)], chunked: bool) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for (name, value) in headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if chunked {
            out.push_str("Transfer-Encoding: chunked\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    fn paced(pieces: Vec<Vec<u8>>) -> Vec<Step> {
        pieces
            .into_iter()
            .flat_map(|p| [Step::Write(p), Step::Pause(Duration::from_millis(2))])
            .collect()
    }

    /// `bytes` cut into pieces of at most `size` bytes (so multi-byte
    /// characters get split whenever a cut falls inside one).
    pub fn pieces(bytes: &[u8], size: usize) -> Vec<Vec<u8>> {
        bytes.chunks(size).map(<[u8]>::to_vec).collect()
    }

    /// A 200 event stream in chunked encoding, each piece its own chunk and
    /// its own TCP write; `complete` decides whether the terminating chunk is sent.
    pub fn sse_chunked(pieces: Vec<Vec<u8>>, complete: bool) -> Vec<Step> {
        let mut steps = vec![Step::Write(head(
            "200 OK",
            &[("Content-Type", "text/event-stream")],
            true,
        ))];
        let chunks = pieces.into_iter().map(|p| {
            let mut c = format!("{:x}\r\n", p.len()).into_bytes();
            c.extend_from_slice(&p);
            c.extend_from_slice(b"\r\n");
            c
        });
        steps.extend(paced(chunks.collect()));
        if complete {
            steps.push(Step::Write(b"0\r\n\r\n".to_vec()));
        }
        steps
    }

    /// A 200 event stream whose body ends when the connection closes.
    pub fn sse_until_close(pieces: Vec<Vec<u8>>) -> Vec<Step> {
        let mut steps = vec![Step::Write(head(
            "200 OK",
            &[("Content-Type", "text/event-stream; charset=utf-8")],
            false,
        ))];
        steps.extend(paced(pieces));
        steps
    }

    /// Sends `pieces` of an event stream, then stops writing but keeps the connection.
    pub fn sse_then_stall(pieces: Vec<Vec<u8>>) -> Vec<Step> {
        let mut steps = sse_until_close(pieces);
        steps.push(Step::Hang);
        steps
    }

    pub fn status(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<Step> {
        let mut all = vec![("Content-Length", body.len().to_string())];
        all.extend(headers.iter().map(|(n, v)| (*n, (*v).to_owned())));
        let borrowed: Vec<(&str, &str)> = all.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let mut bytes = head(status, &borrowed, false);
        bytes.extend_from_slice(body.as_bytes());
        vec![Step::Write(bytes)]
    }

    pub fn hang() -> Vec<Step> {
        vec![Step::Hang]
    }

    /// Runs `stream` collecting every delta; returns the joined text, the
    /// number of deltas and the result.
    pub async fn collect(
        provider: &RemoteProvider,
        request: &super::ChatRequest,
    ) -> (String, usize, Result<super::Usage, super::ProviderError>) {
        let (text, count, result) = collect_costed(provider, request).await;
        (text, count, result.map_err(|failed| failed.error))
    }

    /// [`collect`], keeping what a failure cost.
    pub async fn collect_costed(
        provider: &RemoteProvider,
        request: &super::ChatRequest,
    ) -> (String, usize, Result<super::Usage, super::Failed>) {
        let (tx, mut rx) = tokio::sync::mpsc::channel(256);
        let result = provider.stream(request, tx).await;
        let mut text = String::new();
        let mut count = 0;
        while let Ok(delta) = rx.try_recv() {
            text.push_str(&delta);
            count += 1;
        }
        (text, count, result)
    }

    pub fn request() -> super::ChatRequest {
        use super::{Role, Turn};
        super::ChatRequest {
            system: "You are the front desk of Hotel Test.".into(),
            turns: vec![
                Turn {
                    role: Role::User,
                    content: "Hi".into(),
                },
                Turn {
                    role: Role::Assistant,
                    content: "Hello! How can I help?".into(),
                },
                Turn {
                    role: Role::User,
                    content: "Do you have parking?".into(),
                },
            ],
            temperature: 0.3,
            max_tokens: 256,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_round_trips() {
        for kind in [
            ProviderKind::Builtin,
            ProviderKind::OpenAi,
            ProviderKind::Anthropic,
        ] {
            assert_eq!(ProviderKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ProviderKind::parse(" OpenAI "), Some(ProviderKind::OpenAi));
        assert_eq!(ProviderKind::parse("gemini"), None);
    }

    #[test]
    fn endpoints_follow_the_v1_rule() {
        let url = |base, path| endpoint(base, path).unwrap().to_string();
        assert_eq!(
            url("https://api.openai.com", openai::PATH),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            url("https://api.openai.com/", openai::PATH),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            url("http://127.0.0.1:8080/v1", openai::PATH),
            "http://127.0.0.1:8080/v1/chat/completions"
        );
        assert_eq!(
            url("https://proxy.example/openai/v1/", openai::PATH),
            "https://proxy.example/openai/v1/chat/completions"
        );
        assert_eq!(
            url("https://api.anthropic.com", anthropic::PATH),
            "https://api.anthropic.com/v1/messages"
        );
        assert_eq!(
            url("https://api.anthropic.com/v1", anthropic::PATH),
            "https://api.anthropic.com/v1/messages"
        );
        assert!(endpoint("api.openai.com", openai::PATH).is_err());
        assert!(endpoint("ftp://x.example", openai::PATH).is_err());
        assert!(endpoint("https://x.example/?a=1", openai::PATH).is_err());
    }

    #[test]
    fn default_settings() {
        let s = RemoteSettings::default();
        assert_eq!(s.connect_timeout, Duration::from_secs(5));
        assert_eq!(s.first_byte_timeout, Duration::from_secs(20));
        assert_eq!(s.idle_timeout, Duration::from_secs(30));
        assert_eq!(s.max_retries, 2);
        assert!(RemoteProvider::new(ProviderKind::OpenAi, s).is_err());
    }

    #[test]
    fn new_rejects_bad_settings() {
        let settings = RemoteSettings::new("https://api.openai.com", None, "gpt-4o-mini");
        assert!(matches!(
            RemoteProvider::new(ProviderKind::Builtin, settings.clone()),
            Err(ProviderError::Config(_))
        ));
        let no_model = RemoteSettings {
            model: " ".into(),
            ..settings.clone()
        };
        assert!(RemoteProvider::new(ProviderKind::OpenAi, no_model).is_err());
        let bad_key = RemoteSettings {
            api_key: Some("sk-abc\ndef".into()),
            ..settings.clone()
        };
        let err = RemoteProvider::new(ProviderKind::OpenAi, bad_key).unwrap_err();
        assert!(!err.to_string().contains("sk-abc"), "{err}");
        let ok = RemoteProvider::new(ProviderKind::Anthropic, settings).unwrap();
        assert_eq!(ok.kind(), ProviderKind::Anthropic);
        assert_eq!(ok.model(), "gpt-4o-mini");
    }

    #[test]
    fn debug_output_hides_the_key() {
        let settings =
            RemoteSettings::new("https://api.openai.com", Some("sk-very-secret".into()), "m");
        assert!(!format!("{settings:?}").contains("sk-very-secret"));
        let provider = RemoteProvider::new(ProviderKind::OpenAi, settings).unwrap();
        assert!(!format!("{provider:?}").contains("sk-very-secret"));
        assert!(!format!("{:?}", provider.headers).contains("sk-very-secret"));
    }

    #[test]
    fn redact_removes_an_echoed_key() {
        let settings =
            RemoteSettings::new("https://api.openai.com", Some("sk-very-secret".into()), "m");
        let provider = RemoteProvider::new(ProviderKind::OpenAi, settings).unwrap();
        let err = provider.redact(ProviderError::Status {
            status: 401,
            message: "Incorrect API key provided: sk-very-secret".into(),
        });
        assert_eq!(
            err.to_string(),
            "The model provider answered HTTP 401: Incorrect API key provided: [redacted]"
        );
    }

    #[test]
    fn clip_makes_one_short_line() {
        assert_eq!(clip("  a\n\tb\r\nc  "), "a b c");
        let long = "x".repeat(500);
        let clipped = clip(&long);
        assert_eq!(clipped.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(clipped.ends_with('…'));
        assert_eq!(clip(&"é".repeat(200)), "é".repeat(200));
    }

    #[test]
    fn upstream_messages() {
        assert_eq!(
            upstream_message(
                br#"{"error":{"message":"bad model","type":"invalid_request_error"}}"#
            ),
            Some("bad model".into())
        );
        assert_eq!(
            upstream_message(br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too big"}}"#),
            Some("max_tokens: too big".into())
        );
        assert_eq!(
            upstream_message(br#"{"error":"model not found"}"#),
            Some("model not found".into())
        );
        assert_eq!(upstream_message(b"<html>502</html>"), None);
        assert_eq!(upstream_message(b""), None);
    }

    #[test]
    fn retry_after_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("150"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_respects_retry_after() {
        for attempt in 0..4 {
            let base = BACKOFF_BASE * 2u32.pow(attempt);
            for _ in 0..50 {
                let d = backoff(attempt, None).unwrap();
                assert!(d >= base / 2 && d <= base, "{d:?} for {attempt}");
            }
        }
        assert_eq!(
            backoff(0, Some(Duration::from_secs(3))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(backoff(0, Some(Duration::from_secs(11))), None);
        assert!(backoff(u32::MAX, None).is_some());
    }

    #[test]
    fn stream_errors_map_to_variants() {
        assert!(matches!(
            stream_error(Some("overloaded_error"), Some("Overloaded")),
            ProviderError::RateLimited
        ));
        assert!(matches!(
            stream_error(Some("api_error"), Some("boom")),
            ProviderError::Status { status: 500, .. }
        ));
        assert!(matches!(
            stream_error(Some("invalid_request_error"), None),
            ProviderError::Status { status: 400, .. }
        ));
    }

    #[test]
    fn estimates_round_up() {
        assert_eq!(estimate_tokens(0), 0);
        assert_eq!(estimate_tokens(1), 1);
        assert_eq!(estimate_tokens(8), 2);
        assert_eq!(estimate_tokens(9), 3);
    }

    #[tokio::test]
    async fn connection_refused_is_retried_then_reported() {
        // Bind and drop to find a port where nothing listens.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = RemoteSettings {
            max_retries: 1,
            ..RemoteSettings::new(format!("http://127.0.0.1:{port}"), None, "m")
        };
        let provider = RemoteProvider::new(ProviderKind::OpenAi, settings).unwrap();
        let started = std::time::Instant::now();
        let (_, _, result) = test_server::collect(&provider, &test_server::request()).await;
        assert!(
            matches!(result, Err(ProviderError::Connect(_))),
            "{result:?}"
        );
        // One backoff between the two attempts.
        assert!(started.elapsed() >= Duration::from_millis(125));
        let message = result.unwrap_err().to_string();
        assert!(message.contains("refused"), "{message}");
        assert!(!message.contains("127.0.0.1"), "{message}");
    }

    #[test]
    fn turns_sent_start_with_the_visitor_and_alternate() {
        let turn = |role: Role, content: &str| Turn {
            role,
            content: content.into(),
        };
        let window = [
            turn(Role::Assistant, "Hello! How can I help?"),
            turn(Role::User, "Can I return a bike?"),
            turn(Role::Assistant, " "),
            turn(Role::User, "Hello?"),
            turn(Role::Assistant, "Yes, within 30 days."),
        ];
        let wire = super::wire_turns(&window);
        let shape: Vec<(Role, &str)> = wire
            .iter()
            .map(|t| (t.role.clone(), t.content.as_str()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (Role::User, "Can I return a bike?\n\nHello?"),
                (Role::Assistant, "Yes, within 30 days."),
            ]
        );
        assert!(super::wire_turns(&window[..1]).is_empty());
    }

    #[tokio::test]
    async fn builtin_kind_cannot_stream() {
        // `new` refuses Builtin, so this only guards the match in `stream`.
        let settings = RemoteSettings::new("http://127.0.0.1:9", None, "m");
        let mut provider = RemoteProvider::new(ProviderKind::OpenAi, settings).unwrap();
        provider.kind = ProviderKind::Builtin;
        let (tx, _rx) = mpsc::channel(1);
        assert!(matches!(
            provider.stream(&test_server::request(), tx).await,
            Err(Failed {
                error: ProviderError::Config(_),
                spent: None
            })
        ));
    }
}

//! A fake model provider for the tests: one local HTTP server that answers
//! both the OpenAI chat-completions (`…/chat/completions`) and the Anthropic
//! messages (`…/messages`) streaming APIs with scripted replies, and keeps
//! every request it received.
//!
//! Depends only on tokio (`net`, `io-util`, `rt`, `time`) and serde_json.
//!
//! ```ignore
//! let llm = fake_llm::spawn(vec![Reply::text("Hello there!")]).await;
//! // point the app at llm.base_url (as OpenAI or Anthropic base URL) …
//! let requests = llm.wait_for_requests(1, Duration::from_secs(5)).await;
//! assert_eq!(requests[0].body["stream"], true);
//! ```

#![allow(dead_code)] // a kit: each test uses only some of it

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Input tokens the fake reports for every streamed reply.
pub const FAKE_INPUT_TOKENS: u32 = 10;

/// One scripted answer. Text replies are sent in the dialect of the endpoint
/// that was called.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Streams each piece as one text delta, then the finish/stop events and
    /// usage (input [`FAKE_INPUT_TOKENS`], output = number of pieces).
    Text(Vec<String>),
    /// Streams "You said: <last user message>" in word pieces.
    Echo,
    /// An error response with the provider's error body.
    Error {
        status: u16,
        message: String,
        retry_after_secs: Option<u32>,
    },
    /// Streams the pieces, then closes the connection without finishing.
    CutAfter(Vec<String>),
    /// Streams the pieces, then stays silent with the connection open.
    StallAfter(Vec<String>),
    /// Reads the request and never answers.
    Hang,
    /// These bytes verbatim as the whole response, status line included; the
    /// connection closes after them.
    Raw(Vec<u8>),
}

impl Reply {
    /// `text` streamed in word-sized pieces (each keeps its trailing space).
    pub fn text(text: &str) -> Self {
        Self::Text(words(text))
    }

    pub fn error(status: u16, message: &str) -> Self {
        Self::Error {
            status,
            message: message.to_owned(),
            retry_after_secs: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub method: String,
    pub path: String,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    /// `Value::Null` when the body was not JSON.
    pub body: Value,
}

impl ReceivedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_anthropic(&self) -> bool {
        self.path.ends_with("/messages")
    }

    /// The content of the last user message, in either dialect.
    pub fn last_user_message(&self) -> Option<String> {
        last_user_message(&self.body)
    }
}

struct State {
    script: VecDeque<Reply>,
    fallback: Reply,
    piece_delay: Duration,
    requests: Vec<ReceivedRequest>,
}

/// The running fake; stops accepting connections when dropped.
pub struct FakeLlm {
    /// `http://127.0.0.1:PORT`: use as the base URL of either provider.
    pub base_url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts the fake on a free loopback port. Requests take the scripted replies
/// in order; once they run out every request gets [`Reply::Echo`] (see
/// [`FakeLlm::set_fallback`]). Must be called inside a tokio runtime.
pub async fn spawn(script: Vec<Reply>) -> FakeLlm {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("fake LLM: cannot bind a loopback port: {e}"));
    let base_url = match listener.local_addr() {
        Ok(addr) => format!("http://{addr}"),
        Err(e) => panic!("fake LLM: no local address: {e}"),
    };
    let state = Arc::new(Mutex::new(State {
        script: script.into(),
        fallback: Reply::Echo,
        piece_delay: Duration::from_millis(1),
        requests: Vec::new(),
    }));
    let shared = state.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let state = shared.clone();
            tokio::spawn(async move {
                // A client that hangs up early is not the fake's problem.
                let _ = serve(stream, &state).await;
            });
        }
    });
    FakeLlm {
        base_url,
        state,
        task,
    }
}

impl FakeLlm {
    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        lock(&self.state).requests.clone()
    }

    /// Waits until at least `count` requests arrived (or `timeout` passed) and
    /// returns them all.
    pub async fn wait_for_requests(&self, count: usize, timeout: Duration) -> Vec<ReceivedRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if requests.len() >= count || tokio::time::Instant::now() >= deadline {
                return requests;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Appends a reply to the script.
    pub fn push(&self, reply: Reply) {
        lock(&self.state).script.push_back(reply);
    }

    /// What requests get once the script is used up.
    pub fn set_fallback(&self, reply: Reply) {
        lock(&self.state).fallback = reply;
    }

    /// Pause between streamed pieces (default 1 ms), e.g. to watch a reply
    /// arrive in a browser.
    pub fn set_piece_delay(&self, delay: Duration) {
        lock(&self.state).piece_delay = delay;
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A test that panicked while holding the lock should not hide the requests.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    OpenAi,
    Anthropic,
}

async fn serve(mut stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let request = read_request(&mut stream).await?;
    let dialect = if request.method == "POST" && request.path.ends_with("/chat/completions") {
        Some(Dialect::OpenAi)
    } else if request.method == "POST" && request.path.ends_with("/messages") {
        Some(Dialect::Anthropic)
    } else {
        None
    };
    let is_models = request.method == "GET" && request.path.ends_with("/models");
    let (reply, delay) = {
        let mut state = lock(state);
        state.requests.push(request.clone());
        // Only model calls consume the script.
        let reply = match dialect {
            Some(_) => state
                .script
                .pop_front()
                .unwrap_or_else(|| state.fallback.clone()),
            None => Reply::Hang,
        };
        (reply, state.piece_delay)
    };
    let Some(dialect) = dialect else {
        let (status, body) = if is_models {
            (
                200,
                json!({"object": "list", "data": [{"id": "fake-model", "object": "model"}]}),
            )
        } else {
            (
                404,
                json!({"error": {"message": "no such endpoint on the fake LLM"}}),
            )
        };
        return write_json(&mut stream, status, &[], &body).await;
    };
    match reply {
        Reply::Text(pieces) => stream_text(&mut stream, dialect, &pieces, delay, End::Finish).await,
        Reply::Echo => {
            let text = format!(
                "You said: {}",
                request.last_user_message().unwrap_or_default()
            );
            stream_text(&mut stream, dialect, &words(&text), delay, End::Finish).await
        }
        Reply::CutAfter(pieces) => {
            stream_text(&mut stream, dialect, &pieces, delay, End::Cut).await
        }
        Reply::StallAfter(pieces) => {
            stream_text(&mut stream, dialect, &pieces, delay, End::Stall).await
        }
        Reply::Error {
            status,
            message,
            retry_after_secs,
        } => {
            let body = error_body(dialect, status, &message);
            let retry = retry_after_secs.map(|s| s.to_string());
            let headers: Vec<(&str, &str)> =
                retry.iter().map(|s| ("Retry-After", s.as_str())).collect();
            write_json(&mut stream, status, &headers, &body).await
        }
        Reply::Hang => std::future::pending().await,
        Reply::Raw(bytes) => {
            stream.write_all(&bytes).await?;
            stream.shutdown().await
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Finish,
    Cut,
    Stall,
}

async fn stream_text(
    stream: &mut TcpStream,
    dialect: Dialect,
    pieces: &[String],
    delay: Duration,
    end: End,
) -> std::io::Result<()> {
    stream
        .write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
              Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await?;
    let output = u32::try_from(pieces.len()).unwrap_or(u32::MAX);
    let mut events = Vec::new();
    match dialect {
        Dialect::OpenAi => {
            events.push(openai_chunk(
                json!({"role": "assistant", "content": ""}),
                Value::Null,
            ));
            events.extend(
                pieces
                    .iter()
                    .map(|p| openai_chunk(json!({"content": p}), Value::Null)),
            );
        }
        Dialect::Anthropic => {
            events.push(anthropic_event(
                "message_start",
                json!({"type": "message_start", "message": {
                    "id": "msg_fake", "type": "message", "role": "assistant", "content": [],
                    "model": "fake-model", "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": FAKE_INPUT_TOKENS, "output_tokens": 1}}}),
            ));
            events.push(anthropic_event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ));
            events.push(anthropic_event("ping", json!({"type": "ping"})));
            events.extend(pieces.iter().map(|p| {
                anthropic_event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}),
                )
            }));
        }
    }
    for event in events {
        write_chunk(stream, event.as_bytes()).await?;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
    match end {
        End::Cut => return stream.shutdown().await,
        End::Stall => return std::future::pending().await,
        End::Finish => {}
    }
    let tail = match dialect {
        Dialect::OpenAi => [
            openai_chunk(json!({}), json!("stop")),
            format!(
                "data: {}\n\n",
                json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": "fake-model", "choices": [],
                       "usage": {"prompt_tokens": FAKE_INPUT_TOKENS, "completion_tokens": output,
                                 "total_tokens": FAKE_INPUT_TOKENS.saturating_add(output)}})
            ),
            "data: [DONE]\n\n".to_owned(),
        ]
        .concat(),
        Dialect::Anthropic => [
            anthropic_event("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
            anthropic_event(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                       "usage": {"output_tokens": output}}),
            ),
            anthropic_event("message_stop", json!({"type": "message_stop"})),
        ]
        .concat(),
    };
    write_chunk(stream, tail.as_bytes()).await?;
    stream.write_all(b"0\r\n\r\n").await?;
    stream.shutdown().await
}

fn openai_chunk(delta: Value, finish_reason: Value) -> String {
    format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": "fake-model",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})
    )
}

fn anthropic_event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn error_body(dialect: Dialect, status: u16, message: &str) -> Value {
    match dialect {
        Dialect::OpenAi => {
            let kind = match status {
                429 => "rate_limit_exceeded",
                500..=599 => "server_error",
                _ => "invalid_request_error",
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
        }
        Dialect::Anthropic => {
            let kind = match status {
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                500..=599 => "api_error",
                _ => "invalid_request_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
    }
}

async fn write_chunk(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let mut chunk = format!("{:x}\r\n", bytes.len()).into_bytes();
    chunk.extend_from_slice(bytes);
    chunk.extend_from_slice(b"\r\n");
    stream.write_all(&chunk).await?;
    stream.flush().await
}

async fn write_json(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    body: &Value,
) -> std::io::Result<()> {
    let body = body.to_string();
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.push_str(&body);
    stream.write_all(head.as_bytes()).await?;
    stream.shutdown().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "Error",
    }
}

async fn read_request(stream: &mut TcpStream) -> std::io::Result<ReceivedRequest> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf.split_off(head_end + 4);
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(ReceivedRequest {
        method,
        path,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    })
}

fn last_user_message(body: &Value) -> Option<String> {
    let message = body
        .get("messages")?
        .as_array()?
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
    match message.get("content")? {
        Value::String(s) => Some(s.clone()),
        // Content given as blocks: [{"type":"text","text":…}, …]
        Value::Array(blocks) => Some(
            blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
        ),
        _ => None,
    }
}

fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        current.push(c);
        if c == ' ' {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

//! The Anthropic Messages API wire format.

use serde::Deserialize;
use serde_json::json;

use super::sse::SseEvent;
use super::{
    ChatRequest, Decoded, ProviderError, Reported, clamp_temperature, saturating_u32, stream_error,
    wire_turns,
};

pub(super) const PATH: &str = "messages";
pub(super) const VERSION: &str = "2023-06-01";

pub(super) fn request_body(model: &str, request: &ChatRequest) -> serde_json::Value {
    let messages: Vec<_> = wire_turns(&request.turns)
        .into_iter()
        .map(|turn| json!({"role": turn.role.as_str(), "content": turn.content}))
        .collect();
    let mut body = json!({
        "model": model,
        "messages": messages,
        "max_tokens": request.max_tokens.max(1),
        "temperature": clamp_temperature(request.temperature, 1.0),
        "stream": true,
    });
    if !request.system.trim().is_empty()
        && let Some(object) = body.as_object_mut()
    {
        object.insert("system".into(), json!(request.system));
    }
    body
}

// One struct for every event type, each field present only on some of them.
#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<Message>,
    content_block: Option<ContentBlock>,
    delta: Option<Delta>,
    usage: Option<EventUsage>,
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct Message {
    usage: Option<EventUsage>,
}

#[derive(Deserialize)]
struct ContentBlock {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct EventUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct Decoder {
    finished: bool,
    input_tokens: Option<u32>,
    output_tokens: Option<u32>,
}

impl super::Decoder for Decoder {
    fn event(&mut self, event: SseEvent) -> Result<Decoded, ProviderError> {
        let value: serde_json::Value = serde_json::from_str(&event.data)
            .map_err(|e| ProviderError::Malformed(format!("an event was not JSON ({e})")))?;
        let data: Event = serde_json::from_value(value).map_err(|e| {
            ProviderError::Malformed(format!(
                "an event had an unexpected shape ({})",
                super::clip(&e.to_string())
            ))
        })?;
        let name = event
            .event
            .as_deref()
            .or(data.kind.as_deref())
            .unwrap_or("");
        match name {
            "message_start" => {
                if let Some(usage) = data.message.and_then(|m| m.usage) {
                    self.input_tokens = usage.input_tokens.map(saturating_u32);
                }
                Ok(Decoded::Nothing)
            }
            "content_block_start" => Ok(data
                .content_block
                .filter(|b| b.kind.as_deref() == Some("text"))
                .and_then(|b| b.text)
                .map_or(Decoded::Nothing, Decoded::Text)),
            "content_block_delta" => Ok(data
                .delta
                .filter(|d| d.kind.as_deref() == Some("text_delta"))
                .and_then(|d| d.text)
                .map_or(Decoded::Nothing, Decoded::Text)),
            "message_delta" => {
                if let Some(usage) = data.usage {
                    // Counts here are cumulative, so they replace earlier ones.
                    self.output_tokens = usage
                        .output_tokens
                        .map(saturating_u32)
                        .or(self.output_tokens);
                    self.input_tokens =
                        usage.input_tokens.map(saturating_u32).or(self.input_tokens);
                }
                if data.delta.is_some_and(|d| d.stop_reason.is_some()) {
                    self.finished = true;
                }
                Ok(Decoded::Nothing)
            }
            "message_stop" => Ok(Decoded::Done),
            "error" => {
                let error = data.error;
                Err(stream_error(
                    error.as_ref().and_then(|e| e.kind.as_deref()),
                    error.as_ref().and_then(|e| e.message.as_deref()),
                ))
            }
            // `ping`, and event types added later, which the API docs say to ignore.
            _ => Ok(Decoded::Nothing),
        }
    }

    fn finished(&self) -> bool {
        self.finished
    }

    fn reported(&self, cut_short: bool) -> Reported {
        Reported {
            input_tokens: self.input_tokens,
            // message_delta's count is cumulative, so if we stopped early a
            // count from before the end would understate the reply.
            output_tokens: if cut_short { None } else { self.output_tokens },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::test_server::{
        collect, hang, pieces, request, serve, sse_chunked, sse_then_stall, sse_until_close, status,
    };
    use super::super::{Decoder as _, ProviderError, ProviderKind, Role, Turn, Usage, stage};
    use super::*;

    fn event(name: &str, data: serde_json::Value) -> String {
        format!("event: {name}\ndata: {data}\n\n")
    }

    fn start(input: u32) -> String {
        event(
            "message_start",
            json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-test","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":input,"output_tokens":1}}}),
        )
    }

    fn text(t: &str) -> String {
        event(
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":t}}),
        )
    }

    fn end(output: u32) -> String {
        let mut s = event(
            "content_block_stop",
            json!({"type":"content_block_stop","index":0}),
        );
        s.push_str(&event(
            "message_delta",
            json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":output}}),
        ));
        s.push_str(&event("message_stop", json!({"type":"message_stop"})));
        s
    }

    fn full_stream(parts: &[&str]) -> String {
        let mut s = start(25);
        s.push_str(&event(
            "content_block_start",
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        ));
        s.push_str(&event("ping", json!({"type":"ping"})));
        for p in parts {
            s.push_str(&text(p));
        }
        s.push_str(&end(9));
        s
    }

    fn overloaded() -> String {
        event(
            "error",
            json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
        )
    }

    #[test]
    fn body_puts_system_at_the_top_level() {
        let body = request_body("claude-test", &request());
        assert_eq!(body["model"], "claude-test");
        assert_eq!(body["system"], "You are the front desk of Hotel Test.");
        assert_eq!(body["stream"], true);
        assert_eq!(body["max_tokens"], 256);
        assert_eq!(body["temperature"], 0.3);
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert!(messages.iter().all(|m| m["role"] != "system"));
        assert_eq!(messages[0], json!({"role":"user","content":"Hi"}));
        assert_eq!(messages[1]["role"], "assistant");
    }

    #[test]
    fn blank_turns_are_dropped_and_neighbours_merged() {
        let mut r = request();
        r.system = String::new();
        r.temperature = 1.7;
        r.turns.insert(
            2,
            Turn {
                role: Role::Assistant,
                content: " ".into(),
            },
        );
        r.turns.insert(
            1,
            Turn {
                role: Role::User,
                content: "Anyone there?".into(),
            },
        );
        let body = request_body("m", &r);
        assert!(body.get("system").is_none());
        assert_eq!(body["temperature"], 1.0);
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0]["content"], "Hi\n\nAnyone there?");
    }

    #[test]
    fn decoder_ignores_other_blocks_and_unknown_events() {
        let mut d = Decoder::default();
        let mut ev = |name: &str, data: serde_json::Value| {
            d.event(SseEvent {
                event: Some(name.into()),
                data: data.to_string(),
            })
        };
        assert!(matches!(
            ev(
                "content_block_delta",
                json!({"type":"content_block_delta","delta":{"type":"input_json_delta","partial_json":"{"}})
            ),
            Ok(Decoded::Nothing)
        ));
        assert!(matches!(
            ev("something_new", json!({"type":"something_new"})),
            Ok(Decoded::Nothing)
        ));
        assert!(matches!(
            ev(
                "error",
                json!({"type":"error","error":{"type":"invalid_request_error","message":"bad"}})
            ),
            Err(ProviderError::Status { status: 400, .. })
        ));
        // Without an `event:` line the JSON type decides.
        let r = d.event(SseEvent {
            event: None,
            data: json!({"type":"message_stop"}).to_string(),
        });
        assert!(matches!(r, Ok(Decoded::Done)));
    }

    #[tokio::test]
    async fn streams_many_small_writes_in_order_with_usage() {
        let parts = ["We do", " — free", " parking for guests ", "🅿️ ", "(€0)."];
        let server = serve(vec![sse_chunked(
            pieces(full_stream(&parts).as_bytes(), 5),
            true,
        )])
        .await;
        let (got, count, result) =
            collect(&server.provider(ProviderKind::Anthropic), &request()).await;
        assert_eq!(got, parts.concat());
        assert_eq!(count, parts.len());
        assert_eq!(
            result.unwrap(),
            Usage {
                input_tokens: 25,
                output_tokens: 9
            }
        );
    }

    #[tokio::test]
    async fn request_line_headers_and_body_are_right() {
        let server = serve(vec![sse_chunked(
            vec![full_stream(&["ok"]).into_bytes()],
            true,
        )])
        .await;
        let (_, _, result) = collect(&server.provider(ProviderKind::Anthropic), &request()).await;
        result.unwrap();
        let received = server.received();
        let r = &received[0];
        assert_eq!(r.request_line, "POST /v1/messages HTTP/1.1");
        assert_eq!(r.header("x-api-key"), Some("sk-test-secret-key"));
        assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(r.header("authorization"), None);
        assert_eq!(r.header("content-type"), Some("application/json"));
        let body = r.json();
        assert_eq!(body["model"], "test-model");
        assert_eq!(body["stream"], true);
        assert_eq!(body["system"], "You are the front desk of Hotel Test.");
        assert_eq!(body["messages"].as_array().unwrap().len(), 3);
        assert_eq!(body["messages"][0]["role"], "user");
    }

    #[tokio::test]
    async fn crlf_and_close_delimited_body() {
        let stream = full_stream(&["Hel", "lo"]).replace('\n', "\r\n");
        let server = serve(vec![sse_until_close(pieces(stream.as_bytes(), 4))]).await;
        let (got, _, result) = collect(&server.provider(ProviderKind::Anthropic), &request()).await;
        assert_eq!(got, "Hello");
        assert_eq!(result.unwrap().output_tokens, 9);
    }

    #[tokio::test]
    async fn retries_429_honouring_retry_after() {
        let server = serve(vec![
            status(
                "429 Too Many Requests",
                &[("retry-after", "1")],
                r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#,
            ),
            sse_chunked(vec![full_stream(&["after wait"]).into_bytes()], true),
        ])
        .await;
        let started = Instant::now();
        let (got, _, result) = collect(&server.provider(ProviderKind::Anthropic), &request()).await;
        assert_eq!(got, "after wait");
        result.unwrap();
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(server.received().len(), 2);
    }

    #[tokio::test]
    async fn retries_500_twice_then_succeeds() {
        let server = serve(vec![
            status("500 Internal Server Error", &[], r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#),
            status("529 Overloaded", &[], r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#),
            sse_chunked(vec![full_stream(&["third time"]).into_bytes()], true),
        ])
        .await;
        let (got, _, result) = collect(&server.provider(ProviderKind::Anthropic), &request()).await;
        assert_eq!(got, "third time");
        result.unwrap();
        assert_eq!(server.received().len(), 3);
    }

    #[tokio::test]
    async fn bad_request_reports_message_without_retry() {
        let server = serve(vec![status(
            "400 Bad Request",
            &[("content-type", "application/json")],
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: 999999 > 8192, which is the maximum allowed number of output tokens for claude-test"}}"#,
        )])
        .await;
        let (_, _, result) = collect(&server.provider(ProviderKind::Anthropic), &request()).await;
        match result {
            Err(ProviderError::Status {
                status: 400,
                message,
            }) => {
                assert!(
                    message.starts_with("max_tokens: 999999 > 8192"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(server.received().len(), 1);
    }

    #[tokio::test]
    async fn unauthorized_is_not_retried() {
        let server = serve(vec![status(
            "401 Unauthorized",
            &[],
            r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
        )])
        .await;
        let (_, _, result) = collect(&server.provider(ProviderKind::Anthropic), &request()).await;
        match result {
            Err(ProviderError::Status {
                status: 401,
                message,
            }) => assert_eq!(message, "invalid x-api-key"),
            other => panic!("{other:?}"),
        }
        assert_eq!(server.received().len(), 1);
    }

    #[tokio::test]
    async fn overloaded_event_before_text_is_retried() {
        let mut first = start(25);
        first.push_str(&overloaded());
        let server = serve(vec![
            sse_chunked(vec![first.into_bytes()], true),
            sse_chunked(vec![full_stream(&["recovered"]).into_bytes()], true),
        ])
        .await;
        let (got, _, result) = collect(&server.provider(ProviderKind::Anthropic), &request()).await;
        assert_eq!(got, "recovered");
        result.unwrap();
        assert_eq!(server.received().len(), 2);
    }

    #[tokio::test]
    async fn overloaded_event_after_text_is_not_retried() {
        let mut first = start(25);
        first.push_str(&text("Partly"));
        first.push_str(&overloaded());
        let server = serve(vec![sse_chunked(vec![first.into_bytes()], true)]).await;
        let (got, _, result) = collect(&server.provider(ProviderKind::Anthropic), &request()).await;
        assert_eq!(got, "Partly");
        assert!(
            matches!(result, Err(ProviderError::RateLimited)),
            "{result:?}"
        );
        assert_eq!(server.received().len(), 1);
    }

    #[tokio::test]
    async fn non_json_data_is_malformed() {
        let mut stream = start(25);
        stream.push_str(&text("Hi"));
        stream.push_str("event: content_block_delta\ndata: {not json\n\n");
        let server = serve(vec![sse_chunked(vec![stream.into_bytes()], true)]).await;
        let (got, _, result) = collect(&server.provider(ProviderKind::Anthropic), &request()).await;
        assert_eq!(got, "Hi");
        assert!(
            matches!(result, Err(ProviderError::Malformed(_))),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn stream_cut_after_text_is_interrupted() {
        let mut stream = start(25);
        stream.push_str(&text("Half an ans"));
        stream.push_str(&text("wer"));
        let server = serve(vec![sse_chunked(pieces(stream.as_bytes(), 32), false)]).await;
        let (got, _, result) = collect(&server.provider(ProviderKind::Anthropic), &request()).await;
        assert_eq!(got, "Half an answer");
        assert!(
            matches!(result, Err(ProviderError::Interrupted(_))),
            "{result:?}"
        );
        assert_eq!(server.received().len(), 1);
    }

    #[tokio::test]
    async fn silent_server_times_out_waiting_for_first_byte() {
        let server = serve(vec![hang()]).await;
        let mut settings = server.settings("m");
        settings.max_retries = 0;
        let provider =
            super::super::RemoteProvider::new(ProviderKind::Anthropic, settings).unwrap();
        let started = Instant::now();
        let (_, _, result) = collect(&provider, &request()).await;
        let elapsed = started.elapsed();
        assert!(
            matches!(result, Err(ProviderError::Timeout(s)) if s == stage::FIRST_BYTE),
            "{result:?}"
        );
        assert!(
            elapsed >= Duration::from_millis(290) && elapsed < Duration::from_secs(3),
            "{elapsed:?}"
        );
    }

    #[tokio::test]
    async fn stall_mid_stream_is_an_idle_timeout() {
        let mut stream = start(25);
        stream.push_str(&text("Let me ch"));
        let server = serve(vec![sse_then_stall(vec![stream.into_bytes()])]).await;
        let (got, _, result) = collect(&server.provider(ProviderKind::Anthropic), &request()).await;
        assert_eq!(got, "Let me ch");
        assert!(
            matches!(result, Err(ProviderError::Timeout(s)) if s == stage::IDLE),
            "{result:?}"
        );
        assert_eq!(server.received().len(), 1);
    }

    #[tokio::test]
    async fn listener_going_away_returns_estimated_output() {
        let mut stream = start(25);
        stream.push_str(&text("12345678"));
        stream.push_str(&event(
            "message_delta",
            json!({"type":"message_delta","delta":{"stop_reason":null},"usage":{"output_tokens":1}}),
        ));
        stream.push_str(&text("more"));
        let server = serve(vec![sse_then_stall(vec![stream.into_bytes()])]).await;
        let mut settings = server.settings("m");
        settings.idle_timeout = Duration::from_secs(5);
        let provider =
            super::super::RemoteProvider::new(ProviderKind::Anthropic, settings).unwrap();
        let started = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let reader = tokio::spawn(async move {
            let first = rx.recv().await;
            drop(rx);
            first
        });
        let usage = provider.stream(&request(), tx).await.unwrap();
        assert_eq!(reader.await.unwrap().as_deref(), Some("12345678"));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(usage.input_tokens, 25);
        assert!(usage.output_tokens >= 2, "{usage:?}");
    }
}

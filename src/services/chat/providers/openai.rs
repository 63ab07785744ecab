//! The OpenAI chat-completions wire format, which most self-hosted and proxy
//! servers also speak.

use serde::Deserialize;
use serde_json::json;

use super::sse::SseEvent;
use super::{
    ChatRequest, Decoded, ProviderError, Reported, clamp_temperature, saturating_u32, stream_error,
    wire_turns,
};

pub(super) const PATH: &str = "chat/completions";

/// Where compatible servers part ways on the request's fields, told by the
/// endpoint's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    /// api.openai.com: `max_tokens` is refused by its reasoning models (o-series,
    /// gpt-5), which take `max_completion_tokens`; every model takes that.
    OpenAi,
    /// api.mistral.ai refuses unknown fields (`stream_options`) and reports
    /// usage in the last chunk without being asked.
    Mistral,
    /// vLLM, Ollama, llama.cpp server, LiteLLM and other proxies: `max_tokens`,
    /// and usage only when asked for.
    Compatible,
}

impl Dialect {
    pub(super) fn of(endpoint: &reqwest::Url) -> Self {
        let host = endpoint.host_str().unwrap_or_default().to_ascii_lowercase();
        let on = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
        if on("api.openai.com") {
            Self::OpenAi
        } else if on("mistral.ai") {
            Self::Mistral
        } else {
            Self::Compatible
        }
    }
}

pub(super) fn request_body(
    model: &str,
    request: &ChatRequest,
    dialect: Dialect,
) -> serde_json::Value {
    let mut messages = Vec::with_capacity(request.turns.len() + 1);
    if !request.system.trim().is_empty() {
        messages.push(json!({"role": "system", "content": request.system}));
    }
    messages.extend(
        wire_turns(&request.turns)
            .into_iter()
            .map(|turn| json!({"role": turn.role.as_str(), "content": turn.content})),
    );
    let mut body = json!({
        "model": model,
        "messages": messages,
        "stream": true,
    });
    // OpenAI's reasoning models refuse any temperature but the default with a
    // 400, which would turn every reply into the builtin fallback.
    if !(dialect == Dialect::OpenAi && takes_no_temperature(model)) {
        body["temperature"] = json!(clamp_temperature(request.temperature, 2.0));
    }
    let limit = json!(request.max_tokens.max(1));
    match dialect {
        Dialect::OpenAi => body["max_completion_tokens"] = limit,
        Dialect::Mistral | Dialect::Compatible => body["max_tokens"] = limit,
    }
    if dialect != Dialect::Mistral {
        // Without this the stream carries no token counts at all.
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// OpenAI's reasoning models (o1, o3, o4-mini, gpt-5 and its minis) take only
/// the default temperature; the gpt-5 chat models take any.
fn takes_no_temperature(model: &str) -> bool {
    let reasoning_o = model
        .strip_prefix('o')
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
    let gpt5 = model.starts_with("gpt-5") && !model.contains("-chat");
    reasoning_o || gpt5
}

// Every field optional: compatible servers differ in what they fill in, and
// e.g. the final usage chunk has an empty `choices`.
#[derive(Deserialize)]
struct Chunk {
    choices: Option<Vec<Choice>>,
    usage: Option<ChunkUsage>,
    error: Option<ErrorField>,
}

/// OpenAI's object, or the bare message some compatible servers send
/// (`{"error": "model not found"}`, as Ollama and LiteLLM do).
#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Detailed(ApiError),
    Text(String),
}

#[derive(Deserialize)]
struct Choice {
    delta: Option<Delta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
}

#[derive(Deserialize)]
struct ChunkUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ApiError {
    message: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<serde_json::Value>,
}

#[derive(Debug, Default)]
pub(super) struct Decoder {
    finished: bool,
    input_tokens: Option<u32>,
    output_tokens: Option<u32>,
}

impl super::Decoder for Decoder {
    fn event(&mut self, event: SseEvent) -> Result<Decoded, ProviderError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            return Ok(Decoded::Done);
        }
        if data.is_empty() {
            return Ok(Decoded::Nothing);
        }
        let value: serde_json::Value = serde_json::from_str(data)
            .map_err(|e| ProviderError::Malformed(format!("an event was not JSON ({e})")))?;
        let chunk: Chunk = serde_json::from_value(value).map_err(|e| {
            ProviderError::Malformed(format!(
                "an event had an unexpected shape ({})",
                super::clip(&e.to_string())
            ))
        })?;
        match chunk.error {
            Some(ErrorField::Detailed(error)) => {
                // Some servers put the code where OpenAI puts the type.
                let code = error.code.as_ref().and_then(serde_json::Value::as_str);
                return Err(stream_error(
                    error.kind.as_deref().or(code),
                    error.message.as_deref(),
                ));
            }
            Some(ErrorField::Text(message)) => return Err(stream_error(None, Some(&message))),
            None => {}
        }
        if let Some(usage) = chunk.usage {
            self.input_tokens = usage
                .prompt_tokens
                .map(saturating_u32)
                .or(self.input_tokens);
            self.output_tokens = usage
                .completion_tokens
                .map(saturating_u32)
                .or(self.output_tokens);
        }
        let Some(choice) = chunk.choices.and_then(|c| c.into_iter().next()) else {
            return Ok(Decoded::Nothing);
        };
        if choice.finish_reason.is_some() {
            self.finished = true;
        }
        Ok(choice
            .delta
            .and_then(|d| d.content)
            .map_or(Decoded::Nothing, Decoded::Text))
    }

    fn finished(&self) -> bool {
        self.finished
    }

    fn reported(&self, _cut_short: bool) -> Reported {
        // OpenAI reports usage once, at the end, so a cut-short stream simply has none.
        Reported {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::test_server::{
        collect, collect_costed, hang, pieces, request, serve, sse_chunked, sse_then_stall,
        sse_until_close, status,
    };
    use super::super::{Decoder as _, ProviderError, ProviderKind, Usage, estimate_tokens, stage};
    use super::*;

    fn chunk(content: &str) -> String {
        format!(
            "data: {}\n\n",
            json!({"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":content},"finish_reason":null}]})
        )
    }

    fn finish() -> String {
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
            .to_owned()
    }

    fn usage(input: u32, output: u32) -> String {
        format!(
            "data: {{\"id\":\"c1\",\"choices\":[],\"usage\":{{\"prompt_tokens\":{input},\"completion_tokens\":{output},\"total_tokens\":{}}}}}\n\n",
            input + output
        )
    }

    fn full_stream(parts: &[&str]) -> String {
        let mut s = String::from(": keep-alive\n\n");
        s.push_str("data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n");
        for p in parts {
            s.push_str(&chunk(p));
        }
        s.push_str(&finish());
        s.push_str(&usage(31, 7));
        s.push_str("data: [DONE]\n\n");
        s
    }

    fn decode(data: &str) -> Result<Decoded, ProviderError> {
        Decoder::default().event(SseEvent {
            event: None,
            data: data.into(),
        })
    }

    fn dialect(url: &str) -> Dialect {
        Dialect::of(&reqwest::Url::parse(url).unwrap())
    }

    #[test]
    fn each_server_gets_the_fields_it_takes() {
        assert_eq!(
            dialect("https://api.openai.com/v1/chat/completions"),
            Dialect::OpenAi
        );
        assert_eq!(
            dialect("https://api.mistral.ai/v1/chat/completions"),
            Dialect::Mistral
        );
        assert_eq!(
            dialect("http://127.0.0.1:11434/v1/chat/completions"),
            Dialect::Compatible
        );
        assert_eq!(
            dialect("https://api.openai.com.evil.test/v1"),
            Dialect::Compatible
        );

        let openai = request_body("gpt-5-mini", &request(), Dialect::OpenAi);
        assert_eq!(openai["max_completion_tokens"], 256);
        assert!(openai.get("max_tokens").is_none());
        assert_eq!(openai["stream_options"]["include_usage"], true);
        assert!(openai.get("temperature").is_none(), "{openai}");
        for model in ["o1", "o3-mini", "o4-mini", "gpt-5"] {
            let body = request_body(model, &request(), Dialect::OpenAi);
            assert!(body.get("temperature").is_none(), "{model}");
        }
        for model in ["gpt-4o-mini", "gpt-5-chat-latest", "omni-local"] {
            let body = request_body(model, &request(), Dialect::OpenAi);
            assert!(body["temperature"].is_number(), "{model}");
        }
        // Elsewhere a model name means nothing about the fields it takes.
        let ollama = request_body("o3-mini", &request(), Dialect::Compatible);
        assert!(ollama["temperature"].is_number());
        let mistral = request_body("mistral-small-latest", &request(), Dialect::Mistral);
        assert_eq!(mistral["max_tokens"], 256);
        assert!(mistral.get("stream_options").is_none());
    }

    #[test]
    fn body_has_system_first_and_streams_with_usage() {
        let body = request_body("gpt-4o-mini", &request(), Dialect::Compatible);
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["max_tokens"], 256);
        assert_eq!(body["temperature"], 0.3);
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 4);
        assert_eq!(
            messages[0],
            json!({"role":"system","content":"You are the front desk of Hotel Test."})
        );
        assert_eq!(messages[1], json!({"role":"user","content":"Hi"}));
        assert_eq!(messages[2]["role"], "assistant");
        assert_eq!(messages[3]["content"], "Do you have parking?");
    }

    #[test]
    fn empty_system_prompt_is_left_out() {
        let mut r = request();
        r.system = "  ".into();
        r.temperature = 9.0;
        let body = request_body("m", &r, Dialect::Compatible);
        assert_eq!(body["messages"][0]["role"], "user");
        assert_eq!(body["temperature"], 2.0);
    }

    #[test]
    fn decoder_cases() {
        assert!(matches!(decode("[DONE]"), Ok(Decoded::Done)));
        assert!(matches!(
            decode("{\"error\":\"model 'llama9' not found\"}"),
            Err(ProviderError::Status { status: 500, message }) if message.contains("llama9")
        ));
        assert!(matches!(decode(chunk("hi")[6..].trim()), Ok(Decoded::Text(t)) if t == "hi"));
        assert!(matches!(
            decode("{\"choices\":[{\"delta\":{\"content\":null}}]}"),
            Ok(Decoded::Nothing)
        ));
        assert!(matches!(
            decode("{\"choices\":null,\"usage\":null}"),
            Ok(Decoded::Nothing)
        ));
        assert!(matches!(
            decode("not json"),
            Err(ProviderError::Malformed(_))
        ));
        assert!(matches!(
            decode("{\"choices\":\"x\"}"),
            Err(ProviderError::Malformed(_))
        ));
        assert!(matches!(
            decode(
                "{\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}"
            ),
            Err(ProviderError::Status { status: 500, .. })
        ));
        assert!(matches!(
            decode("{\"error\":{\"message\":\"slow down\",\"code\":\"rate_limit_exceeded\"}}"),
            Err(ProviderError::RateLimited)
        ));
    }

    #[tokio::test]
    async fn streams_many_small_writes_in_order_with_usage() {
        let text = ["Yes", ", we have ", "parking ", "— 12 € a night", " 🚗."];
        // 7-byte pieces cut through "—", "€" and "🚗".
        let server = serve(vec![sse_chunked(
            pieces(full_stream(&text).as_bytes(), 7),
            true,
        )])
        .await;
        let (got, count, result) =
            collect(&server.provider(ProviderKind::OpenAi), &request()).await;
        assert_eq!(got, text.concat());
        assert_eq!(count, text.len());
        assert_eq!(
            result.unwrap(),
            Usage {
                input_tokens: 31,
                output_tokens: 7
            }
        );
        assert_eq!(server.received().len(), 1);
    }

    #[tokio::test]
    async fn request_line_headers_and_body_are_right() {
        let server = serve(vec![sse_chunked(
            vec![full_stream(&["ok"]).into_bytes()],
            true,
        )])
        .await;
        let (_, _, result) = collect(&server.provider(ProviderKind::OpenAi), &request()).await;
        result.unwrap();
        let received = server.received();
        let r = &received[0];
        assert_eq!(r.request_line, "POST /v1/chat/completions HTTP/1.1");
        assert_eq!(r.header("authorization"), Some("Bearer sk-test-secret-key"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("accept"), Some("text/event-stream"));
        assert_eq!(r.header("x-api-key"), None);
        let body = r.json();
        assert_eq!(body["model"], "test-model");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(
            body["messages"][0]["content"],
            "You are the front desk of Hotel Test."
        );
        assert_eq!(body["messages"].as_array().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn base_url_with_v1_and_no_key() {
        let server = serve(vec![sse_chunked(
            vec![full_stream(&["ok"]).into_bytes()],
            true,
        )])
        .await;
        let mut settings = server.settings("local");
        settings.base_url = format!("{}/v1/", server.base_url);
        settings.api_key = None;
        let provider = super::super::RemoteProvider::new(ProviderKind::OpenAi, settings).unwrap();
        let (got, _, result) = collect(&provider, &request()).await;
        result.unwrap();
        assert_eq!(got, "ok");
        let r = &server.received()[0];
        assert_eq!(r.request_line, "POST /v1/chat/completions HTTP/1.1");
        assert_eq!(r.header("authorization"), None);
    }

    #[tokio::test]
    async fn crlf_comments_multiline_data_and_close_delimited_body() {
        let stream = ": keep-alive\r\n\r\n\
            data: {\"choices\":[{\"delta\":\r\ndata: {\"content\":\"Hel\"}}]}\r\n\r\n\
            : ping\r\n\
            data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\r\n\r\n\
            data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\r\n\r\n\
            data: [DONE]\r\n\r\n";
        let server = serve(vec![sse_until_close(pieces(stream.as_bytes(), 3))]).await;
        let (got, _, result) = collect(&server.provider(ProviderKind::OpenAi), &request()).await;
        assert_eq!(got, "Hello");
        // No usage chunk: both counts are estimated.
        let usage = result.unwrap();
        assert_eq!(usage.output_tokens, 2);
        assert!(usage.input_tokens > 10);
    }

    #[tokio::test]
    async fn finish_reason_without_done_is_complete() {
        let mut stream = chunk("All done");
        stream.push_str(&finish());
        let server = serve(vec![sse_until_close(vec![stream.into_bytes()])]).await;
        let (got, _, result) = collect(&server.provider(ProviderKind::OpenAi), &request()).await;
        assert_eq!(got, "All done");
        result.unwrap();
    }

    #[tokio::test]
    async fn retries_429_honouring_retry_after() {
        let server = serve(vec![
            status(
                "429 Too Many Requests",
                &[("Retry-After", "1"), ("Content-Type", "application/json")],
                r#"{"error":{"message":"Rate limit reached","type":"requests"}}"#,
            ),
            sse_chunked(vec![full_stream(&["after wait"]).into_bytes()], true),
        ])
        .await;
        let started = Instant::now();
        let (got, _, result) = collect(&server.provider(ProviderKind::OpenAi), &request()).await;
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
    async fn too_long_retry_after_is_not_waited_for() {
        let server = serve(vec![status(
            "429 Too Many Requests",
            &[("Retry-After", "60")],
            "",
        )])
        .await;
        let started = Instant::now();
        let (_, _, result) = collect(&server.provider(ProviderKind::OpenAi), &request()).await;
        assert!(
            matches!(result, Err(ProviderError::RateLimited)),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(server.received().len(), 1);
    }

    #[tokio::test]
    async fn retries_500_twice_then_succeeds() {
        let server = serve(vec![
            status("500 Internal Server Error", &[], "oops"),
            status(
                "503 Service Unavailable",
                &[],
                r#"{"error":{"message":"busy"}}"#,
            ),
            sse_chunked(vec![full_stream(&["third time"]).into_bytes()], true),
        ])
        .await;
        let (got, _, result) = collect(&server.provider(ProviderKind::OpenAi), &request()).await;
        assert_eq!(got, "third time");
        result.unwrap();
        assert_eq!(server.received().len(), 3);
    }

    #[tokio::test]
    async fn retries_run_out_on_persistent_5xx() {
        let busy = || status("502 Bad Gateway", &[], "");
        let server = serve(vec![busy(), busy(), busy(), busy()]).await;
        let (_, _, result) = collect(&server.provider(ProviderKind::OpenAi), &request()).await;
        match result {
            Err(ProviderError::Status {
                status: 502,
                message,
            }) => assert_eq!(message, "Bad Gateway"),
            other => panic!("{other:?}"),
        }
        assert_eq!(server.received().len(), 3);
    }

    #[tokio::test]
    async fn bad_request_reports_message_without_retry() {
        let server = serve(vec![status(
            "400 Bad Request",
            &[("Content-Type", "application/json")],
            r#"{"error":{"message":"The model `nope` does not exist","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#,
        )])
        .await;
        let (_, _, result) = collect(&server.provider(ProviderKind::OpenAi), &request()).await;
        match result {
            Err(ProviderError::Status {
                status: 400,
                message,
            }) => {
                assert_eq!(message, "The model `nope` does not exist");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(server.received().len(), 1);
    }

    #[tokio::test]
    async fn unauthorized_is_not_retried_and_hides_the_key() {
        let server = serve(vec![status(
            "401 Unauthorized",
            &[],
            r#"{"error":{"message":"Incorrect API key provided: sk-test-secret-key. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error"}}"#,
        )])
        .await;
        let (_, _, result) = collect(&server.provider(ProviderKind::OpenAi), &request()).await;
        let err = result.unwrap_err();
        assert!(
            matches!(err, ProviderError::Status { status: 401, .. }),
            "{err:?}"
        );
        assert!(!err.to_string().contains("sk-test-secret-key"), "{err}");
        assert_eq!(server.received().len(), 1);
    }

    #[tokio::test]
    async fn non_json_data_is_malformed() {
        let mut stream = chunk("Hi");
        stream.push_str("data: <html>oops</html>\n\n");
        let server = serve(vec![sse_chunked(vec![stream.into_bytes()], true)]).await;
        let (got, _, result) = collect(&server.provider(ProviderKind::OpenAi), &request()).await;
        assert_eq!(got, "Hi");
        assert!(
            matches!(result, Err(ProviderError::Malformed(_))),
            "{result:?}"
        );
        assert_eq!(server.received().len(), 1);
    }

    #[tokio::test]
    async fn json_instead_of_a_stream_is_malformed() {
        let server = serve(vec![status(
            "200 OK",
            &[("Content-Type", "application/json")],
            r#"{"choices":[{"message":{"content":"hi"}}]}"#,
        )])
        .await;
        let (_, _, result) = collect(&server.provider(ProviderKind::OpenAi), &request()).await;
        assert!(
            matches!(result, Err(ProviderError::Malformed(_))),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn stream_cut_after_text_is_interrupted() {
        let stream = format!("{}{}", chunk("Half an ans"), chunk("wer"));
        // Chunked without the final chunk: the connection closes mid-body.
        let server = serve(vec![sse_chunked(pieces(stream.as_bytes(), 16), false)]).await;
        let (got, _, result) = collect(&server.provider(ProviderKind::OpenAi), &request()).await;
        assert_eq!(got, "Half an answer");
        assert!(
            matches!(result, Err(ProviderError::Interrupted(_))),
            "{result:?}"
        );
        assert_eq!(server.received().len(), 1, "no retry after text was sent");
    }

    /// The estimate for `request()`'s prompt, as a failure without counts uses.
    fn prompt_estimate() -> u32 {
        let r = request();
        estimate_tokens(
            r.system.chars().count()
                + r.turns
                    .iter()
                    .map(|t| t.content.chars().count())
                    .sum::<usize>(),
        )
    }

    #[tokio::test]
    async fn a_reply_cut_after_text_still_costs_its_tokens() {
        let server = serve(vec![sse_until_close(vec![
            chunk("Half an answer").into_bytes(),
        ])])
        .await;
        let (_, _, result) =
            collect_costed(&server.provider(ProviderKind::OpenAi), &request()).await;
        let failed = result.unwrap_err();
        assert!(
            matches!(failed.error, ProviderError::Interrupted(_)),
            "{failed:?}"
        );
        assert_eq!(
            failed.spent,
            Some(Usage {
                input_tokens: prompt_estimate(),
                output_tokens: estimate_tokens("Half an answer".len()),
            })
        );
    }

    #[tokio::test]
    async fn a_refused_request_costs_nothing() {
        let server = serve(vec![status(
            "400 Bad Request",
            &[("Content-Type", "application/json")],
            r#"{"error":{"message":"no"}}"#,
        )])
        .await;
        let (_, _, result) =
            collect_costed(&server.provider(ProviderKind::OpenAi), &request()).await;
        assert_eq!(result.unwrap_err().spent, None);
    }

    #[tokio::test]
    async fn an_answer_that_broke_before_its_text_and_was_retried_adds_its_prompt() {
        let server = serve(vec![
            sse_until_close(vec![]),
            sse_chunked(vec![full_stream(&["Hello"]).into_bytes()], true),
        ])
        .await;
        let (got, _, result) =
            collect_costed(&server.provider(ProviderKind::OpenAi), &request()).await;
        assert_eq!(got, "Hello");
        assert_eq!(server.received().len(), 2);
        assert_eq!(
            result.unwrap(),
            Usage {
                input_tokens: 31 + prompt_estimate(),
                output_tokens: 7,
            }
        );
    }

    #[tokio::test]
    async fn a_reply_cut_by_the_total_deadline_costs_what_it_sent() {
        use super::super::test_server::Step;
        let mut steps = sse_until_close(vec![chunk("tick ").into_bytes()]);
        steps.push(Step::Hang);
        let server = serve(vec![steps]).await;
        let mut settings = server.settings("m");
        settings.idle_timeout = Duration::from_secs(5);
        settings.total_timeout = Duration::from_millis(400);
        let provider = super::super::RemoteProvider::new(ProviderKind::OpenAi, settings).unwrap();
        let (_, _, result) = collect_costed(&provider, &request()).await;
        let failed = result.unwrap_err();
        assert!(
            matches!(failed.error, ProviderError::Timeout(s) if s == stage::TOTAL),
            "{failed:?}"
        );
        assert_eq!(
            failed.spent,
            Some(Usage {
                input_tokens: prompt_estimate(),
                output_tokens: estimate_tokens("tick ".len()),
            })
        );
    }

    #[tokio::test]
    async fn close_delimited_stream_ending_early_is_interrupted() {
        let server = serve(vec![sse_until_close(vec![chunk("Partial").into_bytes()])]).await;
        let (got, _, result) = collect(&server.provider(ProviderKind::OpenAi), &request()).await;
        assert_eq!(got, "Partial");
        assert!(
            matches!(result, Err(ProviderError::Interrupted(_))),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn silent_server_times_out_waiting_for_first_byte() {
        let server = serve(vec![hang()]).await;
        let mut settings = server.settings("m");
        settings.max_retries = 0;
        let provider = super::super::RemoteProvider::new(ProviderKind::OpenAi, settings).unwrap();
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
    async fn first_byte_timeouts_are_retried() {
        let server = serve(vec![
            hang(),
            sse_chunked(vec![full_stream(&["second try"]).into_bytes()], true),
        ])
        .await;
        let (got, _, result) = collect(&server.provider(ProviderKind::OpenAi), &request()).await;
        assert_eq!(got, "second try");
        result.unwrap();
    }

    #[tokio::test]
    async fn stall_mid_stream_is_an_idle_timeout() {
        let server = serve(vec![sse_then_stall(vec![chunk("Let me ch").into_bytes()])]).await;
        let started = Instant::now();
        let (got, _, result) = collect(&server.provider(ProviderKind::OpenAi), &request()).await;
        assert_eq!(got, "Let me ch");
        assert!(
            matches!(result, Err(ProviderError::Timeout(s)) if s == stage::IDLE),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(server.received().len(), 1);
    }

    #[tokio::test]
    async fn a_trickle_inside_the_idle_timeout_still_ends_at_the_total_deadline() {
        use super::super::test_server::Step;
        // A piece every 100 ms, well inside the 300 ms idle timeout, forever.
        let mut steps = sse_until_close(vec![]);
        for _ in 0..100 {
            steps.push(Step::Write(chunk("tick ").into_bytes()));
            steps.push(Step::Pause(Duration::from_millis(100)));
        }
        let server = serve(vec![steps]).await;
        let mut settings = server.settings("m");
        settings.total_timeout = Duration::from_millis(700);
        let provider = super::super::RemoteProvider::new(ProviderKind::OpenAi, settings).unwrap();
        let started = Instant::now();
        let (got, _, result) = collect(&provider, &request()).await;
        let elapsed = started.elapsed();
        assert!(
            matches!(result, Err(ProviderError::Timeout(s)) if s == stage::TOTAL),
            "{result:?}"
        );
        assert!(
            got.starts_with("tick "),
            "what arrived was passed on: {got:?}"
        );
        assert!(
            elapsed >= Duration::from_millis(690) && elapsed < Duration::from_secs(2),
            "{elapsed:?}"
        );
    }

    #[tokio::test]
    async fn listener_going_away_stops_reading() {
        let mut parts = vec![chunk("first").into_bytes()];
        parts.extend((0..50).map(|_| chunk("more").into_bytes()));
        let server = serve(vec![sse_then_stall(parts)]).await;
        // A long idle timeout, so only stopping early can make this quick.
        let mut settings = server.settings("m");
        settings.idle_timeout = Duration::from_secs(5);
        let provider = super::super::RemoteProvider::new(ProviderKind::OpenAi, settings).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let reader = tokio::spawn(async move {
            let first = rx.recv().await;
            drop(rx);
            first
        });
        let started = Instant::now();
        let usage = provider.stream(&request(), tx).await.unwrap();
        assert_eq!(reader.await.unwrap().as_deref(), Some("first"));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(usage.output_tokens >= 2);
    }
}

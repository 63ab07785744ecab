//! Logging setup and the request middleware: correlation ids, one line per
//! request, and the request metrics.

pub mod metrics;

use std::time::Instant;

use actix_web::HttpMessage as _;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::LogFormat;

pub const CORRELATION_HEADER: HeaderName = HeaderName::from_static("x-correlation-id");

/// The id that ties a request's log lines, error body and response header together.
#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

impl CorrelationId {
    /// Keeps an incoming id only if it is short and plain, so a client cannot
    /// inject log lines or oversized headers through it.
    fn from_request(req: &ServiceRequest) -> Self {
        req.headers()
            .get(&CORRELATION_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| is_valid_id(v))
            .map(|v| Self(v.to_string()))
            .unwrap_or_else(Self::generate)
    }

    /// The id given to `req` (empty outside the middleware that gives one).
    pub fn of(req: &impl actix_web::HttpMessage) -> String {
        req.extensions()
            .get::<Self>()
            .map(|c| c.0.clone())
            .unwrap_or_default()
    }

    pub fn generate() -> Self {
        Self(hex::encode(rand::random::<[u8; 16]>()))
    }
}

fn is_valid_id(value: &str) -> bool {
    (8..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Installs the global subscriber: JSON lines for machines, readable lines for people.
pub fn init(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let base = tracing_subscriber::registry().with(filter);
    let not_dispatcher = filter_fn(|meta| !closed_by_dispatcher(meta));
    // A second init (tests start many apps in one process) is harmless.
    let _ = match format {
        LogFormat::Json => base
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stdout)
                    .json()
                    .flatten_event(true)
                    // The request span carries the correlation id into every line
                    // logged while the request runs (a probe's failure, say).
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_filter(not_dispatcher),
            )
            .with(ClientFaults)
            .try_init(),
        LogFormat::Pretty => base
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stdout)
                    .compact()
                    .with_target(false)
                    .with_filter(not_dispatcher),
            )
            .with(ClientFaults)
            .try_init(),
    };
}

/// An ERROR of actix-http's connection loop: a request it could not parse, a
/// client that hung up mid-body.
fn closed_by_dispatcher(meta: &tracing::Metadata<'_>) -> bool {
    meta.target() == "actix_http::h1::dispatcher" && *meta.level() == tracing::Level::ERROR
}

/// actix-http logs at ERROR every connection it closes over a malformed
/// request, answered 400 before any handler saw it: the client's doing, yet
/// every port scanner would page whoever alerts on errors. Told again as WARN.
/// It must come after the writing layer: an event logged from within another
/// is only filtered right once the outer one was written.
struct ClientFaults;

impl<S: tracing::Subscriber> Layer<S> for ClientFaults {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if closed_by_dispatcher(event.metadata()) {
            let mut message = Message::default();
            event.record(&mut message);
            tracing::warn!(reason = %message.0, "connection closed over a malformed request");
        }
    }
}

/// An event's `message` field, as text.
#[derive(Default)]
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

/// Threshold for the slow-request warning, shared through app data.
#[derive(Debug, Clone, Copy)]
pub struct SlowRequestMs(pub u64);

/// Middleware: assigns the correlation id, runs the request inside a span carrying
/// it, echoes it in `X-Correlation-Id`, and writes the request line.
pub async fn request_log(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = CorrelationId::from_request(&req);
    let slow_ms = req
        .app_data::<actix_web::web::Data<SlowRequestMs>>()
        .map(|s| s.0)
        .unwrap_or(1000);
    let method = req.method().clone();
    let path = req.path().to_string();
    req.extensions_mut().insert(id.clone());

    let span = tracing::info_span!("request", correlation_id = %id.0);
    let result = next.call(req).instrument(span).await;

    let elapsed = started.elapsed();
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    let latency_ms = (latency_ms * 100.0).round() / 100.0;
    let mut res = match result {
        Ok(res) => res,
        Err(e) => {
            // An error a middleware returned becomes the client's response
            // further out (without the request, which routing needed to itself,
            // it cannot be turned into one here): it still gets its line.
            let status = e.as_response_error().status_code().as_u16();
            tracing::info!(%method, path, status, latency_ms, correlation_id = %id.0, "request");
            return Err(e);
        }
    };
    let status = res.status().as_u16();
    if let Some(metrics) = res
        .request()
        .app_data::<actix_web::web::Data<metrics::Metrics>>()
    {
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| metrics::UNMATCHED_ROUTE.to_string());
        metrics.http_request(&method, route, status, elapsed);
    }
    if let Ok(value) = HeaderValue::from_str(&id.0) {
        res.headers_mut().insert(CORRELATION_HEADER, value);
    }
    if latency_ms > slow_ms as f64 {
        tracing::warn!(
            %method, path, status, latency_ms, correlation_id = %id.0, slow_request_ms = slow_ms,
            "slow request"
        );
    } else {
        tracing::info!(%method, path, status, latency_ms, correlation_id = %id.0, "request");
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::is_valid_id;

    #[test]
    fn accepts_plain_ids_and_refuses_injection() {
        assert!(is_valid_id("3f2a9c1e-77aa-4c2b-9d1e-0d9f6c1b2a3e"));
        assert!(!is_valid_id("short"));
        assert!(!is_valid_id("abc\ndef-injected-line"));
        assert!(!is_valid_id(&"a".repeat(65)));
    }
}

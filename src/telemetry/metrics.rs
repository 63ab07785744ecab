//! Counters and latency histograms of this process, exported as Prometheus text
//! (`GET /metrics`) and as JSON (`GET /metrics/json`) from the same atomics.
//!
//! Kept deliberately small instead of a global recorder: every series is known
//! here, labels are bounded (routes are actix match patterns, never raw paths),
//! and recording is a map read plus a few relaxed atomic adds.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix_web::http::Method;
use serde::Serialize;

use crate::services::jobs::{JobCounters, JobMetrics};

/// Upper bounds in seconds, from a fast probe to a slow provider reply.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram with the fixed [`BUCKETS`] (plus +Inf).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        // Buckets are stored non-cumulative; rendering adds them up.
        if let Some(i) = BUCKETS.iter().position(|&le| seconds <= le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                running += b.load(Ordering::Relaxed);
                running
            })
            .collect();
        HistogramSnapshot {
            count: self.count.load(Ordering::Relaxed),
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            cumulative,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistogramSnapshot {
    pub count: u64,
    pub sum_seconds: f64,
    /// Observations at or under each of [`BUCKETS`], in order.
    pub cumulative: Vec<u64>,
}

impl HistogramSnapshot {
    /// The bucket bound under which `q` of the observations fall (an upper
    /// estimate, as Prometheus' `histogram_quantile` would give without interpolation).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q * self.count as f64).ceil() as u64;
        Some(
            BUCKETS
                .iter()
                .zip(&self.cumulative)
                .find(|(_, n)| **n >= rank)
                .map(|(le, _)| *le)
                .unwrap_or(f64::INFINITY),
        )
    }
}

/// Histograms keyed by their labels, created on first use.
#[derive(Debug)]
struct Family<K>(RwLock<HashMap<K, Arc<Histogram>>>);

impl<K> Default for Family<K> {
    fn default() -> Self {
        Self(RwLock::new(HashMap::new()))
    }
}

impl<K: Hash + Eq + Clone + Ord> Family<K> {
    fn get(&self, key: &K) -> Arc<Histogram> {
        if let Some(h) = self.0.read().unwrap_or_else(|p| p.into_inner()).get(key) {
            return h.clone();
        }
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone()
    }

    /// Sorted by key, so the output is stable from one scrape to the next.
    fn snapshot(&self) -> Vec<(K, HistogramSnapshot)> {
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = map.iter().map(|(k, h)| (k.clone(), h.snapshot())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// Built once per request from parts the request already owns: the route
/// pattern actix hands out as a new `String`, and a static method name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct HttpKey {
    route: String,
    method: &'static str,
    status: u16,
}

/// Standard methods by name; anything else is `OTHER`, so made-up methods
/// cannot grow the set of series.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN
        .iter()
        .find(|(m, _)| m == method)
        .map_or("OTHER", |(_, name)| name)
}

/// Stripe webhook deliveries and what their processing came to.
#[derive(Debug, Default)]
pub struct WebhookMetrics {
    pub stored: AtomicU64,
    pub duplicate: AtomicU64,
    pub rejected: AtomicU64,
    pub processed: AtomicU64,
    pub ignored: AtomicU64,
    pub unmatched: AtomicU64,
    pub failed: AtomicU64,
}

impl WebhookMetrics {
    /// Counts a processing outcome by the state the event was left in.
    pub fn outcome(&self, state: &str) {
        let counter = match state {
            "processed" => &self.processed,
            "ignored" => &self.ignored,
            "unmatched" => &self.unmatched,
            _ => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> WebhookCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WebhookCounters {
            stored: get(&self.stored),
            duplicate: get(&self.duplicate),
            rejected: get(&self.rejected),
            processed: get(&self.processed),
            ignored: get(&self.ignored),
            unmatched: get(&self.unmatched),
            failed: get(&self.failed),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct WebhookCounters {
    pub stored: u64,
    pub duplicate: u64,
    pub rejected: u64,
    pub processed: u64,
    pub ignored: u64,
    pub unmatched: u64,
    pub failed: u64,
}

/// Everything this process counts. One per process, shared by the HTTP workers,
/// the job workers and the chat engine.
#[derive(Debug, Default)]
pub struct Metrics {
    http: Family<HttpKey>,
    chat: Family<String>,
    /// Model tokens by (provider, purpose): `[input, output]`.
    tokens: RwLock<HashMap<(String, &'static str), [u64; 2]>>,
    pub jobs: JobMetrics,
    pub webhooks: WebhookMetrics,
}

/// Values read at scrape time from outside this module (pool, queue, process).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Gauges {
    pub uptime_seconds: f64,
    pub resident_memory_bytes: Option<u64>,
    pub pool_connections: u32,
    pub pool_idle: u32,
    pub pool_max: u32,
    /// `None` when the queue could not be read (database down, migrations pending).
    pub queue: Option<QueueGauges>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueGauges {
    pub due: i64,
    pub running: i64,
    pub dead: i64,
    pub oldest_due_age_seconds: i64,
}

/// The JSON form of a scrape.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Upper bounds (seconds) of the histogram buckets every `cumulative` refers to.
    pub buckets: &'static [f64],
    pub gauges: Gauges,
    pub http: Vec<HttpSeries>,
    pub chat: Vec<ChatSeries>,
    pub tokens: Vec<TokenSeries>,
    pub jobs: JobCounters,
    pub webhooks: WebhookCounters,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpSeries {
    pub method: String,
    pub route: String,
    pub status: u16,
    pub p50_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
    #[serde(flatten)]
    pub latency: HistogramSnapshot,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatSeries {
    pub provider: String,
    pub p50_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
    #[serde(flatten)]
    pub latency: HistogramSnapshot,
}

/// Tokens a remote model reported (or, where it did not, estimated) for one
/// provider and purpose (`reply`, `summary`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenSeries {
    pub provider: String,
    pub purpose: &'static str,
    pub input: u64,
    pub output: u64,
}

/// Requests that matched no route share one label, so scanners cannot grow the
/// set of series without bound.
pub const UNMATCHED_ROUTE: &str = "unmatched";

impl Metrics {
    pub fn http_request(&self, method: &Method, route: String, status: u16, elapsed: Duration) {
        self.http
            .get(&HttpKey {
                route,
                method: method_label(method),
                status,
            })
            .observe(elapsed);
    }

    /// One agent reply, from the visitor's message to the stored answer.
    pub fn chat_turn(&self, provider: &str, elapsed: Duration) {
        self.chat.get(&provider.to_string()).observe(elapsed);
    }

    /// Tokens one model call used; `purpose` is a fixed label (`reply`, `summary`).
    pub fn llm_tokens(&self, provider: &str, purpose: &'static str, input: u32, output: u32) {
        let mut map = self.tokens.write().unwrap_or_else(|p| p.into_inner());
        let counts = map.entry((provider.to_string(), purpose)).or_default();
        counts[0] += u64::from(input);
        counts[1] += u64::from(output);
    }

    pub fn report(&self, gauges: Gauges) -> Report {
        Report {
            buckets: &BUCKETS,
            gauges,
            http: self
                .http
                .snapshot()
                .into_iter()
                .map(|(k, latency)| HttpSeries {
                    method: k.method.to_string(),
                    route: k.route,
                    status: k.status,
                    p50_seconds: latency.quantile(0.5),
                    p95_seconds: latency.quantile(0.95),
                    p99_seconds: latency.quantile(0.99),
                    latency,
                })
                .collect(),
            chat: self
                .chat
                .snapshot()
                .into_iter()
                .map(|(provider, latency)| ChatSeries {
                    provider,
                    p50_seconds: latency.quantile(0.5),
                    p95_seconds: latency.quantile(0.95),
                    latency,
                })
                .collect(),
            tokens: {
                let map = self.tokens.read().unwrap_or_else(|p| p.into_inner());
                let mut all: Vec<TokenSeries> = map
                    .iter()
                    .map(|((provider, purpose), [input, output])| TokenSeries {
                        provider: provider.clone(),
                        purpose,
                        input: *input,
                        output: *output,
                    })
                    .collect();
                all.sort_by(|a, b| (&a.provider, a.purpose).cmp(&(&b.provider, b.purpose)));
                all
            },
            jobs: self.jobs.snapshot(),
            webhooks: self.webhooks.snapshot(),
        }
    }
}

impl Report {
    /// The Prometheus text exposition format (version 0.0.4).
    pub fn to_prometheus(&self) -> String {
        let mut out = String::with_capacity(4096 + self.http.len() * 1024);
        let g = &self.gauges;
        gauge(
            &mut out,
            "frontdesk_uptime_seconds",
            "Seconds since this process started.",
            g.uptime_seconds,
        );
        if let Some(rss) = g.resident_memory_bytes {
            gauge(
                &mut out,
                "frontdesk_resident_memory_bytes",
                "Resident set size of this process.",
                rss as f64,
            );
        }
        gauge(
            &mut out,
            "frontdesk_db_pool_connections",
            "Open database connections in the pool.",
            f64::from(g.pool_connections),
        );
        gauge(
            &mut out,
            "frontdesk_db_pool_idle_connections",
            "Idle database connections in the pool.",
            f64::from(g.pool_idle),
        );
        gauge(
            &mut out,
            "frontdesk_db_pool_max_connections",
            "Largest size the pool may grow to.",
            f64::from(g.pool_max),
        );
        if let Some(q) = &g.queue {
            gauge(
                &mut out,
                "frontdesk_jobs_due",
                "Queued jobs whose time has come (all instances).",
                q.due as f64,
            );
            gauge(
                &mut out,
                "frontdesk_jobs_running",
                "Jobs held under a lease (all instances).",
                q.running as f64,
            );
            gauge(
                &mut out,
                "frontdesk_jobs_dead",
                "Jobs that used up their attempts (all instances).",
                q.dead as f64,
            );
            gauge(
                &mut out,
                "frontdesk_jobs_oldest_due_age_seconds",
                "How long the oldest due job has waited.",
                q.oldest_due_age_seconds as f64,
            );
        }

        header(
            &mut out,
            "frontdesk_http_requests_total",
            "counter",
            "HTTP requests answered, by route and status.",
        );
        for s in &self.http {
            let labels = http_labels(s);
            let _ = writeln!(
                out,
                "frontdesk_http_requests_total{{{labels}}} {}",
                s.latency.count
            );
        }
        header(
            &mut out,
            "frontdesk_http_request_duration_seconds",
            "histogram",
            "Time to answer an HTTP request (to the response head for streams).",
        );
        for s in &self.http {
            histogram(
                &mut out,
                "frontdesk_http_request_duration_seconds",
                &http_labels(s),
                &s.latency,
            );
        }
        header(
            &mut out,
            "frontdesk_chat_turn_duration_seconds",
            "histogram",
            "Time from a visitor's message to the stored agent reply, by provider.",
        );
        for s in &self.chat {
            let labels = format!("provider=\"{}\"", escape(&s.provider));
            histogram(
                &mut out,
                "frontdesk_chat_turn_duration_seconds",
                &labels,
                &s.latency,
            );
        }

        header(
            &mut out,
            "frontdesk_llm_tokens_total",
            "counter",
            "Tokens of remote model calls (as reported, else estimated), by provider, purpose and direction.",
        );
        for s in &self.tokens {
            for (direction, n) in [("input", s.input), ("output", s.output)] {
                let _ = writeln!(
                    out,
                    "frontdesk_llm_tokens_total{{provider=\"{}\",purpose=\"{}\",direction=\"{direction}\"}} {n}",
                    escape(&s.provider),
                    s.purpose
                );
            }
        }

        let j = &self.jobs;
        header(
            &mut out,
            "frontdesk_jobs_finished_total",
            "counter",
            "Job runs finished by this process, by result.",
        );
        for (result, n) in [
            ("succeeded", j.succeeded),
            ("retried", j.retried),
            ("dead", j.dead),
            ("released", j.released),
        ] {
            let _ = writeln!(
                out,
                "frontdesk_jobs_finished_total{{result=\"{result}\"}} {n}"
            );
        }
        header(
            &mut out,
            "frontdesk_emails_total",
            "counter",
            "Emails handed to SMTP (or written as files), by result.",
        );
        for (result, n) in [("sent", j.emails_sent), ("failed", j.emails_failed)] {
            let _ = writeln!(out, "frontdesk_emails_total{{result=\"{result}\"}} {n}");
        }
        let w = &self.webhooks;
        header(
            &mut out,
            "frontdesk_webhook_deliveries_total",
            "counter",
            "Stripe webhook deliveries, by how they were answered.",
        );
        for (outcome, n) in [
            ("stored", w.stored),
            ("duplicate", w.duplicate),
            ("rejected", w.rejected),
        ] {
            let _ = writeln!(
                out,
                "frontdesk_webhook_deliveries_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        header(
            &mut out,
            "frontdesk_webhook_events_total",
            "counter",
            "Stripe events processed by this process's workers, by outcome.",
        );
        for (outcome, n) in [
            ("processed", w.processed),
            ("ignored", w.ignored),
            ("unmatched", w.unmatched),
            ("failed", w.failed),
        ] {
            let _ = writeln!(
                out,
                "frontdesk_webhook_events_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

fn http_labels(s: &HttpSeries) -> String {
    format!(
        "method=\"{}\",route=\"{}\",status=\"{}\"",
        escape(&s.method),
        escape(&s.route),
        s.status
    )
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &HistogramSnapshot) {
    for (le, n) in BUCKETS.iter().zip(&h.cumulative) {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum_seconds);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_sum_in_seconds() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(30));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.cumulative[0], 1, "0.3 ms is under 0.5 ms");
        assert_eq!(s.cumulative[3], 2, "3 ms is under 5 ms");
        assert_eq!(*s.cumulative.last().unwrap_or(&0), 2, "30 s only in +Inf");
        assert!((s.sum_seconds - 30.0033).abs() < 1e-9);
        assert_eq!(s.quantile(0.5), Some(0.005));
        assert_eq!(s.quantile(1.0), Some(f64::INFINITY));
    }

    #[test]
    fn prometheus_text_has_types_labels_and_escapes() {
        let m = Metrics::default();
        let route = || "/c/{org}/{agent}".to_string();
        m.http_request(&Method::GET, route(), 200, Duration::from_millis(2));
        m.http_request(&Method::GET, route(), 200, Duration::from_millis(20));
        m.http_request(
            &Method::POST,
            "weird\"route\n".into(),
            404,
            Duration::from_millis(1),
        );
        let made_up = Method::from_bytes(b"BREW").unwrap();
        m.http_request(&made_up, "unmatched".into(), 405, Duration::from_millis(1));
        m.chat_turn("builtin", Duration::from_millis(4));
        m.llm_tokens("openai", "reply", 120, 30);
        m.llm_tokens("openai", "reply", 80, 20);
        m.llm_tokens("openai", "summary", 300, 40);
        m.webhooks.outcome("processed");
        let text = m
            .report(Gauges {
                uptime_seconds: 1.5,
                resident_memory_bytes: Some(1024),
                pool_connections: 2,
                pool_idle: 1,
                pool_max: 8,
                queue: None,
            })
            .to_prometheus();
        assert!(text.contains("# TYPE frontdesk_http_requests_total counter"));
        assert!(text.contains(
            "frontdesk_http_requests_total{method=\"GET\",route=\"/c/{org}/{agent}\",status=\"200\"} 2"
        ));
        assert!(text.contains(
            "frontdesk_http_request_duration_seconds_bucket{method=\"GET\",route=\"/c/{org}/{agent}\",status=\"200\",le=\"0.0025\"} 1"
        ));
        assert!(text.contains("route=\"weird\\\"route\\n\""), "{text}");
        assert!(
            text.contains("method=\"OTHER\",route=\"unmatched\",status=\"405\"} 1"),
            "{text}"
        );
        assert!(!text.contains("BREW"));
        assert!(
            text.contains("frontdesk_chat_turn_duration_seconds_count{provider=\"builtin\"} 1")
        );
        assert!(text.contains("frontdesk_webhook_events_total{outcome=\"processed\"} 1"));
        assert!(text.contains(
            "frontdesk_llm_tokens_total{provider=\"openai\",purpose=\"reply\",direction=\"input\"} 200"
        ));
        assert!(text.contains(
            "frontdesk_llm_tokens_total{provider=\"openai\",purpose=\"summary\",direction=\"output\"} 40"
        ));
        assert!(
            !text.contains("frontdesk_jobs_due"),
            "no queue gauges without a reading"
        );
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap_or("");
            assert!(value.parse::<f64>().is_ok(), "bad sample line: {line}");
        }
    }
}

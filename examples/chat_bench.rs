//! Chat engine benchmark: knowledge ingestion and builtin chat turns over HTTP.
//!
//! ```sh
//! cargo run --release --example chat_bench
//! BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run --release --example chat_bench
//! ```
//!
//! For each backend (SQLite always; PostgreSQL when `BENCH_DATABASE_URL` or
//! `TEST_DATABASE_URL` is set) the real server starts in this process (2 HTTP
//! workers, job workers on), an organization signs up through the pages and
//! makes an API key, and an agent gets `BENCH_DOCS` (default 20) generated
//! Markdown documents of `BENCH_SECTIONS` (default 500) headed sections each:
//! 10,000 passages in all. Ingestion is timed from the first upload to the last
//! document indexed (extraction, chunking and full-text indexing by the job).
//!
//! Then `BENCH_TURNS` (default 2000) visitor questions, each about one
//! generated product (ten to a conversation, each conversation from a client
//! address of its own, so the per-visitor and per-address limits count as they
//! do for real traffic), are sent by `BENCH_CONCURRENCY` (default 8) clients as
//! plain JSON requests, each timed from send to the complete reply (retrieval
//! over the 10,000 passages, the builtin answer, both messages stored), and
//! counted as on topic when the reply's first citation is the passage about
//! the product asked about (a fast wrong answer shows there). Then
//! 200 questions are asked one at a time (the latency of a turn with nothing
//! queued beside it), and 200 more one at a time with `Accept:
//! text/event-stream`, timed to the first streamed byte.
//!
//! `BENCH_NEIGHBOURS` (default 0) more agents get the same knowledge base
//! before the questions, none of them asked: what an agent's searches pay for
//! the other knowledge bases on the instance.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use frontdesk::config::Config;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use support::{PgBenchDb, env_count, ms, quantile};

const COLORS: [&str; 8] = [
    "red", "blue", "green", "amber", "silver", "black", "white", "copper",
];
const THINGS: [&str; 8] = [
    "kettle", "grinder", "tamper", "scale", "dripper", "carafe", "filter", "press",
];
const TTFB_SAMPLES: usize = 200;
const SEQUENTIAL_SAMPLES: usize = 200;

struct Knobs {
    docs: usize,
    sections: usize,
    turns: usize,
    concurrency: usize,
    neighbours: usize,
}

fn main() -> anyhow::Result<()> {
    let knobs = Knobs {
        docs: env_count("BENCH_DOCS", 20)?.max(1),
        sections: env_count("BENCH_SECTIONS", 500)?.max(1),
        turns: env_count("BENCH_TURNS", 2000)?,
        concurrency: env_count("BENCH_CONCURRENCY", 8)?.max(1),
        neighbours: env_count("BENCH_NEIGHBOURS", 0)?,
    };
    support::quiet_logs();
    let tmp = tempfile::tempdir().context("creating a temp dir")?;
    actix_web::rt::System::new().block_on(async {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!(
            "== Frontdesk chat benchmark ({}, {cores} cores, 2 HTTP workers, builtin provider, {} passages, {} concurrent clients) ==",
            support::BUILD,
            knobs.docs * knobs.sections,
            knobs.concurrency
        );
        let sqlite = format!("sqlite://{}/chat.db", tmp.path().display());
        bench("sqlite", &sqlite, tmp.path(), &knobs).await?;
        match support::pg_admin_url() {
            None => eprintln!(
                "[chat_bench] PostgreSQL skipped: set BENCH_DATABASE_URL (or TEST_DATABASE_URL)"
            ),
            Some(admin) => {
                let pg = PgBenchDb::create(&admin)?;
                bench("postgres", &pg.url, tmp.path(), &knobs).await?;
            }
        }
        Ok(())
    })
}

/// A documentation-range address of its own for visitor `v` (198.18.0.0/15).
fn visitor_address(v: usize) -> String {
    format!("198.{}.{}.{}", 18 + (v >> 16) % 2, (v >> 8) % 256, v % 256)
}

fn config(database_url: &str, data_dir: &Path) -> anyhow::Result<Config> {
    support::server_config(
        database_url,
        data_dir,
        &[
            ("JOB_POLL_MS", "10"),
            ("WORKER_CONCURRENCY", "2"),
            // Each conversation comes from its own client address (told by
            // X-Forwarded-For, as behind a proxy), so the per-address limits
            // run at their defaults, counting, as they do for real visitors.
            ("TRUSTED_PROXIES", "127.0.0.1"),
            // The setup's uploads and polling through one API key are not
            // what is measured.
            ("RATE_LIMIT_PER_MINUTE", "100000000"),
        ],
    )
}

/// A product handle that appears in exactly one passage: `amber-grinder-0421`.
fn product(n: usize) -> String {
    format!(
        "{}-{}-{n:04}",
        COLORS[n % COLORS.len()],
        THINGS[(n / COLORS.len()) % THINGS.len()]
    )
}

fn document(doc: usize, sections: usize) -> String {
    let mut text = format!("# Product catalogue, part {}\n\n", doc + 1);
    for s in 0..sections {
        let n = doc * sections + s;
        let p = product(n);
        text.push_str(&format!(
            "## The {p}\n\nThe {p} ships within {} working days and costs {} euros. \
             It carries a {}-year warranty and can be returned unused within {} days. \
             Spare parts for the {p} stay available for {} years, and our workshop \
             services it in {} days. Customers often pair it with the {}.\n\n",
            1 + n % 5,
            20 + n % 180,
            1 + n % 3,
            14 + n % 30,
            5 + n % 6,
            2 + n % 4,
            product((n * 7 + 3) % (sections * 20).max(1)),
        ));
    }
    text
}

fn question(n: usize) -> String {
    let p = product(n);
    match n % 3 {
        0 => format!("How long is the warranty on the {p}?"),
        1 => format!("When does the {p} ship?"),
        _ => format!("Can I return the {p}?"),
    }
}

/// Signs up through the pages and creates an API key, as a person would.
async fn api_key(base: &str) -> anyhow::Result<String> {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let csrf = |html: &str| -> anyhow::Result<String> {
        let start = html
            .find("name=\"csrf_token\" value=\"")
            .context("no csrf token")?
            + "name=\"csrf_token\" value=\"".len();
        Ok(html[start..start + html[start..].find('"').context("csrf")?].to_string())
    };
    let page = browser
        .get(format!("{base}/signup"))
        .send()
        .await?
        .text()
        .await?;
    let res = browser
        .post(format!("{base}/signup"))
        .form(&[
            ("csrf_token", csrf(&page)?.as_str()),
            ("organization", "Bench Outfitters"),
            ("name", "Bench Person"),
            ("email", "bench@outfitters.example"),
            ("password", "correct horse battery staple"),
        ])
        .send()
        .await?;
    if res.status() != 303 {
        bail!("sign-up answered {}", res.status());
    }
    let page = browser
        .get(format!("{base}/app/api-keys"))
        .send()
        .await?
        .text()
        .await?;
    let res = browser
        .post(format!("{base}/app/api-keys"))
        .form(&[
            ("csrf_token", csrf(&page)?.as_str()),
            ("name", "bench"),
            ("scope", "write"),
        ])
        .send()
        .await?;
    if res.status() != 303 {
        bail!("creating the API key answered {}", res.status());
    }
    // Shown once, on the page the redirect leads to, in its own field.
    let html = browser
        .get(format!("{base}/app/api-keys"))
        .send()
        .await?
        .text()
        .await?;
    let marker = "id=\"new-key\" type=\"text\" class=\"mono\" value=\"";
    let start = html.find(marker).context("the new key is shown once")? + marker.len();
    let key = &html[start..start + html[start..].find('"').context("key")?];
    Ok(key.to_string())
}

/// Uploads every document to the agent, then waits until all are indexed:
/// the passages made, and the time from the first upload to the last indexed.
async fn upload_and_index(
    api: &impl Fn(reqwest::Method, &str) -> reqwest::RequestBuilder,
    agent_id: i64,
    docs: &[String],
) -> anyhow::Result<(i64, Duration)> {
    let started = Instant::now();
    for (d, text) in docs.iter().enumerate() {
        let res = api(
            reqwest::Method::POST,
            &format!("/api/v1/agents/{agent_id}/documents?title=Catalogue%20part%20{d}"),
        )
        .header("content-type", "text/markdown")
        .body(text.clone())
        .send()
        .await?;
        if res.status() != 201 {
            bail!("upload answered {}: {}", res.status(), res.text().await?);
        }
    }
    loop {
        let list: Value = api(
            reqwest::Method::GET,
            &format!("/api/v1/agents/{agent_id}/documents"),
        )
        .send()
        .await?
        .json()
        .await?;
        let data = list["data"].as_array().context("documents")?;
        if let Some(failed) = data.iter().find(|d| d["status"] == "failed") {
            bail!("indexing failed: {failed}");
        }
        if data.len() == docs.len() && data.iter().all(|d| d["status"] == "ready") {
            let chunks = data
                .iter()
                .map(|d| d["chunkCount"].as_i64().unwrap_or(0))
                .sum::<i64>();
            return Ok((chunks, started.elapsed()));
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("indexing did not finish in 10 minutes");
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn bench(label: &str, database_url: &str, tmp: &Path, knobs: &Knobs) -> anyhow::Result<()> {
    let config = config(database_url, &tmp.join(format!("data-{label}")))?;
    let (base, _, handle) = support::start_server(config, true).await?;
    let key = api_key(&base).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(knobs.concurrency + 1)
        .build()?;
    let api = |method: reqwest::Method, path: &str| {
        client
            .request(method, format!("{base}{path}"))
            .bearer_auth(&key)
    };

    let agent: Value = api(reqwest::Method::POST, "/api/v1/agents")
        .json(&json!({"name": "Catalogue", "slug": "catalogue"}))
        .send()
        .await?
        .json()
        .await?;
    let agent_id = agent["id"].as_i64().context("agent id")?;

    let docs: Vec<String> = (0..knobs.docs)
        .map(|d| document(d, knobs.sections))
        .collect();
    let bytes: usize = docs.iter().map(String::len).sum();
    let (chunks, ingest) = upload_and_index(&api, agent_id, &docs).await?;
    println!(
        "ingest {label:<8} {} documents, {:.1} MB, {chunks} passages in {:.2} s = {:.2} MB/s",
        knobs.docs,
        bytes as f64 / 1_048_576.0,
        ingest.as_secs_f64(),
        bytes as f64 / 1_048_576.0 / ingest.as_secs_f64()
    );
    for n in 0..knobs.neighbours {
        let neighbour: Value = api(reqwest::Method::POST, "/api/v1/agents")
            .json(&json!({"name": format!("Neighbour {n}")}))
            .send()
            .await?
            .json()
            .await?;
        let id = neighbour["id"].as_i64().context("neighbour id")?;
        let (chunks, took) = upload_and_index(&api, id, &docs).await?;
        println!(
            "ingest {label:<8} neighbour {n}: the same {chunks} passages in {:.2} s",
            took.as_secs_f64()
        );
    }

    // Conversations: a visitor may send 12 messages a minute, so each one
    // carries at most 10 questions.
    let chat_base = format!("{base}/api/v1/chat/bench-outfitters/catalogue");
    let conversations =
        knobs.turns.div_ceil(10) + SEQUENTIAL_SAMPLES.div_ceil(10) + TTFB_SAMPLES.div_ceil(10);
    let mut chats = Vec::with_capacity(conversations);
    for v in 0..conversations {
        let address = visitor_address(v);
        let chat: Value = client
            .post(format!("{chat_base}/conversations"))
            .header("x-forwarded-for", &address)
            .json(&json!({"channel": "page", "visitorId": format!("bench-visitor-{v:06}")}))
            .send()
            .await?
            .json()
            .await?;
        chats.push((
            chat["conversationId"].as_i64().context("conversation id")?,
            chat["token"].as_str().context("token")?.to_string(),
            address,
        ));
    }
    let chats = Arc::new(chats);
    let total_products = knobs.docs * knobs.sections;

    let next = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(Mutex::new(Vec::with_capacity(knobs.turns)));
    let handoffs = Arc::new(AtomicUsize::new(0));
    let on_topic = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..knobs.concurrency {
        let (next, samples, handoffs, on_topic, chats, client, chat_base) = (
            next.clone(),
            samples.clone(),
            handoffs.clone(),
            on_topic.clone(),
            chats.clone(),
            client.clone(),
            chat_base.clone(),
        );
        let turns = knobs.turns;
        tasks.push(actix_web::rt::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= turns {
                    return Ok::<_, anyhow::Error>(());
                }
                let (id, token, address) = &chats[n / 10];
                let product_n = (n * 7919) % total_products;
                let t = Instant::now();
                let res = client
                    .post(format!("{chat_base}/conversations/{id}/messages"))
                    .header("x-conversation-token", token)
                    .header("x-forwarded-for", address)
                    .json(&json!({ "content": question(product_n) }))
                    .send()
                    .await?;
                let status = res.status();
                let reply: Value = res.json().await?;
                let took = t.elapsed();
                if status != 200 {
                    bail!("a chat turn answered {status}: {reply}");
                }
                if reply["handoffOffered"] == true {
                    handoffs.fetch_add(1, Ordering::Relaxed);
                }
                // Fast and wrong would not count: the first citation must be
                // the passage about the product asked about.
                let cited = reply["citations"][0]["heading"]
                    .as_str()
                    .unwrap_or_default();
                if cited.ends_with(&format!("The {}", product(product_n))) {
                    on_topic.fetch_add(1, Ordering::Relaxed);
                }
                samples.lock().unwrap().push(took);
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    let mut turns = std::mem::take(&mut *samples.lock().unwrap());
    turns.sort();
    println!(
        "chat   {label:<8} {} builtin turns x{}: {:.0} turns/s, p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms ({} offered a person, {} cited the passage asked about)",
        knobs.turns,
        knobs.concurrency,
        knobs.turns as f64 / elapsed.as_secs_f64(),
        ms(quantile(&turns, 0.50)),
        ms(quantile(&turns, 0.95)),
        ms(quantile(&turns, 0.99)),
        handoffs.load(Ordering::Relaxed),
        on_topic.load(Ordering::Relaxed),
    );

    // One turn at a time: the latency of a turn without other turns queued
    // beside it (the concurrent run above shares 2 cores among 8 clients).
    let mut alone = Vec::with_capacity(SEQUENTIAL_SAMPLES);
    let first_alone_chat = knobs.turns.div_ceil(10);
    for n in 0..SEQUENTIAL_SAMPLES {
        let (id, token, address) = &chats[first_alone_chat + n / 10];
        let t = Instant::now();
        let res = client
            .post(format!("{chat_base}/conversations/{id}/messages"))
            .header("x-conversation-token", token)
            .header("x-forwarded-for", address)
            .json(&json!({ "content": question((n * 7_727) % total_products) }))
            .send()
            .await?;
        if res.status() != 200 {
            bail!("a turn answered {}", res.status());
        }
        res.bytes().await?;
        alone.push(t.elapsed());
    }
    alone.sort();
    println!(
        "chat   {label:<8} {SEQUENTIAL_SAMPLES} builtin turns one at a time: p50 {:.2} ms, p95 {:.2} ms   target p95 < 20 ms",
        ms(quantile(&alone, 0.50)),
        ms(quantile(&alone, 0.95)),
    );

    // Time to the first streamed byte, one request at a time.
    let mut ttfb = Vec::with_capacity(TTFB_SAMPLES);
    let first_stream_chat = first_alone_chat + SEQUENTIAL_SAMPLES.div_ceil(10);
    for n in 0..TTFB_SAMPLES {
        let (id, token, address) = &chats[first_stream_chat + n / 10];
        let t = Instant::now();
        let res = client
            .post(format!("{chat_base}/conversations/{id}/messages"))
            .header("x-conversation-token", token)
            .header("x-forwarded-for", address)
            .header("accept", "text/event-stream")
            .json(&json!({ "content": question((n * 104_729) % total_products) }))
            .send()
            .await?;
        if res.status() != 200 {
            bail!("a streamed turn answered {}", res.status());
        }
        let mut body = res.bytes_stream();
        let first = body.next().await.context("an empty stream")??;
        ttfb.push(t.elapsed());
        if first.is_empty() {
            bail!("the first streamed chunk was empty");
        }
        while let Some(chunk) = body.next().await {
            chunk?;
        }
    }
    ttfb.sort();
    println!(
        "stream {label:<8} time to first byte over {TTFB_SAMPLES} streamed turns: p50 {:.2} ms, p95 {:.2} ms",
        ms(quantile(&ttfb, 0.50)),
        ms(quantile(&ttfb, 0.95)),
    );
    handle.stop(true).await;
    Ok(())
}

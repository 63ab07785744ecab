//! Stripe webhook acknowledgement benchmark: how fast `POST /webhooks/stripe`
//! verifies, stores and acknowledges events.
//!
//! ```sh
//! cargo run --release --example webhook_bench
//! BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run --release --example webhook_bench
//! ```
//!
//! For each backend (SQLite always; PostgreSQL when `BENCH_DATABASE_URL` or
//! `TEST_DATABASE_URL` is set) the real server starts in this process on a
//! random port (2 HTTP workers, billing on, job workers off so only the
//! acknowledgement is measured). `BENCH_EVENTS` distinct signed
//! `customer.subscription.updated` events are posted by `BENCH_CONCURRENCY`
//! keep-alive clients; each request's time from send to the 200 is recorded.
//! Afterwards every event must be stored exactly once with one job each.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use diesel::prelude::*;
use frontdesk::config::Config;
use frontdesk::db::schema::{jobs, stripe_events};
use frontdesk::services::billing::webhook::signature_header;
use support::{PgBenchDb, env_count, ms, quantile};

const SECRET: &str = "whsec_bench_0123456789abcdef";
const WARMUP: usize = 100;
const SEQUENTIAL: usize = 300;

fn main() -> anyhow::Result<()> {
    let events = env_count("BENCH_EVENTS", 3000)?;
    let concurrency = env_count("BENCH_CONCURRENCY", 16)?.max(1);
    support::quiet_logs();
    let tmp = tempfile::tempdir().context("creating a temp dir")?;
    actix_web::rt::System::new().block_on(async {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!(
            "== Frontdesk Stripe webhook benchmark ({}, {cores} cores, 2 HTTP workers, {concurrency} concurrent clients) ==",
            support::BUILD
        );
        let sqlite = format!("sqlite://{}/webhooks.db", tmp.path().display());
        bench("sqlite", &sqlite, tmp.path(), events, concurrency).await?;
        match support::pg_admin_url() {
            None => eprintln!(
                "[webhook_bench] PostgreSQL skipped: set BENCH_DATABASE_URL (or TEST_DATABASE_URL)"
            ),
            Some(admin) => {
                let pg = PgBenchDb::create(&admin)?;
                bench("postgres", &pg.url, tmp.path(), events, concurrency).await?;
            }
        }
        Ok(())
    })
}

fn config(database_url: &str, data_dir: &Path) -> anyhow::Result<Config> {
    support::server_config(
        database_url,
        data_dir,
        &[
            ("STRIPE_SECRET_KEY", "sk_test_bench"),
            ("STRIPE_WEBHOOK_SECRET", SECRET),
            // Never called: job workers are off.
            ("STRIPE_API_BASE", "http://127.0.0.1:9"),
        ],
    )
}

fn event(n: usize) -> String {
    serde_json::json!({
        "id": format!("evt_bench_{n:08}"),
        "object": "event",
        "type": "customer.subscription.updated",
        "created": chrono::Utc::now().timestamp(),
        "api_version": frontdesk::services::billing::StripeApi::api_version(),
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "data": {"object": {
            "id": format!("sub_bench_{}", n % 50),
            "object": "subscription",
            "customer": format!("cus_bench_{}", n % 50),
            "status": "active",
            "cancel_at_period_end": false,
            "items": {"object": "list", "data": [{"price": {"id": "price_bench"},
                "current_period_start": 1_764_000_000, "current_period_end": 1_766_592_000}]}
        }}
    })
    .to_string()
}

/// One signed delivery; the time from send to the whole 200 answer.
async fn post(client: &reqwest::Client, address: &str, body: &str) -> anyhow::Result<Duration> {
    let header = signature_header(SECRET, chrono::Utc::now().timestamp(), body.as_bytes());
    let started = Instant::now();
    let res = client
        .post(address)
        .header("content-type", "application/json")
        .header("stripe-signature", header)
        .body(body.to_string())
        .send()
        .await?;
    let status = res.status();
    res.bytes().await?;
    if status != 200 {
        bail!("the webhook answered {status}");
    }
    Ok(started.elapsed())
}

async fn bench(
    label: &str,
    database_url: &str,
    tmp: &Path,
    events: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let config = config(database_url, &tmp.join(format!("data-{label}")))?;
    let (base, state, handle) = support::start_server(config, false).await?;
    let address = format!("{base}/webhooks/stripe");

    let total = WARMUP + events;
    let bodies: Arc<Vec<String>> = Arc::new((0..total).map(event).collect());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    for body in bodies.iter().take(WARMUP) {
        post(&client, &address, body).await?;
    }
    let address = Arc::new(address);

    let next = Arc::new(AtomicUsize::new(WARMUP));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(events)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, bodies, latencies, client, address) = (
            next.clone(),
            bodies.clone(),
            latencies.clone(),
            client.clone(),
            address.clone(),
        );
        tasks.push(actix_web::rt::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(n) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let took = post(&client, &address, body).await?;
                latencies.lock().unwrap().push(took);
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();

    let mut samples = std::mem::take(&mut *latencies.lock().unwrap());
    samples.sort();
    let (stored, queued): (i64, i64) = {
        let mut conn = state.pool.get()?;
        (
            stripe_events::table.count().get_result(&mut conn)?,
            jobs::table
                .filter(jobs::kind.eq("billing.stripe_event"))
                .count()
                .get_result(&mut conn)?,
        )
    };
    if stored != total as i64 || queued != total as i64 {
        bail!("{label}: {stored} events stored and {queued} jobs queued for {total} sent");
    }
    println!(
        "webhook {label:<8} {events} events x{concurrency}: {:.0} events/s, ack p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        events as f64 / elapsed.as_secs_f64(),
        ms(quantile(&samples, 0.50)),
        ms(quantile(&samples, 0.95)),
        ms(quantile(&samples, 0.99)),
        ms(samples.last().copied().unwrap_or(Duration::ZERO)),
    );

    // One at a time, as Stripe mostly delivers to an endpoint: the latency of
    // an acknowledgement with nothing queued beside it.
    let mut alone = Vec::with_capacity(SEQUENTIAL);
    for n in 0..SEQUENTIAL {
        alone.push(post(&client, &address, &event(total + n)).await?);
    }
    alone.sort();
    println!(
        "webhook {label:<8} {SEQUENTIAL} events one at a time: ack p50 {:.2} ms, p95 {:.2} ms   target p95 < 10 ms",
        ms(quantile(&alone, 0.50)),
        ms(quantile(&alone, 0.95)),
    );
    handle.stop(true).await;
    Ok(())
}

//! Background-job queue benchmark: jobs/s through the durable queue and emails/s
//! to a local SMTP sink.
//!
//! ```sh
//! cargo run --release --example jobs_bench
//! BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run --release --example jobs_bench
//! ```
//!
//! For each backend (SQLite always; PostgreSQL when `BENCH_DATABASE_URL` or
//! `TEST_DATABASE_URL` is set) and for 1 and 2 worker instances (each one a
//! `WorkerPool` with its own database pool, as a separate process would have),
//! the clock covers: starting the pools, enqueueing `BENCH_JOBS` no-op
//! `Diagnostic` jobs in transactions of 100 while the workers already run, and
//! polling every 5 ms until every one of them is `done`.
//!
//! Then, on SQLite with one instance, `BENCH_EMAILS` `SendEmail` jobs are sent
//! over real SMTP to a minimal sink in this process; the clock stops when the
//! sink has received all of them and every job is `done`.
//!
//! PostgreSQL runs use a throw-away database `fd_bench_<pid>` created on the
//! given server (the URL's own database is only used to create and drop it).

// A benchmark, not product code: it handles no user input, and a broken setup
// step should stop the run loudly. (Release builds use panic = "abort", so the
// code below still propagates errors with `?` where cleanup matters.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use frontdesk::config::Config;
use frontdesk::db::schema::jobs;
use frontdesk::db::{self, Backend, DbConnection};
use frontdesk::services::jobs::{
    Diagnostic, EnqueueOptions, Job, JobContext, SendEmail, WorkerPool, enqueue,
};
use frontdesk::services::mail::{MailTemplate, Mailer, OutgoingEmail};
use frontdesk::telemetry::metrics::Metrics;
use support::{PgBenchDb, env_count};

const DEFAULT_JOBS: usize = 5000;
const DEFAULT_EMAILS: usize = 500;
/// Jobs per enqueue transaction.
const BATCH: usize = 100;
/// `WORKER_CONCURRENCY` of every instance.
const CONCURRENCY: usize = 4;
/// Asked for; the config clamps `JOB_POLL_MS` to at least 10 ms.
const JOB_POLL_MS: &str = "5";
/// How often the benchmark checks whether everything is done.
const CHECK_EVERY: Duration = Duration::from_millis(5);
/// A run that takes longer than this is reported as stuck.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn main() -> anyhow::Result<()> {
    let jobs = env_count("BENCH_JOBS", DEFAULT_JOBS)?;
    let emails = env_count("BENCH_EMAILS", DEFAULT_EMAILS)?;
    let pg_admin = support::pg_admin_url();

    // Warnings (a job failing, a claim retrying) go to stderr; stdout is the results.
    support::quiet_logs();

    let tmp = tempfile::tempdir().context("creating a temp dir")?;
    actix_web::rt::System::new().block_on(run(tmp.path(), jobs, emails, pg_admin))
}

async fn run(
    tmp: &Path,
    jobs: usize,
    emails: usize,
    pg_admin: Option<String>,
) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "== Frontdesk jobs benchmark (release, {cores} cores, WORKER_CONCURRENCY={CONCURRENCY}, JOB_POLL_MS={JOB_POLL_MS} -> 10 ms floor) =="
    );

    if jobs > 0 {
        for instances in [1, 2] {
            let url = format!("sqlite://{}/sqlite-{instances}/bench.db", tmp.display());
            let vars = bench_vars(tmp, &url, None);
            let took = bench_queue(&vars, instances, jobs, Diagnostic::default, || true).await?;
            print_jobs_line("sqlite", instances, jobs, took);
        }

        match &pg_admin {
            None => eprintln!(
                "[jobs_bench] PostgreSQL skipped: set BENCH_DATABASE_URL (or TEST_DATABASE_URL)"
            ),
            Some(admin) => {
                let pg = PgBenchDb::create(admin)?;
                for instances in [1, 2] {
                    let vars = bench_vars(tmp, &pg.url, None);
                    let took =
                        bench_queue(&vars, instances, jobs, Diagnostic::default, || true).await?;
                    print_jobs_line("postgres", instances, jobs, took);
                }
                drop(pg);
            }
        }
    }

    if emails > 0 {
        let sink = SmtpSink::start()?;
        let url = format!("sqlite://{}/email/bench.db", tmp.display());
        let vars = bench_vars(tmp, &url, Some(&sink.url()));
        let config = config_from(&vars)?;
        let to = frontdesk::domain::Email::parse("x@example.com")?;
        let make = || {
            SendEmail(OutgoingEmail::new(
                &to,
                MailTemplate::Test,
                &config.base_url,
            ))
        };
        let received = sink.received.clone();
        let took = bench_queue(&vars, 1, emails, make, || {
            received.load(Ordering::Relaxed) >= emails
        })
        .await?;
        println!(
            "email sqlite 1 instance x{CONCURRENCY}: {emails} emails in {:.2} s = {:.0} emails/s",
            took.as_secs_f64(),
            emails as f64 / took.as_secs_f64()
        );
    }
    Ok(())
}

fn print_jobs_line(backend: &str, instances: usize, jobs: usize, took: Duration) {
    println!(
        "jobs  {backend:<8} {instances:>2} worker instance(s) x{CONCURRENCY}: {jobs} jobs in {:.2} s = {:.0} jobs/s",
        took.as_secs_f64(),
        jobs as f64 / took.as_secs_f64()
    );
}

fn bench_vars(
    data_dir: &Path,
    database_url: &str,
    smtp_url: Option<&str>,
) -> BTreeMap<String, String> {
    let mut vars = support::base_vars(database_url, data_dir);
    vars.insert("JOB_POLL_MS".into(), JOB_POLL_MS.into());
    vars.insert("WORKER_CONCURRENCY".into(), CONCURRENCY.to_string());
    vars.insert(
        "MAIL_FROM".into(),
        "Frontdesk Bench <bench@example.com>".into(),
    );
    if let Some(smtp) = smtp_url {
        vars.insert("SMTP_URL".into(), smtp.into());
    }
    vars
}

fn config_from(vars: &BTreeMap<String, String>) -> anyhow::Result<Config> {
    Ok(Config::from_lookup(&|k| vars.get(k).cloned())?)
}

/// One measured run: fresh queue, `instances` worker pools, `total` jobs made by
/// `make`. Done when every job of that kind is `done` and `also_done()` holds.
async fn bench_queue<J: Job>(
    vars: &BTreeMap<String, String>,
    instances: usize,
    total: usize,
    make: impl Fn() -> J,
    also_done: impl Fn() -> bool,
) -> anyhow::Result<Duration> {
    let config = config_from(vars)?;
    let url = config.database_url.clone();

    // The "web process": migrates, enqueues and watches on a connection of its own.
    let app = db::connect(&url, Some(1))?;
    let mut conn = app.get()?;
    db::migrations::run_pending(&mut conn, |_| {})?;
    if url.backend() == Backend::Postgres {
        // One database serves all PostgreSQL runs; start each from an empty queue.
        conn.batch_execute("TRUNCATE jobs RESTART IDENTITY")?;
    }
    let conn: &mut DbConnection = &mut conn;

    // Each instance gets its own pool and mailer, as a separate process would.
    let config = Arc::new(config);
    let mut contexts = Vec::with_capacity(instances);
    let mut metrics = Vec::with_capacity(instances);
    for _ in 0..instances {
        let m = Arc::new(Metrics::default());
        metrics.push(m.clone());
        contexts.push(Arc::new(JobContext {
            pool: db::connect(&url, config.database_pool_size)?,
            config: config.clone(),
            mailer: Arc::new(Mailer::from_config(&config)?),
            metrics: m.clone(),
            chat: Arc::new(frontdesk::services::chat::ChatEngine::new(
                &config,
                m.clone(),
            )),
            stripe: None,
        }));
    }

    let started = Instant::now();
    let workers: Vec<WorkerPool> = contexts.into_iter().map(WorkerPool::start).collect();

    let mut left = total;
    while left > 0 {
        let n = left.min(BATCH);
        conn.transaction::<_, diesel::result::Error, _>(|c| {
            for _ in 0..n {
                enqueue(c, &make(), EnqueueOptions::default())?;
            }
            Ok(())
        })?;
        left -= n;
    }

    loop {
        let states: Vec<(String, i64)> = jobs::table
            .filter(jobs::kind.eq(J::KIND))
            .group_by(jobs::state)
            .select((jobs::state, diesel::dsl::count_star()))
            .load(conn)?;
        let count = |s: &str| states.iter().find(|(st, _)| st == s).map_or(0, |(_, n)| *n);
        if count("done") >= total as i64 && also_done() {
            break;
        }
        if count("dead") > 0 || started.elapsed() > RUN_TIMEOUT {
            let error: Option<Option<String>> = jobs::table
                .filter(jobs::kind.eq(J::KIND).and(jobs::last_error.is_not_null()))
                .select(jobs::last_error)
                .first(conn)
                .optional()?;
            bail!(
                "{} run with {instances} instance(s) did not finish after {:.1} s: jobs by state {states:?}; a last error: {:?}",
                url.backend().as_str(),
                started.elapsed().as_secs_f64(),
                error.flatten()
            );
        }
        actix_web::rt::time::sleep(CHECK_EVERY).await;
    }
    let took = started.elapsed();

    for worker in workers {
        worker.shutdown().await;
    }
    let retried: u64 = metrics
        .iter()
        .map(|m| m.jobs.retried.load(Ordering::Relaxed))
        .sum();
    if retried > 0 {
        eprintln!("[jobs_bench] note: {retried} job run(s) failed and were retried");
    }
    Ok(took)
}

/// A throw-away PostgreSQL database on the server of `admin_url`, dropped on drop.
/// Accepts every message over plain SMTP and counts it.
struct SmtpSink {
    port: u16,
    received: Arc<AtomicUsize>,
}

impl SmtpSink {
    fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).context("binding the SMTP sink")?;
        let port = listener.local_addr()?.port();
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        // Lives until the process exits.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let _ = serve_smtp(stream, &counter);
                });
            }
        });
        Ok(Self { port, received })
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }
}

fn serve_smtp(stream: TcpStream, received: &AtomicUsize) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    writer.write_all(b"220 ready\r\n")?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or(&[]).to_ascii_uppercase();
        match verb.as_slice() {
            b"EHLO" => writer.write_all(b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")?,
            b"HELO" | b"MAIL" | b"RCPT" | b"RSET" | b"NOOP" => writer.write_all(b"250 OK\r\n")?,
            b"DATA" => {
                writer.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                loop {
                    line.clear();
                    if reader.read_until(b'\n', &mut line)? == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" {
                        break;
                    }
                }
                received.fetch_add(1, Ordering::Relaxed);
                writer.write_all(b"250 OK\r\n")?;
            }
            b"QUIT" => {
                writer.write_all(b"221 bye\r\n")?;
                return Ok(());
            }
            _ => writer.write_all(b"502 command not implemented\r\n")?,
        }
    }
}

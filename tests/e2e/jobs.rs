//! The durable job queue and email delivery, on both backends, with real worker
//! processes and a real SMTP server over TCP.

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use frontdesk::db::models::Job as JobRow;
use frontdesk::db::schema::jobs;
use frontdesk::db::{DbConnection, DbPool};
use frontdesk::domain::{Email, JobId};
use frontdesk::services::jobs::{self as queue, Diagnostic, EnqueueOptions, SendEmail};
use frontdesk::services::mail::{MailTemplate, OutgoingEmail};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestDb, eventually, spawn_app};
use crate::smtp::SmtpSink;

backend_tests!(
    a_rolled_back_change_enqueues_nothing,
    an_idempotency_key_makes_the_second_enqueue_a_no_op,
    delayed_jobs_wait_for_their_time,
    unknown_kinds_and_bad_payloads_end_dead_without_blocking_the_queue,
    health_reports_queue_depth_and_oldest_due_age,
    retention_deletes_old_done_jobs_and_keeps_dead_ones_longer,
    email_goes_out_over_smtp_with_both_parts_and_links,
    smtp_down_then_back_delivers_exactly_once,
    a_relay_refusing_every_email_is_retried_a_refused_mailbox_is_not,
    two_worker_processes_run_1000_jobs_exactly_once,
    a_worker_process_sends_email_over_smtp,
    a_worker_killed_mid_job_is_replaced_after_its_lease,
    a_poisoned_job_ends_dead_and_the_cli_shows_and_retries_it,
    a_panicking_job_is_a_failed_attempt_and_the_worker_survives,
    sigterm_lets_the_running_job_finish,
    a_job_still_running_when_the_grace_ends_goes_back_to_the_queue,
    a_run_that_lost_its_lease_stops,
    a_run_that_cannot_renew_its_lease_stops_before_it_runs_out,
);

fn job(pool: &DbPool, id: JobId) -> JobRow {
    JobRow::find(&mut pool.get().unwrap(), id)
        .unwrap()
        .expect("job exists")
}

fn enqueue<J: queue::Job>(pool: &DbPool, job: &J) -> JobId {
    queue::enqueue(&mut pool.get().unwrap(), job, EnqueueOptions::default())
        .unwrap()
        .expect("no idempotency key, always inserted")
}

fn count_jobs(conn: &mut DbConnection) -> i64 {
    jobs::table
        .filter(jobs::kind.ne("jobs.cleanup"))
        .count()
        .get_result(conn)
        .unwrap()
}

async fn a_rolled_back_change_enqueues_nothing(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = TestDb::create(backend, &dir) else {
        return;
    };
    let pool = db.pool();
    let mut conn = pool.get().unwrap();

    let rolled_back = conn.transaction::<(), diesel::result::Error, _>(|conn| {
        queue::enqueue(conn, &Diagnostic::default(), EnqueueOptions::default())?;
        Err(diesel::result::Error::RollbackTransaction)
    });
    assert!(rolled_back.is_err());
    assert_eq!(
        count_jobs(&mut conn),
        0,
        "the rollback took the job with it"
    );

    conn.transaction::<_, diesel::result::Error, _>(|conn| {
        queue::enqueue(conn, &Diagnostic::default(), EnqueueOptions::default())
    })
    .unwrap();
    assert_eq!(count_jobs(&mut conn), 1);
}

async fn an_idempotency_key_makes_the_second_enqueue_a_no_op(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = TestDb::create(backend, &dir) else {
        return;
    };
    let pool = db.pool();
    let mut conn = pool.get().unwrap();
    let options = || EnqueueOptions {
        run_at: None,
        idempotency_key: Some("welcome-email:user:42"),
    };
    let first = queue::enqueue(&mut conn, &Diagnostic::default(), options()).unwrap();
    let second = queue::enqueue(&mut conn, &Diagnostic::default(), options()).unwrap();
    assert!(first.is_some());
    assert_eq!(second, None);
    assert_eq!(count_jobs(&mut conn), 1);
}

async fn delayed_jobs_wait_for_their_time(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let pool = app.pool();
    let run_at = frontdesk::domain::now() + chrono::TimeDelta::milliseconds(1500);
    let id = queue::enqueue(
        &mut pool.get().unwrap(),
        &Diagnostic::default(),
        EnqueueOptions {
            run_at: Some(run_at),
            idempotency_key: None,
        },
    )
    .unwrap()
    .unwrap();
    actix_web::rt::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(job(&pool, id).state, "queued", "not before its time");
    eventually("the delayed job ran", Duration::from_secs(10), || {
        job(&pool, id).state == "done"
    })
    .await;
    assert!(job(&pool, id).finished_at.unwrap() >= run_at);
}

async fn unknown_kinds_and_bad_payloads_end_dead_without_blocking_the_queue(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = TestDb::create(backend, &dir) else {
        return;
    };
    let pool = db.pool();
    let mut conn = pool.get().unwrap();
    let raw = |conn: &mut DbConnection, kind: &str, payload: &str| {
        JobRow::enqueue(
            conn,
            &frontdesk::db::models::NewJob {
                kind,
                payload,
                max_attempts: 5,
                run_at: frontdesk::domain::now(),
                idempotency_key: None,
            },
        )
        .unwrap()
        .unwrap()
    };
    let unknown = raw(&mut conn, "reports.weekly.v9", "{}");
    let garbled = raw(&mut conn, "diagnostic", "{not json");
    let wrong_shape = raw(&mut conn, "email.send", "{\"to\": 42}");
    drop(conn);
    let fine = enqueue(&pool, &Diagnostic::default());

    // A worker starts only now, with the bad jobs first in line.
    let _workers = Workers::spawn(&db.url, 1, &[]);
    eventually("every job finished", Duration::from_secs(10), || {
        [unknown, garbled, wrong_shape, fine]
            .iter()
            .all(|id| matches!(job(&pool, *id).state.as_str(), "done" | "dead"))
    })
    .await;

    let dead = job(&pool, unknown);
    assert_eq!(dead.state, "dead");
    assert_eq!(
        dead.attempts, 5,
        "retried (a newer instance may know it), then buried"
    );
    assert!(
        dead.last_error
            .unwrap()
            .contains("unknown job kind \"reports.weekly.v9\"")
    );
    let dead = job(&pool, garbled);
    assert_eq!(dead.state, "dead");
    assert!(dead.last_error.unwrap().contains("undecodable payload"));
    assert_eq!(job(&pool, wrong_shape).state, "dead");
    assert_eq!(job(&pool, fine).state, "done");
}

async fn health_reports_queue_depth_and_oldest_due_age(backend: Backend) {
    let Some(app) = spawn_app(backend).jobs(false).start().await else {
        return;
    };
    let pool = app.pool();
    for _ in 0..2 {
        enqueue(&pool, &Diagnostic::default());
    }
    // Due for an hour already: the age says so.
    queue::enqueue(
        &mut pool.get().unwrap(),
        &Diagnostic::default(),
        EnqueueOptions {
            run_at: Some(frontdesk::domain::now() - chrono::TimeDelta::hours(1)),
            idempotency_key: None,
        },
    )
    .unwrap();
    let later = frontdesk::domain::now() + chrono::TimeDelta::hours(1);
    queue::enqueue(
        &mut pool.get().unwrap(),
        &Diagnostic::default(),
        EnqueueOptions {
            run_at: Some(later),
            idempotency_key: None,
        },
    )
    .unwrap();
    let health: serde_json::Value = app.get("/health").await.json().await.unwrap();
    let jobs = &health["checks"]["jobs"];
    assert_eq!(jobs["queueDepth"], 3, "{jobs}");
    let age = jobs["oldestDueAgeSeconds"].as_i64().unwrap();
    assert!((3600..3700).contains(&age), "{jobs}");
    assert_eq!(jobs["dead"], 0);

    // A job whose worker died two hours ago waits as much as a queued one:
    // it counts, and its lease's end is the oldest wait.
    let orphan = enqueue(&pool, &Diagnostic::default());
    let two_hours_ago = frontdesk::domain::now() - chrono::TimeDelta::hours(2);
    diesel::update(jobs::table.find(orphan))
        .set((
            jobs::state.eq("running"),
            jobs::locked_by.eq(Some("gone:1:x/0")),
            jobs::locked_until.eq(Some(two_hours_ago)),
        ))
        .execute(&mut pool.get().unwrap())
        .unwrap();
    // Past the statistics cache's second.
    actix_web::rt::time::sleep(Duration::from_millis(1100)).await;
    let health: serde_json::Value = app.get("/health").await.json().await.unwrap();
    let jobs = &health["checks"]["jobs"];
    assert_eq!(jobs["queueDepth"], 4, "{jobs}");
    let age = jobs["oldestDueAgeSeconds"].as_i64().unwrap();
    assert!((7200..7300).contains(&age), "{jobs}");
}

async fn retention_deletes_old_done_jobs_and_keeps_dead_ones_longer(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let pool = app.pool();
    let ago = |days| Some(frontdesk::domain::now() - chrono::TimeDelta::days(days));
    let finished = |state: &str, days| {
        // Not due, so the workers leave it to this test.
        let tomorrow = frontdesk::domain::now() + chrono::TimeDelta::days(1);
        let id = queue::enqueue(
            &mut pool.get().unwrap(),
            &Diagnostic::default(),
            EnqueueOptions {
                run_at: Some(tomorrow),
                idempotency_key: None,
            },
        )
        .unwrap()
        .unwrap();
        diesel::update(jobs::table.find(id))
            .set((jobs::state.eq(state), jobs::finished_at.eq(ago(days))))
            .execute(&mut pool.get().unwrap())
            .unwrap();
        id
    };
    let old_done = finished("done", 30);
    let recent_done = finished("done", 1);
    let month_dead = finished("dead", 30);
    let ancient_dead = finished("dead", 100);

    let cleanup = enqueue(&pool, &frontdesk::services::jobs::CleanupFinishedJobs {});
    eventually("the clean-up ran", Duration::from_secs(10), || {
        JobRow::find(&mut pool.get().unwrap(), cleanup)
            .unwrap()
            .is_some_and(|j| j.state == "done")
    })
    .await;
    let exists = |id| {
        JobRow::find(&mut pool.get().unwrap(), id)
            .unwrap()
            .is_some()
    };
    assert!(!exists(old_done), "done for longer than the retention");
    assert!(exists(recent_done));
    assert!(exists(month_dead), "dead jobs wait for an operator");
    assert!(!exists(ancient_dead), "but not forever");
}

fn header<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} header in:\n{message}"))
}

fn verification_email(to: &str) -> SendEmail {
    let base = url::Url::parse("https://support.example.com").unwrap();
    SendEmail(OutgoingEmail::new(
        &Email::parse(to).unwrap(),
        MailTemplate::VerifyEmail {
            name: "Ana".into(),
            token: "tok_123".into(),
        },
        &base,
    ))
}

async fn email_goes_out_over_smtp_with_both_parts_and_links(backend: Backend) {
    let sink = SmtpSink::start();
    let url = sink.url();
    let Some(app) = spawn_app(backend)
        .env("SMTP_URL", &url)
        .env("MAIL_FROM", "Acme Support <support@example.com>")
        .env("BASE_URL", "https://support.example.com")
        .start()
        .await
    else {
        return;
    };
    let pool = app.pool();
    let email = verification_email("ana@customer.test");
    let id = enqueue(&pool, &email);

    eventually("the email arrived", Duration::from_secs(10), || {
        sink.messages().len() == 1
    })
    .await;
    let messages = sink.messages();
    let m = &messages[0];
    assert_eq!(header(m, "From"), "\"Acme Support\" <support@example.com>");
    assert_eq!(header(m, "To"), "ana@customer.test");
    assert_eq!(header(m, "Subject"), "Confirm your email address");
    assert_eq!(header(m, "Message-ID"), email.0.message_id);
    assert!(email.0.message_id.ends_with("@support.example.com>"));
    assert!(m.contains("Content-Type: multipart/alternative"), "{m}");
    let parts = crate::smtp::parts(m);
    assert_eq!(parts.len(), 2, "{m}");
    let link = "https://support.example.com/verify-email?token=tok_123";
    let (text_type, text) = &parts[0];
    assert_eq!(text_type, "text/plain; charset=utf-8");
    assert!(text.contains("Hello Ana,") && text.contains(link), "{text}");
    let (html_type, html) = &parts[1];
    assert_eq!(html_type, "text/html; charset=utf-8");
    assert!(html.contains(&format!("href=\"{link}\"")), "{html}");
    eventually("the job is done", Duration::from_secs(5), || {
        job(&pool, id).state == "done"
    })
    .await;
}

async fn smtp_down_then_back_delivers_exactly_once(backend: Backend) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("smtp://127.0.0.1:{port}?tls=none");
    let Some(app) = spawn_app(backend).env("SMTP_URL", &url).start().await else {
        return;
    };
    let pool = app.pool();
    let id = enqueue(&pool, &verification_email("bo@customer.test"));

    eventually("a failed attempt", Duration::from_secs(10), || {
        let j = job(&pool, id);
        j.attempts >= 2 && j.last_error.is_some()
    })
    .await;
    let failed = job(&pool, id);
    assert_ne!(failed.state, "done");
    assert!(
        failed.last_error.unwrap().contains("SMTP"),
        "the error says what failed"
    );

    let sink = SmtpSink::start_on(port);
    eventually(
        "delivered once SMTP is back",
        Duration::from_secs(20),
        || job(&pool, id).state == "done",
    )
    .await;
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.messages().len(), 1, "exactly once");
}

async fn a_relay_refusing_every_email_is_retried_a_refused_mailbox_is_not(backend: Backend) {
    let sink = SmtpSink::start();
    // Refused as a sender (the relay's policy, wrong credentials): every
    // email fails alike until the relay is mended, so none is given up.
    // A 553 like a refused mailbox's, told apart by its enhanced code.
    sink.refuse(Some(("MAIL", "553 5.7.1 sender address rejected")));
    let Some(app) = spawn_app(backend)
        .env("SMTP_URL", &sink.url())
        .start()
        .await
    else {
        return;
    };
    let pool = app.pool();
    let id = enqueue(&pool, &verification_email("cy@customer.test"));
    eventually(
        "attempts refused by the relay",
        Duration::from_secs(10),
        || job(&pool, id).attempts >= 2,
    )
    .await;
    let refused = job(&pool, id);
    assert_ne!(refused.state, "dead", "retried, not given up");
    assert!(refused.last_error.unwrap().contains("553"));
    sink.refuse(None);
    eventually(
        "delivered once the relay accepts",
        Duration::from_secs(20),
        || job(&pool, id).state == "done",
    )
    .await;
    assert_eq!(sink.messages().len(), 1);

    // This one mailbox does not exist: asking again cannot help.
    sink.refuse(Some(("RCPT", "550 5.1.1 no such user")));
    let id = enqueue(&pool, &verification_email("nobody@customer.test"));
    eventually(
        "the refused mailbox's email is dead",
        Duration::from_secs(10),
        || job(&pool, id).state == "dead",
    )
    .await;
    let dead = job(&pool, id);
    assert_eq!(dead.attempts, 1);
    assert!(dead.last_error.unwrap().contains("550"));
}

/// Worker processes of the real binary on the test's database.
struct Workers(Vec<Child>);

impl Workers {
    fn spawn(db_url: &str, count: usize, extra: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir();
        let children = (0..count)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_frontdesk"))
                    .arg("worker")
                    .env_clear()
                    .current_dir(&dir)
                    .env("DATABASE_URL", db_url)
                    .env("DATA_DIR", dir.join("frontdesk-worker-test"))
                    .env("SESSION_SECRET", "worker-test-secret-0123456789abcdefghijk")
                    .env("ENCRYPTION_KEY", "5a".repeat(16) + &"6b".repeat(16))
                    .env("LOG_LEVEL", "warn")
                    .env("JOB_POLL_MS", "20")
                    .env("JOB_RETRY_BASE_MS", "20")
                    .envs(extra.iter().copied())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn worker")
            })
            .collect();
        Self(children)
    }

    fn signal(&self, index: usize, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.0[index].id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait(&mut self, index: usize, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.0[index].try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let mut err = String::new();
                let _ = self.0[index]
                    .stderr
                    .take()
                    .map(|mut e| e.read_to_string(&mut err));
                panic!("worker did not exit within {within:?}: {err}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `host:pid` of the process that ran a job (the worker id is `host:pid:random/n`).
fn process_of(locked_by: &str) -> String {
    locked_by
        .rsplit_once(':')
        .map_or(locked_by, |(process, _)| process)
        .to_string()
}

async fn a_worker_process_sends_email_over_smtp(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = TestDb::create(backend, &dir) else {
        return;
    };
    let sink = SmtpSink::start();
    let pool = db.pool();
    let id = enqueue(&pool, &verification_email("cy@customer.test"));
    let url = sink.url();
    let mut workers = Workers::spawn(
        &db.url,
        1,
        &[
            ("SMTP_URL", url.as_str()),
            ("MAIL_FROM", "Acme Support <support@example.com>"),
        ],
    );
    eventually("the email arrived", Duration::from_secs(20), || {
        sink.messages().len() == 1
    })
    .await;
    assert!(
        workers.0[0].try_wait().unwrap().is_none(),
        "the worker is still running"
    );
    eventually("the job is done", Duration::from_secs(5), || {
        job(&pool, id).state == "done"
    })
    .await;
    assert_eq!(header(&sink.messages()[0], "To"), "cy@customer.test");
}

async fn two_worker_processes_run_1000_jobs_exactly_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = TestDb::create(backend, &dir) else {
        return;
    };
    let pool = db.pool();
    pool.get()
        .unwrap()
        .transaction::<_, diesel::result::Error, _>(|conn| {
            for _ in 0..1000 {
                queue::enqueue(conn, &Diagnostic::default(), EnqueueOptions::default())?;
            }
            Ok(())
        })
        .unwrap();

    let _workers = Workers::spawn(&db.url, 2, &[("WORKER_CONCURRENCY", "4")]);
    let done = || -> i64 {
        jobs::table
            .filter(jobs::kind.eq("diagnostic").and(jobs::state.eq("done")))
            .count()
            .get_result(&mut pool.get().unwrap())
            .unwrap()
    };
    eventually("1000 jobs done", Duration::from_secs(120), || {
        done() == 1000
    })
    .await;

    let rows: Vec<(i32, Option<String>)> = jobs::table
        .filter(jobs::kind.eq("diagnostic"))
        .select((jobs::attempts, jobs::locked_by))
        .load(&mut pool.get().unwrap())
        .unwrap();
    assert_eq!(rows.len(), 1000);
    assert!(
        rows.iter().all(|(attempts, _)| *attempts == 1),
        "every job was claimed exactly once"
    );
    let mut processes: Vec<String> = rows
        .iter()
        .filter_map(|(_, by)| by.as_deref().map(process_of))
        .collect();
    processes.sort();
    processes.dedup();
    assert_eq!(
        processes.len(),
        2,
        "both processes took work: {processes:?}"
    );

    // Once per period across instances (two if the test crossed an hour).
    let mut keys: Vec<Option<String>> = jobs::table
        .filter(jobs::kind.eq("jobs.cleanup"))
        .select(jobs::idempotency_key)
        .load(&mut pool.get().unwrap())
        .unwrap();
    let enqueued = keys.len();
    keys.sort();
    keys.dedup();
    assert!(
        (1..=2).contains(&enqueued) && keys.len() == enqueued,
        "the periodic job is enqueued once per period across instances: {keys:?}"
    );
}

async fn a_worker_killed_mid_job_is_replaced_after_its_lease(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = TestDb::create(backend, &dir) else {
        return;
    };
    let pool = db.pool();
    let id = enqueue(
        &pool,
        &Diagnostic {
            sleep_ms: 2000,
            fail: false,
            ..Diagnostic::default()
        },
    );

    let lease = [("JOB_LEASE_SECS", "1")];
    let first = Workers::spawn(&db.url, 1, &lease);
    eventually(
        "the first worker took the job",
        Duration::from_secs(10),
        || job(&pool, id).state == "running",
    )
    .await;
    let taken_by = job(&pool, id).locked_by.unwrap();
    first.signal(0, "KILL");
    drop(first);

    let _second = Workers::spawn(&db.url, 1, &lease);
    eventually(
        "the job completed elsewhere",
        Duration::from_secs(20),
        || job(&pool, id).state == "done",
    )
    .await;
    let finished = job(&pool, id);
    assert_eq!(finished.attempts, 2, "run again after the lease expired");
    assert_ne!(
        process_of(finished.locked_by.as_deref().unwrap()),
        process_of(&taken_by)
    );
}

fn cli(db_url: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_frontdesk"))
        .args(args)
        .env_clear()
        .current_dir(std::env::temp_dir())
        .env("DATABASE_URL", db_url)
        .env("SESSION_SECRET", "worker-test-secret-0123456789abcdefghijk")
        .env("ENCRYPTION_KEY", "5a".repeat(16) + &"6b".repeat(16))
        .env("DATA_DIR", std::env::temp_dir().join("frontdesk-cli-test"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn a_poisoned_job_ends_dead_and_the_cli_shows_and_retries_it(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = TestDb::create(backend, &dir) else {
        return;
    };
    let pool = db.pool();
    let id = enqueue(
        &pool,
        &Diagnostic {
            sleep_ms: 0,
            fail: true,
            ..Diagnostic::default()
        },
    );

    let mut workers = Workers::spawn(&db.url, 1, &[]);
    eventually("the poisoned job is dead", Duration::from_secs(20), || {
        job(&pool, id).state == "dead"
    })
    .await;
    workers.signal(0, "TERM");
    assert!(workers.wait(0, Duration::from_secs(10)).success());

    let dead = job(&pool, id);
    assert_eq!(dead.attempts, 3, "all of Diagnostic's attempts were used");
    assert_eq!(
        dead.last_error.as_deref(),
        Some("diagnostic job asked to fail")
    );

    let (ok, listing) = cli(&db.url, &["jobs"]);
    assert!(ok, "{listing}");
    assert!(listing.contains("dead     1"), "{listing}");
    assert!(
        listing.contains(&format!("#{id} diagnostic after 3 attempt(s)"))
            && listing.contains("diagnostic job asked to fail"),
        "{listing}"
    );

    let (ok, text) = cli(&db.url, &["jobs", "retry", &id.to_string()]);
    assert!(ok, "{text}");
    let revived = job(&pool, id);
    assert_eq!(revived.state, "queued");
    assert_eq!(revived.attempts, 0);

    let (ok, text) = cli(&db.url, &["jobs", "retry", "999999"]);
    assert!(!ok);
    assert!(text.contains("there is no dead job #999999"), "{text}");
    let (ok, text) = cli(&db.url, &["jobs", "status", "--limit=-1"]);
    assert!(
        !ok,
        "a negative limit is refused alike on both backends: {text}"
    );

    // Dead again; after an outage every dead job of a kind is retried at once.
    let mut workers = Workers::spawn(&db.url, 1, &[]);
    eventually("dead again", Duration::from_secs(20), || {
        job(&pool, id).state == "dead"
    })
    .await;
    workers.signal(0, "TERM");
    assert!(workers.wait(0, Duration::from_secs(10)).success());
    let (ok, text) = cli(&db.url, &["jobs", "retry", "--all", "--kind", "email.send"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("0 dead email.send jobs queued again"),
        "{text}"
    );
    assert_eq!(job(&pool, id).state, "dead");
    let (ok, text) = cli(&db.url, &["jobs", "retry", "--all"]);
    assert!(ok, "{text}");
    assert!(text.contains("1 dead job queued again"), "{text}");
    assert_eq!(job(&pool, id).state, "queued");
}

async fn a_panicking_job_is_a_failed_attempt_and_the_worker_survives(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = TestDb::create(backend, &dir) else {
        return;
    };
    let pool = db.pool();
    let bug = enqueue(
        &pool,
        &Diagnostic {
            panic: true,
            ..Diagnostic::default()
        },
    );
    // One worker, one job at a time: if the panic took the worker down, nothing
    // after it would ever run.
    let mut workers = Workers::spawn(&db.url, 1, &[("WORKER_CONCURRENCY", "1")]);
    eventually("the panicking job is dead", Duration::from_secs(20), || {
        job(&pool, bug).state == "dead"
    })
    .await;
    let dead = job(&pool, bug);
    assert_eq!(dead.attempts, 3, "every attempt was made and recorded");
    assert_eq!(
        dead.last_error.as_deref(),
        Some("the job panicked: diagnostic job asked to panic")
    );
    assert!(dead.locked_until.is_none(), "not left running");

    let after = enqueue(&pool, &Diagnostic::default());
    eventually(
        "the worker still runs jobs",
        Duration::from_secs(10),
        || job(&pool, after).state == "done",
    )
    .await;
    workers.signal(0, "TERM");
    assert!(workers.wait(0, Duration::from_secs(10)).success());
}

/// A worker process running a job that sleeps `sleep_ms`, signalled with
/// SIGTERM once the job runs; returns the job as the worker left it.
async fn terminate_while_running(
    backend: Backend,
    sleep_ms: u64,
    env: &[(&str, &str)],
) -> Option<JobRow> {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::create(backend, &dir)?;
    let pool = db.pool();
    let id = enqueue(
        &pool,
        &Diagnostic {
            sleep_ms,
            ..Diagnostic::default()
        },
    );
    let mut workers = Workers::spawn(&db.url, 1, env);
    eventually("the job is running", Duration::from_secs(10), || {
        job(&pool, id).state == "running"
    })
    .await;
    workers.signal(0, "TERM");
    let status = workers.wait(0, Duration::from_secs(15));
    assert!(status.success(), "exit status {status}");
    Some(job(&pool, id))
}

async fn sigterm_lets_the_running_job_finish(backend: Backend) {
    let Some(finished) = terminate_while_running(backend, 1500, &[]).await else {
        return;
    };
    assert_eq!(
        finished.state, "done",
        "the running job finished before exit"
    );
    assert_eq!(finished.attempts, 1);
}

async fn a_job_still_running_when_the_grace_ends_goes_back_to_the_queue(backend: Backend) {
    let Some(returned) =
        terminate_while_running(backend, 60_000, &[("JOB_SHUTDOWN_GRACE_SECS", "1")]).await
    else {
        return;
    };
    assert_eq!(returned.state, "queued", "handed back, not left running");
    assert_eq!(returned.attempts, 0, "the interrupted run does not count");
    assert!(returned.locked_until.is_none());
}

/// A server whose leases last a second, running a job that takes 30 s.
async fn a_long_job_running(backend: Backend) -> Option<(TestApp, DbPool, JobId)> {
    let app = spawn_app(backend)
        .env("JOB_LEASE_SECS", "1")
        .start()
        .await?;
    let pool = app.pool();
    let id = enqueue(
        &pool,
        &Diagnostic {
            sleep_ms: 30_000,
            ..Diagnostic::default()
        },
    );
    eventually("the job is running", Duration::from_secs(10), || {
        job(&pool, id).state == "running"
    })
    .await;
    Some((app, pool, id))
}

async fn a_run_that_lost_its_lease_stops(backend: Backend) {
    let Some((app, pool, id)) = a_long_job_running(backend).await else {
        return;
    };
    // Another worker took it over (this one stalled past its lease, say).
    diesel::update(jobs::table.filter(jobs::id.eq(id.0)))
        .set((
            jobs::locked_by.eq(Some("another-host:1:abc/0")),
            jobs::locked_until.eq(Some(frontdesk::domain::now() + chrono::TimeDelta::hours(1))),
        ))
        .execute(&mut pool.get().unwrap())
        .unwrap();
    let released = || async {
        let health: serde_json::Value = app.get("/health").await.json().await.unwrap();
        health["checks"]["jobs"]["counters"]["released"]
            .as_u64()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while released().await == 0 {
        assert!(
            Instant::now() < deadline,
            "the run went on after losing its lease"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let row = job(&pool, id);
    assert_eq!(row.locked_by.as_deref(), Some("another-host:1:abc/0"));
    assert_eq!(row.state, "running", "the new holder's run is left alone");
}

async fn a_run_that_cannot_renew_its_lease_stops_before_it_runs_out(backend: Backend) {
    let Some((app, pool, id)) = a_long_job_running(backend).await else {
        return;
    };
    // The job's row is locked for three seconds (a long migration, a stuck
    // transaction): renewals wait behind it while the one-second lease runs
    // out, after which another worker could take the job.
    let mut conn = pool.get().unwrap();
    let holder = std::thread::spawn(move || {
        let lock = match backend {
            Backend::Sqlite => "BEGIN IMMEDIATE".to_string(),
            Backend::Postgres => {
                format!("BEGIN; SELECT id FROM jobs WHERE id = {} FOR UPDATE", id.0)
            }
        };
        conn.batch_execute(&lock).unwrap();
        std::thread::sleep(Duration::from_secs(3));
        conn.batch_execute("COMMIT").unwrap();
    });
    let released = || async {
        let health: serde_json::Value = app.get("/health").await.json().await.unwrap();
        health["checks"]["jobs"]["counters"]["released"]
            .as_u64()
            .unwrap_or(0)
    };
    let started = Instant::now();
    loop {
        if released().await > 0 {
            assert!(
                !holder.is_finished(),
                "stopped while the lease could not be renewed, not after"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the run went on with a lease it could not renew"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    holder.join().unwrap();
}

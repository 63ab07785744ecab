//! The in-process worker pool: claims due jobs, runs them, records the outcome,
//! and on shutdown lets the running job finish (or returns it to the queue).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::rt::task::JoinHandle;
use futures_util::FutureExt as _;
use tokio::sync::{oneshot, watch};

use super::{JobContext, JobFailure, backoff, dispatch, periodic};
use crate::db::migrations::MigrationStatus;
use crate::db::models::Job as JobRow;
use crate::db::models::job::ClaimedJob;
use crate::domain::JobId;

/// `host:pid:random`, unique per process, recorded on every job it runs.
pub fn worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!(
        "{host}:{}:{}",
        std::process::id(),
        hex::encode(rand::random::<[u8; 3]>())
    )
}

/// Workers run on a thread of their own with its own runtime, so jobs never
/// compete with request handling and a blocked caller never stalls them.
pub struct WorkerPool {
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    grace: Duration,
}

impl WorkerPool {
    /// Starts `concurrency` workers and the periodic scheduler.
    pub fn start(ctx: Arc<JobContext>) -> Self {
        Self::start_when_migrated(ctx, None)
    }

    /// [`start`](Self::start), but with `schema` given the workers wait until
    /// no migration is pending: a production instance that starts before its
    /// release phase must not run jobs against the old schema (each failure
    /// would burn one of the job's attempts).
    pub fn start_when_migrated(ctx: Arc<JobContext>, schema: Option<Arc<MigrationStatus>>) -> Self {
        let (shutdown, receiver) = watch::channel(false);
        let id = worker_id();
        let count = ctx.settings().concurrency;
        let grace = ctx.settings().shutdown_grace;
        tracing::info!(workers = count, worker = %id, "job workers started");
        let thread = std::thread::Builder::new()
            .name("frontdesk-jobs".into())
            .spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    if let Some(schema) = schema
                        && !wait_for_schema(&ctx, schema, receiver.clone()).await
                    {
                        return;
                    }
                    let mut tasks = Vec::with_capacity(count + 1);
                    for n in 0..count {
                        let worker = Worker {
                            id: format!("{id}/{n}"),
                            ctx: ctx.clone(),
                            shutdown: receiver.clone(),
                        };
                        tasks.push(actix_web::rt::spawn(worker.run()));
                    }
                    tasks.push(actix_web::rt::spawn(periodic::run(ctx.clone(), receiver)));
                    futures_util::future::join_all(tasks).await;
                    // Dropped here, inside the runtime: the SMTP pool closes cleanly.
                    drop(ctx);
                });
            })
            .map_err(|e| tracing::error!(error = %e, "could not start the job thread"))
            .ok();
        Self {
            shutdown,
            thread,
            grace,
        }
    }

    /// Asks the workers to stop after their current job, without waiting:
    /// lets a server stop claiming jobs while it drains its requests.
    pub fn stopper(&self) -> impl Fn() + Send + 'static {
        let shutdown = self.shutdown.clone();
        move || {
            let _ = shutdown.send(true);
        }
    }

    /// Asks every worker to stop after its current job and waits for them. A job
    /// still running after the grace (`JOB_SHUTDOWN_GRACE_SECS`) is handed back
    /// to the queue.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(thread) = self.thread.take() {
            let joined = actix_web::rt::task::spawn_blocking(move || thread.join());
            // The workers honour the grace period themselves; the margin covers the release.
            if actix_web::rt::time::timeout(self.grace + Duration::from_secs(2), joined)
                .await
                .is_err()
            {
                tracing::warn!("job workers did not stop in time");
            }
        }
    }
}

impl Drop for WorkerPool {
    /// A pool dropped without `shutdown` (a test ending) still stops its thread.
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Waits until `schema` has no pending migration; `false` if shutdown came first.
async fn wait_for_schema(
    ctx: &JobContext,
    schema: Arc<MigrationStatus>,
    mut shutdown: watch::Receiver<bool>,
) -> bool {
    let mut announced = false;
    loop {
        if *shutdown.borrow() {
            return false;
        }
        let (status, pool) = (schema.clone(), ctx.pool.clone());
        let pending = actix_web::rt::task::spawn_blocking(move || status.current(&pool)).await;
        match pending {
            Ok(Ok(pending)) if pending.is_empty() => {
                if announced {
                    tracing::info!("migrations applied: job workers starting");
                }
                return true;
            }
            Ok(Ok(_)) if !announced => {
                tracing::warn!("job workers wait until `frontdesk migrate` has run");
                announced = true;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the migration state"),
            Err(e) => tracing::warn!(error = %e, "cannot read the migration state"),
        }
        tokio::select! {
            _ = actix_web::rt::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// The failure recorded for a job whose code panicked.
fn panicked(panic: &(dyn std::any::Any + Send)) -> JobFailure {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    tracing::error!(panic = %what, "job panicked");
    JobFailure::retry(format!("the job panicked: {what}"))
}

struct Worker {
    id: String,
    ctx: Arc<JobContext>,
    shutdown: watch::Receiver<bool>,
}

impl Worker {
    async fn run(mut self) {
        let settings = self.ctx.settings();
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            let id = self.id.clone();
            let lease = lease_until(settings.lease);
            match self
                .ctx
                .db(move |conn| JobRow::claim(conn, &id, lease))
                .await
            {
                Ok(Some(job)) => self.execute(job).await,
                Ok(None) => self.idle(settings.poll).await,
                Err(e) => {
                    tracing::warn!(error = %e.message, "cannot claim jobs; retrying");
                    self.idle(settings.poll.max(Duration::from_secs(1))).await;
                }
            }
        }
    }

    async fn idle(&mut self, poll: Duration) {
        tokio::select! {
            _ = actix_web::rt::time::sleep(poll) => {}
            _ = self.shutdown.changed() => {}
        }
    }

    #[tracing::instrument(skip_all, fields(job_id = job.id, kind = %job.kind, attempt = job.attempts))]
    async fn execute(&mut self, job: ClaimedJob) {
        let id = JobId(job.id);
        if job.attempts > job.max_attempts {
            // Claimed again after a worker died holding it, with no attempt left.
            let error = format!(
                "gave up after {} attempts: the worker running it stopped before finishing (lease expired)",
                job.max_attempts
            );
            self.finish(
                id,
                Err(JobFailure::permanent(error)),
                job.attempts,
                job.max_attempts,
            )
            .await;
            return;
        }

        let (heartbeat, lease_lost) = self.heartbeat(id);
        let outcome = {
            // A panic in a job's code is a failed attempt like any other: caught
            // here, it neither kills this worker nor leaves the job running forever.
            let run = AssertUnwindSafe(dispatch(&self.ctx, &job.kind, &job.payload))
                .catch_unwind()
                .map(|result| result.unwrap_or_else(|panic| Err(panicked(panic.as_ref()))));
            let mut shutdown = self.shutdown.clone();
            let grace = self.ctx.settings().shutdown_grace;
            let deadline = async move {
                while !*shutdown.borrow() {
                    if shutdown.changed().await.is_err() {
                        break;
                    }
                }
                actix_web::rt::time::sleep(grace).await;
            };
            tokio::select! {
                // A run that has finished is recorded, even if the lease was
                // given up in the same poll: its effects have happened.
                biased;
                result = run => Ending::Ran(result),
                _ = deadline => Ending::Shutdown,
                // Another worker holds the job now and runs it: this copy
                // stops, so the job's effects do not happen twice at once.
                Ok(()) = lease_lost => Ending::LeaseLost,
            }
        };
        heartbeat.abort();

        match outcome {
            Ending::Ran(result) => {
                self.finish(id, result, job.attempts, job.max_attempts)
                    .await
            }
            Ending::LeaseLost => {
                self.ctx
                    .metrics
                    .jobs
                    .released
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!("job lease lost to another worker: this run was stopped");
            }
            Ending::Shutdown => {
                let worker = self.id.clone();
                match self
                    .ctx
                    .db(move |conn| JobRow::release(conn, id, &worker))
                    .await
                {
                    Ok(_) => {
                        self.ctx
                            .metrics
                            .jobs
                            .released
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("shutdown grace expired: job returned to the queue");
                    }
                    Err(e) => {
                        tracing::error!(error = %e.message, "could not return job to the queue; its lease will expire")
                    }
                }
            }
        }
    }

    /// Renews the lease while a long job runs, so no other worker takes it
    /// over; the receiver hears when the lease was lost all the same (this
    /// worker stalled past it, say).
    fn heartbeat(&self, id: JobId) -> (JoinHandle<()>, oneshot::Receiver<()>) {
        let ctx = self.ctx.clone();
        let worker = self.id.clone();
        let lease = ctx.settings().lease;
        let (lost, lease_lost) = oneshot::channel();
        let task = actix_web::rt::spawn(async move {
            let every = (lease / 3).max(Duration::from_millis(200));
            // Measured on this instance's monotonic clock from before each
            // request, so it never runs later than the lease in the database.
            let mut held_until = std::time::Instant::now() + lease;
            loop {
                actix_web::rt::time::sleep(every).await;
                let worker = worker.clone();
                let asked = std::time::Instant::now();
                let until = lease_until(lease);
                // A renewal stuck behind a lock or an exhausted pool counts as
                // failed once the next one is due.
                let renewed = tokio::time::timeout(
                    every,
                    ctx.db(move |conn| JobRow::heartbeat(conn, id, &worker, until)),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(JobFailure::retry(
                        "the lease renewal did not finish in time",
                    ))
                });
                match renewed {
                    Ok(true) => held_until = asked + lease,
                    Ok(false) => {
                        // Released or taken over: nothing left to renew.
                        let _ = lost.send(());
                        return;
                    }
                    Err(e) if std::time::Instant::now() + every >= held_until => {
                        // The lease runs out before the next try: another
                        // worker may take the job then. Stopping now is what
                        // keeps it from running twice at once.
                        tracing::warn!(error = %e.message, "could not renew job lease before it ran out; stopping this run");
                        let _ = lost.send(());
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e.message, "could not renew job lease"),
                }
            }
        });
        (task, lease_lost)
    }

    async fn finish(&self, id: JobId, result: Result<(), JobFailure>, attempts: i32, max: i32) {
        let metrics = &self.ctx.metrics.jobs;
        let outcome = match result {
            Ok(()) => {
                metrics.succeeded.fetch_add(1, Ordering::Relaxed);
                Recorded::Done
            }
            Err(failure) if failure.permanent || attempts >= max => {
                metrics.dead.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %failure.message, attempts, "job is dead");
                Recorded::Dead(failure.message)
            }
            Err(failure) => {
                metrics.retried.fetch_add(1, Ordering::Relaxed);
                let delay = backoff(self.ctx.settings().retry_base, attempts);
                tracing::warn!(error = %failure.message, attempts, retry_in_ms = delay.as_millis() as u64, "job failed; will retry");
                Recorded::Retry(lease_until(delay), failure.message)
            }
        };
        // A finished job whose outcome is not written runs again after its
        // lease (an email sent twice): a database hiccup gets a few more tries.
        let mut stored = Err(JobFailure::retry("not tried"));
        for (attempt, pause_ms) in [0u64, 200, 1000, 3000].into_iter().enumerate() {
            // Not even a zero sleep on the first try: a timer wait costs a
            // millisecond tick per job.
            if attempt > 0 {
                actix_web::rt::time::sleep(Duration::from_millis(pause_ms)).await;
            }
            let (worker, outcome) = (self.id.clone(), outcome.clone());
            stored = self
                .ctx
                .db(move |conn| match &outcome {
                    Recorded::Done => JobRow::complete(conn, id, &worker),
                    Recorded::Dead(message) => JobRow::bury(conn, id, &worker, message),
                    Recorded::Retry(run_at, message) => {
                        JobRow::retry_at(conn, id, &worker, *run_at, message)
                    }
                })
                .await;
            if stored.is_ok() {
                break;
            }
        }
        match stored {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("job outcome not recorded: the lease was lost to another worker")
            }
            Err(e) => {
                tracing::error!(error = %e.message, "job outcome not recorded; it will run again after its lease")
            }
        }
    }
}

/// How a job ended.
enum Ending {
    Ran(Result<(), JobFailure>),
    /// The shutdown grace ran out first: the job goes back to the queue.
    Shutdown,
    LeaseLost,
}

/// What to write about a job that ran.
#[derive(Clone)]
enum Recorded {
    Done,
    Dead(String),
    Retry(chrono::NaiveDateTime, String),
}

fn lease_until(after: Duration) -> chrono::NaiveDateTime {
    let delta = chrono::TimeDelta::from_std(after).unwrap_or(chrono::TimeDelta::hours(1));
    crate::domain::now() + delta
}

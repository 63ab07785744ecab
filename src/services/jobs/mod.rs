//! Durable background jobs.
//!
//! A job is a serializable struct with a stable `KIND`. It is enqueued with
//! [`enqueue`] on the caller's connection, inside the caller's transaction, so a
//! rolled-back change enqueues nothing (transactional outbox). Workers claim due
//! jobs under a lease, retry failures with exponential backoff and jitter, and
//! bury a job as `dead` with its last error after its last attempt.

mod kinds;
mod metrics;
mod periodic;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{Config, JobSettings};
use crate::db::models::{Job as JobRow, NewJob};
use crate::db::{DbConnection, DbPool};
use crate::domain::JobId;
use crate::services::billing::{CancelSupersededSubscription, ProcessStripeEvent};
use crate::services::chat::SummarizeConversation;
use crate::services::knowledge::IndexDocument;
use crate::services::mail::Mailer;

pub use kinds::{CleanupFinishedJobs, Diagnostic, SendEmail};
pub use metrics::{JobCounters, JobMetrics};
pub use worker::{WorkerPool, worker_id};

/// A unit of background work.
pub trait Job: Serialize + DeserializeOwned {
    /// Stored in the `kind` column; never rename one that may be queued.
    const KIND: &'static str;
    const MAX_ATTEMPTS: i32 = 8;
}

/// Why a run failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    pub message: String,
    pub permanent: bool,
}

impl JobFailure {
    pub fn retry(message: impl std::fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            permanent: false,
        }
    }

    pub fn permanent(message: impl std::fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            permanent: true,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions<'a> {
    /// Run no earlier than this (naive UTC); `None` means now.
    pub run_at: Option<NaiveDateTime>,
    /// Enqueueing twice with the same key is a no-op.
    pub idempotency_key: Option<&'a str>,
}

/// Enqueues `job` on `conn`. Returns `None` when the idempotency key was taken.
/// Errors are diesel's, so enqueueing composes with the caller's transaction.
pub fn enqueue<J: Job>(
    conn: &mut DbConnection,
    job: &J,
    options: EnqueueOptions<'_>,
) -> diesel::QueryResult<Option<JobId>> {
    let payload = serde_json::to_string(job)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    let id = JobRow::enqueue(
        conn,
        &NewJob {
            kind: J::KIND,
            payload: &payload,
            max_attempts: J::MAX_ATTEMPTS,
            run_at: options.run_at.unwrap_or_else(crate::domain::now),
            idempotency_key: options.idempotency_key,
        },
    )?;
    Ok(id)
}

/// Everything a running job may use.
pub struct JobContext {
    pub pool: DbPool,
    pub config: Arc<Config>,
    pub mailer: Arc<Mailer>,
    pub metrics: Arc<crate::telemetry::metrics::Metrics>,
    pub chat: Arc<crate::services::chat::ChatEngine>,
    /// `None` when billing is off.
    pub stripe: Option<Arc<crate::services::billing::StripeApi>>,
}

impl JobContext {
    pub fn settings(&self) -> JobSettings {
        self.config.jobs
    }

    /// Runs blocking database work off the async workers.
    pub async fn db<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut DbConnection) -> Result<T, diesel::result::Error> + Send + 'static,
    ) -> Result<T, JobFailure> {
        let pool = self.pool.clone();
        actix_web::rt::task::spawn_blocking(move || {
            let mut conn = pool
                .get()
                .map_err(|e| JobFailure::retry(format!("database: {e}")))?;
            work(&mut conn).map_err(|e| JobFailure::retry(format!("database: {e}")))
        })
        .await
        .map_err(|e| JobFailure::retry(format!("database task: {e}")))?
    }
}

fn decode<J: Job>(payload: &str) -> Result<J, JobFailure> {
    serde_json::from_str(payload).map_err(|e| {
        JobFailure::permanent(format!(
            "undecodable payload for job kind {:?}: {e}",
            J::KIND
        ))
    })
}

/// The one place that maps a stored kind to code. An unknown kind never crashes
/// the worker or blocks the queue: it is retried with backoff and then buried
/// with a clear error. Not buried at once, because during a rolling deploy an
/// instance still on the old version can claim a job only the new one knows.
pub async fn dispatch(ctx: &JobContext, kind: &str, payload: &str) -> Result<(), JobFailure> {
    match kind {
        SendEmail::KIND => decode::<SendEmail>(payload)?.run(ctx).await,
        CleanupFinishedJobs::KIND => decode::<CleanupFinishedJobs>(payload)?.run(ctx).await,
        Diagnostic::KIND => decode::<Diagnostic>(payload)?.run(ctx).await,
        IndexDocument::KIND => decode::<IndexDocument>(payload)?.run(ctx).await,
        SummarizeConversation::KIND => decode::<SummarizeConversation>(payload)?.run(ctx).await,
        ProcessStripeEvent::KIND => decode::<ProcessStripeEvent>(payload)?.run(ctx).await,
        CancelSupersededSubscription::KIND => {
            decode::<CancelSupersededSubscription>(payload)?
                .run(ctx)
                .await
        }
        other => Err(JobFailure::retry(format!(
            "unknown job kind {other:?}: no handler in this version of frontdesk"
        ))),
    }
}

/// Exponential backoff with jitter: about `base * 2^(attempt-1)`, capped at an
/// hour, scaled by a random factor in [0.5, 1.0) so retries of many jobs spread out.
pub fn backoff(base: Duration, attempt: i32) -> Duration {
    nominal_backoff(base, attempt).mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

fn nominal_backoff(base: Duration, attempt: i32) -> Duration {
    let exp = attempt.clamp(1, 20) - 1;
    base.saturating_mul(1u32 << exp)
        .min(Duration::from_secs(3600))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::backoff;

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_a_cap() {
        let base = Duration::from_secs(2);
        for attempt in 1..=6 {
            let nominal = base * (1 << (attempt - 1));
            let d = backoff(base, attempt);
            assert!(d >= nominal / 2 && d < nominal, "attempt {attempt}: {d:?}");
        }
        assert!(backoff(base, 40) <= Duration::from_secs(3600));
    }

    #[test]
    fn an_email_is_retried_for_at_least_a_day() {
        use super::{Job as _, SendEmail, nominal_backoff};
        // The default JOB_RETRY_BASE_MS, and the jitter at its shortest (half).
        let base = Duration::from_secs(5);
        let shortest: Duration = (1..SendEmail::MAX_ATTEMPTS)
            .map(|attempt| nominal_backoff(base, attempt) / 2)
            .sum();
        assert!(
            shortest >= Duration::from_secs(24 * 3600),
            "an SMTP outage of {shortest:?} would lose mail"
        );
    }
}

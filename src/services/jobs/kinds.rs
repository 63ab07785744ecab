//! The job kinds this version knows. Each is a struct with a stable `KIND`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Job, JobContext, JobFailure};
use crate::db::models::Job as JobRow;
use crate::services::mail::OutgoingEmail;

/// Delivers one email. Every email the product sends goes through this job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SendEmail(pub OutgoingEmail);

impl Job for SendEmail {
    const KIND: &'static str = "email.send";
    /// With the default backoff: ten quick tries in the first hour and a
    /// half, then about hourly, for at least a day (more like a day and a half)
    /// before the email is given up as dead (unit test below in `jobs`).
    const MAX_ATTEMPTS: i32 = 60;
}

impl SendEmail {
    pub async fn run(self, ctx: &JobContext) -> Result<(), JobFailure> {
        match ctx.mailer.send(&self.0).await {
            Ok(()) => {
                ctx.metrics.jobs.email_sent();
                Ok(())
            }
            Err(e) => {
                ctx.metrics.jobs.email_failed();
                if e.is_permanent() {
                    Err(JobFailure::permanent(e))
                } else {
                    Err(JobFailure::retry(e))
                }
            }
        }
    }
}

/// Dead jobs are kept at least this long, for an operator to retry.
const DEAD_RETENTION_DAYS: i64 = 90;

/// Retention: deletes done jobs older than `JOB_RETENTION_DAYS` (dead ones after
/// at least [`DEAD_RETENTION_DAYS`]), expired
/// sessions and stale sign-in failures. Enqueued
/// once per hour by the periodic scheduler, whatever the number of instances.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CleanupFinishedJobs {}

impl Job for CleanupFinishedJobs {
    const KIND: &'static str = "jobs.cleanup";
    const MAX_ATTEMPTS: i32 = 3;
}

impl CleanupFinishedJobs {
    pub async fn run(self, ctx: &JobContext) -> Result<(), JobFailure> {
        let days = i64::from(ctx.settings().retention_days);
        let now = crate::domain::now();
        let cutoff = now - chrono::TimeDelta::days(days);
        let dead_cutoff = now - chrono::TimeDelta::days(days.max(DEAD_RETENTION_DAYS));
        let (deleted, sessions, failures, redriven) = ctx
            .db(move |conn| {
                Ok((
                    JobRow::delete_finished_before(conn, cutoff, dead_cutoff)?,
                    crate::db::models::SessionRow::delete_expired(conn)?,
                    crate::services::accounts::forget_old_login_failures(conn)?,
                    crate::services::billing::events::redrive_stuck(conn)?,
                ))
            })
            .await?;
        tracing::info!(
            deleted,
            sessions,
            failures,
            redriven_stripe_events = redriven,
            retention_days = days,
            "retention clean-up done"
        );
        Ok(())
    }
}

/// An operator's probe of the pipeline (`frontdesk jobs ping`): optionally takes
/// a while, optionally fails, and logs that it ran.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Diagnostic {
    #[serde(default)]
    pub sleep_ms: u64,
    #[serde(default)]
    pub fail: bool,
    /// Panics instead, as a bug in a job's code would: the worker must survive.
    #[serde(default)]
    pub panic: bool,
}

impl Job for Diagnostic {
    const KIND: &'static str = "diagnostic";
    const MAX_ATTEMPTS: i32 = 3;
}

impl Diagnostic {
    pub async fn run(self, _ctx: &JobContext) -> Result<(), JobFailure> {
        if self.sleep_ms > 0 {
            actix_web::rt::time::sleep(Duration::from_millis(self.sleep_ms.min(600_000))).await;
        }
        if self.panic {
            panic!("diagnostic job asked to panic");
        }
        if self.fail {
            return Err(JobFailure::retry("diagnostic job asked to fail"));
        }
        tracing::debug!("diagnostic job ran");
        Ok(())
    }
}

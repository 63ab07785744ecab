//! Periodic jobs. Every instance runs this scheduler; the idempotency key names
//! the period, so each period's job is enqueued once however many instances run.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{CleanupFinishedJobs, EnqueueOptions, JobContext, enqueue};

const CLEANUP_PERIOD_SECS: i64 = 3600;
const TICK: Duration = Duration::from_secs(30);

/// Enqueues each period's jobs until shutdown.
pub async fn run(ctx: Arc<JobContext>, mut shutdown: watch::Receiver<bool>) {
    let mut last_period = None;
    loop {
        let period = chrono::Utc::now().timestamp() / CLEANUP_PERIOD_SECS;
        if last_period != Some(period) {
            let key = format!(
                "periodic:{}:{period}",
                <CleanupFinishedJobs as super::Job>::KIND
            );
            let result = ctx
                .db(move |conn| {
                    enqueue(
                        conn,
                        &CleanupFinishedJobs {},
                        EnqueueOptions {
                            run_at: None,
                            idempotency_key: Some(&key),
                        },
                    )
                })
                .await;
            match result {
                Ok(_) => last_period = Some(period),
                Err(e) => tracing::warn!(error = %e.message, "could not enqueue periodic jobs"),
            }
        }
        tokio::select! {
            _ = actix_web::rt::time::sleep(TICK) => {}
            _ = shutdown.changed() => return,
        }
    }
}

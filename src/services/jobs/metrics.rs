//! Counters of this process, ready to be exported by a metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct JobMetrics {
    pub succeeded: AtomicU64,
    pub retried: AtomicU64,
    pub dead: AtomicU64,
    pub released: AtomicU64,
    pub emails_sent: AtomicU64,
    pub emails_failed: AtomicU64,
}

/// A point-in-time copy for display.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCounters {
    pub succeeded: u64,
    pub retried: u64,
    pub dead: u64,
    pub released: u64,
    pub emails_sent: u64,
    pub emails_failed: u64,
}

impl JobMetrics {
    pub fn email_sent(&self) {
        self.emails_sent.fetch_add(1, Ordering::Relaxed);
    }

    pub fn email_failed(&self) {
        self.emails_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> JobCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        JobCounters {
            succeeded: get(&self.succeeded),
            retried: get(&self.retried),
            dead: get(&self.dead),
            released: get(&self.released),
            emails_sent: get(&self.emails_sent),
            emails_failed: get(&self.emails_failed),
        }
    }
}

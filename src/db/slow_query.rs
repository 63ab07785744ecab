//! `SLOW_QUERY_MS`: statements slower than the threshold are logged at WARN with
//! their SQL text. Bound values are left out: they may be personal data or
//! secrets (a password hash, a token).

use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent};

pub struct SlowQueryLog {
    threshold: Duration,
    started: Option<Instant>,
}

impl SlowQueryLog {
    pub fn new(threshold: Duration) -> Self {
        Self {
            threshold,
            started: None,
        }
    }
}

impl Instrumentation for SlowQueryLog {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { .. } => self.started = Some(Instant::now()),
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                let Some(started) = self.started.take() else {
                    return;
                };
                let elapsed = started.elapsed();
                if elapsed >= self.threshold {
                    let text = query.to_string();
                    let sql = sql_only(&text);
                    let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
                    tracing::warn!(
                        elapsed_ms,
                        slow_query_ms =
                            u64::try_from(self.threshold.as_millis()).unwrap_or(u64::MAX),
                        failed = error.is_some(),
                        sql,
                        "slow query"
                    );
                }
            }
            _ => {}
        }
    }
}

/// diesel renders a statement as `SQL -- binds: [values]`; keep the SQL.
fn sql_only(rendered: &str) -> &str {
    rendered
        .split_once(" -- binds:")
        .map_or(rendered, |(sql, _)| sql)
        .trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::connection::SimpleConnection as _;
    use diesel::{Connection as _, RunQueryDsl as _, SqliteConnection};
    use std::sync::{Arc, Mutex};

    #[test]
    fn bound_values_never_reach_the_log() {
        assert_eq!(
            sql_only("SELECT * FROM users WHERE email = $1 -- binds: [\"a@b.example\"]"),
            "SELECT * FROM users WHERE email = $1"
        );
        assert_eq!(sql_only("SELECT 1"), "SELECT 1");
    }

    /// A zero threshold reports every statement: proves the hook is called with
    /// timings for real queries.
    #[test]
    fn statements_over_the_threshold_are_seen() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        let log = Arc::clone(&seen);
        let mut inner = SlowQueryLog::new(Duration::ZERO);
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::FinishQuery { query, .. } = &event {
                log.lock()
                    .unwrap()
                    .push(sql_only(&query.to_string()).to_string());
            }
            inner.on_connection_event(event);
        });
        conn.batch_execute("CREATE TABLE t (x INTEGER)").unwrap();
        diesel::sql_query("INSERT INTO t (x) VALUES ($1)")
            .bind::<diesel::sql_types::Integer, _>(42)
            .execute(&mut conn)
            .unwrap();
        let seen = seen.lock().unwrap();
        assert!(
            seen.iter().any(|q| q == "INSERT INTO t (x) VALUES ($1)"),
            "{seen:?}"
        );
        assert!(seen.iter().all(|q| !q.contains("42")), "{seen:?}");
    }
}

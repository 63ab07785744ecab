//! Liveness, readiness and health: JSON, never cached, never rate limited.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use serde_json::json;

use crate::db;
use crate::db::models::Job as JobRow;
use crate::db::models::job::QueueStats;
use crate::error::AppError;
use crate::services::jobs::JobCounters;
use crate::startup::AppState;

const DB_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Queue statistics take three queries; probes may arrive thousands of times a
/// second, so they are read at most this often. The database ping is not cached:
/// an unreachable database shows at once.
const QUEUE_STATS_MAX_AGE: Duration = Duration::from_secs(1);

/// The last queue statistics read, shared by every HTTP worker.
#[derive(Default)]
pub struct QueueStatsCache(Mutex<Option<(Instant, QueueStats)>>);

impl QueueStatsCache {
    fn fresh(&self) -> Option<QueueStats> {
        let cached = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        cached
            .as_ref()
            .filter(|(at, _)| at.elapsed() < QUEUE_STATS_MAX_AGE)
            .map(|(_, stats)| stats.clone())
    }

    fn store(&self, stats: &QueueStats) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), stats.clone()));
    }
}

/// How much a probe looks at.
#[derive(Clone, Copy)]
enum Depth {
    /// `/health/db`: the database answers.
    Database,
    /// `/ready`: and every migration is applied.
    Schema,
    /// `/health`: and the job queue's state.
    Everything,
}

/// The checks running right now, one run per [`Depth`], which requests arriving
/// meanwhile wait for instead of starting their own. A load balancer, a
/// platform's health checker and a dashboard may ask thousands of times a second;
/// they get an answer no older than the request itself took, while the database
/// sees one ping per round trip rather than one per request. Nothing is cached
/// past the run: an unreachable database shows in the very next answer.
#[derive(Default)]
pub struct ChecksInFlight([Mutex<Option<Arc<tokio::sync::OnceCell<Checks>>>>; 3]);

impl ChecksInFlight {
    /// The run a request arriving now shares: the one still going, else a new one.
    fn join(&self, depth: Depth) -> Arc<tokio::sync::OnceCell<Checks>> {
        let mut slot = self.0[depth as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &*slot {
            Some(run) if !run.initialized() => Arc::clone(run),
            _ => Arc::clone(slot.insert(Arc::new(tokio::sync::OnceCell::new()))),
        }
    }
}

/// Queue statistics no older than [`QUEUE_STATS_MAX_AGE`]; `None` when the
/// database cannot tell. Blocking: call it on the blocking pool.
fn cached_queue_stats(state: &AppState) -> Option<QueueStats> {
    state.queue_stats.fresh().or_else(|| {
        let stats = state
            .pool
            .get()
            .ok()
            .and_then(|mut c| JobRow::stats(&mut c).ok())?;
        state.queue_stats.store(&stats);
        Some(stats)
    })
}

/// [`cached_queue_stats`] off the async workers.
pub(super) async fn queue_stats(state: &web::Data<AppState>) -> Option<QueueStats> {
    let state = state.clone();
    web::block(move || cached_queue_stats(&state))
        .await
        .ok()
        .flatten()
}

fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `GET /live`: the process is up; says nothing about its dependencies.
pub async fn live(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "pid": std::process::id(),
        "uptimeSeconds": state.started.elapsed().as_secs(),
    }))
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct DbCheck {
    status: &'static str,
    backend: &'static str,
    latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct MigrationCheck {
    status: &'static str,
    pending: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Clone)]
struct Checks {
    database: DbCheck,
    migrations: MigrationCheck,
    queue: Option<QueueStats>,
}

impl Checks {
    fn healthy(&self) -> bool {
        self.database.status == "ok" && self.migrations.status == "ok"
    }

    /// One sentence for the 503 body.
    fn reason(&self) -> Option<String> {
        if let Some(e) = &self.database.error {
            return Some(format!("database unreachable: {e}"));
        }
        if let Some(e) = &self.migrations.error {
            return Some(format!("cannot read migration state: {e}"));
        }
        if !self.migrations.pending.is_empty() {
            return Some(format!(
                "pending migrations: {} (run `frontdesk migrate` or start with `serve --migrate`)",
                self.migrations.pending.join(", ")
            ));
        }
        None
    }
}

/// The checks `depth` asks for, shared with every request of that depth that
/// arrives while they run (see [`ChecksInFlight`]).
async fn run_checks(state: &web::Data<AppState>, depth: Depth) -> Checks {
    let run = state.checks_in_flight.join(depth);
    run.get_or_init(|| check_now(state, depth)).await.clone()
}

/// Runs the database and migration checks on the blocking pool.
async fn check_now(state: &web::Data<AppState>, depth: Depth) -> Checks {
    let with_migrations = !matches!(depth, Depth::Database);
    let with_queue = matches!(depth, Depth::Everything);
    let state = state.clone();
    let backend = state.config.database_url.backend().as_str();
    let production = state.config.environment.is_production();
    let span = tracing::Span::current();
    // A database host that drops packets must not hold the probe (and its
    // thread) for minutes: past the budget the answer is "unreachable".
    let checks = web::block(move || {
        let _entered = span.enter();
        let started = Instant::now();
        let ping = db::ping(&state.pool, DB_CHECK_TIMEOUT);
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let migrations = match (&ping, with_migrations) {
            (Ok(()), true) => Some(state.migrations.current(&state.pool)),
            _ => None,
        };
        let up_to_date = matches!(&migrations, Some(Ok(p)) if p.is_empty());
        let queue = (with_queue && up_to_date)
            .then(|| cached_queue_stats(&state))
            .flatten();
        (ping, latency_ms, migrations, queue)
    });
    let outcome = tokio::time::timeout(DB_CHECK_TIMEOUT * 3, checks).await;

    let (ping, latency_ms, migrations, queue) = match outcome {
        Ok(Ok(parts)) => parts,
        Ok(Err(e)) => (Err(db::DbError::Migration(e.to_string())), 0.0, None, None),
        Err(_) => (
            Err(db::DbError::Unresponsive(DB_CHECK_TIMEOUT * 3)),
            0.0,
            None,
            None,
        ),
    };
    let database = DbCheck {
        status: if ping.is_ok() { "ok" } else { "error" },
        backend,
        latency_ms: (latency_ms * 1000.0).round() / 1000.0,
        error: ping
            .err()
            .map(|e| shown(production, "database check failed", e.to_string())),
    };
    let migrations = match migrations {
        Some(Ok(pending)) => MigrationCheck {
            status: if pending.is_empty() { "ok" } else { "pending" },
            pending,
            error: None,
        },
        Some(Err(e)) => MigrationCheck {
            status: "error",
            pending: Vec::new(),
            error: Some(shown(production, "migration check failed", e.to_string())),
        },
        None => MigrationCheck {
            status: if with_migrations {
                "unknown"
            } else {
                "skipped"
            },
            pending: Vec::new(),
            error: None,
        },
    };
    Checks {
        database,
        migrations,
        queue,
    }
}

/// What a probe says about a failed check. Probes answer anyone, so in
/// production the cause (host names, driver messages) goes to the log only.
fn shown(production: bool, what: &str, cause: String) -> String {
    if production {
        tracing::warn!(cause, "{what}");
        "failed (the cause is in the server log)".to_string()
    } else {
        cause
    }
}

/// What keeps answering while migrations are pending: the probes (which say
/// why nothing else does), metrics, and the assets, which need no schema.
fn answers_before_migrations(path: &str) -> bool {
    matches!(
        path,
        "/live"
            | "/ready"
            | "/readiness"
            | "/health"
            | "/health/db"
            | "/metrics"
            | "/metrics/json"
            | "/widget.js"
            | "/widget.css"
    ) || path.starts_with("/static/")
}

/// Middleware: while migrations are pending (production without `--migrate`)
/// every other request answers 503 instead of running against a schema that
/// is not there yet. Until `frontdesk migrate` has run, the pending list is
/// re-read at most every few seconds (see `MigrationStatus::current`).
pub async fn until_migrated(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, actix_web::Error> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .filter(|s| !s.migrations.known_up_to_date() && !answers_before_migrations(req.path()))
        .cloned();
    if let Some(state) = state {
        // Unknown (the database cannot say) counts as still pending.
        let pending = web::block(move || {
            state
                .migrations
                .current(&state.pool)
                .map_or(true, |p| !p.is_empty())
        })
        .await
        .unwrap_or(true);
        if pending {
            let refused = AppError::Unavailable(
                "Frontdesk is being upgraded. Please try again in a few minutes.".into(),
            );
            return Ok(req.error_response(refused).map_into_right_body());
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// `GET /ready` and `/readiness`: 200 only when the database answers and every
/// migration is applied, so a load balancer sends no traffic before that.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let checks = run_checks(&state, Depth::Schema).await;
    match checks.reason() {
        None => HttpResponse::Ok().json(json!({
            "status": "ready",
            "timestamp": timestamp(),
        })),
        Some(reason) => HttpResponse::ServiceUnavailable().json(json!({
            "status": "unavailable",
            "reason": reason,
            "timestamp": timestamp(),
        })),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Health<'a> {
    status: &'static str,
    timestamp: String,
    uptime_seconds: u64,
    environment: &'static str,
    version: &'static str,
    reason: Option<String>,
    checks: HealthChecks<'a>,
}

#[derive(Serialize)]
struct HealthChecks<'a> {
    database: &'a DbCheck,
    migrations: &'a MigrationCheck,
    pool: PoolCheck,
    memory: MemoryCheck,
    jobs: JobsCheck,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JobsCheck {
    status: &'static str,
    /// Queued jobs whose time has come.
    queue_depth: Option<i64>,
    /// How long the oldest due job has waited.
    oldest_due_age_seconds: Option<i64>,
    running: Option<i64>,
    dead: Option<i64>,
    /// Since this process started.
    counters: JobCounters,
}

#[derive(Serialize)]
struct PoolCheck {
    status: &'static str,
    connections: u32,
    idle: u32,
    max: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MemoryCheck {
    status: &'static str,
    rss_bytes: Option<u64>,
}

/// `GET /health`: everything an operator looks at first.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let checks = run_checks(&state, Depth::Everything).await;
    let healthy = checks.healthy();
    let pool = state.pool.state();
    let body = Health {
        status: if healthy { "ok" } else { "unhealthy" },
        timestamp: timestamp(),
        uptime_seconds: state.started.elapsed().as_secs(),
        environment: state.config.environment.as_str(),
        version: env!("CARGO_PKG_VERSION"),
        reason: checks.reason(),
        checks: HealthChecks {
            database: &checks.database,
            migrations: &checks.migrations,
            pool: PoolCheck {
                // Every connection busy: requests are queueing for one.
                status: if pool.idle_connections == 0 && pool.connections >= state.pool.max_size() {
                    "saturated"
                } else {
                    "ok"
                },
                connections: pool.connections,
                idle: pool.idle_connections,
                max: state.pool.max_size(),
            },
            memory: MemoryCheck {
                status: "ok",
                rss_bytes: resident_memory_bytes(),
            },
            jobs: JobsCheck {
                status: if checks.queue.is_some() {
                    "ok"
                } else {
                    "unknown"
                },
                queue_depth: checks.queue.as_ref().map(|q| q.due),
                oldest_due_age_seconds: checks
                    .queue
                    .as_ref()
                    .and_then(|q| q.oldest_due_age_seconds()),
                running: checks.queue.as_ref().map(|q| q.running),
                dead: checks.queue.as_ref().map(|q| q.dead),
                counters: state.metrics.jobs.snapshot(),
            },
        },
    };
    if healthy {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `GET /health/db`: the database alone.
pub async fn health_db(state: web::Data<AppState>) -> HttpResponse {
    let checks = run_checks(&state, Depth::Database).await;
    if checks.database.status == "ok" {
        HttpResponse::Ok().json(checks.database)
    } else {
        HttpResponse::ServiceUnavailable().json(checks.database)
    }
}

/// Resident set size from /proc (Linux, whatever the page size); `None`
/// elsewhere. Read at most once a second: `/health` may be asked thousands of
/// times a second, and the kernel builds `/proc/self/status` afresh each time.
pub(super) fn resident_memory_bytes() -> Option<u64> {
    use std::sync::OnceLock;
    /// When it was last read, and what it said.
    type Reading = Option<(Instant, Option<u64>)>;
    static LAST: OnceLock<Mutex<Reading>> = OnceLock::new();
    let mut last = LAST
        .get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some((at, bytes)) = *last
        && at.elapsed() < Duration::from_secs(1)
    {
        return bytes;
    }
    let bytes = read_vm_rss();
    *last = Some((Instant::now(), bytes));
    bytes
}

fn read_vm_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks() -> Checks {
        Checks {
            database: DbCheck {
                status: "ok",
                backend: "sqlite",
                latency_ms: 0.1,
                error: None,
            },
            migrations: MigrationCheck {
                status: "ok",
                pending: Vec::new(),
                error: None,
            },
            queue: None,
        }
    }

    #[test]
    fn requests_share_the_run_in_flight_and_start_anew_once_it_answered() {
        let in_flight = ChecksInFlight::default();
        let first = in_flight.join(Depth::Everything);
        let meanwhile = in_flight.join(Depth::Everything);
        assert!(
            Arc::ptr_eq(&first, &meanwhile),
            "a run still going is shared"
        );
        let other_depth = in_flight.join(Depth::Database);
        assert!(
            !Arc::ptr_eq(&first, &other_depth),
            "each depth runs its own checks"
        );

        first.set(checks()).ok();
        let after = in_flight.join(Depth::Everything);
        assert!(
            !Arc::ptr_eq(&first, &after),
            "an answered run is never reused"
        );
        assert!(!after.initialized());
    }
}

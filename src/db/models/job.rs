//! The `jobs` table: enqueue, claim under a lease, finish, and operator queries.
//!
//! Each statement that changes a running job checks `locked_by`, so a worker
//! whose lease expired (and whose job another worker took over) changes nothing.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamp};

use crate::db::schema::jobs;
use crate::db::{Backend, DbConnection};
use crate::domain::JobId;

pub const QUEUED: &str = "queued";
pub const RUNNING: &str = "running";
pub const DONE: &str = "done";
pub const DEAD: &str = "dead";
/// What a done job's payload becomes.
pub const SPENT_PAYLOAD: &str = "{}";

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = jobs)]
pub struct Job {
    pub id: JobId,
    pub kind: String,
    pub payload: String,
    pub state: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: NaiveDateTime,
    pub locked_by: Option<String>,
    pub locked_until: Option<NaiveDateTime>,
    pub last_error: Option<String>,
    pub idempotency_key: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    pub kind: &'a str,
    pub payload: &'a str,
    pub max_attempts: i32,
    pub run_at: NaiveDateTime,
    pub idempotency_key: Option<&'a str>,
}

/// What a worker gets from a successful claim.
#[derive(Debug, Clone, QueryableByName)]
pub struct ClaimedJob {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Text)]
    pub payload: String,
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Integer)]
    pub max_attempts: i32,
}

#[derive(QueryableByName)]
struct InsertedId {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Queue depth for probes and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub due: i64,
    pub oldest_due: Option<NaiveDateTime>,
    pub running: i64,
    pub dead: i64,
}

impl QueueStats {
    /// How long the oldest due job has waited, in whole seconds.
    pub fn oldest_due_age_seconds(&self) -> Option<i64> {
        self.oldest_due
            .map(|t| (crate::domain::now() - t).num_seconds().max(0))
    }
}

/// Rows of a running job still held by this worker.
macro_rules! owned {
    ($id:expr, $worker:expr) => {
        jobs::table.filter(
            jobs::id
                .eq($id)
                .and(jobs::locked_by.eq($worker))
                .and(jobs::state.eq(RUNNING)),
        )
    };
}

/// Due jobs, oldest first. `{LOCK}` is `FOR UPDATE SKIP LOCKED` on PostgreSQL.
const CLAIM_DUE_SQL: &str = "UPDATE jobs SET state = 'running', attempts = attempts + 1, \
    locked_by = $1, locked_until = $2, updated_at = $3 \
    WHERE id = (SELECT id FROM jobs WHERE state = 'queued' AND run_at <= $4 \
        ORDER BY run_at, id LIMIT 1{LOCK}) \
    RETURNING id, kind, payload, attempts, max_attempts";

/// Jobs whose worker stopped renewing its lease.
const CLAIM_EXPIRED_SQL: &str = "UPDATE jobs SET state = 'running', attempts = attempts + 1, \
    locked_by = $1, locked_until = $2, updated_at = $3 \
    WHERE id = (SELECT id FROM jobs WHERE state = 'running' AND locked_until < $4 \
        ORDER BY locked_until LIMIT 1{LOCK}) \
    RETURNING id, kind, payload, attempts, max_attempts";

impl Job {
    /// Inserts a job on the caller's connection, so it commits or rolls back with
    /// the caller's transaction. `None` when the idempotency key already exists.
    pub fn enqueue(conn: &mut DbConnection, new: &NewJob<'_>) -> QueryResult<Option<JobId>> {
        let now = crate::domain::now();
        let rows: Vec<InsertedId> = diesel::sql_query(
            "INSERT INTO jobs (kind, payload, state, attempts, max_attempts, run_at, \
             idempotency_key, created_at, updated_at) \
             VALUES ($1, $2, 'queued', 0, $3, $4, $5, $6, $7) \
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        )
        .bind::<Text, _>(new.kind)
        .bind::<Text, _>(new.payload)
        .bind::<Integer, _>(new.max_attempts)
        .bind::<Timestamp, _>(new.run_at)
        .bind::<Nullable<Text>, _>(new.idempotency_key)
        .bind::<Timestamp, _>(now)
        .bind::<Timestamp, _>(now)
        .load(conn)?;
        Ok(rows.first().map(|r| JobId(r.id)))
    }

    /// Takes a job whose lease expired, else the oldest due job, each in one
    /// atomic statement: `FOR UPDATE SKIP LOCKED` on PostgreSQL so concurrent
    /// workers never wait on each other; SQLite serialises writers by itself.
    /// Expired leases go first so a busy queue cannot starve them.
    pub fn claim(
        conn: &mut DbConnection,
        worker: &str,
        lease_until: NaiveDateTime,
    ) -> QueryResult<Option<ClaimedJob>> {
        let lock = match conn.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        for sql in [CLAIM_EXPIRED_SQL, CLAIM_DUE_SQL] {
            let now = crate::domain::now();
            let mut rows: Vec<ClaimedJob> = diesel::sql_query(sql.replace("{LOCK}", lock))
                .bind::<Text, _>(worker)
                .bind::<Timestamp, _>(lease_until)
                .bind::<Timestamp, _>(now)
                .bind::<Timestamp, _>(now)
                .load(conn)?;
            if let Some(job) = rows.pop() {
                return Ok(Some(job));
            }
        }
        Ok(None)
    }

    /// Extends the lease of a job still held by `worker`.
    pub fn heartbeat(
        conn: &mut DbConnection,
        id: JobId,
        worker: &str,
        lease_until: NaiveDateTime,
    ) -> QueryResult<bool> {
        diesel::update(owned!(id, worker))
            .set(jobs::locked_until.eq(lease_until))
            .execute(conn)
            .map(|n| n == 1)
    }

    /// Marks the job done. Its payload is not needed again and may hold
    /// secrets (the one-time links in emails), so it is not kept for the
    /// retention period the row is.
    pub fn complete(conn: &mut DbConnection, id: JobId, worker: &str) -> QueryResult<bool> {
        let now = crate::domain::now();
        diesel::update(owned!(id, worker))
            .set((
                jobs::state.eq(DONE),
                jobs::payload.eq(SPENT_PAYLOAD),
                jobs::locked_until.eq(None::<NaiveDateTime>),
                jobs::finished_at.eq(Some(now)),
                jobs::updated_at.eq(now),
            ))
            .execute(conn)
            .map(|n| n == 1)
    }

    /// Puts a failed job back in the queue to run again at `run_at`.
    pub fn retry_at(
        conn: &mut DbConnection,
        id: JobId,
        worker: &str,
        run_at: NaiveDateTime,
        error: &str,
    ) -> QueryResult<bool> {
        diesel::update(owned!(id, worker))
            .set((
                jobs::state.eq(QUEUED),
                jobs::run_at.eq(run_at),
                jobs::locked_until.eq(None::<NaiveDateTime>),
                jobs::last_error.eq(Some(error)),
                jobs::updated_at.eq(crate::domain::now()),
            ))
            .execute(conn)
            .map(|n| n == 1)
    }

    /// Gives up on a job: it stays `dead`, with its error, until an operator retries it.
    pub fn bury(
        conn: &mut DbConnection,
        id: JobId,
        worker: &str,
        error: &str,
    ) -> QueryResult<bool> {
        let now = crate::domain::now();
        diesel::update(owned!(id, worker))
            .set((
                jobs::state.eq(DEAD),
                jobs::locked_until.eq(None::<NaiveDateTime>),
                jobs::last_error.eq(Some(error)),
                jobs::finished_at.eq(Some(now)),
                jobs::updated_at.eq(now),
            ))
            .execute(conn)
            .map(|n| n == 1)
    }

    /// Returns an unfinished job to the queue at shutdown, without counting the attempt.
    pub fn release(conn: &mut DbConnection, id: JobId, worker: &str) -> QueryResult<bool> {
        let now = crate::domain::now();
        diesel::update(owned!(id, worker))
            .set((
                jobs::state.eq(QUEUED),
                jobs::attempts.eq(jobs::attempts - 1),
                jobs::run_at.eq(now),
                jobs::locked_until.eq(None::<NaiveDateTime>),
                jobs::updated_at.eq(now),
            ))
            .execute(conn)
            .map(|n| n == 1)
    }

    /// Operator action: a dead job gets a fresh set of attempts. Its last error is
    /// kept until the next run replaces it.
    pub fn revive(conn: &mut DbConnection, id: JobId) -> QueryResult<bool> {
        Self::revive_dead(conn, Some(id), None).map(|n| n == 1)
    }

    /// [`Job::revive`] for every dead job, or every dead job of `kind`; returns
    /// how many.
    pub fn revive_all(conn: &mut DbConnection, kind: Option<&str>) -> QueryResult<usize> {
        Self::revive_dead(conn, None, kind)
    }

    /// Dead jobs (the one `id`, those of `kind`, or all), queued again with a
    /// fresh set of attempts, in one statement.
    fn revive_dead(
        conn: &mut DbConnection,
        id: Option<JobId>,
        kind: Option<&str>,
    ) -> QueryResult<usize> {
        let now = crate::domain::now();
        let mut dead = diesel::update(jobs::table)
            .filter(jobs::state.eq(DEAD))
            .into_boxed();
        if let Some(id) = id {
            dead = dead.filter(jobs::id.eq(id));
        }
        if let Some(kind) = kind {
            dead = dead.filter(jobs::kind.eq(kind));
        }
        dead.set((
            jobs::state.eq(QUEUED),
            jobs::attempts.eq(0),
            jobs::run_at.eq(now),
            jobs::locked_by.eq(None::<String>),
            jobs::finished_at.eq(None::<NaiveDateTime>),
            jobs::updated_at.eq(now),
        ))
        .execute(conn)
    }

    pub fn find(conn: &mut DbConnection, id: JobId) -> QueryResult<Option<Job>> {
        jobs::table
            .find(id)
            .select(Job::as_select())
            .first(conn)
            .optional()
    }

    /// Job counts per state, for `frontdesk jobs`.
    pub fn counts_by_state(conn: &mut DbConnection) -> QueryResult<Vec<(String, i64)>> {
        jobs::table
            .group_by(jobs::state)
            .select((jobs::state, diesel::dsl::count_star()))
            .order(jobs::state.asc())
            .load(conn)
    }

    pub fn dead(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<Job>> {
        jobs::table
            .filter(jobs::state.eq(DEAD))
            .order(jobs::finished_at.desc())
            .limit(limit)
            .select(Job::as_select())
            .load(conn)
    }

    pub fn stats(conn: &mut DbConnection) -> QueryResult<QueueStats> {
        let now = crate::domain::now();
        let (queued, oldest_queued): (i64, Option<NaiveDateTime>) = jobs::table
            .filter(jobs::state.eq(QUEUED).and(jobs::run_at.le(now)))
            .select((diesel::dsl::count_star(), diesel::dsl::min(jobs::run_at)))
            .first(conn)?;
        // A job whose worker died waits too, since its lease ran out: exactly
        // the case these numbers are watched for.
        let (orphaned, oldest_orphaned): (i64, Option<NaiveDateTime>) = jobs::table
            .filter(jobs::state.eq(RUNNING).and(jobs::locked_until.lt(now)))
            .select((
                diesel::dsl::count_star(),
                diesel::dsl::min(jobs::locked_until),
            ))
            .first(conn)?;
        let due = queued + orphaned;
        let oldest_due = oldest_queued.into_iter().chain(oldest_orphaned).min();
        let running = jobs::table
            .filter(jobs::state.eq(RUNNING))
            .count()
            .get_result(conn)?;
        let dead = jobs::table
            .filter(jobs::state.eq(DEAD))
            .count()
            .get_result(conn)?;
        Ok(QueueStats {
            due,
            oldest_due,
            running,
            dead,
        })
    }

    /// Whether a job of `kind` with exactly `payload` is queued or running.
    pub fn is_pending(conn: &mut DbConnection, kind: &str, payload: &str) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(
            jobs::table.filter(
                jobs::kind
                    .eq(kind)
                    .and(jobs::payload.eq(payload))
                    .and(jobs::state.eq_any([QUEUED, RUNNING])),
            ),
        ))
        .get_result(conn)
    }

    /// Retention: deletes done jobs that finished before `done_cutoff`, and
    /// dead ones (kept longer: an operator may still retry them) that died
    /// before `dead_cutoff`.
    pub fn delete_finished_before(
        conn: &mut DbConnection,
        done_cutoff: NaiveDateTime,
        dead_cutoff: NaiveDateTime,
    ) -> QueryResult<usize> {
        let done = diesel::delete(
            jobs::table.filter(jobs::state.eq(DONE).and(jobs::finished_at.lt(done_cutoff))),
        )
        .execute(conn)?;
        let dead = diesel::delete(
            jobs::table.filter(jobs::state.eq(DEAD).and(jobs::finished_at.lt(dead_cutoff))),
        )
        .execute(conn)?;
        Ok(done + dead)
    }
}

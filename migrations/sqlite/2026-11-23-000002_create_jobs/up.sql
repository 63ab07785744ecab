-- The durable job queue. Work is inserted in the same transaction as the change
-- that causes it; workers claim due jobs under a lease.
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),
    run_at TIMESTAMP NOT NULL,
    -- The worker holding the lease, kept after completion to show who ran it.
    locked_by TEXT,
    locked_until TIMESTAMP,
    last_error TEXT,
    -- Enqueueing the same logical job twice is a no-op.
    idempotency_key TEXT UNIQUE,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP
);

CREATE INDEX jobs_due ON jobs (state, run_at);
CREATE INDEX jobs_finished ON jobs (finished_at);

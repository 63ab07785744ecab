-- Claims look up due jobs and expired leases separately, each by its own index,
-- instead of scanning and sorting the whole table (finished rows included).
DROP INDEX jobs_due;
CREATE INDEX jobs_queued ON jobs (state, run_at, id);
CREATE INDEX jobs_leases ON jobs (state, locked_until);

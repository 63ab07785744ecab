DROP INDEX jobs_leases;
DROP INDEX jobs_queued;
CREATE INDEX jobs_due ON jobs (state, run_at);

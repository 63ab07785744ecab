-- ts_rank_cd looks at one passage at a time: PostgreSQL's index has nothing
-- shared to split, and nothing changes here.
SELECT 1;

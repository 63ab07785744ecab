-- PostgreSQL's index learns to fold and split words as FTS5's unicode61
-- tokenizer already does here: nothing changes on SQLite.
SELECT 1;

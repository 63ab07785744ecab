-- Every agent gets a full-text index of its own (src/db/models/knowledge_index.rs),
-- so bm25 weighs words by the agent's passages alone and not by other
-- organizations'. Table names hold the agent id, which SQL here cannot build:
-- the shared index only stops following the passages here. The server, right
-- after migrating, builds each agent's index from the passages and drops the
-- shared one in the same transaction, so a crash in between only repeats it.
DROP TRIGGER knowledge_chunks_ai;
DROP TRIGGER knowledge_chunks_ad;

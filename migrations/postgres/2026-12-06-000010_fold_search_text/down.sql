DROP INDEX knowledge_chunks_search;
ALTER TABLE knowledge_chunks DROP COLUMN search;
ALTER TABLE knowledge_chunks ADD COLUMN search tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', coalesce(heading, '')), 'A') || setweight(to_tsvector('english', content), 'B')
) STORED;
CREATE INDEX knowledge_chunks_search ON knowledge_chunks USING GIN (search);
DROP FUNCTION knowledge_search_text(text);

-- The shared index again, rebuilt from the passages. The agents' own tables
-- are left for the next upgrade, which rebuilds them while the shared one exists.
CREATE VIRTUAL TABLE IF NOT EXISTS knowledge_fts USING fts5(
    heading, content,
    content = 'knowledge_chunks', content_rowid = 'id',
    tokenize = 'porter unicode61'
);
INSERT INTO knowledge_fts (knowledge_fts) VALUES ('rebuild');
CREATE TRIGGER knowledge_chunks_ai AFTER INSERT ON knowledge_chunks BEGIN
    INSERT INTO knowledge_fts (rowid, heading, content) VALUES (new.id, coalesce(new.heading, ''), new.content);
END;
CREATE TRIGGER knowledge_chunks_ad AFTER DELETE ON knowledge_chunks BEGIN
    INSERT INTO knowledge_fts (knowledge_fts, rowid, heading, content)
    VALUES ('delete', old.id, coalesce(old.heading, ''), old.content);
END;

-- Agents, their knowledge base (documents split into full-text indexed chunks),
-- and the conversations they hold.

CREATE TABLE agents (
    id INTEGER PRIMARY KEY,
    organization_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
    slug TEXT NOT NULL CHECK (length(slug) BETWEEN 2 AND 63),
    greeting TEXT NOT NULL DEFAULT '',
    instructions TEXT NOT NULL DEFAULT '',
    -- NULL: the server's LLM_PROVIDER / LLM_MODEL.
    provider TEXT CHECK (provider IN ('builtin', 'openai', 'anthropic')),
    model TEXT,
    temperature DOUBLE PRECISION NOT NULL DEFAULT 0.2,
    -- Below this share of the question found in the best passage, offer a person.
    handoff_threshold DOUBLE PRECISION NOT NULL DEFAULT 0.5,
    -- Comma-separated origins allowed to embed the widget.
    allowed_origins TEXT NOT NULL DEFAULT '',
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (organization_id, slug)
);

CREATE TABLE knowledge_documents (
    id INTEGER PRIMARY KEY,
    organization_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    agent_id INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    title TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    format TEXT NOT NULL CHECK (format IN ('text', 'markdown', 'html', 'pdf')),
    size_bytes INTEGER NOT NULL,
    -- Extracted plain text, kept so the document can be re-indexed.
    content TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'indexing', 'ready', 'failed')),
    chunk_count INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX knowledge_documents_agent ON knowledge_documents (organization_id, agent_id);

CREATE TABLE knowledge_chunks (
    id INTEGER PRIMARY KEY,
    organization_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    agent_id INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    document_id INTEGER NOT NULL REFERENCES knowledge_documents (id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    heading TEXT,
    content TEXT NOT NULL
);
CREATE INDEX knowledge_chunks_scope ON knowledge_chunks (organization_id, agent_id);
CREATE INDEX knowledge_chunks_document ON knowledge_chunks (document_id);

-- Full-text index over the chunks, kept in step by triggers; ranked with bm25.
CREATE VIRTUAL TABLE knowledge_fts USING fts5(
    heading, content,
    content = 'knowledge_chunks', content_rowid = 'id',
    tokenize = 'porter unicode61'
);
CREATE TRIGGER knowledge_chunks_ai AFTER INSERT ON knowledge_chunks BEGIN
    INSERT INTO knowledge_fts (rowid, heading, content) VALUES (new.id, coalesce(new.heading, ''), new.content);
END;
CREATE TRIGGER knowledge_chunks_ad AFTER DELETE ON knowledge_chunks BEGIN
    INSERT INTO knowledge_fts (knowledge_fts, rowid, heading, content)
    VALUES ('delete', old.id, coalesce(old.heading, ''), old.content);
END;

CREATE TABLE conversations (
    id INTEGER PRIMARY KEY,
    organization_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    agent_id INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    channel TEXT NOT NULL CHECK (channel IN ('page', 'widget', 'api')),
    visitor_id TEXT NOT NULL,
    -- Rate limits count a visitor's messages per address across conversations.
    visitor_ip TEXT NOT NULL,
    -- SHA-256 of the bearer token the visitor's browser holds for this conversation.
    token_hash TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'escalated', 'resolved')),
    summary TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX conversations_scope ON conversations (organization_id, agent_id, created_at);
CREATE INDEX conversations_visitor ON conversations (visitor_id);
CREATE INDEX conversations_visitor_ip ON conversations (visitor_ip);

CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    organization_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('visitor', 'agent')),
    content TEXT NOT NULL,
    provider TEXT,
    latency_ms INTEGER,
    tokens_in INTEGER,
    tokens_out INTEGER,
    -- JSON array of {documentId, title, heading, score}.
    citations TEXT NOT NULL DEFAULT '[]',
    handoff_offered BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX messages_conversation ON messages (conversation_id, id);
CREATE INDEX messages_recent ON messages (created_at);

-- An organization's own API keys for the remote chat providers, sealed with
-- AES-256-GCM under ENCRYPTION_KEY (`v1.<key id>.<nonce+ciphertext>`).
CREATE TABLE provider_credentials (
    id INTEGER PRIMARY KEY,
    organization_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    provider TEXT NOT NULL CHECK (provider IN ('openai', 'anthropic')),
    base_url TEXT,
    sealed_key TEXT NOT NULL,
    key_hint TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (organization_id, provider)
);

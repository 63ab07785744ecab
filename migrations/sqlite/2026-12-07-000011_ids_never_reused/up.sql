-- Ids are never handed out twice, as on PostgreSQL: without AUTOINCREMENT,
-- SQLite gives a new row the largest id in the table plus one, so once the
-- newest conversation, ticket, agent or organization is deleted the next one
-- takes its id, and a link, an email or an API client's cursor that named the
-- old one would reach the new one.
--
-- SQLite cannot add AUTOINCREMENT to a table: each table with an integer id is
-- rebuilt with the same columns in the same order, its ids, its indexes and
-- its triggers. Foreign keys are off meanwhile (dropping a parent table would
-- otherwise cascade into its children), which SQLite only allows outside a
-- transaction: this migration runs without diesel's (metadata.toml) and takes
-- its own. Dropping a table drops its triggers before its rows, so the
-- knowledge index keeps every passage.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

-- organizations
CREATE TABLE organizations_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slug TEXT NOT NULL UNIQUE CHECK (length(slug) BETWEEN 2 AND 63),
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    disabled_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
INSERT INTO organizations_new SELECT * FROM organizations;
DROP TABLE organizations;
ALTER TABLE organizations_new RENAME TO organizations;

-- users
CREATE TABLE users_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Stored lower-cased by the application, so UNIQUE is case-insensitive.
    email TEXT NOT NULL UNIQUE CHECK (length(email) BETWEEN 3 AND 254),
    name TEXT NOT NULL CHECK (length(name) <= 120),
    password_hash TEXT,
    email_verified_at TIMESTAMP,
    is_platform_admin BOOLEAN NOT NULL DEFAULT FALSE,
    disabled_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
INSERT INTO users_new SELECT * FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;

-- memberships
CREATE TABLE memberships_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'agent', 'viewer')),
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (organization_id, user_id)
);
INSERT INTO memberships_new SELECT * FROM memberships;
DROP TABLE memberships;
ALTER TABLE memberships_new RENAME TO memberships;
CREATE INDEX memberships_user_id ON memberships (user_id);

-- jobs
CREATE TABLE jobs_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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
INSERT INTO jobs_new SELECT * FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_finished ON jobs (finished_at);
CREATE INDEX jobs_queued ON jobs (state, run_at, id);
CREATE INDEX jobs_leases ON jobs (state, locked_until);

-- user_tokens
CREATE TABLE user_tokens_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose TEXT NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    token_hash TEXT NOT NULL UNIQUE,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL
);
INSERT INTO user_tokens_new SELECT * FROM user_tokens;
DROP TABLE user_tokens;
ALTER TABLE user_tokens_new RENAME TO user_tokens;
CREATE INDEX user_tokens_user_id ON user_tokens (user_id);

-- invitations
CREATE TABLE invitations_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'agent', 'viewer')),
    token_hash TEXT NOT NULL UNIQUE,
    invited_by INTEGER REFERENCES users (id) ON DELETE SET NULL,
    expires_at TIMESTAMP NOT NULL,
    accepted_at TIMESTAMP,
    revoked_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL
);
INSERT INTO invitations_new SELECT * FROM invitations;
DROP TABLE invitations;
ALTER TABLE invitations_new RENAME TO invitations;
CREATE INDEX invitations_organization_id ON invitations (organization_id);

-- api_keys
CREATE TABLE api_keys_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
    -- The first characters of the key, shown to tell keys apart.
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created_by INTEGER REFERENCES users (id) ON DELETE SET NULL,
    last_used_at TIMESTAMP,
    revoked_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL
);
INSERT INTO api_keys_new SELECT * FROM api_keys;
DROP TABLE api_keys;
ALTER TABLE api_keys_new RENAME TO api_keys;
CREATE INDEX api_keys_organization_id ON api_keys (organization_id);

-- audit_log
CREATE TABLE audit_log_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- NULL for platform-wide events (sign-in failures for unknown addresses).
    organization_id INTEGER REFERENCES organizations (id) ON DELETE CASCADE,
    actor_user_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
    actor_label TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT,
    ip TEXT,
    created_at TIMESTAMP NOT NULL
);
INSERT INTO audit_log_new SELECT * FROM audit_log;
DROP TABLE audit_log;
ALTER TABLE audit_log_new RENAME TO audit_log;
CREATE INDEX audit_log_organization_id ON audit_log (organization_id, created_at);

-- login_failures
CREATE TABLE login_failures_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL,
    ip TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
INSERT INTO login_failures_new SELECT * FROM login_failures;
DROP TABLE login_failures;
ALTER TABLE login_failures_new RENAME TO login_failures;
CREATE INDEX login_failures_email ON login_failures (email, created_at);
CREATE INDEX login_failures_ip ON login_failures (ip, created_at);

-- agents
CREATE TABLE agents_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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
INSERT INTO agents_new SELECT * FROM agents;
DROP TABLE agents;
ALTER TABLE agents_new RENAME TO agents;

-- knowledge_documents
CREATE TABLE knowledge_documents_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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
INSERT INTO knowledge_documents_new SELECT * FROM knowledge_documents;
DROP TABLE knowledge_documents;
ALTER TABLE knowledge_documents_new RENAME TO knowledge_documents;
CREATE INDEX knowledge_documents_agent ON knowledge_documents (organization_id, agent_id);

-- knowledge_chunks
CREATE TABLE knowledge_chunks_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    agent_id INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    document_id INTEGER NOT NULL REFERENCES knowledge_documents (id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    heading TEXT,
    content TEXT NOT NULL
);
INSERT INTO knowledge_chunks_new SELECT * FROM knowledge_chunks;
DROP TABLE knowledge_chunks;
ALTER TABLE knowledge_chunks_new RENAME TO knowledge_chunks;
CREATE INDEX knowledge_chunks_scope ON knowledge_chunks (organization_id, agent_id);
CREATE INDEX knowledge_chunks_document ON knowledge_chunks (document_id);
CREATE TRIGGER knowledge_chunks_ai AFTER INSERT ON knowledge_chunks BEGIN
    INSERT INTO knowledge_fts (rowid, heading, content) VALUES (new.id, coalesce(new.heading, ''), new.content);
END;
CREATE TRIGGER knowledge_chunks_ad AFTER DELETE ON knowledge_chunks BEGIN
    INSERT INTO knowledge_fts (knowledge_fts, rowid, heading, content)
    VALUES ('delete', old.id, coalesce(old.heading, ''), old.content);
END;

-- conversations
CREATE TABLE conversations_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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
INSERT INTO conversations_new SELECT * FROM conversations;
DROP TABLE conversations;
ALTER TABLE conversations_new RENAME TO conversations;
CREATE INDEX conversations_scope ON conversations (organization_id, agent_id, created_at);
CREATE INDEX conversations_visitor ON conversations (visitor_id);
CREATE INDEX conversations_visitor_ip ON conversations (visitor_ip);

-- provider_credentials
CREATE TABLE provider_credentials_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    provider TEXT NOT NULL CHECK (provider IN ('openai', 'anthropic')),
    base_url TEXT,
    sealed_key TEXT NOT NULL,
    key_hint TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (organization_id, provider)
);
INSERT INTO provider_credentials_new SELECT * FROM provider_credentials;
DROP TABLE provider_credentials;
ALTER TABLE provider_credentials_new RENAME TO provider_credentials;

-- invoices
CREATE TABLE invoices_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id BIGINT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    stripe_invoice_id TEXT NOT NULL UNIQUE,
    number TEXT,
    status TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount_due BIGINT NOT NULL,
    amount_paid BIGINT NOT NULL,
    hosted_invoice_url TEXT,
    stripe_created BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
INSERT INTO invoices_new SELECT * FROM invoices;
DROP TABLE invoices;
ALTER TABLE invoices_new RENAME TO invoices;
CREATE INDEX invoices_organization ON invoices (organization_id, stripe_created);

-- messages
CREATE TABLE messages_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('visitor', 'agent', 'staff')),
    content TEXT NOT NULL,
    provider TEXT,
    latency_ms INTEGER,
    tokens_in INTEGER,
    tokens_out INTEGER,
    -- JSON array of {documentId, title, heading, score}.
    citations TEXT NOT NULL DEFAULT '[]',
    handoff_offered BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL,
    visitor_id TEXT,
    visitor_ip TEXT
);
INSERT INTO messages_new SELECT * FROM messages;
DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;
CREATE INDEX messages_conversation ON messages (conversation_id, id);
CREATE INDEX messages_recent ON messages (created_at);
CREATE INDEX messages_by_visitor ON messages (visitor_id, created_at);
CREATE INDEX messages_by_visitor_ip ON messages (visitor_ip, created_at);

-- tickets
CREATE TABLE tickets_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    conversation_id INTEGER NOT NULL UNIQUE REFERENCES conversations (id) ON DELETE CASCADE,
    subject TEXT NOT NULL,
    -- open: the team owes an answer; pending: waiting for the visitor; solved.
    status TEXT NOT NULL CHECK (status IN ('open', 'pending', 'solved')),
    assignee_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    solved_at TIMESTAMP
);
INSERT INTO tickets_new SELECT * FROM tickets;
DROP TABLE tickets;
ALTER TABLE tickets_new RENAME TO tickets;
CREATE INDEX tickets_queue ON tickets (organization_id, status, updated_at);
CREATE INDEX tickets_assignee ON tickets (assignee_id);

-- ticket_events
CREATE TABLE ticket_events_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    ticket_id INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    actor_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
    -- Who, as shown (kept when the account is deleted).
    actor_label TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('opened', 'reopened', 'assigned', 'unassigned', 'status', 'note', 'reply')),
    body TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL
);
INSERT INTO ticket_events_new SELECT * FROM ticket_events;
DROP TABLE ticket_events;
ALTER TABLE ticket_events_new RENAME TO ticket_events;
CREATE INDEX ticket_events_timeline ON ticket_events (ticket_id, id);
COMMIT;
PRAGMA foreign_keys = ON;

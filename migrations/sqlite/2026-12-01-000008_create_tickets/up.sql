-- Tickets: a conversation handed to the team, with its assignee, status and a
-- timeline of what the team did (internal notes included, never shown to the
-- visitor). The team's replies are messages of the conversation (role 'staff').

-- SQLite cannot change a CHECK constraint: the messages table is rebuilt with
-- the same columns, in the same order, and its indexes.
CREATE TABLE messages_new (
    id INTEGER PRIMARY KEY,
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
INSERT INTO messages_new (id, organization_id, conversation_id, role, content, provider,
    latency_ms, tokens_in, tokens_out, citations, handoff_offered, created_at, visitor_id, visitor_ip)
SELECT id, organization_id, conversation_id, role, content, provider,
    latency_ms, tokens_in, tokens_out, citations, handoff_offered, created_at, visitor_id, visitor_ip
FROM messages;
DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;
CREATE INDEX messages_conversation ON messages (conversation_id, id);
CREATE INDEX messages_recent ON messages (created_at);
CREATE INDEX messages_by_visitor ON messages (visitor_id, created_at);
CREATE INDEX messages_by_visitor_ip ON messages (visitor_ip, created_at);

CREATE TABLE tickets (
    id INTEGER PRIMARY KEY,
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
CREATE INDEX tickets_queue ON tickets (organization_id, status, updated_at);
CREATE INDEX tickets_assignee ON tickets (assignee_id);

CREATE TABLE ticket_events (
    id INTEGER PRIMARY KEY,
    organization_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    ticket_id INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    actor_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
    -- Who, as shown (kept when the account is deleted).
    actor_label TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('opened', 'reopened', 'assigned', 'unassigned', 'status', 'note', 'reply')),
    body TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX ticket_events_timeline ON ticket_events (ticket_id, id);

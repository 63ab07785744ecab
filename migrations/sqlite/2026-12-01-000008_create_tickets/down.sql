DROP TABLE ticket_events;
DROP TABLE tickets;
CREATE TABLE messages_old (
    id INTEGER PRIMARY KEY,
    organization_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('visitor', 'agent')),
    content TEXT NOT NULL,
    provider TEXT,
    latency_ms INTEGER,
    tokens_in INTEGER,
    tokens_out INTEGER,
    citations TEXT NOT NULL DEFAULT '[]',
    handoff_offered BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL,
    visitor_id TEXT,
    visitor_ip TEXT
);
INSERT INTO messages_old SELECT * FROM messages WHERE role <> 'staff';
DROP TABLE messages;
ALTER TABLE messages_old RENAME TO messages;
CREATE INDEX messages_conversation ON messages (conversation_id, id);
CREATE INDEX messages_recent ON messages (created_at);
CREATE INDEX messages_by_visitor ON messages (visitor_id, created_at);
CREATE INDEX messages_by_visitor_ip ON messages (visitor_ip, created_at);

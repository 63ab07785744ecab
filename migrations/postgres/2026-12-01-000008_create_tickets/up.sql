-- Tickets: a conversation handed to the team, with its assignee, status and a
-- timeline of what the team did (internal notes included, never shown to the
-- visitor). The team's replies are messages of the conversation (role 'staff').

ALTER TABLE messages DROP CONSTRAINT messages_role_check;
ALTER TABLE messages ADD CONSTRAINT messages_role_check
    CHECK (role IN ('visitor', 'agent', 'staff'));

CREATE TABLE tickets (
    id BIGSERIAL PRIMARY KEY,
    organization_id BIGINT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    conversation_id BIGINT NOT NULL UNIQUE REFERENCES conversations (id) ON DELETE CASCADE,
    subject TEXT NOT NULL,
    -- open: the team owes an answer; pending: waiting for the visitor; solved.
    status TEXT NOT NULL CHECK (status IN ('open', 'pending', 'solved')),
    assignee_id BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    solved_at TIMESTAMP
);
CREATE INDEX tickets_queue ON tickets (organization_id, status, updated_at);
CREATE INDEX tickets_assignee ON tickets (assignee_id);

CREATE TABLE ticket_events (
    id BIGSERIAL PRIMARY KEY,
    organization_id BIGINT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    ticket_id BIGINT NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    actor_id BIGINT REFERENCES users (id) ON DELETE SET NULL,
    -- Who, as shown (kept when the account is deleted).
    actor_label TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('opened', 'reopened', 'assigned', 'unassigned', 'status', 'note', 'reply')),
    body TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX ticket_events_timeline ON ticket_events (ticket_id, id);

-- Rate limits count a visitor's recent messages per visitor id and per address.
-- Counting through conversations scanned every message of the last minute;
-- kept on the message itself, each count is one short index range.
ALTER TABLE messages ADD COLUMN visitor_id TEXT;
ALTER TABLE messages ADD COLUMN visitor_ip TEXT;
CREATE INDEX messages_by_visitor ON messages (visitor_id, created_at);
CREATE INDEX messages_by_visitor_ip ON messages (visitor_ip, created_at);

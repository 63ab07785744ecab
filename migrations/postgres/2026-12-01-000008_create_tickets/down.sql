DROP TABLE ticket_events;
DROP TABLE tickets;
DELETE FROM messages WHERE role = 'staff';
ALTER TABLE messages DROP CONSTRAINT messages_role_check;
ALTER TABLE messages ADD CONSTRAINT messages_role_check CHECK (role IN ('visitor', 'agent'));

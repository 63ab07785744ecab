DROP INDEX messages_by_visitor_ip;
DROP INDEX messages_by_visitor;
ALTER TABLE messages DROP COLUMN visitor_ip;
ALTER TABLE messages DROP COLUMN visitor_id;

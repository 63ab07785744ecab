DROP TABLE login_failures;
DROP TABLE audit_log;
DROP TABLE api_keys;
DROP TABLE invitations;
DROP TABLE user_tokens;
DROP TABLE sessions;

DROP TABLE provider_credentials;
DROP TABLE messages;
DROP TABLE conversations;
DROP TABLE knowledge_chunks;
DROP TABLE knowledge_documents;
DROP TABLE agents;

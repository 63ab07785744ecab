DROP TABLE messages;
DROP TABLE conversations;
DROP TRIGGER knowledge_chunks_ad;
DROP TRIGGER knowledge_chunks_ai;
DROP TABLE knowledge_fts;
DROP TABLE knowledge_chunks;
DROP TABLE knowledge_documents;
DROP TABLE agents;

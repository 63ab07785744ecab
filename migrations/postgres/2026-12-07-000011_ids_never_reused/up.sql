-- SQLite's tables learn never to hand out an id twice; PostgreSQL's sequences
-- never have.
SELECT 1;

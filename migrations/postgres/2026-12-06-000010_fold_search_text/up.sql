-- Search text as SQLite's FTS5 (unicode61) tokenizes it, so both backends find
-- the same passages: the letters it folds are folded (the list is
-- `FOLDED` in src/services/knowledge/text.rs, and a test keeps the two alike),
-- and the punctuation PostgreSQL's parser would keep inside one token
-- ("4.50", "hello@shop.example", "/usr/local", "host:8080") splits words.
CREATE FUNCTION knowledge_search_text(t text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT translate(regexp_replace(t, '[./@:-]+', ' ', 'g'),
        'àáâãäåāăąçćĉċčďèéêëēĕėęěĝğġģĥìíîïĩīĭįĵķĺļľñńņňòóôõöōŏőŕŗřśŝşšșţťțùúûüũūŭůűųŵýÿŷźżžÀÁÂÃÄÅĀĂĄÇĆĈĊČĎÈÉÊËĒĔĖĘĚĜĞĠĢĤÌÍÎÏĨĪĬĮĴĶĹĻĽÑŃŅŇÒÓÔÕÖŌŎŐŔŖŘŚŜŞŠȘŢŤȚÙÚÛÜŨŪŬŮŰŲŴÝŸŶŹŻŽ',
        'aaaaaaaaacccccdeeeeeeeeegggghiiiiiiiijklllnnnnoooooooorrrssssstttuuuuuuuuuuwyyyzzzaaaaaaaaacccccdeeeeeeeeegggghiiiiiiiijklllnnnnoooooooorrrssssstttuuuuuuuuuuwyyyzzz') $$;

DROP INDEX knowledge_chunks_search;
ALTER TABLE knowledge_chunks DROP COLUMN search;
ALTER TABLE knowledge_chunks ADD COLUMN search tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', knowledge_search_text(coalesce(heading, ''))), 'A')
        || setweight(to_tsvector('english', knowledge_search_text(content)), 'B')
) STORED;
CREATE INDEX knowledge_chunks_search ON knowledge_chunks USING GIN (search);

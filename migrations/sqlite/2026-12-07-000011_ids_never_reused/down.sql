-- AUTOINCREMENT only stops ids coming back: the tables stay as they are.
SELECT 1;

-- Keys of every spelling: the crosswalk keeps keys as text, so one key must
-- have one text whatever the session's settings, and a reference must find
-- the source row it names by the key's own equality, however the value is
-- spelled in the referencing column (a uuid in capitals in a varchar, a
-- citext value in another case, a numeric with another scale).  Values that
-- name no row are counted by verify, which refuses them unless the spec
-- allows them.  Key types whose text depends on settings are refused.
SET client_min_messages = warning;
CREATE SCHEMA mk;

-------------------------------------------------------------------------------
-- 1. a reference spelled another way than the key: re-pointed, verified
CREATE EXTENSION IF NOT EXISTS citext SCHEMA public;
CREATE TABLE mk.people (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), email text UNIQUE, name text);
CREATE TABLE mk.legacy (id public.citext PRIMARY KEY, email text, name text);
CREATE TABLE mk.ai (id uuid PRIMARY KEY, email text, name text);
CREATE TABLE mk.prices (id numeric PRIMARY KEY, email text, name text);
-- a citext foreign key whose value differs in case from the key
CREATE TABLE mk.orders (id int PRIMARY KEY, customer public.citext REFERENCES mk.legacy, total int);
-- a varchar(36) without a foreign key, holding uuids in capitals
CREATE TABLE mk.chats (id int PRIMARY KEY, ai_id varchar(36), body text);
-- a numeric foreign key with another scale than the key
CREATE TABLE mk.quotes (id int PRIMARY KEY, price_id numeric REFERENCES mk.prices, note text);
INSERT INTO mk.people VALUES ('00000000-0000-0000-0000-000000000001', 'ann@x.example', 'Ann');
INSERT INTO mk.legacy VALUES ('Bob', 'bob@x.example', 'Bob'), ('Ann', 'ANN@x.example', 'Ann L');
INSERT INTO mk.ai VALUES ('6f1c7a52-0000-4000-8000-0000000000a1', 'bob@x.example', 'Bob A'),
                         ('6f1c7a52-0000-4000-8000-0000000000a2', 'cy@x.example', 'Cy');
INSERT INTO mk.prices VALUES (1.0, 'cy@x.example', 'Cy P');
INSERT INTO mk.orders VALUES (1, 'bob', 10), (2, 'BOB', 20), (3, 'ann', 5);
INSERT INTO mk.chats VALUES (1, '6F1C7A52-0000-4000-8000-0000000000A1', 'hi'),
                            (2, '6f1c7a52-0000-4000-8000-0000000000a2', 'yo'),
                            (3, 'not-a-uuid', 'typo'), (4, NULL, 'anon');
INSERT INTO mk.quotes VALUES (1, 1.00, 'scale 2'), (2, 1, 'scale 0');
SELECT customer_unify.merge('mk1', '{
  "target": {"table": "mk.people"},
  "sources": [{"table": "mk.legacy", "tag": "legacy", "columns": {"email": "lower(email)", "name": "name"}},
              {"table": "mk.ai", "tag": "ai", "columns": {"email": "lower(email)", "name": "name"}},
              {"table": "mk.prices", "tag": "prices", "columns": {"email": "lower(email)", "name": "name"}}],
  "match": [{"rule": "email", "key": "lower(email)"}],
  "references": [{"table": "mk.chats", "column": "ai_id", "source": "ai", "new_column": "person_id"}]}'::jsonb) IS NOT NULL AS planned;
SELECT customer_unify.start('mk1') IS NOT NULL AS started;
CALL customer_unify.backfill('mk1');
-- every reference reaches its person, whatever its spelling
SELECT o.id, o.customer::text, p.email FROM mk.orders o LEFT JOIN mk.people p ON p.id = o.customer_merged ORDER BY o.id;
SELECT c.id, c.ai_id, p.email FROM mk.chats c LEFT JOIN mk.people p ON p.id = c.person_id ORDER BY c.id;
SELECT q.id, q.price_id, p.email FROM mk.quotes q LEFT JOIN mk.people p ON p.id = q.price_id_merged ORDER BY q.id;
-- live: a new reference in another spelling is filled at once
INSERT INTO mk.orders VALUES (4, 'aNN', 7);
INSERT INTO mk.chats VALUES (5, '6F1C7A52-0000-4000-8000-0000000000A2', 'live');
SELECT o.id, p.email FROM mk.orders o JOIN mk.people p ON p.id = o.customer_merged WHERE o.id = 4;
SELECT c.id, p.email FROM mk.chats c JOIN mk.people p ON p.id = c.person_id WHERE c.id = 5;
-- verify: the one value that names no ai row ('not-a-uuid') is refused by default
SELECT check_name, expected, actual, ok FROM customer_unify.verify('mk1') WHERE check_name LIKE 'reference%' ORDER BY 1;
SELECT regress_util.try($$SELECT customer_unify.cutover('mk1')$$);
-- fixed at the source of the problem, it verifies
UPDATE mk.chats SET ai_id = NULL WHERE id = 3;
SELECT check_name, expected, actual FROM customer_unify.verify('mk1') WHERE NOT ok;
SELECT customer_unify.rollback('mk1');
DROP TABLE mk.orders, mk.chats, mk.quotes;

-- the spec can allow values that name no row: counted, not refused
CREATE TABLE mk.chats (id int PRIMARY KEY, ai_id varchar(36), body text);
INSERT INTO mk.chats VALUES (1, '6F1C7A52-0000-4000-8000-0000000000A1', 'hi'), (3, 'not-a-uuid', 'typo'),
                            (4, '6f1c7a52-0000-4000-8000-0000000000ff', 'deleted person');
SELECT customer_unify.merge('mk2', '{
  "target": {"table": "mk.people"},
  "sources": [{"table": "mk.ai", "tag": "ai", "columns": {"email": "lower(email)", "name": "name"}}],
  "match": [{"rule": "email", "key": "lower(email)"}],
  "references": [{"table": "mk.chats", "column": "ai_id", "source": "ai", "new_column": "person_id", "unresolved": "allow"}]}'::jsonb) IS NOT NULL AS planned;
SELECT customer_unify.start('mk2') IS NOT NULL AS started;
CALL customer_unify.backfill('mk2');
SELECT check_name, expected, actual, ok FROM customer_unify.verify('mk2') WHERE check_name LIKE 'reference%' ORDER BY 1;
SELECT c.id, c.person_id IS NOT NULL AS pointed FROM mk.chats c ORDER BY c.id;
SELECT customer_unify.rollback('mk2');
DROP TABLE mk.chats;
DROP TABLE mk.people, mk.legacy, mk.ai, mk.prices;

-------------------------------------------------------------------------------
-- 2. a date key written by sessions with other DateStyles: one crosswalk row
-- per source row, and the person it belongs to stays right
CREATE TABLE mk.members (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), email text UNIQUE, name text);
CREATE TABLE mk.signups (day date PRIMARY KEY, email text, name text);
INSERT INTO mk.signups VALUES ('2024-02-01', 'feb@x.example', 'Feb One'), ('2024-01-02', 'jan@x.example', 'Jan Two');
SELECT customer_unify.merge('mk3', '{
  "target": {"table": "mk.members"},
  "sources": [{"table": "mk.signups", "tag": "s", "columns": {"email": "email", "name": "name"}}],
  "match": [{"rule": "email", "key": "email"}]}'::jsonb) IS NOT NULL AS planned;
SELECT customer_unify.start('mk3') IS NOT NULL AS started;
SET DateStyle = 'SQL, DMY';
CALL customer_unify.backfill('mk3');
-- an application session in DMY updates the first of February
UPDATE mk.signups SET name = 'Feb One (dmy)' WHERE day = '01/02/2024';
SET DateStyle = 'German';
UPDATE mk.signups SET name = 'Jan Two (german)' WHERE day = '02.01.2024';
RESET DateStyle;
SELECT old_key, count(*) FROM customer_unify.id_map WHERE source_tag = 's' GROUP BY 1 ORDER BY 1;
SELECT m.email, m.name FROM mk.members m ORDER BY 1;
SELECT check_name, expected, actual FROM customer_unify.verify('mk3') WHERE NOT ok;
SELECT customer_unify.rollback('mk3');
DROP TABLE mk.members, mk.signups;

-------------------------------------------------------------------------------
-- 3. refused before anything is created
CREATE TABLE mk.people (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), email text);
CREATE TABLE mk.clock (at timestamptz PRIMARY KEY, email text);
CREATE TABLE mk.floaty (id float8 PRIMARY KEY, email text);
CREATE TABLE mk.ok (id int PRIMARY KEY, email text);
CREATE TABLE mk.notes (id int PRIMARY KEY, ok_id int, note text);
SELECT count(*) AS migrations_before FROM customer_unify.migration \gset
SELECT regress_util.try_detail($$SELECT customer_unify.merge('mk4', '{"target": {"table": "mk.people"},
  "sources": [{"table": "mk.clock", "tag": "c", "columns": {"email": "email"}}], "match": [{"rule": "e", "key": "email"}]}')$$);
SELECT regress_util.try_detail($$SELECT customer_unify.merge('mk4', '{"target": {"table": "mk.people"},
  "sources": [{"table": "mk.floaty", "tag": "f", "columns": {"email": "email"}}], "match": [{"rule": "e", "key": "email"}]}')$$);
SELECT regress_util.try_detail($$SELECT customer_unify.merge('mk4', '{"target": {"table": "mk.clock"},
  "sources": [{"table": "mk.ok", "tag": "o", "columns": {"email": "email"}}], "match": [{"rule": "e", "key": "email"}]}')$$);
SELECT regress_util.try_detail($$SELECT customer_unify.merge('mk4', '{"target": {"table": "mk.people"},
  "sources": [{"table": "mk.ok", "tag": "o", "columns": {"email": "email"}}], "match": [{"rule": "e", "key": "email"}],
  "references": [{"table": "mk.notes", "column": "ok_id", "source": "o", "unresolved": "ignore"}]}')$$);
SELECT regress_util.try_detail($$SELECT customer_unify.merge('mk4', '{"target": {"table": "mk.people"},
  "sources": [{"table": "mk.ok", "tag": "o", "columns": {"email": "email"}}], "match": [{"rule": "e", "key": "email"}],
  "references": [{"table": "mk.notes", "column": "ok_id", "source": "o", "on_conflict": "keep"}]}')$$);
SELECT count(*) - :migrations_before AS migrations_added FROM customer_unify.migration;
SELECT count(*) AS left_behind FROM pg_namespace WHERE nspname = 'mk4_merge';
DROP SCHEMA mk CASCADE;

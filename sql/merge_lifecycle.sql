-- Merge, seed 004: three Customer models over core.customers (uuid ids,
-- first/last name, the surviving table), public.customers (integer ids,
-- drifted formatting) and an AI table (varchar(36) ids, a single name), with
-- bookings, legacy bookings and conversations (a varchar reference with no
-- foreign key) pointing at them, become one source of truth, core.customers.
-- The whole lifecycle: plan, preview, start, backfill, verify, live writes on
-- every source, conflicts, decisions, unmerge, cutover with old code writing
-- through its views, finalize, purge.
SET client_min_messages = warning;
CREATE SCHEMA core;
CREATE SCHEMA legacy;
CREATE TABLE core.customers (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    first_name        text,
    last_name         text,
    email             text UNIQUE,
    phone             text,
    marketing_consent boolean NOT NULL DEFAULT false,
    updated_at        timestamptz NOT NULL DEFAULT '2025-01-01');
CREATE TABLE core.bookings (id bigserial PRIMARY KEY, customer_id uuid NOT NULL REFERENCES core.customers, total numeric NOT NULL);
CREATE TABLE legacy.customers (
    id             serial PRIMARY KEY,
    first_name     text,
    last_name      text,
    email          text UNIQUE,
    phone          text,
    loyalty_points int NOT NULL DEFAULT 0,
    updated_at     timestamptz);
CREATE TABLE legacy.bookings (id bigint PRIMARY KEY, customer_id int REFERENCES legacy.customers ON DELETE CASCADE, total numeric NOT NULL);
CREATE TABLE legacy.ai_customers (id varchar(36) PRIMARY KEY, email text, name text, phone text);
CREATE TABLE legacy.conversations (id bigint PRIMARY KEY, customer_id varchar(36), body text);
-- an application trigger that writes between the sources
CREATE FUNCTION legacy.note_ai() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO legacy.conversations VALUES ((SELECT coalesce(max(id), 0) + 1 FROM legacy.conversations), NEW.id, 'welcome');
    RETURN NEW;
END $$;
CREATE TRIGGER ai_welcome AFTER INSERT ON legacy.ai_customers FOR EACH ROW EXECUTE FUNCTION legacy.note_ai();

INSERT INTO core.customers (id, first_name, last_name, email, phone, updated_at) VALUES
    ('00000000-0000-0000-0000-00000000000a', 'Ana', 'Lima', 'ana@example.com', '+14155550101', '2025-03-01'),
    ('00000000-0000-0000-0000-00000000000b', 'Bo', 'Chen', 'bo@example.com', NULL, '2025-03-01'),
    ('00000000-0000-0000-0000-00000000000c', 'Noreply', 'Shop', 'noreply@shop.example', '+14155550000', '2025-03-01');
INSERT INTO core.bookings (customer_id, total) VALUES ('00000000-0000-0000-0000-00000000000a', 10);
INSERT INTO legacy.customers (first_name, last_name, email, phone, loyalty_points, updated_at) VALUES
    ('Ana', 'Lima', ' ANA@Example.com ', '(415) 555-0101', 5, '2024-01-01'),   -- Ana again: email drifted
    ('Bo', 'Chen', 'bo.chen@example.org', '415.555.0102', 7, '2024-02-01'),   -- a Bo only the AI table links
    ('Cy', 'Diaz', 'cy@example.com', NULL, 1, '2024-03-01'),
    ('Pat', 'Shop', 'NOREPLY@shop.example', '+1 415 555 0000', 0, NULL),      -- the shop's own address
    ('Quinn', 'Roe', 'quinn@example.com', '+1 415 555 0000', 0, NULL);      -- the shop's own phone number
INSERT INTO legacy.bookings VALUES (1, 1, 20), (2, 2, 30), (3, 3, 40), (4, 3, 5);
INSERT INTO legacy.ai_customers VALUES
    ('6f1c7a52-0000-4000-8000-000000000001', 'cy@EXAMPLE.com', 'Cy Diaz', NULL),
    ('6f1c7a52-0000-4000-8000-000000000002', 'dee@example.com', 'Dee Evans', '4155550104'),
    ('6f1c7a52-0000-4000-8000-000000000003', NULL, 'Bo Chen', '+1 415 555 0102'),
    ('6f1c7a52-0000-4000-8000-000000000004', '', 'Nobody', 'n/a'),
    ('6f1c7a52-0000-4000-8000-000000000005', 'rae@example.com', 'Rae', '415-555-0000');     -- the shop's phone again
DELETE FROM legacy.conversations;
INSERT INTO legacy.conversations VALUES (1, '6f1c7a52-0000-4000-8000-000000000001', 'hi'), (2, '6f1c7a52-0000-4000-8000-000000000002', 'hello'),
                                        (3, '6f1c7a52-0000-4000-8000-000000000003', 'hey'), (4, NULL, 'anonymous');
-- the shape before, to compare after rollback
CREATE TEMP TABLE before AS
SELECT c.oid::regclass::text AS rel, regress_util.fingerprint(c.oid) AS data,
       (SELECT string_agg(a.attname || ':' || format_type(a.atttypid, a.atttypmod), ',' ORDER BY a.attnum)
          FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
       (SELECT string_agg(t.tgname, ',' ORDER BY t.tgname) FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal) AS triggers,
       (SELECT string_agg(k.conname, ',' ORDER BY k.conname) FROM pg_constraint k WHERE k.conrelid = c.oid) AS constraints
  FROM pg_class c WHERE c.relnamespace IN ('core'::regnamespace, 'legacy'::regnamespace) AND c.relkind = 'r';

CREATE TEMP TABLE spec AS SELECT $json$ {
  "target": {"table": "core.customers"},
  "sources": [
    {"table": "legacy.customers", "tag": "legacy", "priority": 1,
     "columns": {"first_name": "first_name", "last_name": "last_name", "email": "lower(btrim(email))",
                 "phone": "phone", "updated_at": "updated_at"}},
    {"table": "legacy.ai_customers", "tag": "ai", "priority": 2, "duplicate_free": true,
     "columns": {"first_name": "split_part(name, ' ', 1)", "last_name": "nullif(split_part(name, ' ', 2), '')",
                 "email": "lower(email)", "phone": "phone"}}
  ],
  "match": [
    {"rule": "email", "key": "lower(btrim(email))", "stop": ["noreply@shop.example"]},
    {"rule": "phone", "key": "nullif(right(regexp_replace(phone, '[^0-9]', '', 'g'), 10), '')"}
  ],
  "max_key_rows": 3,
  "survivorship": {"default": "priority", "columns": {"updated_at": "newest:updated_at", "first_name": "longest"}},
  "references": [{"table": "legacy.conversations", "column": "customer_id", "source": "ai", "new_column": "customer_uuid", "unresolved": "allow"}]
} $json$::jsonb AS s;

-- plan: the foreign key of legacy.bookings was found; conversations was named
SELECT customer_unify.merge('m4', (SELECT s FROM spec)) > 0 AS planned;
SELECT state, kind, source::text FROM customer_unify.migration WHERE name = 'm4';
SELECT tag, role, relid::text FROM customer_unify.migration_relation r JOIN customer_unify.migration m ON m.id = r.migration_id
 WHERE m.name = 'm4' ORDER BY tag;
SELECT r->>'tag' AS tag, r->>'column' AS column, r->>'source' AS source, r->>'new_column' AS new_column
  FROM customer_unify.migration m, jsonb_array_elements(m.spec->'references') r WHERE m.name = 'm4' ORDER BY 1;
-- the application's trigger between sources is listed
SELECT object_type, object_name, blocks_finalize FROM customer_unify.dependents('m4');
-- preview: every phase with its locks; nothing ran
SELECT phase, count(*) AS statements, string_agg(DISTINCT lock_mode, ', ' ORDER BY lock_mode) AS locks
  FROM customer_unify.preview('m4') GROUP BY phase ORDER BY phase;
SELECT step, statement FROM customer_unify.preview('m4') WHERE phase = 'start' AND statement LIKE 'LOCK%' ORDER BY step;
SELECT count(*) AS nothing_created FROM pg_namespace WHERE nspname LIKE 'm4\_%';

-- start: the work schema, the crosswalk's triggers, the new reference columns
SELECT customer_unify.start('m4');
SELECT t.tgrelid::regclass AS rel, t.tgname, t.tgenabled FROM pg_trigger t
 WHERE t.tgname LIKE 'customer\_unify\_%' ORDER BY 1, 2;
SELECT attrelid::regclass AS rel, attname, format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attname IN ('customer_uuid', 'customer_id_merged') ORDER BY 1;
-- backfill in small batches: matching and copying, resumable
CALL customer_unify.backfill('m4', batch_size => 2, max_batches => 2);
SELECT stream, rows_done, finished_at IS NOT NULL AS finished FROM customer_unify.backfill_state b
  JOIN customer_unify.migration m ON m.id = b.migration_id WHERE m.name = 'm4' ORDER BY stream;
CALL customer_unify.backfill('m4', batch_size => 2);
SELECT state FROM customer_unify.migration WHERE name = 'm4';
SELECT * FROM customer_unify.verify('m4') WHERE check_name NOT LIKE 'survivorship: checksum%' OR NOT ok;

-- who became whom (target rows by email; new keys are random uuids)
CREATE TEMP VIEW people AS
SELECT im.source_tag, im.old_key, im.rule, t.email AS person, t.first_name, t.last_name, t.phone,
       im.target_key ~ '^00000000-' AS anchored
  FROM customer_unify.id_map im JOIN core.customers t ON t.id::text = im.target_key
 WHERE im.migration_id = (SELECT id FROM customer_unify.migration WHERE name = 'm4');
SELECT * FROM people ORDER BY person, source_tag, old_key;
-- the shop's own email and phone are shared by more rows than max_key_rows, or stopped
SELECT count(*) AS people FROM core.customers;
SELECT email, first_name, last_name, phone, updated_at FROM core.customers ORDER BY email;
-- references: one new column each, with its old value's person
SELECT b.id, b.customer_id, t.email FROM legacy.bookings b LEFT JOIN core.customers t ON t.id = b.customer_id_merged ORDER BY b.id;
SELECT c.id, c.customer_id, t.email FROM legacy.conversations c LEFT JOIN core.customers t ON t.id = c.customer_uuid ORDER BY c.id;
-- bookings per person are preserved: old per-source totals equal new per-person totals
SELECT t.email, sum(b.total) FROM legacy.bookings b JOIN core.customers t ON t.id = b.customer_id_merged GROUP BY 1 ORDER BY 1;
-- the values survivorship overrode
SELECT c.column_name, c.kept_value, c.other_value, c.other_from ~ '^legacy' AS from_legacy
  FROM customer_unify.conflicts('m4') c JOIN core.customers t ON t.id::text = c.target_key
 WHERE t.email = 'ana@example.com' ORDER BY 1, 3;

-- live: writes to any source are matched as they land
INSERT INTO legacy.customers (first_name, last_name, email, phone) VALUES ('Eve', 'Fox', 'DEE@example.com', NULL);
SELECT source_tag, person, first_name FROM people WHERE person = 'dee@example.com' ORDER BY 1, 2;
-- an AI row gets Ana's phone and loses its email: it moves to Ana alone (Eve keeps
-- Dee's email and stays), and its conversation follows
UPDATE legacy.ai_customers SET phone = '415 555 0101', email = NULL WHERE id = '6f1c7a52-0000-4000-8000-000000000002';
SELECT source_tag, old_key, person FROM people WHERE person IN ('ana@example.com', 'dee@example.com') ORDER BY 3, 1, 2;
SELECT c.id, t.email FROM legacy.conversations c JOIN core.customers t ON t.id = c.customer_uuid WHERE c.id = 2;
-- the new application writes the surviving table: its row is an anchor at once
INSERT INTO core.customers (id, first_name, last_name, email) VALUES ('00000000-0000-0000-0000-00000000000f', 'Fay', 'Gil', 'fay@example.com');
-- and an old application writes the AI table (its trigger writes a conversation too)
INSERT INTO legacy.ai_customers VALUES ('6f1c7a52-0000-4000-8000-000000000009', 'FAY@example.com', 'Fay Gil', NULL);
SELECT source_tag, person, anchored FROM people WHERE person = 'fay@example.com' ORDER BY 1;
SELECT c.body, t.email FROM legacy.conversations c JOIN core.customers t ON t.id = c.customer_uuid
 WHERE c.customer_id = '6f1c7a52-0000-4000-8000-000000000009';
-- a delete: the row leaves its cluster; a person with no rows left is gone
DELETE FROM legacy.customers WHERE id = 3;
SELECT count(*) AS cy_rows FROM people WHERE person = 'cy@example.com';
DELETE FROM legacy.ai_customers WHERE id = '6f1c7a52-0000-4000-8000-000000000001';
SELECT count(*) AS cy_left FROM core.customers WHERE email = 'cy@example.com';
-- a key change of a source row is a delete and an insert for the crosswalk
UPDATE legacy.customers SET id = 100 WHERE email = 'quinn@example.com';
SELECT source_tag, old_key, person FROM people WHERE person = 'quinn@example.com';
-- one statement writing many rows
UPDATE legacy.customers SET loyalty_points = loyalty_points + 1;
SELECT check_name, expected, actual FROM customer_unify.verify('m4') WHERE NOT ok;

-- held for review: Pat's email is the shop's placeholder (a stop value), so
-- Pat is a person of its own, whose merged row the target's unique email refuses
SELECT h.reason, im.source_tag, im.old_key FROM customer_unify.merge_held h
  JOIN customer_unify.id_map im ON im.migration_id = h.migration_id AND im.target_key = h.target_key ORDER BY 2, 3;
SELECT b.id, b.customer_id_merged IS NULL AS not_pointed_yet FROM legacy.bookings b ORDER BY b.id;
-- the DBA decides Pat is the shop's own row, and matches Pat again
SELECT customer_unify.decide('m4', 'always', 'legacy', '4', 'target', '00000000-0000-0000-0000-00000000000c');
SELECT customer_unify.rematch('m4');
SELECT source_tag, old_key, rule, person FROM people WHERE person = 'noreply@shop.example' ORDER BY 1, 2;
SELECT count(*) AS held FROM customer_unify.merge_held;

-- a wrong merge is undone: Dee's AI row leaves Ana (Eve stayed with Dee's email:
-- a row moves alone when its keys lead elsewhere)
SELECT u.row_tag, u.row_key, t.first_name AS now_person, u.held
  FROM customer_unify.unmerge('m4', '00000000-0000-0000-0000-00000000000a', 'ai', '6f1c7a52-0000-4000-8000-000000000002') u
  LEFT JOIN core.customers t ON t.id::text = u.new_target_key ORDER BY 1, 2;
SELECT source_tag, old_key, person FROM people WHERE person IN ('ana@example.com', 'dee@example.com') ORDER BY 3, 1, 2;
SELECT decision, a_tag, a_key, b_tag, b_key FROM customer_unify.match_decision WHERE decision = 'never' ORDER BY 2, 3, 4, 5;
-- the conversation follows its row
SELECT c.id, t.first_name FROM legacy.conversations c JOIN core.customers t ON t.id = c.customer_uuid WHERE c.id = 2;
-- the decision survives a re-match of the row (it still has Ana's phone)
UPDATE legacy.ai_customers SET name = 'Dee Evans-Lima' WHERE id = '6f1c7a52-0000-4000-8000-000000000002';
SELECT source_tag, old_key, first_name, last_name, phone, person IS NOT DISTINCT FROM 'ana@example.com' AS with_ana FROM people
 WHERE old_key = '6f1c7a52-0000-4000-8000-000000000002';
-- "always": the DBA merges two rows no rule links (Bo of the AI table and legacy, with core's Bo)
SELECT customer_unify.decide('m4', 'always', 'legacy', '2', 'target', '00000000-0000-0000-0000-00000000000b');
SELECT customer_unify.rematch('m4', 'legacy', ARRAY['2']);
SELECT source_tag, old_key, person FROM people WHERE person = 'bo@example.com' ORDER BY 1, 2;
SELECT regress_util.try($$SELECT customer_unify.rematch('m4', 'nope', ARRAY['1'])$$);
SELECT regress_util.try($$SELECT customer_unify.unmerge('m4', '00000000-0000-0000-0000-00000000000a', 'target', '00000000-0000-0000-0000-00000000000a')$$);
SELECT regress_util.try($$SELECT customer_unify.unmerge('m4', '00000000-0000-0000-0000-00000000000a', 'legacy', '2')$$);
SELECT regress_util.try($$SELECT customer_unify.unmerge('m4', '00000000-0000-0000-0000-00000000000a', 'legacy', NULL)$$);
SELECT check_name, expected, actual FROM customer_unify.verify('m4') WHERE NOT ok;

-- cutover: each source's old shape under its old name in m4_compat
SELECT customer_unify.cutover('m4');
SELECT table_schema, table_name FROM information_schema.views WHERE table_schema = 'm4_compat' ORDER BY 2;
SET search_path = m4_compat, public;
SELECT id, email, loyalty_points FROM customers ORDER BY id;
-- old code writes through its view; the write is merged
INSERT INTO customers (first_name, last_name, email) VALUES ('Gus', 'Hill', 'gus@example.com');
UPDATE ai_customers SET phone = '+1 415 555 0199' WHERE id = '6f1c7a52-0000-4000-8000-000000000003';
RESET search_path;
SELECT email, phone FROM core.customers WHERE email IN ('gus@example.com', 'bo.chen@example.org') ORDER BY 1;

-- finalize: old tables to the archive, old reference columns kept there and dropped
SELECT customer_unify.finalize('m4');
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'm4_archive' AND c.relkind = 'r' ORDER BY 2;
SELECT attrelid::regclass AS rel, attname FROM pg_attribute
 WHERE attrelid IN ('legacy.conversations'::regclass, 'legacy.bookings'::regclass) AND attnum > 0 AND NOT attisdropped ORDER BY 1, attnum;
SELECT to_regclass('legacy.customers') AS legacy_customers_gone;
-- the old shape keeps working through the views, and still reaches the target
INSERT INTO m4_compat.customers (first_name, email) VALUES ('Hal', 'hal@example.com');
SELECT count(*) AS hal FROM core.customers WHERE email = 'hal@example.com';
-- the crosswalk is permanent
SELECT count(*) > 0 AS crosswalk_kept FROM customer_unify.id_map im JOIN customer_unify.migration m ON m.id = im.migration_id WHERE m.name = 'm4';
SELECT regress_util.try($$SELECT customer_unify.rollback('m4')$$);
SELECT customer_unify.purge('m4');
SELECT nspname FROM pg_namespace WHERE nspname LIKE 'm4\_%';
SELECT count(*) AS people_after FROM core.customers;

DROP TABLE core.bookings, core.customers, legacy.bookings, legacy.conversations CASCADE;

-- Rollback from every state before finalize leaves every table, column,
-- trigger, constraint and value exactly as it was (the crosswalk is emptied).
CREATE FUNCTION pg_temp.build() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DROP SCHEMA IF EXISTS rb CASCADE;
    CREATE SCHEMA rb;
    CREATE TABLE rb.core (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), email text UNIQUE, name text);
    CREATE TABLE rb.old (id bigint PRIMARY KEY, email text, name text);
    CREATE TABLE rb.ai (id text PRIMARY KEY, email text, name text);
    CREATE TABLE rb.orders (id int PRIMARY KEY, old_id bigint REFERENCES rb.old, total int);
    CREATE TRIGGER keep_me BEFORE UPDATE ON rb.old FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();
    INSERT INTO rb.core VALUES ('00000000-0000-0000-0000-000000000001', 'a@x.org', 'A');
    INSERT INTO rb.old SELECT g, CASE WHEN g % 3 = 0 THEN 'a@x.org' ELSE 'o' || g || '@x.org' END, 'O' || g FROM generate_series(1, 9) g;
    INSERT INTO rb.ai SELECT 'k' || g, 'O' || g || '@X.org', 'I' || g FROM generate_series(1, 6) g;
    INSERT INTO rb.orders SELECT g, 1 + g % 9, g FROM generate_series(1, 12) g;
END $$;
SELECT pg_temp.build();
CREATE FUNCTION pg_temp.shape() RETURNS TABLE (rel text, data text, columns text, triggers text, constraints text)
    LANGUAGE sql AS $$
    SELECT c.oid::regclass::text, regress_util.fingerprint(c.oid),
           (SELECT string_agg(a.attname || ':' || format_type(a.atttypid, a.atttypmod), ',' ORDER BY a.attnum)
              FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
           (SELECT string_agg(t.tgname || ':' || t.tgenabled::text, ',' ORDER BY t.tgname) FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal),
           (SELECT string_agg(k.conname || ':' || pg_get_constraintdef(k.oid), ',' ORDER BY k.conname) FROM pg_constraint k WHERE k.conrelid = c.oid)
      FROM pg_class c WHERE c.relnamespace = 'rb'::regnamespace AND c.relkind = 'r'
$$;
CREATE TEMP TABLE rb_spec AS SELECT '{
  "target": {"table": "rb.core"},
  "sources": [{"table": "rb.old", "tag": "old", "columns": {"email": "lower(email)", "name": "name"}},
              {"table": "rb.ai", "tag": "ai", "columns": {"email": "lower(email)", "name": "name"}}],
  "match": [{"rule": "email", "key": "email"}]
}'::jsonb AS s;
CREATE TEMP TABLE rb_before AS SELECT * FROM pg_temp.shape();
CREATE FUNCTION pg_temp.same() RETURNS TABLE (differences bigint, schemas bigint, crosswalk bigint) LANGUAGE sql AS $$
    SELECT (SELECT count(*) FROM ((SELECT * FROM rb_before EXCEPT SELECT * FROM pg_temp.shape())
                                  UNION ALL (SELECT * FROM pg_temp.shape() EXCEPT SELECT * FROM rb_before)) d),
           (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rb\_%'),
           (SELECT count(*) FROM customer_unify.id_map im JOIN customer_unify.migration m ON m.id = im.migration_id WHERE m.name LIKE 'rb\_%')
$$;
-- planned
SELECT customer_unify.merge('rb_planned', (SELECT s FROM rb_spec)) > 0 AS planned;
SELECT customer_unify.rollback('rb_planned');
SELECT * FROM pg_temp.same();
-- started, part of the copy done, with writes while live
SELECT pg_temp.build();
SELECT customer_unify.merge('rb_started', (SELECT s FROM rb_spec)) > 0 AS planned;
SELECT customer_unify.start('rb_started');
CALL customer_unify.backfill('rb_started', batch_size => 2, max_batches => 3);
INSERT INTO rb.old VALUES (10, 'k@x.org', 'new');
UPDATE rb.old SET name = 'O1b' WHERE id = 1;
SELECT count(*) > 1 AS core_grew FROM rb.core;
UPDATE rb.old SET name = 'O1' WHERE id = 1;
DELETE FROM rb.old WHERE id = 10;
SELECT customer_unify.rollback('rb_started');
SELECT * FROM pg_temp.same();
-- backfilled, verified and cut over
SELECT pg_temp.build();
SELECT customer_unify.merge('rb_backfilled', (SELECT s FROM rb_spec)) > 0 AS planned;
SELECT customer_unify.start('rb_backfilled');
CALL customer_unify.backfill('rb_backfilled');
SELECT count(*) AS core_rows FROM rb.core;
SELECT customer_unify.rollback('rb_backfilled');
SELECT * FROM pg_temp.same();
SELECT pg_temp.build();
SELECT customer_unify.merge('rb_verified', (SELECT s FROM rb_spec)) > 0 AS planned;
SELECT customer_unify.start('rb_verified');
CALL customer_unify.backfill('rb_verified');
SELECT bool_and(ok) AS verified FROM customer_unify.verify('rb_verified');
SELECT customer_unify.rollback('rb_verified');
SELECT * FROM pg_temp.same();
SELECT pg_temp.build();
SELECT customer_unify.merge('rb_cut', (SELECT s FROM rb_spec)) > 0 AS planned;
SELECT customer_unify.start('rb_cut');
CALL customer_unify.backfill('rb_cut');
SELECT customer_unify.cutover('rb_cut');
INSERT INTO rb_cut_compat.old VALUES (11, 'z@x.org', 'via view');
DELETE FROM rb_cut_compat.old WHERE id = 11;
SELECT customer_unify.rollback('rb_cut');
SELECT * FROM pg_temp.same();
-- the refused states
SELECT regress_util.try($$SELECT customer_unify.cutover('rb_cut')$$);
SELECT state, count(*) FROM customer_unify.migration WHERE name LIKE 'rb\_%' GROUP BY 1;
DROP SCHEMA rb CASCADE;

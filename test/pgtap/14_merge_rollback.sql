-- 14_merge_rollback.sql: rollback() of a merge from started and from cut_over.
-- Contract (1.2, src/sql/merge.sql, sql/merge_lifecycle.sql):
-- rollback drops everything start and cutover added (the <name>_merge and
-- <name>_compat schemas, the new reference columns with their triggers and
-- FKs, the capture triggers, a created target), deletes the rows the merge
-- added to an existing target and empties the crosswalk; every table's
-- columns, constraints, triggers and rows are as before, and its relations
-- are free for another migration.
-- cut_over needs a finished backfill and CALL backfill COMMITs: the setup up
-- to 'backfilled' runs first in autocommit mode (fresh database per file, see
-- test/pgtap/run).  The assertions run in one transaction that is rolled
-- back; the objects and roles are dropped at the end.
-- a failing setup step must not hide the assertions: they report it
\set ON_ERROR_STOP 0
SET client_min_messages = warning;
CREATE ROLE cu_pgtap_m14_owner NOLOGIN;     -- owns every table
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO cu_pgtap_m14_owner', current_database()); END $$;
CREATE SCHEMA core AUTHORIZATION cu_pgtap_m14_owner;
CREATE SCHEMA legacy AUTHORIZATION cu_pgtap_m14_owner;
CREATE SCHEMA crm AUTHORIZATION cu_pgtap_m14_owner;
CREATE SCHEMA early AUTHORIZATION cu_pgtap_m14_owner;
SET ROLE cu_pgtap_m14_owner;
-- seed 004 in small, merged into the existing core.customers
CREATE TABLE core.customers (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    first_name  text,
    last_name   text,
    email       text UNIQUE,
    phone       text,
    updated_at  timestamptz NOT NULL DEFAULT '2025-01-01');
CREATE TABLE legacy.customers (
    id              serial PRIMARY KEY,
    first_name      text,
    last_name       text,
    email           text,
    phone           text,
    loyalty_points  int NOT NULL DEFAULT 0);
CREATE TABLE legacy.ai_customers (id varchar(36) PRIMARY KEY, email text, name text, phone text);
CREATE TABLE legacy.bookings (id bigint PRIMARY KEY, customer_id int REFERENCES legacy.customers ON DELETE CASCADE,
                              total numeric NOT NULL);
CREATE TABLE legacy.conversations (id bigint PRIMARY KEY, customer_id varchar(36), body text);
CREATE TRIGGER keep_me BEFORE UPDATE ON legacy.customers FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();
INSERT INTO core.customers (id, first_name, last_name, email, phone) VALUES
    ('00000000-0000-0000-0000-00000000000a', 'Ana', 'Lima', 'ana@example.com', '+14155550101'),
    ('00000000-0000-0000-0000-00000000000b', 'Bo', 'Chen', 'bo@example.com', NULL);
INSERT INTO legacy.customers (first_name, last_name, email, phone, loyalty_points) VALUES
    ('Ana', 'Lima', ' ANA@Example.com ', '(415) 555-0101', 5),
    ('Cy', 'Diaz', 'cy@example.com', NULL, 1),
    ('Dee', 'Evans', 'dee@example.com', NULL, 0);
INSERT INTO legacy.ai_customers VALUES
    ('6f1c7a52-0000-4000-8000-000000000001', 'cy@EXAMPLE.com', 'Cy Diaz', NULL),
    ('6f1c7a52-0000-4000-8000-000000000002', 'eve@example.com', 'Eve Fox', '4155550104');
INSERT INTO legacy.bookings VALUES (1, 1, 20), (2, 2, 30), (3, 3, 40), (4, NULL, 5);
INSERT INTO legacy.conversations VALUES (1, '6f1c7a52-0000-4000-8000-000000000001', 'hi'),
    (2, '6f1c7a52-0000-4000-8000-000000000002', 'hello'), (3, NULL, 'anonymous');
-- two tables merged into a created target crm.people, with a reference by FK
CREATE TABLE crm.leads (id bigint PRIMARY KEY, email text, name text);
CREATE TABLE crm.contacts (id text PRIMARY KEY, email text, full_name text);
CREATE TABLE crm.notes (id int PRIMARY KEY, lead_id bigint REFERENCES crm.leads, body text);
INSERT INTO crm.leads VALUES (1, 'a@x.org', 'A'), (2, 'b@x.org', 'B'), (3, 'c@x.org', 'C');
INSERT INTO crm.contacts VALUES ('k1', 'A@x.org', 'Ann'), ('k2', 'z@x.org', 'Zed');
INSERT INTO crm.notes VALUES (1, 1, 'n1'), (2, 3, 'n3'), (3, NULL, 'none');
-- a row written between start and the backfill
CREATE TABLE early.core (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), email text UNIQUE);
CREATE TABLE early.old (id int PRIMARY KEY, email text);
INSERT INTO early.core VALUES ('00000000-0000-0000-0000-000000000001', 'a@x.org');
INSERT INTO early.old VALUES (1, 'a@x.org'), (2, 'b@x.org');
RESET ROLE;

-- every table's columns, triggers, constraints and rows
CREATE FUNCTION pg_temp.shape() RETURNS TABLE (rel text, columns text, triggers text, constraints text, data text)
    LANGUAGE plpgsql AS $f$
DECLARE r record;
BEGIN
    FOR r IN SELECT c.oid FROM pg_class c
              WHERE c.relnamespace IN ('core'::regnamespace, 'legacy'::regnamespace, 'crm'::regnamespace, 'early'::regnamespace)
                AND c.relkind = 'r' ORDER BY c.oid::regclass::text LOOP
        rel := r.oid::regclass::text;
        columns := (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
                                      || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), ''), ', ' ORDER BY a.attnum)
                      FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                     WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped);
        triggers := (SELECT coalesce(string_agg(pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text, '; ' ORDER BY t.tgname), '')
                       FROM pg_trigger t WHERE t.tgrelid = r.oid AND NOT t.tgisinternal);
        constraints := (SELECT coalesce(string_agg(k.conname || ' ' || pg_get_constraintdef(k.oid) || ' ' || k.convalidated::text, '; ' ORDER BY k.conname), '')
                          FROM pg_constraint k WHERE k.conrelid = r.oid);
        EXECUTE format('SELECT coalesce(string_agg(x::text, %L ORDER BY x::text), %L) FROM ONLY %s x', '; ', '', rel) INTO data;
        RETURN NEXT;
    END LOOP;
END
$f$;
CREATE TEMP TABLE shape_before AS SELECT * FROM pg_temp.shape();

DO $$
BEGIN
    PERFORM customer_unify.merge('rb_cut', $json$ {
      "target": {"table": "core.customers"},
      "sources": [
        {"table": "legacy.customers", "tag": "legacy", "priority": 1,
         "columns": {"first_name": "first_name", "last_name": "last_name", "email": "lower(btrim(email))", "phone": "phone"}},
        {"table": "legacy.ai_customers", "tag": "ai", "priority": 2, "duplicate_free": true,
         "columns": {"first_name": "split_part(name, ' ', 1)", "last_name": "nullif(split_part(name, ' ', 2), '')",
                     "email": "lower(email)", "phone": "phone"}}
      ],
      "match": [
        {"rule": "email", "key": "lower(btrim(email))"},
        {"rule": "phone", "key": "nullif(right(regexp_replace(phone, '[^0-9]', '', 'g'), 10), '')"}
      ],
      "references": [{"table": "legacy.conversations", "column": "customer_id", "source": "ai", "new_column": "customer_uuid"}]
    } $json$::jsonb);
    PERFORM customer_unify.start('rb_cut');
    PERFORM customer_unify.merge('rb_new', $json$ {
      "target": {"table": "crm.people", "create": true, "key_type": "bigint", "columns": {"email": "text", "name": "text"}},
      "sources": [{"table": "crm.leads", "tag": "lead", "columns": {"email": "lower(email)", "name": "name"}},
                  {"table": "crm.contacts", "tag": "contact", "columns": {"email": "lower(email)", "name": "full_name"}}],
      "match": [{"rule": "email", "key": "email"}]
    } $json$::jsonb);
    PERFORM customer_unify.start('rb_new');
    PERFORM customer_unify.merge('rb_early', $json$ {
      "target": {"table": "early.core"},
      "sources": [{"table": "early.old", "tag": "old", "columns": {"email": "lower(email)"}}],
      "match": [{"rule": "email", "key": "email"}]
    } $json$::jsonb);
    PERFORM customer_unify.start('rb_early');
END $$;
CALL customer_unify.backfill('rb_cut', batch_size => 2);
CALL customer_unify.backfill('rb_new');
INSERT INTO early.old VALUES (3, 'c@x.org');
CALL customer_unify.backfill('rb_early');
DELETE FROM early.old WHERE id = 3;
RESET client_min_messages;

\set ON_ERROR_STOP 1
BEGIN;
SELECT plan(43);

-- the id of a migration
CREATE FUNCTION pg_temp.mid(mname text) RETURNS bigint LANGUAGE sql AS $f$
    SELECT id FROM customer_unify.migration WHERE name = mname
$f$;

-- what differs from the shape before the merges, as 'rel: aspect', for the
-- tables of the schemas matching schemas_re
CREATE FUNCTION pg_temp.changed(aspect text, schemas_re text) RETURNS SETOF text LANGUAGE sql AS $f$
    SELECT coalesce(b.rel, a.rel) || ': ' || aspect
      FROM shape_before b FULL JOIN pg_temp.shape() a ON a.rel = b.rel
     WHERE coalesce(b.rel, a.rel) ~ ('^(' || schemas_re || ')\.')
       AND CASE aspect WHEN 'relation' THEN a.rel IS NULL OR b.rel IS NULL
                       WHEN 'columns' THEN a.columns IS DISTINCT FROM b.columns
                       WHEN 'triggers' THEN a.triggers IS DISTINCT FROM b.triggers
                       WHEN 'constraints' THEN a.constraints IS DISTINCT FROM b.constraints
                       WHEN 'data' THEN a.data IS DISTINCT FROM b.data END
$f$;

-- the schemas, triggers and crosswalk rows a migration left
CREATE FUNCTION pg_temp.leftovers(mname text) RETURNS SETOF text LANGUAGE sql AS $f$
    SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname IN (mname || '_merge', mname || '_compat', mname || '_archive')
    UNION ALL
    SELECT 'trigger ' || tgname || ' on ' || tgrelid::regclass::text FROM pg_trigger
     WHERE tgname LIKE 'customer\_unify\_' || pg_temp.mid(mname) || '\_%'
    UNION ALL
    SELECT 'id_map ' || source_tag || ':' || old_key FROM customer_unify.id_map WHERE migration_id = pg_temp.mid(mname)
$f$;

SELECT is((SELECT string_agg(name || ':' || state, ',' ORDER BY name) FROM customer_unify.migration),
          'rb_cut:backfilled,rb_early:backfilled,rb_new:backfilled', 'setup: three merges started and backfilled');

-- ---------------------------------------------------------------- from cut_over, existing target
SELECT lives_ok($$SELECT customer_unify.cutover('rb_cut')$$, 'cutover() of rb_cut');
-- old code writes through its view, and takes the write back
INSERT INTO rb_cut_compat.customers (id, first_name, email) VALUES (100, 'Gus', 'gus@example.com');
DELETE FROM rb_cut_compat.customers WHERE id = 100;
INSERT INTO rb_cut_compat.ai_customers VALUES ('6f1c7a52-0000-4000-8000-000000000009', 'hal@example.com', 'Hal Ito', NULL);
DELETE FROM rb_cut_compat.ai_customers WHERE id = '6f1c7a52-0000-4000-8000-000000000009';
SELECT is((SELECT count(*) FROM core.customers), 5::bigint, 'before the rollback the target holds the merged people (2 anchors, Cy, Dee, Eve)');
SELECT ok((SELECT count(*) FROM pg_temp.leftovers('rb_cut') x WHERE x LIKE 'schema %') = 2
          AND EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'legacy.bookings'::regclass AND attname = 'customer_id_merged'),
          'before the rollback the work and compat schemas and the reference columns exist');
SELECT is(customer_unify.rollback('rb_cut')::text, 'rolled_back', 'rollback() from cut_over returns rolled_back');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'rb_cut'), 'rolled_back', 'rb_cut is rolled_back');
SELECT is_empty($$SELECT * FROM pg_temp.leftovers('rb_cut')$$,
                'no rb_cut_merge or rb_cut_compat schema, no trigger of the merge, and the crosswalk of rb_cut is empty');
SELECT hasnt_column('legacy', 'conversations', 'customer_uuid', 'the named reference''s new column is gone');
SELECT hasnt_column('legacy', 'bookings', 'customer_id_merged', 'the found reference''s new column is gone');
SELECT is_empty($$SELECT conname FROM pg_constraint WHERE conname IN ('conversations_customer_uuid_fkey', 'bookings_customer_id_merged_fkey')$$,
                'the FKs of the new columns are gone');
SELECT is_empty($$SELECT * FROM pg_temp.changed('relation', 'core|legacy') UNION ALL SELECT * FROM pg_temp.changed('columns', 'core|legacy')$$,
                'the tables of core and legacy are there with their columns as before (types, NOT NULL, defaults)');
SELECT is_empty($$SELECT * FROM pg_temp.changed('triggers', 'core|legacy')$$,
                'they have their triggers as before (definitions, enabled; the application''s keep_me too)');
SELECT is_empty($$SELECT * FROM pg_temp.changed('constraints', 'core|legacy')$$,
                'they have their constraints as before (definitions, validated; the old FK of legacy.bookings too)');
SELECT is_empty($$SELECT * FROM pg_temp.changed('data', 'core|legacy')$$,
                'every row of the target, the sources and the references is as before (the merged rows are gone)');
SELECT is((SELECT string_agg(format('%s=%s', tag, live::text), ',' ORDER BY tag) FROM customer_unify.migration_relation
            WHERE migration_id = pg_temp.mid('rb_cut')),
          'ai=false,legacy=false,ref1=false,ref2=false,target=false,view_ai=false,view_legacy=false',
          'no relation of rb_cut is live any more');

-- ---------------------------------------------------------------- from started, existing target, with live writes
SELECT lives_ok($$SELECT customer_unify.merge('rb_started', (SELECT spec->'args' FROM customer_unify.migration WHERE name = 'rb_cut'))$$,
                'the released tables can be planned again');
SELECT is(customer_unify.start('rb_started')::text, 'started', 'start() of rb_started');
-- every source row is written while started (no backfill): each becomes a merged row or is held
UPDATE legacy.customers SET loyalty_points = loyalty_points + 1;
UPDATE legacy.customers SET loyalty_points = loyalty_points - 1;
UPDATE legacy.ai_customers SET name = name;
INSERT INTO legacy.conversations VALUES (4, '6f1c7a52-0000-4000-8000-000000000002', 'later');
DELETE FROM legacy.conversations WHERE id = 4;
SELECT ok((SELECT count(*) FROM customer_unify.id_map WHERE migration_id = pg_temp.mid('rb_started')) = 5
          AND (SELECT count(*) FROM core.customers) > 2,
          'before the rollback the live writes filled the crosswalk and added rows to the target');
SELECT is((SELECT count(*) FROM customer_unify.merge_held WHERE migration_id = pg_temp.mid('rb_started')), 1::bigint,
          'before the rollback one cluster is held (legacy''s Ana: the target''s unique email refuses it)');
SELECT is(customer_unify.rollback('rb_started')::text, 'rolled_back', 'rollback() from started returns rolled_back');
SELECT is_empty($$SELECT * FROM pg_temp.leftovers('rb_started')$$,
                'no rb_started_merge schema, no trigger of the merge, and the crosswalk of rb_started is empty');
SELECT is_empty($$SELECT * FROM pg_temp.changed('columns', 'core|legacy') UNION ALL SELECT * FROM pg_temp.changed('triggers', 'core|legacy')
                  UNION ALL SELECT * FROM pg_temp.changed('constraints', 'core|legacy')$$,
                'the tables of core and legacy have their columns, triggers and constraints as before');
SELECT is_empty($$SELECT * FROM pg_temp.changed('data', 'core|legacy')$$,
                'every row is as before: the rows the live writes added to the target are gone');
SELECT is((SELECT count(*) FROM customer_unify.merge_held WHERE migration_id = pg_temp.mid('rb_started')), 0::bigint,
          'rollback leaves no held cluster');
SELECT is((SELECT count(*) FROM customer_unify.migration_relation WHERE migration_id = pg_temp.mid('rb_started') AND live), 0::bigint,
          'no relation of rb_started is live any more');

-- ---------------------------------------------------------------- from cut_over, created target
SELECT has_table('crm', 'people', 'rb_new created its target crm.people');
SELECT is((SELECT format('%s|%s|created=%s|live=%s', role, relid::text, created::text, live::text) FROM customer_unify.migration_relation
            WHERE migration_id = pg_temp.mid('rb_new') AND tag = 'target'),
          'target|crm.people|created=true|live=true', 'start registered the created target');
SELECT is((SELECT count(*) FROM crm.people), 4::bigint, 'the created target holds four people (A of both sources, B, C, Zed)');
SELECT col_type_is('crm', 'notes', 'lead_id_merged', 'bigint', 'the reference found by FK points at the created target''s bigint key');
SELECT fk_ok('crm', 'notes', 'lead_id_merged', 'crm', 'people', 'id', 'crm.notes.lead_id_merged -> crm.people.id');
SELECT lives_ok($$SELECT customer_unify.cutover('rb_new')$$, 'cutover() of rb_new');
SELECT views_are('rb_new_compat', ARRAY['contacts', 'leads'], 'a created target: every source gets a compat view');
SELECT is(customer_unify.rollback('rb_new')::text, 'rolled_back', 'rollback() from cut_over returns rolled_back');
SELECT hasnt_table('crm', 'people', 'rollback drops the created target');
SELECT is_empty($$SELECT * FROM pg_temp.leftovers('rb_new')$$,
                'no rb_new_merge or rb_new_compat schema, no trigger of the merge, and the crosswalk of rb_new is empty');
SELECT hasnt_column('crm', 'notes', 'lead_id_merged', 'the new reference column is gone');
SELECT is_empty($$SELECT * FROM pg_temp.changed('relation', 'crm') UNION ALL SELECT * FROM pg_temp.changed('columns', 'crm')
                  UNION ALL SELECT * FROM pg_temp.changed('triggers', 'crm') UNION ALL SELECT * FROM pg_temp.changed('constraints', 'crm')$$,
                'no table more or less in crm, and every table has its columns, triggers and constraints as before');
SELECT is_empty($$SELECT * FROM pg_temp.changed('data', 'crm')$$, 'the sources and the reference keep their rows as before');
SELECT is((SELECT format('%s|created=%s|live=%s', role, created::text, live::text) FROM customer_unify.migration_relation
            WHERE migration_id = pg_temp.mid('rb_new') AND tag = 'target'),
          'target|created=true|live=false', 'the created target''s relation is released');

-- ---------------------------------------------------------------- a row written between start and the backfill
SELECT is(customer_unify.rollback('rb_early')::text, 'rolled_back', 'rollback() of rb_early from backfilled');
SELECT is_empty($$SELECT * FROM pg_temp.leftovers('rb_early')$$,
                'no schema, trigger or crosswalk row of rb_early is left');
SELECT is_empty($$SELECT * FROM pg_temp.changed('data', 'early')$$,
                'the rows the merge added to the existing target are gone after the rollback');
SELECT is_empty($$SELECT * FROM pg_temp.changed('relation', '.*') UNION ALL SELECT * FROM pg_temp.changed('columns', '.*')
                  UNION ALL SELECT * FROM pg_temp.changed('triggers', '.*') UNION ALL SELECT * FROM pg_temp.changed('constraints', '.*')$$,
                'after every rollback, every table has its columns, triggers and constraints as before');

SELECT * FROM finish();
ROLLBACK;

-- ---------------------------------------------------------------- cleanup
-- The DDL guard refuses dropping a live migration's objects: drop the
-- extension first (its triggers and event triggers go with it).
SET client_min_messages = warning;
DROP EXTENSION customer_unify CASCADE;
DROP SCHEMA IF EXISTS rb_cut_merge, rb_cut_compat, rb_new_merge, rb_new_compat, rb_early_merge, core, legacy, crm, early CASCADE;
DROP OWNED BY cu_pgtap_m14_owner;
DROP ROLE IF EXISTS cu_pgtap_m14_owner;

-- 13_merge_finalized.sql: what finalize() and purge() of a merge leave behind.
-- Contract (1.2, src/sql/merge.sql, sql/merge_lifecycle.sql): finalize moves every
-- source that is not keep into schema <name>_archive (their capture triggers
-- stay, so the compat views keep merging writes until purge), copies each old
-- reference column to <name>_archive.ref<N>_<column> (key, column) and drops
-- it (with its reference trigger), drops the capture triggers of the target
-- and of keep sources; the migration's relations are no longer live.  purge
-- drops the compat, archive and work schemas; the crosswalk stays.
-- finalize needs a finished backfill and CALL backfill COMMITs: the setup up to
-- 'backfilled' runs first in autocommit mode (fresh database per file, see
-- test/pgtap/run).  The assertions run in one transaction that is rolled
-- back; the objects and roles are dropped at the end.
-- a failing setup step must not hide the assertions: they report it
\set ON_ERROR_STOP 0
SET client_min_messages = warning;
CREATE ROLE cu_pgtap_m13_owner NOLOGIN;     -- owns every table
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO cu_pgtap_m13_owner', current_database()); END $$;
CREATE SCHEMA core AUTHORIZATION cu_pgtap_m13_owner;
CREATE SCHEMA legacy AUTHORIZATION cu_pgtap_m13_owner;
SET ROLE cu_pgtap_m13_owner;
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
CREATE TABLE legacy.crm_contacts (id text PRIMARY KEY, email text, full_name text);   -- a source that stays (keep)
CREATE TABLE legacy.bookings (id bigint PRIMARY KEY, customer_id int REFERENCES legacy.customers ON DELETE CASCADE,
                              total numeric NOT NULL);
CREATE TABLE legacy.conversations (id bigint PRIMARY KEY, customer_id varchar(36), body text);
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
INSERT INTO legacy.crm_contacts VALUES ('c-1', 'BO@example.com', 'Bo Chen'), ('c-2', 'gil@example.com', 'Gil Ho');
INSERT INTO legacy.bookings VALUES (1, 1, 20), (2, 2, 30), (3, 3, 40), (4, NULL, 5);
INSERT INTO legacy.conversations VALUES (1, '6f1c7a52-0000-4000-8000-000000000001', 'hi'),
    (2, '6f1c7a52-0000-4000-8000-000000000002', 'hello'), (3, NULL, 'anonymous');
RESET ROLE;
-- the old reference values, to find them in the archive
CREATE TEMP TABLE old_conversations AS SELECT id, customer_id FROM legacy.conversations;
CREATE TEMP TABLE old_bookings AS SELECT id, customer_id FROM legacy.bookings;
CREATE TEMP TABLE rows_before AS
SELECT (SELECT count(*) FROM legacy.customers) AS legacy, (SELECT count(*) FROM legacy.ai_customers) AS ai;
DO $$
BEGIN
    PERFORM customer_unify.merge('m', $json$ {
      "target": {"table": "core.customers"},
      "sources": [
        {"table": "legacy.customers", "tag": "legacy", "priority": 1,
         "columns": {"first_name": "first_name", "last_name": "last_name", "email": "lower(btrim(email))", "phone": "phone"}},
        {"table": "legacy.ai_customers", "tag": "ai", "priority": 2, "duplicate_free": true,
         "columns": {"first_name": "split_part(name, ' ', 1)", "last_name": "nullif(split_part(name, ' ', 2), '')",
                     "email": "lower(email)", "phone": "phone"}},
        {"table": "legacy.crm_contacts", "tag": "crm", "priority": 3, "keep": true,
         "columns": {"first_name": "split_part(full_name, ' ', 1)", "last_name": "nullif(split_part(full_name, ' ', 2), '')",
                     "email": "lower(email)"}}
      ],
      "match": [
        {"rule": "email", "key": "lower(btrim(email))"},
        {"rule": "phone", "key": "nullif(right(regexp_replace(phone, '[^0-9]', '', 'g'), 10), '')"}
      ],
      "references": [{"table": "legacy.conversations", "column": "customer_id", "source": "ai", "new_column": "customer_uuid"}]
    } $json$::jsonb);
    PERFORM customer_unify.start('m');
END $$;
CALL customer_unify.backfill('m');
RESET client_min_messages;

\set ON_ERROR_STOP 1
BEGIN;
SELECT plan(51);

-- run sql and undo it whatever happens; its SQLSTATE, or 'no error'
CREATE FUNCTION pg_temp.sqlstate_undone(sql text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE st text;
BEGIN
    BEGIN
        EXECUTE sql;
        RAISE EXCEPTION 'cu_pgtap: no error, undone' USING ERRCODE = 'P0099';
    EXCEPTION WHEN OTHERS THEN
        st := SQLSTATE;
    END;
    RETURN CASE st WHEN 'P0099' THEN 'no error' ELSE st END;
END
$f$;

-- the id of a migration, and the name of one of its triggers
CREATE FUNCTION pg_temp.mid(mname text) RETURNS bigint LANGUAGE sql AS $f$
    SELECT id FROM customer_unify.migration WHERE name = mname
$f$;
CREATE FUNCTION pg_temp.tg(mname text, suffix text) RETURNS name LANGUAGE sql AS $f$
    SELECT ('customer_unify_' || pg_temp.mid(mname) || '_' || suffix)::name
$f$;

-- the triggers of a table as name=enabled
CREATE FUNCTION pg_temp.triggers(rel regclass) RETURNS text LANGUAGE sql AS $f$
    SELECT coalesce(string_agg(tgname || '=' || tgenabled::text, ',' ORDER BY tgname), '')
      FROM pg_trigger WHERE tgrelid = rel AND NOT tgisinternal
$f$;

-- the columns of a table as name type, in order
CREATE FUNCTION pg_temp.cols(rel regclass) RETURNS text[] LANGUAGE sql AS $f$
    SELECT ARRAY(SELECT attname::text || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute
                  WHERE attrelid = rel AND attnum > 0 AND NOT attisdropped ORDER BY attnum)
$f$;

SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'm'), 'backfilled',
          'setup: the merge of cu_pgtap_m13_owner''s tables is backfilled');
SELECT is((SELECT string_agg(format('%s=%s', source_tag, n), ',' ORDER BY source_tag)
             FROM (SELECT source_tag, count(*) AS n FROM customer_unify.id_map WHERE migration_id = pg_temp.mid('m') GROUP BY 1) x),
          'ai=2,crm=2,legacy=3,target=2', 'the crosswalk holds every row of every source');
SELECT lives_ok($$SELECT customer_unify.cutover('m')$$, 'cutover()');
SELECT views_are('m_compat', ARRAY['ai_customers', 'customers'],
                 'the compat schema has views of the sources that are archived, none of the keep source');
CREATE TEMP TABLE crosswalk_before AS SELECT * FROM customer_unify.id_map WHERE migration_id = pg_temp.mid('m');
SELECT lives_ok($$SELECT customer_unify.finalize('m')$$, 'finalize()');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'm'), 'finalized', 'the migration is finalized');

-- ---------------------------------------------------------------- the sources, archived
SELECT has_schema('m_archive', 'finalize creates the archive schema m_archive');
SELECT schema_owner_is('m_archive', 'cu_pgtap_m13_owner', 'the archive schema belongs to the tables'' owner');
SELECT tables_are('m_archive', ARRAY['ai_customers', 'customers', 'ref1_customer_id', 'ref2_customer_id'],
                  'the archive holds the archived sources and one table per old reference column');
SELECT hasnt_table('legacy', 'customers', 'legacy.customers moved to the archive');
SELECT hasnt_table('legacy', 'ai_customers', 'legacy.ai_customers moved to the archive');
SELECT has_table('legacy', 'crm_contacts', 'the keep source stays where it is');
SELECT is((SELECT format('legacy=%s ai=%s', (SELECT count(*) FROM m_archive.customers), (SELECT count(*) FROM m_archive.ai_customers))),
          (SELECT format('legacy=%s ai=%s', legacy, ai) FROM rows_before),
          'the archived sources keep their rows');
SELECT is(pg_temp.cols('m_archive.customers'),
          ARRAY['id integer', 'first_name text', 'last_name text', 'email text', 'phone text', 'loyalty_points integer'],
          'an archived source keeps its columns');
SELECT is((SELECT string_agg(relname || ':' || pg_get_userbyid(relowner), ',' ORDER BY relname) FROM pg_class
            WHERE relnamespace = 'm_archive'::regnamespace AND relkind = 'r'),
          'ai_customers:cu_pgtap_m13_owner,customers:cu_pgtap_m13_owner,ref1_customer_id:cu_pgtap_m13_owner,ref2_customer_id:cu_pgtap_m13_owner',
          'every table of the archive belongs to the tables'' owner');

-- ---------------------------------------------------------------- the old reference columns
SELECT hasnt_column('legacy', 'conversations', 'customer_id', 'the old reference column legacy.conversations.customer_id is dropped');
SELECT hasnt_column('legacy', 'bookings', 'customer_id', 'the old reference column legacy.bookings.customer_id is dropped');
SELECT is(pg_temp.cols('legacy.conversations'), ARRAY['id bigint', 'body text', 'customer_uuid uuid'],
          'legacy.conversations keeps its other columns and the new reference');
SELECT is(pg_temp.cols('legacy.bookings'), ARRAY['id bigint', 'total numeric', 'customer_id_merged uuid'],
          'legacy.bookings keeps its other columns and the new reference');
SELECT is(pg_temp.cols('m_archive.ref1_customer_id'), ARRAY['id bigint', 'customer_id character varying(36)'],
          'm_archive.ref1_customer_id: the referencing table''s key and the old column, with their types');
SELECT is(pg_temp.cols('m_archive.ref2_customer_id'), ARRAY['id bigint', 'customer_id integer'],
          'm_archive.ref2_customer_id: the referencing table''s key and the old column, with their types');
SELECT set_eq($$SELECT id, customer_id FROM m_archive.ref1_customer_id$$, $$SELECT id, customer_id FROM old_conversations$$,
              'm_archive.ref1_customer_id keeps every old value of legacy.conversations.customer_id');
SELECT set_eq($$SELECT id, customer_id FROM m_archive.ref2_customer_id$$, $$SELECT id, customer_id FROM old_bookings$$,
              'm_archive.ref2_customer_id keeps every old value of legacy.bookings.customer_id');
SELECT is(pg_temp.triggers('legacy.conversations') || '|' || pg_temp.triggers('legacy.bookings'), '|',
          'the reference triggers are dropped with the old columns');
SELECT is((SELECT string_agg(format('%s=%s', conname, convalidated::text), ',' ORDER BY conname) FROM pg_constraint
            WHERE conrelid IN ('legacy.conversations'::regclass, 'legacy.bookings'::regclass) AND contype = 'f'),
          'bookings_customer_id_merged_fkey=true,conversations_customer_uuid_fkey=true',
          'the new references keep their validated FKs; the old FK went with its column');
SELECT fk_ok('legacy', 'conversations', 'customer_uuid', 'core', 'customers', 'id', 'FK conversations.customer_uuid -> core.customers.id');

-- ---------------------------------------------------------------- capture triggers
SELECT is(pg_temp.triggers('core.customers'), '', 'the capture triggers of the target are dropped');
SELECT is(pg_temp.triggers('legacy.crm_contacts'), '', 'the capture triggers of the keep source are dropped');
SELECT is(pg_temp.triggers('m_archive.customers'),
          format('%s=A,%s=A,%s=A', pg_temp.tg('m', 'merge_del'), pg_temp.tg('m', 'merge_ins'), pg_temp.tg('m', 'merge_upd')),
          'the archived legacy.customers keeps its capture triggers, ALWAYS');
SELECT is(pg_temp.triggers('m_archive.ai_customers'),
          format('%s=A,%s=A,%s=A', pg_temp.tg('m', 'merge_del'), pg_temp.tg('m', 'merge_ins'), pg_temp.tg('m', 'merge_upd')),
          'the archived legacy.ai_customers keeps its capture triggers, ALWAYS');
SELECT ok((SELECT bool_and(prosrc LIKE '%FROM ONLY m_archive.customers s%') FROM pg_proc
            WHERE oid = 'm_merge.apply_legacy(text[],boolean)'::regprocedure),
          'the apply function of an archived source reads it in the archive');

-- ---------------------------------------------------------------- the relations are no longer live
SELECT is((SELECT count(*) FROM customer_unify.migration_relation WHERE migration_id = pg_temp.mid('m') AND live), 0::bigint,
          'no relation of the finalized merge is live');
SELECT is((SELECT string_agg(format('%s|%s|%s', tag, role, relid::text), ';' ORDER BY tag)
             FROM customer_unify.migration_relation WHERE migration_id = pg_temp.mid('m')),
          'ai|source|m_archive.ai_customers;crm|source|legacy.crm_contacts;legacy|source|m_archive.customers;'
          'ref1|reference|legacy.conversations;ref2|reference|legacy.bookings;target|target|core.customers;'
          'view_ai|view|m_compat.ai_customers;view_legacy|view|m_compat.customers',
          'migration_relation still lists every relation (the archived ones where they are now)');

-- ---------------------------------------------------------------- until purge, the views still merge
SELECT ok(pg_get_viewdef('m_compat.customers'::regclass) LIKE '%FROM ONLY m_archive.customers;',
          'm_compat.customers now reads the archived table');
INSERT INTO m_compat.customers (first_name, last_name, email) VALUES ('Hal', 'Ito', 'hal@example.com');
SELECT is((SELECT count(*) FROM core.customers WHERE email = 'hal@example.com'), 1::bigint,
          'a write through a compat view after finalize is still merged into the target');
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.rollback('m')$$), '55000',
          'a finalized merge cannot be rolled back (55000)');

-- ---------------------------------------------------------------- purge
CREATE TEMP TABLE crosswalk_purge AS SELECT * FROM customer_unify.id_map WHERE migration_id = pg_temp.mid('m');
CREATE TEMP TABLE target_purge AS SELECT * FROM core.customers;
SELECT lives_ok($$SELECT customer_unify.purge('m')$$, 'purge()');
SELECT hasnt_schema('m_compat', 'purge drops the compat schema');
SELECT hasnt_schema('m_archive', 'purge drops the archive schema (the archived sources with it)');
SELECT hasnt_schema('m_merge', 'purge drops the work schema');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'm'), 'finalized', 'the migration stays finalized');
SELECT set_eq($$SELECT * FROM customer_unify.id_map WHERE migration_id = pg_temp.mid('m')$$, $$SELECT * FROM crosswalk_purge$$,
              'the crosswalk is kept by purge: every old key still resolves');
SELECT ok((SELECT count(*) FROM crosswalk_purge) > (SELECT count(*) FROM crosswalk_before),
          'it holds the rows finalize found and the ones written through the views afterwards');
SELECT set_eq($$SELECT * FROM core.customers$$, $$SELECT * FROM target_purge$$, 'purge leaves the target alone');
SELECT is((SELECT count(*) FROM legacy.conversations WHERE customer_uuid IS NOT NULL), 2::bigint,
          'purge leaves the new references alone');
SELECT is((SELECT count(*) FROM legacy.crm_contacts), 2::bigint, 'purge leaves the keep source alone');
SELECT is_empty($$SELECT tgrelid::regclass::text || ' ' || tgname FROM pg_trigger WHERE tgname LIKE 'customer\_unify\_%'$$,
                'no trigger of the merge is left anywhere');
SELECT is_empty($$SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname LIKE 'm\_%'$$,
                'no generated function is left');
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.purge('m')$$), 'no error', 'purge can run again (nothing left to drop)');
SELECT is((SELECT count(*) FROM core.customers), (SELECT count(*) FROM target_purge),
          'the target keeps every person after purge');
SELECT is((SELECT source_tag || ':' || old_key FROM customer_unify.id_map
            WHERE migration_id = pg_temp.mid('m') AND target_key = (SELECT id::text FROM core.customers WHERE email = 'hal@example.com')),
          'legacy:4', 'the row written through the view after finalize resolves through the crosswalk');

SELECT * FROM finish();
ROLLBACK;

-- ---------------------------------------------------------------- cleanup
-- The DDL guard refuses dropping a live migration's objects: drop the
-- extension first (its triggers and event triggers go with it).
SET client_min_messages = warning;
DROP EXTENSION customer_unify CASCADE;
DROP SCHEMA IF EXISTS m_compat, m_archive, m_merge, legacy, core CASCADE;
DROP OWNED BY cu_pgtap_m13_owner;
DROP ROLE IF EXISTS cu_pgtap_m13_owner;

-- 12_merge_cutover.sql: a merge after its backfill, and the compatibility views cutover() leaves behind.
-- Contract (1.2, src/sql/merge.sql, sql/merge_lifecycle.sql): CALL backfill fills
-- the crosswalk (one id_map row per source row, the existing target's rows as
-- anchors), the reference columns, and validates their FKs; 'backfilled'.
-- cutover makes schema <name>_compat with one view per source that is not the
-- anchor (nor keep), named like the source, with the source's columns in
-- order, security_invoker = true, auto-updatable, owned by the tables' owner,
-- with the source's table and column privileges (and USAGE on the schema for
-- their grantees); what old code writes there is merged as it lands.
-- CALL backfill COMMITs, so the setup up to 'backfilled' runs first in
-- autocommit mode (test/pgtap/run gives every file a fresh database); the
-- assertions run in one transaction that is rolled back; the objects and
-- roles are dropped at the end.
-- a failing setup step must not hide the assertions: they report it
\set ON_ERROR_STOP 0
SET client_min_messages = warning;
CREATE ROLE cu_pgtap_m12_owner NOLOGIN;     -- owns every table
CREATE ROLE cu_pgtap_m12_clerk NOLOGIN;     -- SELECT, INSERT on legacy.customers
CREATE ROLE cu_pgtap_m12_agent NOLOGIN;     -- SELECT and UPDATE (phone) on legacy.ai_customers
CREATE ROLE cu_pgtap_m12_stranger NOLOGIN;  -- nothing
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO cu_pgtap_m12_owner', current_database()); END $$;
CREATE SCHEMA core AUTHORIZATION cu_pgtap_m12_owner;
CREATE SCHEMA legacy AUTHORIZATION cu_pgtap_m12_owner;
SET ROLE cu_pgtap_m12_owner;
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
INSERT INTO core.customers (id, first_name, last_name, email, phone) VALUES
    ('00000000-0000-0000-0000-00000000000a', 'Ana', 'Lima', 'ana@example.com', '+14155550101'),
    ('00000000-0000-0000-0000-00000000000b', 'Bo', 'Chen', 'bo@example.com', NULL);
INSERT INTO legacy.customers (first_name, last_name, email, phone, loyalty_points) VALUES
    ('Ana', 'Lima', ' ANA@Example.com ', '(415) 555-0101', 5),    -- Ana again: email drifted
    ('Cy', 'Diaz', 'cy@example.com', NULL, 1),
    ('Dee', 'Evans', 'dee@example.com', NULL, 0);
INSERT INTO legacy.ai_customers VALUES
    ('6f1c7a52-0000-4000-8000-000000000001', 'cy@EXAMPLE.com', 'Cy Diaz', NULL),     -- Cy of legacy
    ('6f1c7a52-0000-4000-8000-000000000002', 'eve@example.com', 'Eve Fox', '4155550104'),
    ('6f1c7a52-0000-4000-8000-000000000003', NULL, 'Bo Chen', '+1 415 555 0199');
INSERT INTO legacy.bookings VALUES (1, 1, 20), (2, 2, 30), (3, 3, 40), (4, NULL, 5);
INSERT INTO legacy.conversations VALUES (1, '6f1c7a52-0000-4000-8000-000000000001', 'hi'),
    (2, '6f1c7a52-0000-4000-8000-000000000002', 'hello'), (3, NULL, 'anonymous');
GRANT USAGE ON SCHEMA legacy TO cu_pgtap_m12_clerk, cu_pgtap_m12_agent;
GRANT SELECT, INSERT ON legacy.customers TO cu_pgtap_m12_clerk;
GRANT SELECT, UPDATE (phone) ON legacy.ai_customers TO cu_pgtap_m12_agent;
RESET ROLE;
-- the sources' shapes before anything ran
CREATE TEMP TABLE source_columns AS
SELECT c.relname::text AS rel, array_agg(a.attname::text || ' ' || format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum) AS cols
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.oid IN ('legacy.customers'::regclass, 'legacy.ai_customers'::regclass) GROUP BY 1;
DO $$
BEGIN
    PERFORM customer_unify.merge('m', $json$ {
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
    PERFORM customer_unify.start('m');
END $$;
-- written after start, before the backfill
INSERT INTO legacy.customers (first_name, last_name, email) VALUES ('Fay', 'Gil', 'fay@example.com');
CALL customer_unify.backfill('m', batch_size => 2);
RESET client_min_messages;

\set ON_ERROR_STOP 1
BEGIN;
SELECT plan(49);

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

-- the id of a migration
CREATE FUNCTION pg_temp.mid(mname text) RETURNS bigint LANGUAGE sql AS $f$
    SELECT id FROM customer_unify.migration WHERE name = mname
$f$;

-- the target key of a source row
CREATE FUNCTION pg_temp.tkey(tag text, key text) RETURNS text LANGUAGE sql AS $f$
    SELECT target_key FROM customer_unify.id_map WHERE migration_id = pg_temp.mid('m') AND source_tag = tag AND old_key = key
$f$;

-- the number of rows a statement run as a role changes
CREATE FUNCTION pg_temp.changed_by(role name, sql text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE n bigint;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', role);
    EXECUTE sql;
    GET DIAGNOSTICS n = ROW_COUNT;
    RESET ROLE;
    RETURN n::text;
EXCEPTION WHEN OTHERS THEN
    RESET ROLE;
    RETURN 'ERROR ' || SQLSTATE;
END
$f$;

-- ---------------------------------------------------------------- after the backfill
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'm'), 'backfilled',
          'setup: a superuser planned and started the merge of cu_pgtap_m12_owner''s tables, CALL backfill finished: backfilled');
SELECT is_empty($$SELECT stream FROM customer_unify.backfill_state WHERE migration_id = pg_temp.mid('m') AND finished_at IS NULL$$,
                'every copy stream is finished');
SELECT is((SELECT string_agg(format('%s=%s', source_tag, n), ',' ORDER BY source_tag)
             FROM (SELECT source_tag, count(*) AS n FROM customer_unify.id_map
                    WHERE migration_id = pg_temp.mid('m') AND source_tag <> 'target' GROUP BY 1) x),
          'ai=3,legacy=4', 'id_map: one row per source row (the row written after start too)');
SELECT is((SELECT string_agg(DISTINCT format('%s:%s', source_tag, source::text || ' ' || old_key_type::text), ',')
             FROM customer_unify.id_map WHERE migration_id = pg_temp.mid('m')),
          'ai:legacy.ai_customers character varying,legacy:legacy.customers integer,target:core.customers uuid',
          'id_map keeps each row''s source table and old key type');
SELECT is((SELECT string_agg(format('%s=%s', old_key, rule), ',' ORDER BY old_key) FROM customer_unify.id_map
            WHERE migration_id = pg_temp.mid('m') AND source_tag = 'target'),
          '00000000-0000-0000-0000-00000000000a=anchor,00000000-0000-0000-0000-00000000000b=anchor',
          'the anchors are the target''s own rows, and only those: one id_map row each, with their own key');
SELECT is(pg_temp.tkey('legacy', '1'), '00000000-0000-0000-0000-00000000000a',
          'Ana of legacy (drifted email) joined the anchor Ana');
SELECT is(pg_temp.tkey('ai', '6f1c7a52-0000-4000-8000-000000000001'), pg_temp.tkey('legacy', '2'),
          'Cy of the AI table and Cy of legacy are one person');
SELECT is((SELECT count(*) FROM core.customers), 7::bigint,
          'the target: two anchors and five new people (Cy, Dee, Fay, Eve, and the AI''s Bo, who shares no key with the anchor Bo)');
SELECT is((SELECT count(*) FROM core.customers t
            WHERE NOT EXISTS (SELECT 1 FROM customer_unify.id_map im WHERE im.migration_id = pg_temp.mid('m') AND im.target_key = t.id::text)),
          0::bigint, 'every target row is a cluster of the crosswalk');
SELECT is((SELECT string_agg(format('%s=%s', c.id, t.email), ',' ORDER BY c.id) FROM legacy.conversations c
             LEFT JOIN core.customers t ON t.id = c.customer_uuid),
          '1=cy@example.com,2=eve@example.com,3=', 'the named reference is re-pointed by the backfill');
SELECT is((SELECT string_agg(format('%s=%s', b.id, t.email), ',' ORDER BY b.id) FROM legacy.bookings b
             LEFT JOIN core.customers t ON t.id = b.customer_id_merged),
          '1=ana@example.com,2=cy@example.com,3=dee@example.com,4=', 'the found reference is re-pointed by the backfill');
SELECT is((SELECT string_agg(format('%s=%s', conname, convalidated::text), ',' ORDER BY conname) FROM pg_constraint
            WHERE conname IN ('conversations_customer_uuid_fkey', 'bookings_customer_id_merged_fkey')),
          'bookings_customer_id_merged_fkey=true,conversations_customer_uuid_fkey=true',
          'the backfill validated the FKs of both reference columns');
SELECT is_empty($$SELECT check_name || ': ' || expected || ' <> ' || actual FROM customer_unify.verify('m') WHERE NOT ok$$,
                'verify() reports no failing check');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'm'), 'verified', 'verify() moves backfilled to verified');
SELECT hasnt_schema('m_compat', 'no compat schema before cutover');

-- ---------------------------------------------------------------- cutover
SELECT lives_ok($$SELECT customer_unify.cutover('m')$$, 'cutover() by the superuser');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'm'), 'cut_over', 'the migration is cut_over');
SELECT has_schema('m_compat', 'cutover creates the compat schema m_compat');
SELECT schema_owner_is('m_compat', 'cu_pgtap_m12_owner', 'the compat schema belongs to the tables'' owner');
SELECT views_are('m_compat', ARRAY['ai_customers', 'customers'],
                 'one view per source that is not the anchor, named like its source');
SELECT is(pg_get_viewdef('m_compat.customers'::regclass),
          E' SELECT customers.id,\n    customers.first_name,\n    customers.last_name,\n    customers.email,\n    customers.phone,\n' ||
          E'    customers.loyalty_points\n   FROM ONLY legacy.customers;',
          'm_compat.customers is legacy.customers itself (FROM ONLY, no join), not the target');
SELECT is(ARRAY(SELECT a.attname::text || ' ' || format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                 WHERE a.attrelid = 'm_compat.customers'::regclass AND a.attnum > 0 ORDER BY a.attnum),
          (SELECT cols FROM source_columns WHERE rel = 'customers'),
          'm_compat.customers has the columns of legacy.customers, in order, with their types');
SELECT is(ARRAY(SELECT a.attname::text || ' ' || format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                 WHERE a.attrelid = 'm_compat.ai_customers'::regclass AND a.attnum > 0 ORDER BY a.attnum),
          (SELECT cols FROM source_columns WHERE rel = 'ai_customers'),
          'm_compat.ai_customers has the columns of legacy.ai_customers, in order, with their types');
SELECT is((SELECT string_agg(format('%s:%s', relname, reloptions), ',' ORDER BY relname) FROM pg_class
            WHERE relnamespace = 'm_compat'::regnamespace),
          'ai_customers:{security_invoker=true},customers:{security_invoker=true}',
          'both views are security_invoker = true');
SELECT is((SELECT string_agg(format('%s:%s', relname, pg_get_userbyid(relowner)), ',' ORDER BY relname) FROM pg_class
            WHERE relnamespace = 'm_compat'::regnamespace),
          'ai_customers:cu_pgtap_m12_owner,customers:cu_pgtap_m12_owner', 'both views belong to the tables'' owner');
SELECT is((SELECT string_agg(format('%s:updatable=%s,insertable=%s', table_name, is_updatable, is_insertable_into), ',' ORDER BY table_name)
             FROM information_schema.views WHERE table_schema = 'm_compat'),
          'ai_customers:updatable=YES,insertable=YES,customers:updatable=YES,insertable=YES',
          'both views are auto-updatable (information_schema.views)');
SELECT is_empty($$SELECT tgname FROM pg_trigger WHERE tgrelid IN ('m_compat.customers'::regclass, 'm_compat.ai_customers'::regclass)$$,
                'the views need no INSTEAD OF trigger: the writes land in the source and are captured there');
SELECT is((SELECT string_agg(format('%s|%s|%s.%s|created=%s|live=%s', tag, role, nspname, relname, created::text, live::text), ';' ORDER BY tag)
             FROM customer_unify.migration_relation WHERE migration_id = pg_temp.mid('m') AND role = 'view'),
          'view_ai|view|m_compat.ai_customers|created=true|live=true;view_legacy|view|m_compat.customers|created=true|live=true',
          'cutover registers the views it created in migration_relation');

-- ---------------------------------------------------------------- the sources' privileges, carried to the views
SELECT table_privs_are('m_compat', 'customers', 'cu_pgtap_m12_clerk', ARRAY['INSERT', 'SELECT'],
                       'the clerk''s SELECT and INSERT on legacy.customers are on its view');
SELECT table_privs_are('m_compat', 'ai_customers', 'cu_pgtap_m12_clerk', '{}'::text[],
                       'the clerk gets nothing on the view of a source it has no privilege on');
SELECT table_privs_are('m_compat', 'ai_customers', 'cu_pgtap_m12_agent', ARRAY['SELECT'],
                       'the agent''s SELECT on legacy.ai_customers is on its view');
SELECT column_privs_are('m_compat', 'ai_customers', 'phone', 'cu_pgtap_m12_agent', ARRAY['SELECT', 'UPDATE'],
                        'the agent''s column privilege UPDATE (phone) is on the view''s column');
SELECT column_privs_are('m_compat', 'ai_customers', 'name', 'cu_pgtap_m12_agent', ARRAY['SELECT'],
                        'no UPDATE is invented on the other columns');
SELECT table_privs_are('m_compat', 'customers', 'cu_pgtap_m12_stranger', '{}'::text[],
                       'a role without privileges on the source has none on the view');
SELECT schema_privs_are('m_compat', 'cu_pgtap_m12_clerk', ARRAY['USAGE'], 'the clerk gets USAGE on the compat schema');
SELECT schema_privs_are('m_compat', 'cu_pgtap_m12_agent', ARRAY['USAGE'], 'the agent gets USAGE on the compat schema');
SELECT schema_privs_are('m_compat', 'cu_pgtap_m12_stranger', '{}'::text[], 'a role without privileges gets no USAGE');
SELECT ok(NOT has_schema_privilege('public', 'm_compat', 'USAGE')
          AND NOT has_table_privilege('public', 'm_compat.customers', 'SELECT')
          AND NOT has_table_privilege('public', 'm_compat.ai_customers', 'SELECT'),
          'PUBLIC gets nothing on the compat schema and its views');

-- ---------------------------------------------------------------- old code writes through its views
SELECT is(pg_temp.changed_by('cu_pgtap_m12_clerk',
              $$INSERT INTO m_compat.customers (id, first_name, last_name, email) VALUES (100, 'Gus', 'Hill', 'GUS@example.com')$$),
          '1', 'the clerk inserts through m_compat.customers');
SELECT is((SELECT format('%s %s %s', first_name, last_name, email) FROM core.customers WHERE id::text = pg_temp.tkey('legacy', '100')),
          'Gus Hill gus@example.com', 'the row is merged into the target at once (the clerk has no privilege on it)');
SELECT is(pg_temp.changed_by('cu_pgtap_m12_clerk', $$SELECT * FROM m_compat.customers$$), '5',
          'the clerk reads legacy.customers through its view');
SELECT is(pg_temp.changed_by('cu_pgtap_m12_agent',
              $$UPDATE m_compat.ai_customers SET phone = '+1 415 555 0101' WHERE id = '6f1c7a52-0000-4000-8000-000000000003'$$),
          '1', 'the agent updates a phone through m_compat.ai_customers');
SELECT is(pg_temp.tkey('ai', '6f1c7a52-0000-4000-8000-000000000003'), '00000000-0000-0000-0000-00000000000a',
          'the update is matched at once: the AI row now shares Ana''s phone and joins her');
SELECT is(pg_temp.changed_by('cu_pgtap_m12_agent', $$UPDATE m_compat.ai_customers SET name = 'x'$$), 'ERROR 42501',
          'the agent may not update a column its privileges do not cover (42501)');
SELECT is(pg_temp.changed_by('cu_pgtap_m12_stranger', $$SELECT * FROM m_compat.customers$$), 'ERROR 42501',
          'a role without privileges cannot use the views (42501)');
SELECT is_empty($$SELECT check_name || ': ' || expected || ' <> ' || actual FROM customer_unify.verify('m') WHERE NOT ok$$,
                'after the writes through the views verify() still passes');

-- ---------------------------------------------------------------- still live
SELECT is((SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'customer\_unify\_%\_merge\_%' AND tgenabled = 'A'), 9::bigint,
          'the capture triggers stay on the sources and the target after cutover');
SELECT has_table('legacy', 'customers', 'the sources stay where they are until finalize');
SELECT is(pg_temp.sqlstate_undone($$DROP VIEW m_compat.customers$$), '55006',
          'the DDL guard refuses dropping a compat view of a live merge (55006)');

SELECT * FROM finish();
ROLLBACK;

-- ---------------------------------------------------------------- cleanup
-- The DDL guard refuses dropping a live migration's objects: drop the
-- extension first (its triggers and event triggers go with it).
SET client_min_messages = warning;
DROP EXTENSION customer_unify CASCADE;
DROP SCHEMA IF EXISTS m_compat, m_merge, legacy, core CASCADE;
DROP OWNED BY cu_pgtap_m12_owner, cu_pgtap_m12_clerk, cu_pgtap_m12_agent, cu_pgtap_m12_stranger;
DROP ROLE IF EXISTS cu_pgtap_m12_owner, cu_pgtap_m12_clerk, cu_pgtap_m12_agent, cu_pgtap_m12_stranger;

-- 11_merge_started.sql: the structure start() of a merge leaves behind, and
-- who may touch the crosswalk.
-- Contract (1.2, src/sql/merge.sql header, sql/merge_lifecycle.sql): start creates the
-- work schema <name>_merge (match_key table and its (rule, mkey) index, views
-- survivors, stored_survivors, merged_rows, functions recompute(text[]),
-- apply_<tag>(text[], boolean) and ref_<n>()), owned by the tables' owner
-- (here a plain role; a superuser runs start) with SET search_path on every
-- generated function; statement-level AFTER INSERT/UPDATE/DELETE triggers
-- customer_unify_<id>_merge_{ins,upd,del} with transition tables on every
-- source and on the existing target, ENABLE ALWAYS, calling the C
-- customer_unify.merge_capture(); per reference a new column of the target's
-- key type, a BEFORE row trigger (ALWAYS) that fills it from the crosswalk
-- and an FK to the target's key, NOT VALID, ON DELETE SET NULL.  The
-- crosswalk (id_map) is empty until the backfill (or a live write).  PUBLIC
-- may SELECT id_map, match_decision and merge_held; only the C functions
-- write them, after checking the caller's rights (42501).
BEGIN;
SELECT plan(73);

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
GRANT EXECUTE ON FUNCTION pg_temp.sqlstate_undone(text) TO PUBLIC;

-- the id of a migration, and the name of one of its triggers
CREATE FUNCTION pg_temp.mid(mname text) RETURNS bigint LANGUAGE sql AS $f$
    SELECT id FROM customer_unify.migration WHERE name = mname
$f$;
CREATE FUNCTION pg_temp.tg(mname text, suffix text) RETURNS name LANGUAGE sql AS $f$
    SELECT ('customer_unify_' || pg_temp.mid(mname) || '_' || suffix)::name
$f$;
GRANT EXECUTE ON FUNCTION pg_temp.mid(text) TO PUBLIC;

-- the ACL entries for PUBLIC (grantee 0) of the work schema and everything in it
CREATE FUNCTION pg_temp.public_grants(nsp text, kinds text) RETURNS SETOF text LANGUAGE sql AS $f$
    SELECT 'schema ' || n.nspname || ': ' || a.privilege_type
      FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
     WHERE n.nspname = nsp AND a.grantee = 0 AND kinds LIKE '%n%'
    UNION ALL
    SELECT c.oid::regclass::text || ': ' || a.privilege_type
      FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
     WHERE c.relnamespace = nsp::regnamespace AND a.grantee = 0 AND kinds LIKE '%r%'
    UNION ALL
    SELECT p.oid::regprocedure::text || ': ' || a.privilege_type
      FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
     WHERE p.pronamespace = nsp::regnamespace AND a.grantee = 0 AND kinds LIKE '%f%'
$f$;

CREATE ROLE cu_pgtap_m11_owner NOLOGIN;     -- owns every table
CREATE ROLE cu_pgtap_m11_stranger NOLOGIN;  -- may read the tables, owns none
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO cu_pgtap_m11_owner', current_database()); END $$;
CREATE SCHEMA core AUTHORIZATION cu_pgtap_m11_owner;
CREATE SCHEMA legacy AUTHORIZATION cu_pgtap_m11_owner;
SET LOCAL ROLE cu_pgtap_m11_owner;
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
    ('Ana', 'Lima', ' ANA@Example.com ', '(415) 555-0101', 5),
    ('Cy', 'Diaz', 'cy@example.com', NULL, 1);
INSERT INTO legacy.ai_customers VALUES
    ('6f1c7a52-0000-4000-8000-000000000001', 'cy@EXAMPLE.com', 'Cy Diaz', NULL),
    ('6f1c7a52-0000-4000-8000-000000000002', 'dee@example.com', 'Dee Evans', '4155550104');
INSERT INTO legacy.bookings VALUES (1, 1, 20), (2, 2, 30);
INSERT INTO legacy.conversations VALUES (1, '6f1c7a52-0000-4000-8000-000000000001', 'hi'), (2, NULL, 'anonymous');
GRANT USAGE ON SCHEMA core, legacy TO cu_pgtap_m11_stranger;
GRANT SELECT ON ALL TABLES IN SCHEMA core, legacy TO cu_pgtap_m11_stranger;
RESET ROLE;

-- planned and started by the superuser running this file
SELECT lives_ok($$SELECT customer_unify.merge('m', $json$ {
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
} $json$::jsonb)$$, 'a superuser plans the merge of cu_pgtap_m11_owner''s tables');
SELECT is(customer_unify.start('m')::text, 'started', 'start() returns started');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'm'), 'started', 'the migration is started');
SELECT is((SELECT string_agg(format('%s|%s|%s|live=%s', tag, role, relid::text, live::text), ';' ORDER BY tag)
             FROM customer_unify.migration_relation WHERE migration_id = pg_temp.mid('m')),
          'ai|source|legacy.ai_customers|live=true;legacy|source|legacy.customers|live=true;'
          'ref1|reference|legacy.conversations|live=true;ref2|reference|legacy.bookings|live=true;'
          'target|target|core.customers|live=true',
          'migration_relation is unchanged by start (an existing target is not created)');
SELECT is(ARRAY(SELECT DISTINCT phase FROM customer_unify.step WHERE migration_id = pg_temp.mid('m') ORDER BY 1),
          ARRAY['backfill', 'cutover', 'finalize', 'purge', 'start', 'validate'],
          'start freezes the statements of every phase');
SELECT is((SELECT string_agg(format('%s:%s:%s', stream, key_type, rows_done), ',' ORDER BY stream)
             FROM customer_unify.backfill_state WHERE migration_id = pg_temp.mid('m')),
          'a01_target:uuid:0,a02_legacy:integer:0,a03_ai:character varying:0,'
          'b01_target:uuid:0,b02_legacy:integer:0,b03_ai:character varying:0,c01_ref:bigint:0,c02_ref:bigint:0',
          'start makes the checkpoints: match keys (a) and matching (b) per source by priority, one per reference (c)');

-- ---------------------------------------------------------------- the work schema
SELECT has_schema('m_merge', 'start creates the work schema m_merge');
SELECT schema_owner_is('m_merge', 'cu_pgtap_m11_owner', 'the work schema belongs to the tables'' owner, not to the superuser');
SELECT is(obj_description('m_merge'::regnamespace, 'pg_namespace'),
          'customer_unify: the working state of merge m (match keys, survivorship, apply functions)',
          'the work schema says what it is');
SELECT tables_are('m_merge', ARRAY['match_key', 'pending'], 'the work schema has two tables, match_key and pending (rows writes deferred rather than wait)');
SELECT is((SELECT string_agg(format('%s %s%s', attname, format_type(atttypid, atttypmod), CASE WHEN attnotnull THEN ' NOT NULL' END), ', ' ORDER BY attnum)
             FROM pg_attribute WHERE attrelid = 'm_merge.match_key'::regclass AND attnum > 0 AND NOT attisdropped),
          'src text NOT NULL, skey text NOT NULL, rule text NOT NULL, mkey text NOT NULL, row jsonb',
          'match_key (src, skey, rule, mkey), all text NOT NULL, and the row in the target''s shape for similarity rules');
SELECT col_is_pk('m_merge', 'match_key', ARRAY['src', 'skey', 'rule'], 'match_key''s primary key is (src, skey, rule)');
SELECT has_index('m_merge', 'match_key', 'match_key_value', ARRAY['rule', 'mkey'], 'match_key is indexed by (rule, mkey)');
SELECT views_are('m_merge', ARRAY['merged_rows', 'stored_survivors', 'survivors'],
                 'the work schema has the views survivors, stored_survivors and merged_rows');
SELECT is(ARRAY(SELECT attname::text FROM pg_attribute WHERE attrelid = 'm_merge.survivors'::regclass AND attnum > 0 ORDER BY attnum),
          ARRAY['tkey', 'email', 'first_name', 'last_name', 'phone'],
          'survivors: the target key and each mapped target column');
SELECT is(ARRAY(SELECT attname::text FROM pg_attribute WHERE attrelid = 'm_merge.stored_survivors'::regclass AND attnum > 0 ORDER BY attnum),
          ARRAY['tkey', 'email', 'first_name', 'last_name', 'phone'],
          'stored_survivors: the columns of survivors');
SELECT is(ARRAY(SELECT attname::text FROM pg_attribute WHERE attrelid = 'm_merge.merged_rows'::regclass AND attnum > 0 ORDER BY attnum),
          ARRAY['id', 'first_name', 'last_name', 'email', 'phone', 'updated_at'],
          'merged_rows: the target''s rows (every column)');
SELECT is_empty($$SELECT c.relname || ' ' || pg_get_userbyid(c.relowner) FROM pg_class c
                   WHERE c.relnamespace = 'm_merge'::regnamespace AND c.relowner <> 'cu_pgtap_m11_owner'::regrole$$,
                'the table, its indexes and the views of the work schema belong to the tables'' owner');
SELECT functions_are('m_merge', ARRAY['apply_ai', 'apply_legacy', 'apply_target', 'drain', 'live_ai', 'live_legacy', 'live_target',
                                      'reconcile', 'recompute', 'ref_1', 'ref_2', 'repoint'],
                     'the work schema has recompute, reconcile, drain, repoint, apply_<tag> and live_<tag> per source (the target too) and ref_<n> per reference');
SELECT has_function('m_merge', 'recompute', ARRAY['text[]'], 'recompute(text[])');
SELECT function_returns('m_merge', 'recompute', ARRAY['text[]'], 'void', 'recompute(text[]) returns void');
SELECT is(ARRAY(SELECT p.oid::regprocedure::text || ' -> ' || p.prorettype::regtype::text FROM pg_proc p
                 WHERE p.pronamespace = 'm_merge'::regnamespace AND p.proname LIKE 'apply\_%' ORDER BY 1),
          ARRAY['m_merge.apply_ai(text[],boolean) -> bigint', 'm_merge.apply_legacy(text[],boolean) -> bigint',
                'm_merge.apply_target(text[],boolean) -> bigint'],
          'apply_<tag>(text[], boolean) returns bigint, one per source and the target');
SELECT is(ARRAY(SELECT p.oid::regprocedure::text || ' -> ' || p.prorettype::regtype::text FROM pg_proc p
                 WHERE p.pronamespace = 'm_merge'::regnamespace AND p.proname LIKE 'ref\_%' ORDER BY 1),
          ARRAY['m_merge.ref_1() -> trigger', 'm_merge.ref_2() -> trigger'],
          'ref_<n>() are trigger functions');
SELECT is_empty($$SELECT p.oid::regprocedure::text FROM pg_proc p
                   WHERE p.pronamespace = 'm_merge'::regnamespace AND p.proowner <> 'cu_pgtap_m11_owner'::regrole$$,
                'every function of the work schema belongs to the tables'' owner');
SELECT is_empty($$SELECT p.oid::regprocedure::text || ' ' || coalesce(p.proconfig::text, 'no SET') FROM pg_proc p
                   WHERE p.pronamespace = 'm_merge'::regnamespace
                     AND NOT 'search_path=pg_catalog, pg_temp' = ANY (coalesce(p.proconfig, '{}'))$$,
                'every generated function pins SET search_path = pg_catalog, pg_temp');
SELECT is(ARRAY(SELECT p.proname || ' ' || array_to_string(p.proconfig, ' ') FROM pg_proc p
                 WHERE p.pronamespace = 'm_merge'::regnamespace AND p.proname NOT LIKE 'ref\_%' ORDER BY (p.proname || ' ' || array_to_string(p.proconfig, ' ')) COLLATE "C"),
          ARRAY['apply_ai search_path=pg_catalog, pg_temp jit=off plan_cache_mode=force_custom_plan DateStyle=ISO, MDY IntervalStyle=postgres join_collapse_limit=1',
                'apply_legacy search_path=pg_catalog, pg_temp jit=off plan_cache_mode=force_custom_plan DateStyle=ISO, MDY IntervalStyle=postgres join_collapse_limit=1',
                'apply_target search_path=pg_catalog, pg_temp jit=off plan_cache_mode=force_custom_plan DateStyle=ISO, MDY IntervalStyle=postgres join_collapse_limit=1',
                'drain search_path=pg_catalog, pg_temp DateStyle=ISO, MDY IntervalStyle=postgres',
                'live_ai search_path=pg_catalog, pg_temp DateStyle=ISO, MDY IntervalStyle=postgres lock_timeout=1ms customer_unify.merge_never_wait=on',
                'live_legacy search_path=pg_catalog, pg_temp DateStyle=ISO, MDY IntervalStyle=postgres lock_timeout=1ms customer_unify.merge_never_wait=on',
                'live_target search_path=pg_catalog, pg_temp DateStyle=ISO, MDY IntervalStyle=postgres lock_timeout=1ms customer_unify.merge_never_wait=on',
                'recompute search_path=pg_catalog, pg_temp jit=off plan_cache_mode=force_custom_plan DateStyle=ISO, MDY IntervalStyle=postgres',
                'reconcile search_path=pg_catalog, pg_temp jit=off plan_cache_mode=force_custom_plan DateStyle=ISO, MDY IntervalStyle=postgres',
                'repoint search_path=pg_catalog, pg_temp DateStyle=ISO, MDY IntervalStyle=postgres'],
          'the matching functions run without JIT, planned per call with their keys, their joins in the order written (apply_*), keys in ISO text; '
          'an application''s write (live_*) waits for no lock of the merge (1 ms, then deferred)');
SELECT is_empty($$SELECT p.oid::regprocedure::text FROM pg_proc p
                   WHERE p.pronamespace = 'm_merge'::regnamespace AND (p.prosecdef OR p.prolang <> (SELECT oid FROM pg_language WHERE lanname = 'plpgsql'))$$,
                'the generated functions are plain PL/pgSQL, none SECURITY DEFINER');
SELECT is_empty($$SELECT * FROM pg_temp.public_grants('m_merge', 'nr')$$,
                'PUBLIC has no privilege on the work schema, its table or its views');
SELECT is_empty($$SELECT * FROM pg_temp.public_grants('m_merge', 'f')$$,
                'PUBLIC has no privilege on the functions of the work schema');
SET LOCAL ROLE cu_pgtap_m11_stranger;
SELECT is(pg_temp.sqlstate_undone($$SELECT count(*) FROM m_merge.match_key$$), '42501',
          'a role that reads the tables cannot read the work schema (42501)');
RESET ROLE;

-- ---------------------------------------------------------------- capture triggers
SELECT triggers_are('core', 'customers', ARRAY[pg_temp.tg('m', 'merge_del'), pg_temp.tg('m', 'merge_ins'), pg_temp.tg('m', 'merge_upd')],
                    'the existing target carries the capture triggers customer_unify_<id>_merge_{ins,upd,del}');
SELECT triggers_are('legacy', 'customers', ARRAY[pg_temp.tg('m', 'merge_del'), pg_temp.tg('m', 'merge_ins'), pg_temp.tg('m', 'merge_upd')],
                    'legacy.customers carries the capture triggers');
SELECT triggers_are('legacy', 'ai_customers', ARRAY[pg_temp.tg('m', 'merge_del'), pg_temp.tg('m', 'merge_ins'), pg_temp.tg('m', 'merge_upd')],
                    'legacy.ai_customers carries the capture triggers');
-- (before any set_eq: its temporary tables are DDL, which the guard refuses while a trigger is not ALWAYS)
SELECT is_empty($$SELECT tgrelid::regclass::text || ' ' || tgname || ' ' || tgenabled::text FROM pg_trigger
                   WHERE NOT tgisinternal AND tgname LIKE 'customer\_unify\_%' AND tgenabled <> 'A'$$,
                'every trigger of the merge is ENABLE ALWAYS (fires under session_replication_role = replica too)');
SELECT is((SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'customer\_unify\_%\_merge\_%' AND tgenabled = 'A'), 9::bigint,
          'nine capture triggers, all ALWAYS');
SELECT set_eq($$SELECT tgrelid::regclass::text AS rel, regexp_replace(tgname, '^customer_unify_[0-9]+_', '') AS suffix,
                       CASE WHEN tgtype & 2 <> 0 THEN 'BEFORE' WHEN tgtype & 64 <> 0 THEN 'INSTEAD OF' ELSE 'AFTER' END AS timing,
                       CASE WHEN tgtype & 1 <> 0 THEN 'ROW' ELSE 'STATEMENT' END AS level,
                       concat_ws(' OR ', CASE WHEN tgtype & 4 <> 0 THEN 'INSERT' END, CASE WHEN tgtype & 16 <> 0 THEN 'UPDATE' END,
                                 CASE WHEN tgtype & 8 <> 0 THEN 'DELETE' END, CASE WHEN tgtype & 32 <> 0 THEN 'TRUNCATE' END) AS events,
                       coalesce(tgoldtable::text, '-') AS old_table, coalesce(tgnewtable::text, '-') AS new_table
                  FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'customer\_unify\_%\_merge\_%'$$,
              $$SELECT t, s, 'AFTER' AS timing, 'STATEMENT' AS level, e, o, n
                  FROM (VALUES ('core.customers'), ('legacy.customers'), ('legacy.ai_customers')) r(t),
                       (VALUES ('merge_ins', 'INSERT', '-', 'customer_unify_new'),
                               ('merge_upd', 'UPDATE', 'customer_unify_old', 'customer_unify_new'),
                               ('merge_del', 'DELETE', 'customer_unify_old', '-')) k(s, e, o, n)$$,
              'each capture trigger is AFTER, FOR EACH STATEMENT, one event, with its transition tables');
SELECT set_eq($$SELECT tgrelid::regclass::text AS rel, tgname::text AS name, tgfoid::regprocedure::text AS func,
                       tgnargs::int AS nargs, encode(tgargs, 'escape') AS args
                  FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'customer\_unify\_%\_merge\_%'$$,
              $$SELECT r.t, pg_temp.tg('m', k.s)::text AS name, 'customer_unify.merge_capture()' AS func, 3 AS nargs,
                       format('%s\000%s\000%s\000', pg_temp.mid('m'), r.tag,
                              to_regprocedure(format('m_merge.apply_%s(text[],boolean)', r.tag))::oid)
                  FROM (VALUES ('core.customers', 'target'), ('legacy.customers', 'legacy'), ('legacy.ai_customers', 'ai')) r(t, tag),
                       (VALUES ('merge_ins'), ('merge_upd'), ('merge_del')) k(s)$$,
              'each capture trigger calls customer_unify.merge_capture(migration id, source tag, its apply_<tag> function)');
SELECT is(pg_temp.sqlstate_undone(format('ALTER TABLE legacy.customers DISABLE TRIGGER %I', pg_temp.tg('m', 'merge_ins'))), '55006',
          'the DDL guard refuses disabling a capture trigger while the merge is live (55006)');
SELECT is(pg_temp.sqlstate_undone(format('DROP TRIGGER %I ON core.customers', pg_temp.tg('m', 'merge_del'))), '55006',
          'the DDL guard refuses dropping a capture trigger while the merge is live (55006)');

-- ---------------------------------------------------------------- references
SELECT col_type_is('legacy', 'conversations', 'customer_uuid', 'uuid',
                   'the named reference gets its new column customer_uuid, of the target''s key type');
SELECT col_type_is('legacy', 'bookings', 'customer_id_merged', 'uuid',
                   'the found reference gets its new column customer_id_merged, of the target''s key type');
SELECT is(ARRAY(SELECT attname::text FROM pg_attribute WHERE attrelid = 'legacy.bookings'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum),
          ARRAY['id', 'customer_id', 'total', 'customer_id_merged'],
          'the old reference column stays until finalize; the new one comes last');
SELECT is((SELECT col_description(attrelid, attnum) FROM pg_attribute WHERE attrelid = 'legacy.conversations'::regclass AND attname = 'customer_uuid'),
          'customer_unify: customer_id re-pointed at core.customers (merge m)', 'the new column says what it is');
SELECT triggers_are('legacy', 'conversations', ARRAY[pg_temp.tg('m', 'ref1')], 'legacy.conversations carries customer_unify_<id>_ref1 only');
SELECT triggers_are('legacy', 'bookings', ARRAY[pg_temp.tg('m', 'ref2')], 'legacy.bookings carries customer_unify_<id>_ref2 only');
SELECT is((SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'legacy.conversations'::regclass AND tgname = pg_temp.tg('m', 'ref1')),
          format('CREATE TRIGGER %s BEFORE INSERT OR UPDATE OF customer_id, customer_uuid ON legacy.conversations '
                 'FOR EACH ROW WHEN ((NOT customer_unify._mirror_guard((%s)::bigint))) EXECUTE FUNCTION m_merge.ref_1()',
                 pg_temp.tg('m', 'ref1'), pg_temp.mid('m')),
          'ref1: BEFORE INSERT OR UPDATE OF the old and the new column, FOR EACH ROW, not for the merge''s own writes, m_merge.ref_1()');
SELECT is((SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'legacy.bookings'::regclass AND tgname = pg_temp.tg('m', 'ref2')),
          format('CREATE TRIGGER %s BEFORE INSERT OR UPDATE OF customer_id, customer_id_merged ON legacy.bookings '
                 'FOR EACH ROW WHEN ((NOT customer_unify._mirror_guard((%s)::bigint))) EXECUTE FUNCTION m_merge.ref_2()',
                 pg_temp.tg('m', 'ref2'), pg_temp.mid('m')),
          'ref2: BEFORE INSERT OR UPDATE OF the old and the new column, FOR EACH ROW, not for the merge''s own writes, m_merge.ref_2()');
SELECT is((SELECT string_agg(tgname || '=' || tgenabled::text, ',' ORDER BY tgname) FROM pg_trigger
            WHERE tgrelid IN ('legacy.conversations'::regclass, 'legacy.bookings'::regclass) AND NOT tgisinternal),
          format('%s=A,%s=A', pg_temp.tg('m', 'ref1'), pg_temp.tg('m', 'ref2')),
          'the reference triggers are ENABLE ALWAYS');
SELECT is((SELECT format('%s|validated=%s', pg_get_constraintdef(oid), convalidated::text) FROM pg_constraint
            WHERE conrelid = 'legacy.conversations'::regclass AND conname = 'conversations_customer_uuid_fkey'),
          'FOREIGN KEY (customer_uuid) REFERENCES core.customers(id) ON DELETE SET NULL NOT VALID|validated=false',
          'conversations_customer_uuid_fkey: to the target''s key, ON DELETE SET NULL, NOT VALID');
SELECT is((SELECT format('%s|validated=%s', pg_get_constraintdef(oid), convalidated::text) FROM pg_constraint
            WHERE conrelid = 'legacy.bookings'::regclass AND conname = 'bookings_customer_id_merged_fkey'),
          'FOREIGN KEY (customer_id_merged) REFERENCES core.customers(id) ON DELETE SET NULL NOT VALID|validated=false',
          'bookings_customer_id_merged_fkey: to the target''s key, ON DELETE SET NULL, NOT VALID');
SELECT fk_ok('legacy', 'bookings', 'customer_id', 'legacy', 'customers', 'id', 'the old FK of legacy.bookings stays until finalize');

-- ---------------------------------------------------------------- the crosswalk: empty until the backfill
SELECT is((SELECT count(*) FROM customer_unify.id_map WHERE migration_id = pg_temp.mid('m')), 0::bigint,
          'id_map is empty after start (the backfill fills it)');
SELECT is((SELECT count(*) FROM m_merge.match_key), 0::bigint, 'match_key is empty after start');
SELECT is((SELECT count(*) FROM core.customers), 2::bigint, 'start adds no row to the target');
SELECT is((SELECT count(*) FROM customer_unify.merge_held WHERE migration_id = pg_temp.mid('m')), 0::bigint, 'nothing is held');
-- a live write is captured at once: a new person (the anchors' keys are not known before the backfill)
INSERT INTO legacy.ai_customers VALUES ('6f1c7a52-0000-4000-8000-000000000009', 'FAY@example.com', 'Fay Gil', NULL);
SELECT is((SELECT string_agg(format('%s:%s:%s:%s:%s', im.source_tag, im.source::text, im.old_key_type::text, im.old_key, im.rule), ',')
             FROM customer_unify.id_map im WHERE im.migration_id = pg_temp.mid('m')),
          'ai:legacy.ai_customers:character varying:6f1c7a52-0000-4000-8000-000000000009:new',
          'a row written while started reaches the crosswalk through the capture trigger');
SELECT is((SELECT format('%s %s %s', t.first_name, t.last_name, t.email) FROM customer_unify.id_map im
             JOIN core.customers t ON t.id::text = im.target_key WHERE im.migration_id = pg_temp.mid('m')),
          'Fay Gil fay@example.com', 'and its merged row is in the target, written as the tables'' owner');
INSERT INTO legacy.conversations VALUES (3, '6f1c7a52-0000-4000-8000-000000000009', 'later');
SELECT is((SELECT c.customer_uuid::text FROM legacy.conversations c WHERE c.id = 3),
          (SELECT im.target_key FROM customer_unify.id_map im WHERE im.migration_id = pg_temp.mid('m')),
          'the reference trigger fills the new column of a row written while started');
SELECT is((SELECT count(*) FROM legacy.conversations WHERE customer_uuid IS NOT NULL AND id < 3), 0::bigint,
          'rows that existed at start wait for the backfill');

-- ---------------------------------------------------------------- who may write the crosswalk
SELECT ok(has_table_privilege('public', 'customer_unify.id_map', 'SELECT')
          AND NOT has_table_privilege('public', 'customer_unify.id_map', 'INSERT, UPDATE, DELETE, TRUNCATE'),
          'PUBLIC may SELECT customer_unify.id_map, nothing else');
SELECT ok(has_table_privilege('public', 'customer_unify.match_decision', 'SELECT')
          AND NOT has_table_privilege('public', 'customer_unify.match_decision', 'INSERT, UPDATE, DELETE, TRUNCATE'),
          'PUBLIC may SELECT customer_unify.match_decision, nothing else');
SELECT ok(has_table_privilege('public', 'customer_unify.merge_held', 'SELECT')
          AND NOT has_table_privilege('public', 'customer_unify.merge_held', 'INSERT, UPDATE, DELETE, TRUNCATE'),
          'PUBLIC may SELECT customer_unify.merge_held, nothing else');
SET LOCAL ROLE cu_pgtap_m11_stranger;
SELECT is(pg_temp.sqlstate_undone($$SELECT count(*) FROM customer_unify.id_map$$), 'no error',
          'a role that owns no table reads the crosswalk');
SELECT is(pg_temp.sqlstate_undone($$INSERT INTO customer_unify.id_map VALUES (pg_temp.mid('m'), 'legacy', 'legacy.customers', '1', 'integer', 'x', 'r')$$),
          '42501', 'it cannot INSERT into id_map (42501)');
SELECT is(pg_temp.sqlstate_undone($$UPDATE customer_unify.id_map SET target_key = 'x'$$),
          '42501', 'it cannot UPDATE id_map (42501)');
SELECT is(pg_temp.sqlstate_undone($$DELETE FROM customer_unify.id_map$$),
          '42501', 'it cannot DELETE from id_map (42501)');
SELECT is(pg_temp.sqlstate_undone($$INSERT INTO customer_unify.match_decision (migration_id, decision, a_tag, a_key, b_tag, b_key)
                                    VALUES (pg_temp.mid('m'), 'never', 'legacy', '1', 'ai', '6f1c7a52-0000-4000-8000-000000000001')$$),
          '42501', 'it cannot INSERT into match_decision (42501)');
SELECT is(pg_temp.sqlstate_undone($$INSERT INTO customer_unify.merge_held VALUES (pg_temp.mid('m'), 'x', 'y')$$),
          '42501', 'it cannot INSERT into merge_held (42501)');
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify._id_map_set(pg_temp.mid('m'), 'legacy', ARRAY['1'], ARRAY['x'], ARRAY['r'])$$),
          '42501', 'it cannot call customer_unify._id_map_set (42501)');
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify._id_map_clear(pg_temp.mid('m'))$$),
          '42501', 'it cannot call customer_unify._id_map_clear (42501)');
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.decide('m', 'never', 'legacy', '1', 'ai', '6f1c7a52-0000-4000-8000-000000000001')$$),
          '42501', 'it cannot record a match decision (42501)');
RESET ROLE;
SET LOCAL ROLE cu_pgtap_m11_owner;
SELECT is(pg_temp.sqlstate_undone($$DELETE FROM customer_unify.id_map$$), '42501',
          'the tables'' owner cannot write id_map directly either (only the C functions do)');
RESET ROLE;
SELECT is((SELECT count(*) FROM customer_unify.id_map WHERE migration_id = pg_temp.mid('m'))
          + (SELECT count(*) FROM customer_unify.match_decision WHERE migration_id = pg_temp.mid('m')),
          1::bigint, 'the refused writes changed nothing');

SELECT * FROM finish();
ROLLBACK;

-- 00_catalog.sql: the objects CREATE EXTENSION customer_unify leaves behind.
-- Contract: test/API.md "Catalog", DESIGN.md "Versioned upgrades" and "Safe SQL".
-- Convention in these files: every assertion is one statement starting with
-- "SELECT " at the start of a line; nothing else starts that way.
BEGIN;
SELECT plan(59);

CREATE FUNCTION pg_temp.err(sql text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$f$;

-- missing(relation, wanted columns): the wanted columns the relation lacks
CREATE FUNCTION pg_temp.missing(rel regclass, wanted name[]) RETURNS name[]
LANGUAGE sql AS $f$
    SELECT coalesce(array_agg(w ORDER BY o), '{}')
      FROM unnest(wanted) WITH ORDINALITY AS u(w, o)
     WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                        WHERE a.attrelid = rel AND a.attname = u.w
                          AND a.attnum > 0 AND NOT a.attisdropped)
$f$;

-- ---------------------------------------------------------------- extension
SELECT has_extension('customer_unify', 'extension customer_unify is installed');
SELECT is((SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'customer_unify'),
          'customer_unify', 'extension lives in schema customer_unify');
SELECT is((SELECT extrelocatable FROM pg_extension WHERE extname = 'customer_unify'),
          false, 'extension is not relocatable');
SELECT is((SELECT e.extversion FROM pg_extension e WHERE e.extname = 'customer_unify'),
          (SELECT a.default_version FROM pg_available_extensions a WHERE a.name = 'customer_unify'),
          'installed version is the default version');
SELECT has_schema('customer_unify', 'schema customer_unify exists');

-- ---------------------------------------------------------------- catalog relations
SELECT has_table('customer_unify', 'migration', 'table customer_unify.migration exists');
SELECT has_table('customer_unify', 'step_log', 'table customer_unify.step_log exists');
SELECT has_table('customer_unify', 'backfill_state', 'table customer_unify.backfill_state exists');
SELECT has_view('customer_unify', 'progress', 'view customer_unify.progress exists');

SELECT is(pg_temp.missing('customer_unify.migration',
          '{id,name,kind,spec,state,source,owner,created_at,updated_at}'), '{}'::name[],
          'migration has all documented columns');
SELECT is(pg_temp.missing('customer_unify.step_log',
          '{id,migration_id,phase,seq,statement,inverse,lock_mode,rows,duration_ms,outcome,error,started_at}'),
          '{}'::name[], 'step_log has all documented columns');
SELECT is(pg_temp.missing('customer_unify.backfill_state',
          '{migration_id,last_key,rows_done,rows_total,batches,started_at,updated_at,finished_at}'),
          '{}'::name[], 'backfill_state has all documented columns');
SELECT is(pg_temp.missing('customer_unify.progress',
          '{name,state,rows_done,rows_total,percent,rows_per_sec,eta,batches,last_key,updated_at}'),
          '{}'::name[], 'progress has all documented columns');

SELECT col_type_is('customer_unify', 'migration', 'spec', 'jsonb', 'migration.spec is jsonb');
SELECT col_type_is('customer_unify', 'migration', 'source', 'regclass', 'migration.source is regclass');
SELECT col_type_is('customer_unify', 'migration', 'owner', 'name', 'migration.owner is name');
SELECT col_is_pk('customer_unify', 'migration', 'id', 'migration.id is the primary key');
SELECT ok(EXISTS (SELECT 1 FROM pg_index i
                   WHERE i.indrelid = 'customer_unify.migration'::regclass AND i.indisunique
                     AND i.indnatts = 1
                     AND i.indkey[0] = (SELECT attnum FROM pg_attribute
                                         WHERE attrelid = 'customer_unify.migration'::regclass
                                           AND attname = 'name')),
          'migration.name is unique');
SELECT ok(EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'customer_unify.step_log'::regclass AND contype = 'f'
                     AND confrelid = 'customer_unify.migration'::regclass),
          'step_log references migration');

-- ---------------------------------------------------------------- pg_dump registration
SELECT ok((SELECT 'customer_unify.migration'::regclass::oid = ANY (extconfig)
             FROM pg_extension WHERE extname = 'customer_unify'),
          'migration is registered with pg_extension_config_dump');
SELECT ok((SELECT 'customer_unify.step_log'::regclass::oid = ANY (extconfig)
             FROM pg_extension WHERE extname = 'customer_unify'),
          'step_log is registered with pg_extension_config_dump');
SELECT ok((SELECT 'customer_unify.backfill_state'::regclass::oid = ANY (extconfig)
             FROM pg_extension WHERE extname = 'customer_unify'),
          'backfill_state is registered with pg_extension_config_dump');
SELECT is_empty($$
    SELECT c.oid::regclass::text
      FROM pg_class c
     WHERE c.relnamespace = 'customer_unify'::regnamespace AND c.relkind = 'r'
       AND NOT c.oid = ANY ((SELECT extconfig FROM pg_extension WHERE extname = 'customer_unify')::oid[])
$$, 'every table in schema customer_unify is registered for pg_dump');

-- ---------------------------------------------------------------- functions and procedures
SELECT has_function('customer_unify', 'split', 'function split exists');
SELECT function_returns('customer_unify', 'split', 'bigint', 'split returns bigint');
SELECT has_function('customer_unify', 'preview', 'function preview exists');
SELECT has_function('customer_unify', 'start', 'function start exists');
SELECT has_function('customer_unify', 'verify', 'function verify exists');
SELECT has_function('customer_unify', 'cutover', 'function cutover exists');
SELECT has_function('customer_unify', 'finalize', 'function finalize exists');
SELECT has_function('customer_unify', 'rollback', 'function rollback exists');
SELECT has_function('customer_unify', 'status', 'function status exists');
SELECT has_function('customer_unify', 'dependents', 'function dependents exists');
SELECT is_procedure('customer_unify', 'backfill', 'backfill is a procedure');
SELECT function_lang_is('customer_unify', 'backfill', 'c', 'backfill is written in C');
SELECT is_procedure('customer_unify', 'run', 'run is a procedure');
SELECT function_returns('customer_unify', 'split_sync_source', '{}'::name[], 'trigger',
                        'split_sync_source() returns trigger');
SELECT function_lang_is('customer_unify', 'split_sync_source', '{}'::name[], 'c',
                        'split_sync_source() is written in C');
SELECT function_returns('customer_unify', 'split_sync_target', '{}'::name[], 'trigger',
                        'split_sync_target() returns trigger');
SELECT function_lang_is('customer_unify', 'split_sync_target', '{}'::name[], 'c',
                        'split_sync_target() is written in C');
SELECT function_returns('customer_unify', 'compat_view_route', '{}'::name[], 'trigger',
                        'compat_view_route() returns trigger');
SELECT function_lang_is('customer_unify', 'compat_view_route', '{}'::name[], 'c',
                        'compat_view_route() is written in C');
SELECT function_returns('customer_unify', 'split_sync_flush', '{}'::name[], 'trigger',
                        'split_sync_flush() returns trigger');
SELECT function_lang_is('customer_unify', 'split_sync_flush', '{}'::name[], 'c',
                        'split_sync_flush() is written in C');

-- search_path (test/API.md "search_path"): every SQL and PL/pgSQL function pins
-- search_path = pg_catalog, pg_temp.  Documented exceptions: the row-level C
-- functions (no SET clause: a GUC save/restore per row; their statements are
-- schema-qualified) and the COMMITting procedures backfill and run
-- (PostgreSQL forbids transaction control under a SET clause).
SELECT is_empty($$
    SELECT p.oid::regprocedure::text
      FROM pg_proc p
     WHERE p.pronamespace = 'customer_unify'::regnamespace
       AND p.prokind <> 'a'
       AND NOT (p.prokind = 'f' AND p.proname IN ('split_sync_source', 'split_sync_target', 'split_sync_flush',
                                                  'compat_view_route', '_sync_guard_active'))
       AND NOT (p.prokind = 'p' AND p.proname IN ('backfill', 'run'))
       AND NOT EXISTS (SELECT 1 FROM unnest(coalesce(p.proconfig, '{}')) AS c(setting)
                        WHERE c.setting LIKE 'search\_path=%')
$$, 'every function and procedure in schema customer_unify pins search_path, except the documented ones');
SELECT is_empty($$
    SELECT p.oid::regprocedure::text || ' ' || c.setting
      FROM pg_proc p, unnest(p.proconfig) AS c(setting)
     WHERE p.pronamespace = 'customer_unify'::regnamespace
       AND c.setting LIKE 'search\_path=%'
       AND c.setting <> 'search_path=pg_catalog, pg_temp'
$$, 'the pinned search_path is exactly pg_catalog, pg_temp');
SELECT is_empty($$
    SELECT p.oid::regprocedure::text || ' ' || l.lanname
      FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
     WHERE p.pronamespace = 'customer_unify'::regnamespace
       AND p.proname IN ('split_sync_source', 'split_sync_target', 'split_sync_flush',
                         'compat_view_route', '_sync_guard_active')
       AND l.lanname <> 'c'
$$, 'the functions exempt from pinning are all C functions');
SELECT is(ARRAY(SELECT p.proname::text FROM pg_proc p
                 WHERE p.pronamespace = 'customer_unify'::regnamespace AND p.prokind = 'p'
                   AND p.proconfig IS NULL ORDER BY 1),
          ARRAY['backfill', 'run'], 'the only procedures without a SET clause are backfill and run');
-- API.md documents no SECURITY DEFINER function
SELECT is_empty($$
    SELECT p.oid::regprocedure::text
      FROM pg_proc p
     WHERE p.pronamespace = 'customer_unify'::regnamespace AND p.prosecdef
$$, 'no function in schema customer_unify is SECURITY DEFINER');

-- ---------------------------------------------------------------- empty state
SELECT is_empty('SELECT * FROM customer_unify.progress', 'progress is empty before any migration');

-- ---------------------------------------------------------------- unknown migration: 42704
SELECT throws_ok($$SELECT customer_unify.start('no_such_migration')$$, '42704', NULL,
                 'start(unknown) raises 42704');
SELECT throws_ok($$SELECT * FROM customer_unify.verify('no_such_migration')$$, '42704', NULL,
                 'verify(unknown) raises 42704');
SELECT throws_ok($$SELECT customer_unify.cutover('no_such_migration')$$, '42704', NULL,
                 'cutover(unknown) raises 42704');
SELECT throws_ok($$SELECT customer_unify.finalize('no_such_migration')$$, '42704', NULL,
                 'finalize(unknown) raises 42704');
SELECT throws_ok($$SELECT customer_unify.rollback('no_such_migration')$$, '42704', NULL,
                 'rollback(unknown) raises 42704');
SELECT throws_ok($$SELECT * FROM customer_unify.status('no_such_migration')$$, '42704', NULL,
                 'status(unknown) raises 42704');
SELECT throws_ok($$SELECT * FROM customer_unify.preview('no_such_migration')$$, '42704', NULL,
                 'preview(unknown) raises 42704');
SELECT throws_ok($$SELECT * FROM customer_unify.dependents('no_such_migration')$$, '42704', NULL,
                 'dependents(unknown) raises 42704');
SELECT matches(pg_temp.err($$SELECT customer_unify.start('no_such_migration')$$),
               '^42704: .*no_such_migration', 'the 42704 message names the migration');

SELECT * FROM finish();
ROLLBACK;

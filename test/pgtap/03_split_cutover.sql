-- 03_split_cutover.sql: the compatibility view cutover() leaves behind.
-- Contract: test/API.md "What start / cutover / ... leave behind" - cutover.
-- cutover needs a finished backfill, and CALL backfill COMMITs, so the setup
-- (table, split, start, CALL backfill) runs first in autocommit mode;
-- test/pgtap/run gives every file a fresh database.  The assertions run in one
-- transaction that is rolled back; the objects are dropped at the end.
-- 1.1: until finalize the view is the source itself (FROM ONLY, no join),
-- its INSTEAD OF trigger is customer_unify_<id>_route (compat_route(), one
-- argument: the route map's id); the DDL guard protects view and schema.
-- a failing setup step must not hide the assertions: they report it
\set ON_ERROR_STOP 0
SET client_min_messages = warning;
CREATE TABLE public.users (
    id          integer PRIMARY KEY,
    email       text NOT NULL,
    first_name  text NOT NULL DEFAULT '',
    last_name   varchar(100),
    phone       text DEFAULT 'n/a',
    score       numeric(10,2) NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO public.users (id, email, first_name, last_name, phone, score, created_at)
VALUES (1, 'ann@example.com', 'Ann', 'Lee', '+15550001', 1.5, '2024-01-01 00:00+00'),
       (2, 'bob@example.com', 'Bob', NULL, NULL, 0, '2024-01-02 00:00+00');
DO $$
BEGIN
    PERFORM customer_unify.split('users_split', 'public.users'::regclass, 'profiles',
                                 ARRAY['first_name', 'last_name', 'phone', 'score'],
                                 link_column => 'user_id');
    PERFORM customer_unify.start('users_split');
END $$;
-- written after start: reaches the target through the sync trigger
INSERT INTO public.users (id, email, first_name, last_name, phone, score, created_at)
VALUES (3, 'cy@example.com', 'Cy', 'Young', '+15550003', 3, '2024-01-03 00:00+00');
CALL customer_unify.backfill('users_split', batch_size => 1);
RESET client_min_messages;

\set ON_ERROR_STOP 1
BEGIN;
SELECT plan(50);

CREATE FUNCTION pg_temp.err(sql text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$f$;

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

-- first row of a statement (e.g. INSERT ... RETURNING) as text
CREATE FUNCTION pg_temp.row_of(sql text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE r record;
BEGIN
    EXECUTE sql INTO r;
    RETURN r::text;
END
$f$;

SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'users_split'), 'backfilled',
          'setup: split, start and CALL backfill left the migration backfilled');
SELECT is((SELECT count(*) FROM public.profiles), 3::bigint,
          'the target holds the backfilled rows and the row the sync trigger copied');
SELECT hasnt_schema('users_split_compat', 'no compat schema before cutover');
SELECT is_empty($$SELECT * FROM customer_unify.verify('users_split') WHERE NOT ok$$, 'verify() passes');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'users_split'), 'verified',
          'migration state is verified');
SELECT lives_ok($$SELECT customer_unify.cutover('users_split')$$,
                'cutover() of a verified migration (re-runs verify)');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'users_split'), 'cut_over',
          'migration state is cut_over');
SELECT ok(EXISTS (SELECT 1 FROM customer_unify.step_log s
                    JOIN customer_unify.migration m ON m.id = s.migration_id
                   WHERE m.name = 'users_split' AND s.phase = 'cutover'),
          'step_log records the cutover statements');
SELECT is(ARRAY(SELECT statement FROM customer_unify.step_log
                 WHERE migration_id = pg_temp.mid('users_split') AND phase = 'cutover' ORDER BY seq),
          ARRAY(SELECT statement FROM customer_unify.step
                 WHERE migration_id = pg_temp.mid('users_split') AND phase = 'cutover' ORDER BY seq),
          'cutover ran exactly the frozen statements of its phase, in order');
SELECT is((SELECT string_agg(format('%s %s', seq, coalesce(note, '-')), ', ' ORDER BY seq) FROM customer_unify.step_log
            WHERE migration_id = pg_temp.mid('users_split') AND phase = 'cutover' AND seq <= 3),
          '1 -, 2 -, 3 verified',
          'cutover locked source and target first, then its verify gate passed (step_log.note)');
SELECT is((SELECT string_agg(format('%s|%s|%s|created=%s|live=%s', tag, role, relid::text, created::text, live::text), ';' ORDER BY tag)
             FROM customer_unify.migration_relation WHERE migration_id = pg_temp.mid('users_split')),
          'source|source|users|created=false|live=true;target|target|profiles|created=true|live=true;'
          'view|view|users_split_compat.users|created=true|live=true',
          'cutover registers the compat view it created in migration_relation');

-- ---------------------------------------------------------------- compat schema and view
SELECT has_schema('users_split_compat', 'schema users_split_compat exists');
SELECT has_view('users_split_compat', 'users', 'view users_split_compat.users exists');
SELECT is(ARRAY(SELECT attname::text FROM pg_attribute
                 WHERE attrelid = 'users_split_compat.users'::regclass AND attnum > 0 AND NOT attisdropped
                 ORDER BY attnum),
          ARRAY['id', 'email', 'first_name', 'last_name', 'phone', 'score', 'created_at'],
          'the view has the old columns in the old order');
SELECT col_type_is('users_split_compat', 'users', 'id', 'integer', 'view id is integer');
SELECT col_type_is('users_split_compat', 'users', 'last_name', 'character varying(100)',
                   'view last_name is varchar(100)');
SELECT col_type_is('users_split_compat', 'users', 'score', 'numeric(10,2)', 'view score is numeric(10,2)');
SELECT ok(EXISTS (SELECT 1 FROM pg_class c, pg_options_to_table(c.reloptions) o
                   WHERE c.oid = 'users_split_compat.users'::regclass
                     AND o.option_name = 'security_invoker'
                     AND lower(o.option_value) IN ('true', 'on', 'yes', '1')),
          'the view has security_invoker=true (pg_class.reloptions)');
SELECT is(ARRAY(SELECT DISTINCT d.refobjid::regclass::text FROM pg_rewrite r
                  JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                                  AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.ev_class
                 WHERE r.ev_class = 'users_split_compat.users'::regclass ORDER BY 1),
          ARRAY['users'], 'until finalize the view reads the source alone (no join with the target)');
SELECT matches(pg_get_viewdef('users_split_compat.users'::regclass), 'FROM ONLY ',
               'the view reads FROM ONLY the source');
SELECT matches(obj_description('users_split_compat'::regnamespace, 'pg_namespace'), '^customer_unify: ',
               'the compat schema carries a customer_unify comment');

-- until finalize the view is the source itself: PostgreSQL updates it natively,
-- with the source's defaults, triggers, privileges and row-level security
SELECT is_empty($$SELECT 1 FROM pg_attrdef WHERE adrelid = 'users_split_compat.users'::regclass$$,
                'the view has no defaults of its own (the source''s apply)');
SELECT is_empty($$SELECT tgname FROM pg_trigger WHERE tgrelid = 'users_split_compat.users'::regclass$$,
                'the view has no trigger until finalize (no router needed)');
SELECT is(pg_relation_is_updatable('users_split_compat.users'::regclass, false), 28,
          'the view is insertable, updatable and deletable by PostgreSQL itself');
SELECT is((SELECT format('%s %s', is_insertable_into, is_updatable) FROM information_schema.views
            WHERE table_schema = 'users_split_compat' AND table_name = 'users'),
          'YES YES', 'information_schema reports the view updatable');

-- ---------------------------------------------------------------- reading through the view
SELECT is((SELECT string_agg(format('%s|%s|%s|%s|%s|%s', id, email, first_name, last_name, phone, score), ';' ORDER BY id)
             FROM users_split_compat.users),
          '1|ann@example.com|Ann|Lee|+15550001|1.50;2|bob@example.com|Bob|||0.00;3|cy@example.com|Cy|Young|+15550003|3.00',
          'the view returns the old rows');
SET LOCAL search_path = users_split_compat, public;
SELECT is('users'::regclass, 'users_split_compat.users'::regclass,
          'with search_path = users_split_compat, public the name users resolves to the view');
SELECT is((SELECT count(*) FROM users), 3::bigint, 'old apps read all rows through search_path');

-- ---------------------------------------------------------------- writing through the view
SELECT is(pg_temp.row_of($$INSERT INTO users (id, email, last_name) VALUES (10, 'jo@example.com', 'Jones')
                          RETURNING id, first_name, last_name, phone, score$$),
          '(10,"",Jones,n/a,0.00)', 'INSERT through the view applies the source''s defaults and RETURNING works');
SELECT is((SELECT format('%s|%s|%s', first_name, last_name, phone) FROM public.profiles WHERE user_id = 10),
          '|Jones|n/a', 'the inserted moved columns reach the target');
SELECT is((SELECT email FROM public.users WHERE id = 10), 'jo@example.com',
          'the inserted unmoved columns reach the source');
SELECT is(pg_temp.row_of($$UPDATE users SET phone = '+4477', email = 'jo@example.org' WHERE id = 10
                          RETURNING id, email, phone$$),
          '(10,jo@example.org,+4477)', 'UPDATE through the view with RETURNING');
SELECT is((SELECT p.phone || '|' || u.email FROM public.profiles p JOIN public.users u ON u.id = p.user_id
            WHERE p.user_id = 10),
          '+4477|jo@example.org', 'the UPDATE reached both tables');
SELECT is(pg_temp.row_of($$DELETE FROM users WHERE id = 10 RETURNING id, last_name$$),
          '(10,Jones)', 'DELETE through the view with RETURNING');
SELECT is((SELECT count(*) FROM public.users WHERE id = 10) + (SELECT count(*) FROM public.profiles WHERE user_id = 10),
          0::bigint, 'the DELETE removed the row from both tables');
RESET search_path;

-- ---------------------------------------------------------------- still reversible, still in sync
SELECT has_trigger('public', 'users', pg_temp.tg('users_split', 'sync'), 'sync trigger on the source stays until finalize');
SELECT has_trigger('public', 'profiles', pg_temp.tg('users_split', 'sync'), 'sync trigger on the target stays until finalize');
SELECT is((SELECT count(*) FROM pg_trigger
            WHERE tgrelid IN ('public.users'::regclass, 'public.profiles'::regclass) AND NOT tgisinternal
              AND tgname LIKE 'customer\_unify%' AND tgenabled = 'A'),
          6::bigint, 'all six sync triggers stay, ALWAYS, until finalize');
SELECT lives_ok($$SELECT id FROM users_split_compat.users WHERE id = 1 FOR UPDATE$$,
                'SELECT ... FOR UPDATE through the view works (it reads the source alone)');

-- ---------------------------------------------------------------- the DDL guard protects view and schema
SELECT is(pg_temp.sqlstate_undone($$DROP VIEW users_split_compat.users$$), '55006',
          'the guard refuses dropping the compat view');
SELECT is(pg_temp.sqlstate_undone($$DROP SCHEMA users_split_compat CASCADE$$), '55006',
          'the guard refuses dropping the compat schema');
SELECT is(pg_temp.sqlstate_undone($$ALTER VIEW users_split_compat.users RENAME TO users_old$$), '55006',
          'the guard refuses renaming the compat view');
SELECT is(pg_temp.sqlstate_undone($$ALTER SCHEMA users_split_compat RENAME TO users_old_compat$$), '55006',
          'the guard refuses renaming the compat schema');
SELECT is(pg_temp.sqlstate_undone(format('ALTER TABLE public.users DISABLE TRIGGER %I', pg_temp.tg('users_split', 'sync'))),
          '55006', 'the guard refuses disabling the source''s sync trigger after cutover');
SELECT is(pg_temp.sqlstate_undone($$DROP TABLE public.profiles CASCADE$$), '55006',
          'the guard refuses dropping the target (and the view with it)');
SELECT has_view('users_split_compat', 'users', 'after the refused DDL the compat view is still there');
SELECT has_column('public', 'users', 'phone', 'cutover drops no source column');
SELECT is((SELECT phone FROM public.users WHERE id = 1), '+15550001', 'source values are intact');

-- ---------------------------------------------------------------- out of order
SELECT throws_ok($$SELECT customer_unify.cutover('users_split')$$, '55000', NULL,
                 'cutover twice raises 55000');
SELECT throws_ok($$SELECT customer_unify.start('users_split')$$, '55000', NULL,
                 'start after cutover raises 55000');

SELECT * FROM finish();
ROLLBACK;

-- ---------------------------------------------------------------- cleanup
-- The DDL guard refuses dropping a live migration's objects: drop the
-- extension first (its triggers and event triggers go with it).
SET client_min_messages = warning;
DROP EXTENSION customer_unify CASCADE;
DROP SCHEMA IF EXISTS users_split_compat CASCADE;
DROP TABLE IF EXISTS public.profiles, public.users CASCADE;

-- 04_split_finalize.sql: what finalize() leaves behind, and its refusal (2BP01)
-- while a dependent object would break.
-- Contract: test/API.md "What start / cutover / finalize ... leave behind" - finalize.
-- finalize needs cut_over, cutover needs a finished backfill, and CALL backfill
-- COMMITs: the setup up to 'backfilled' runs first in autocommit mode (fresh
-- database per file, see test/pgtap/run); the assertions run in one
-- transaction that is rolled back; the objects are dropped at the end.
-- 1.1: finalize compares the shapes under SHARE locks, then, under ACCESS
-- EXCLUSIVE, drops the sync triggers and the moved columns, replaces the view
-- with a join through the inlinable SQL function <name>_compat.<table>_moved,
-- and leaves the router's capture triggers (customer_unify_<id>_capture).
-- a failing setup step must not hide the assertions: they report it
\set ON_ERROR_STOP 0
SET client_min_messages = warning;
CREATE TABLE public.users (
    id          integer PRIMARY KEY,
    email       text NOT NULL,
    first_name  text NOT NULL DEFAULT '',
    last_name   text,
    phone       text DEFAULT 'n/a',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE VIEW public.phone_book AS SELECT id, phone FROM public.users;
INSERT INTO public.users (id, email, first_name, last_name, phone)
VALUES (1, 'ann@example.com', 'Ann', 'Lee', '+15550001'),
       (2, 'bob@example.com', 'Bob', NULL, NULL);
DO $$
BEGIN
    PERFORM customer_unify.split('users_split', 'public.users'::regclass, 'profiles',
                                 ARRAY['first_name', 'last_name', 'phone'], link_column => 'user_id');
    PERFORM customer_unify.start('users_split');
END $$;
-- written after start: reaches the target through the sync trigger
INSERT INTO public.users (id, email, first_name, last_name, phone)
VALUES (3, 'cy@example.com', 'Cy', 'Young', '+15550003');
CALL customer_unify.backfill('users_split');
RESET client_min_messages;

\set ON_ERROR_STOP 1
BEGIN;
SELECT plan(40);

CREATE FUNCTION pg_temp.row_of(sql text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE r record;
BEGIN
    EXECUTE sql INTO r;
    RETURN r::text;
END
$f$;

-- the id of a migration, and the name of one of its triggers
CREATE FUNCTION pg_temp.mid(mname text) RETURNS bigint LANGUAGE sql AS $f$
    SELECT id FROM customer_unify.migration WHERE name = mname
$f$;
CREATE FUNCTION pg_temp.tg(mname text, suffix text) RETURNS name LANGUAGE sql AS $f$
    SELECT ('customer_unify_' || pg_temp.mid(mname) || '_' || suffix)::name
$f$;

-- the plan of a query (EXPLAIN, no costs) as one text
CREATE FUNCTION pg_temp.plan_of(sql text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE r text; res text := '';
BEGIN
    FOR r IN EXECUTE 'EXPLAIN (COSTS OFF) ' || sql LOOP
        res := res || r || E'\n';
    END LOOP;
    RETURN res;
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

SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'users_split'), 'backfilled',
          'setup: split, start and CALL backfill left the migration backfilled');
SELECT lives_ok($$SELECT customer_unify.cutover('users_split', skip_verify => true)$$,
                'cutover(skip_verify => true)');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'users_split'), 'cut_over',
          'migration state is cut_over');

-- ---------------------------------------------------------------- refused while a dependent would break
SELECT ok(EXISTS (SELECT 1 FROM customer_unify.dependents('users_split') d WHERE d::text LIKE '%phone_book%'),
          'dependents() lists public.phone_book');
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.finalize('users_split')$$), '2BP01',
          'finalize while a view reads a moved column raises 2BP01');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'users_split'), 'cut_over',
          'the refused finalize leaves the state at cut_over');
SELECT has_column('public', 'users', 'phone', 'the refused finalize drops no column');
SELECT has_view('public', 'phone_book', 'the refused finalize drops no dependent');
DROP VIEW public.phone_book;

-- ---------------------------------------------------------------- finalize
SELECT lives_ok($$SELECT customer_unify.finalize('users_split')$$, 'finalize()');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'users_split'), 'finalized',
          'migration state is finalized');
SELECT is((SELECT string_agg(format('%s live=%s', tag, live::text), ', ' ORDER BY tag)
             FROM customer_unify.migration_relation WHERE migration_id = pg_temp.mid('users_split')),
          'source live=false, target live=false, view live=false',
          'after finalize no relation of the migration is live any more');
SELECT is((SELECT string_agg(format('%s=%s', name, mode), ', ' ORDER BY name)
             FROM customer_unify.sync_map WHERE migration_id = pg_temp.mid('users_split')),
          'backward=live, forward=live, route=final', 'the router''s map switches to mode final');
SELECT is(ARRAY(SELECT statement FROM customer_unify.step_log
                 WHERE migration_id = pg_temp.mid('users_split') AND phase = 'finalize' ORDER BY seq),
          ARRAY(SELECT statement FROM customer_unify.step
                 WHERE migration_id = pg_temp.mid('users_split') AND phase = 'finalize' ORDER BY seq),
          'finalize ran exactly the frozen statements of its phase, in order');
SELECT is((SELECT string_agg(format('%s %s', coalesce(lock_mode, '-'), coalesce(note, '-')), '; ' ORDER BY seq)
             FROM customer_unify.step_log
            WHERE migration_id = pg_temp.mid('users_split') AND phase = 'finalize' AND seq <= 6),
          'SHARE -; SHARE -; - no blocking dependents; SHARE verified; ACCESS EXCLUSIVE -; ACCESS EXCLUSIVE -',
          'finalize passed its gates (dependents, exact verify) under SHARE locks before taking ACCESS EXCLUSIVE');
SELECT hasnt_column('public', 'users', 'first_name', 'first_name is dropped from the source');
SELECT hasnt_column('public', 'users', 'last_name', 'last_name is dropped from the source');
SELECT hasnt_column('public', 'users', 'phone', 'phone is dropped from the source');
SELECT is(ARRAY(SELECT attname::text FROM pg_attribute
                 WHERE attrelid = 'public.users'::regclass AND attnum > 0 AND NOT attisdropped
                 ORDER BY attnum),
          ARRAY['id', 'email', 'created_at'], 'the source keeps its other columns');
SELECT hasnt_trigger('public', 'users', pg_temp.tg('users_split', 'sync'), 'sync trigger on the source is dropped');
SELECT hasnt_trigger('public', 'profiles', pg_temp.tg('users_split', 'sync'), 'sync trigger on the target is dropped');
SELECT set_eq($$SELECT tgrelid::regclass::text || ' ' || tgname FROM pg_trigger
                 WHERE tgrelid IN (to_regclass('public.users'), to_regclass('public.profiles')) AND NOT tgisinternal
                   AND tgname LIKE 'customer\_unify%'$$,
              format($$VALUES ('users customer_unify_%1$s_capture'), ('profiles customer_unify_%1$s_capture')$$,
                     pg_temp.mid('users_split')),
              'no sync trigger of any name is left on the source or the target: only the router''s capture triggers');
SELECT set_eq($$SELECT pg_get_triggerdef(oid) FROM pg_trigger
                 WHERE tgrelid IN (to_regclass('public.users'), to_regclass('public.profiles')) AND NOT tgisinternal
                   AND tgname LIKE 'customer\_unify%'$$,
              format($$VALUES
                  ('CREATE TRIGGER customer_unify_%1$s_capture AFTER INSERT OR UPDATE ON public.users FOR EACH ROW WHEN (customer_unify._route_capturing()) EXECUTE FUNCTION customer_unify.route_capture()'),
                  ('CREATE TRIGGER customer_unify_%1$s_capture AFTER INSERT OR UPDATE ON public.profiles FOR EACH ROW WHEN (customer_unify._route_capturing()) EXECUTE FUNCTION customer_unify.route_capture()')$$,
                     pg_temp.mid('users_split')),
              'the capture triggers are AFTER INSERT OR UPDATE row triggers of route_capture(), WHEN _route_capturing()');
SELECT is((SELECT string_agg(DISTINCT tgenabled::text, ',') FROM pg_trigger
            WHERE tgrelid IN (to_regclass('public.users'), to_regclass('public.profiles'))
              AND tgname = pg_temp.tg('users_split', 'capture')),
          'A', 'the capture triggers are ENABLE ALWAYS');
SELECT has_table('public', 'profiles', 'the target table stays');
SELECT is((SELECT string_agg(format('%s|%s|%s|%s', user_id, first_name, last_name, phone), ';' ORDER BY user_id)
             FROM public.profiles),
          '1|Ann|Lee|+15550001;2|Bob||;3|Cy|Young|+15550003', 'the target keeps every moved value');

-- the compat view stays and still works
SELECT has_schema('users_split_compat', 'the compat schema stays');
SELECT has_view('users_split_compat', 'users', 'the compat view stays');
SELECT has_trigger('users_split_compat', 'users', pg_temp.tg('users_split', 'route'), 'the route trigger stays');
SELECT matches(pg_get_viewdef('users_split_compat.users'::regclass),
               'FROM \(ONLY (public\.)?users s\s+LEFT JOIN LATERAL users_split_compat\.users_moved\(s\.id\) t',
               'the view now reads the source LEFT JOIN LATERAL users_split_compat.users_moved(s.id)');
SELECT ok(EXISTS (SELECT 1 FROM pg_class c, pg_options_to_table(c.reloptions) o
                   WHERE c.oid = 'users_split_compat.users'::regclass
                     AND o.option_name = 'security_invoker' AND lower(o.option_value) IN ('true', 'on', 'yes', '1')),
          'the replaced view keeps security_invoker=true');
SELECT is((SELECT format('%s lang=%s volatility=%s config=%s definer=%s returns=setof %s owner=%s',
                         p.oid::regprocedure, l.lanname, p.provolatile, coalesce(array_to_string(p.proconfig, ','), 'none'),
                         p.prosecdef::text, p.prorettype::regtype, pg_get_userbyid(p.proowner))
             FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
            WHERE p.pronamespace = 'users_split_compat'::regnamespace AND p.proretset),
          format('users_split_compat.users_moved(integer) lang=sql volatility=s config=none definer=false returns=setof profiles owner=%s',
                 (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'public.users'::regclass)),
          'users_moved(key) is an inlinable SQL function (STABLE, no SET, not SECURITY DEFINER) of the source''s owner');
SELECT doesnt_match(pg_temp.plan_of($$SELECT * FROM users_split_compat.users WHERE id = 1$$), 'Function Scan',
                    'the planner inlines users_moved(): a read through the view is a plain join');
SELECT is(ARRAY(SELECT attname::text FROM pg_attribute
                 WHERE attrelid = 'users_split_compat.users'::regclass AND attnum > 0 AND NOT attisdropped
                 ORDER BY attnum),
          ARRAY['id', 'email', 'first_name', 'last_name', 'phone', 'created_at'],
          'the compat view keeps the old columns in the old order');
SELECT is((SELECT string_agg(format('%s|%s|%s|%s|%s', id, email, first_name, last_name, phone), ';' ORDER BY id)
             FROM users_split_compat.users),
          '1|ann@example.com|Ann|Lee|+15550001;2|bob@example.com|Bob||;3|cy@example.com|Cy|Young|+15550003',
          'the compat view is selectable and returns the old rows');
SELECT is(pg_temp.row_of($$INSERT INTO users_split_compat.users (id, email, last_name)
                          VALUES (4, 'di@example.com', 'Dee') RETURNING id, first_name, last_name, phone$$),
          '(4,"",Dee,n/a)', 'INSERT through the compat view works after finalize');
SELECT is((SELECT format('%s|%s|%s', u.email, p.last_name, p.phone)
             FROM public.users u JOIN public.profiles p ON p.user_id = u.id WHERE u.id = 4),
          'di@example.com|Dee|n/a', 'the row inserted after finalize reaches both tables');

-- ---------------------------------------------------------------- terminal state
SELECT throws_ok($$SELECT customer_unify.finalize('users_split')$$, '55000', NULL,
                 'finalize twice raises 55000');
SELECT throws_ok($$SELECT customer_unify.rollback('users_split')$$, '55000', NULL,
                 'rollback after finalize raises 55000');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'users_split'), 'finalized',
          'state stays finalized');
SELECT lives_ok($$SELECT customer_unify.split('users_split_next', 'public.users'::regclass, 'user_emails', ARRAY['email'])$$,
                'the finalized migration holds its tables no more: a new split of the source may be planned');

SELECT * FROM finish();
ROLLBACK;

-- ---------------------------------------------------------------- cleanup
-- The DDL guard refuses dropping a live migration's objects: drop the
-- extension first (its triggers and event triggers go with it).
SET client_min_messages = warning;
DROP EXTENSION customer_unify CASCADE;
DROP SCHEMA IF EXISTS users_split_compat CASCADE;
DROP VIEW IF EXISTS public.phone_book;
DROP TABLE IF EXISTS public.profiles, public.users CASCADE;

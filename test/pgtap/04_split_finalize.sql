-- 04_split_finalize.sql: what finalize() leaves behind, and its refusal (2BP01)
-- while a dependent object would break.
-- Contract: test/API.md "What start / cutover / finalize ... leave behind" - finalize.
-- finalize needs cut_over, cutover needs a finished backfill, and CALL backfill
-- COMMITs: the setup up to 'backfilled' runs first in autocommit mode (fresh
-- database per file, see test/pgtap/run); the assertions run in one
-- transaction that is rolled back; the objects are dropped at the end.
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
SELECT plan(29);

CREATE FUNCTION pg_temp.row_of(sql text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE r record;
BEGIN
    EXECUTE sql INTO r;
    RETURN r::text;
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
SELECT hasnt_column('public', 'users', 'first_name', 'first_name is dropped from the source');
SELECT hasnt_column('public', 'users', 'last_name', 'last_name is dropped from the source');
SELECT hasnt_column('public', 'users', 'phone', 'phone is dropped from the source');
SELECT is(ARRAY(SELECT attname::text FROM pg_attribute
                 WHERE attrelid = 'public.users'::regclass AND attnum > 0 AND NOT attisdropped
                 ORDER BY attnum),
          ARRAY['id', 'email', 'created_at'], 'the source keeps its other columns');
SELECT hasnt_trigger('public', 'users', 'customer_unify_sync', 'sync trigger on the source is dropped');
SELECT hasnt_trigger('public', 'profiles', 'customer_unify_sync', 'sync trigger on the target is dropped');
SELECT is_empty($$SELECT tgrelid::regclass::text || ' ' || tgname FROM pg_trigger
                   WHERE tgrelid IN (to_regclass('public.users'), to_regclass('public.profiles')) AND NOT tgisinternal
                     AND tgname LIKE 'customer\_unify%'$$,
                'no customer_unify trigger of any name is left on the source or the target');
SELECT has_table('public', 'profiles', 'the target table stays');
SELECT is((SELECT string_agg(format('%s|%s|%s|%s', user_id, first_name, last_name, phone), ';' ORDER BY user_id)
             FROM public.profiles),
          '1|Ann|Lee|+15550001;2|Bob||;3|Cy|Young|+15550003', 'the target keeps every moved value');

-- the compat view stays and still works
SELECT has_schema('users_split_compat', 'the compat schema stays');
SELECT has_view('users_split_compat', 'users', 'the compat view stays');
SELECT has_trigger('users_split_compat', 'users', 'customer_unify_route', 'the route trigger stays');
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

SELECT * FROM finish();
ROLLBACK;

-- ---------------------------------------------------------------- cleanup
SET client_min_messages = warning;
DO $$
BEGIN
    PERFORM customer_unify.rollback('users_split');
EXCEPTION WHEN OTHERS THEN
    NULL;
END $$;
DROP SCHEMA IF EXISTS users_split_compat CASCADE;
DROP VIEW IF EXISTS public.phone_book;
DROP TABLE IF EXISTS public.profiles, public.users CASCADE;
DO $$ BEGIN DELETE FROM customer_unify.migration WHERE name = 'users_split'; EXCEPTION WHEN OTHERS THEN NULL; END $$;

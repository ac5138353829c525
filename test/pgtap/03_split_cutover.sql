-- 03_split_cutover.sql: the compatibility view cutover() leaves behind.
-- Contract: test/API.md "What start / cutover / ... leave behind" - cutover.
-- cutover needs a finished backfill, and CALL backfill COMMITs, so the setup
-- (table, split, start, CALL backfill) runs first in autocommit mode;
-- test/pgtap/run gives every file a fresh database.  The assertions run in one
-- transaction that is rolled back; the objects are dropped at the end.
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
SELECT plan(38);

CREATE FUNCTION pg_temp.err(sql text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
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

-- view column defaults carried over
SELECT col_default_is('users_split_compat', 'users', 'first_name', ''::text, 'view first_name defaults to ''''');
SELECT col_default_is('users_split_compat', 'users', 'phone', 'n/a'::text, 'view phone defaults to ''n/a''');
SELECT col_default_is('users_split_compat', 'users', 'score', '0'::text, 'view score defaults to 0');
SELECT col_default_is('users_split_compat', 'users', 'created_at', 'now()'::text,
                      'view created_at defaults to now()');

-- INSTEAD OF trigger
SELECT has_trigger('users_split_compat', 'users', 'customer_unify_route', 'route trigger on the view');
SELECT trigger_is('users_split_compat', 'users', 'customer_unify_route', 'customer_unify', 'compat_view_route',
                  'route trigger calls customer_unify.compat_view_route()');
SELECT is((SELECT format('instead_of=%s row=%s insert=%s update=%s delete=%s',
                         (tgtype & 64 <> 0)::text, (tgtype & 1 <> 0)::text, (tgtype & 4 <> 0)::text,
                         (tgtype & 16 <> 0)::text, (tgtype & 8 <> 0)::text)
             FROM pg_trigger
            WHERE tgrelid = 'users_split_compat.users'::regclass AND tgname = 'customer_unify_route'),
          'instead_of=true row=true insert=true update=true delete=true',
          'route trigger is INSTEAD OF INSERT OR UPDATE OR DELETE FOR EACH ROW');

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
          '(10,"",Jones,n/a,0.00)', 'INSERT through the view applies the view defaults and RETURNING works');
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
SELECT has_trigger('public', 'users', 'customer_unify_sync', 'sync trigger on the source stays until finalize');
SELECT has_trigger('public', 'profiles', 'customer_unify_sync', 'sync trigger on the target stays until finalize');
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
SET client_min_messages = warning;
DO $$
BEGIN
    PERFORM customer_unify.rollback('users_split');
EXCEPTION WHEN OTHERS THEN
    NULL;
END $$;
DROP SCHEMA IF EXISTS users_split_compat CASCADE;
DROP TABLE IF EXISTS public.profiles, public.users CASCADE;
DO $$ BEGIN DELETE FROM customer_unify.migration WHERE name = 'users_split'; EXCEPTION WHEN OTHERS THEN NULL; END $$;

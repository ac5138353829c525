-- 05_split_rollback.sql: rollback() from planned, started and cut_over.
-- Contract: test/API.md "rollback: compat schema/view, triggers and target
-- table dropped; source untouched (it was kept complete)".
-- B needs cut_over, hence a finished backfill, and CALL backfill COMMITs: its
-- setup up to 'backfilled' runs first in autocommit mode (fresh database per
-- file, see test/pgtap/run).  The assertions run in one transaction that is
-- rolled back; the objects are dropped at the end.
-- 1.1: rollback locks every table of the migration first (source first),
-- replays the inverses of the frozen steps that ran, marks those steps
-- reverted, and releases the migration's relations (live = false).
-- a failing setup step must not hide the assertions: they report it
\set ON_ERROR_STOP 0
SET client_min_messages = warning;
CREATE TABLE public.accounts (
    id          bigint PRIMARY KEY,
    login       text NOT NULL,
    nickname    text,
    bio         text DEFAULT 'none'
);
INSERT INTO public.accounts (id, login, nickname, bio) VALUES (99, 'zed', NULL, 'old');
DO $$
BEGIN
    PERFORM customer_unify.split('accounts_split', 'public.accounts'::regclass, 'account_bios',
                                 ARRAY['nickname', 'bio'], link_column => 'account_id');
    PERFORM customer_unify.start('accounts_split');
END $$;
INSERT INTO public.accounts (id, login, nickname, bio) VALUES (100, 'ann', 'annie', 'hello');
CALL customer_unify.backfill('accounts_split');
CREATE TABLE public.leads (id integer PRIMARY KEY, source text, score integer);
INSERT INTO public.leads SELECT g, 'web', g FROM generate_series(1, 50) g;
DO $$
BEGIN
    PERFORM customer_unify.split('leads_split', 'public.leads'::regclass, 'lead_scores', ARRAY['score']);
    PERFORM customer_unify.start('leads_split');
END $$;
CALL customer_unify.backfill('leads_split', batch_size => 20);
RESET client_min_messages;

\set ON_ERROR_STOP 1
BEGIN;
SELECT plan(59);

-- the id of a migration, and the name of one of its triggers
CREATE FUNCTION pg_temp.mid(mname text) RETURNS bigint LANGUAGE sql AS $f$
    SELECT id FROM customer_unify.migration WHERE name = mname
$f$;
CREATE FUNCTION pg_temp.tg(mname text, suffix text) RETURNS name LANGUAGE sql AS $f$
    SELECT ('customer_unify_' || pg_temp.mid(mname) || '_' || suffix)::name
$f$;
-- tag=live of each relation of a migration
CREATE FUNCTION pg_temp.live(mname text) RETURNS text LANGUAGE sql AS $f$
    SELECT string_agg(format('%s=%s', tag, live::text), ', ' ORDER BY tag)
      FROM customer_unify.migration_relation WHERE migration_id = pg_temp.mid(mname)
$f$;
-- the first statements of a migration's rollback, as logged
CREATE FUNCTION pg_temp.rollback_head(mname text, n int) RETURNS text[] LANGUAGE sql AS $f$
    SELECT (ARRAY(SELECT statement FROM customer_unify.step_log
                   WHERE migration_id = pg_temp.mid(mname) AND phase = 'rollback' ORDER BY id))[1:n]
$f$;

CREATE FUNCTION pg_temp.cols(rel regclass) RETURNS text[] LANGUAGE sql AS $f$
    SELECT ARRAY(SELECT attname::text FROM pg_attribute
                  WHERE attrelid = rel AND attnum > 0 AND NOT attisdropped ORDER BY attnum)
$f$;

CREATE TABLE public.users (
    id          integer PRIMARY KEY,
    email       text NOT NULL,
    first_name  text NOT NULL DEFAULT '',
    last_name   text,
    phone       text DEFAULT 'n/a' CHECK (phone <> ''),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_last_name_idx ON public.users (last_name);
INSERT INTO public.users (id, email, first_name, last_name, phone)
VALUES (1, 'ann@example.com', 'Ann', 'Lee', '+15550001');

CREATE TABLE public.guests (id integer PRIMARY KEY, note text);

-- ================================================================ A: from started
SELECT lives_ok($$SELECT customer_unify.split('users_split', 'public.users'::regclass, 'profiles',
                                              ARRAY['first_name', 'last_name', 'phone'],
                                              link_column => 'user_id')$$,
                'A: split users -> profiles');
SELECT is(customer_unify.start('users_split')::text, 'started', 'A: start() returns started');
INSERT INTO public.users (id, email, first_name, last_name, phone)
VALUES (2, 'bob@example.com', 'Bob', NULL, NULL),
       (3, 'cy@example.com', 'Cy', 'Young', '+15550003');
UPDATE public.profiles SET phone = '+15550333' WHERE user_id = 3;
SELECT has_table('public', 'profiles', 'A: the target exists before rollback');
SELECT lives_ok($$SELECT customer_unify.rollback('users_split')$$, 'A: rollback() from started');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'users_split'), 'rolled_back',
          'A: migration state is rolled_back');
SELECT hasnt_table('public', 'profiles', 'A: the target table is dropped');
SELECT hasnt_trigger('public', 'users', pg_temp.tg('users_split', 'sync'), 'A: the source sync trigger is dropped');
SELECT hasnt_schema('users_split_compat', 'A: there is no compat schema');
SELECT is_empty($$SELECT tgrelid::regclass::text || ' ' || tgname FROM pg_trigger
                   WHERE tgrelid IN (to_regclass('public.users')) AND NOT tgisinternal
                     AND tgname LIKE 'customer\_unify%'$$,
                'A: no customer_unify trigger of any name is left on the source');
SELECT is(pg_temp.cols('public.users'),
          ARRAY['id', 'email', 'first_name', 'last_name', 'phone', 'created_at'],
          'A: the source keeps all its columns in order');
SELECT col_not_null('public', 'users', 'first_name', 'A: first_name is still NOT NULL');
SELECT col_default_is('public', 'users', 'phone', 'n/a'::text, 'A: phone still defaults to ''n/a''');
SELECT col_has_check('public', 'users', 'phone', 'A: the CHECK on phone is still there');
SELECT is_indexed('public', 'users', ARRAY['last_name']::name[], 'A: the index on last_name is still there');
SELECT is((SELECT string_agg(format('%s|%s|%s|%s|%s', id, email, first_name, last_name, phone), ';' ORDER BY id)
             FROM public.users),
          '1|ann@example.com|Ann|Lee|+15550001;2|bob@example.com|Bob||;3|cy@example.com|Cy|Young|+15550333',
          'A: every row and value is in the source, including writes made to the target');
SELECT ok(EXISTS (SELECT 1 FROM customer_unify.step_log s
                    JOIN customer_unify.migration m ON m.id = s.migration_id
                   WHERE m.name = 'users_split' AND s.phase = 'rollback'),
          'A: step_log records the rollback statements');
SELECT is(pg_temp.rollback_head('users_split', 2),
          ARRAY['LOCK TABLE public.users IN ACCESS EXCLUSIVE MODE', 'LOCK TABLE public.profiles IN ACCESS EXCLUSIVE MODE'],
          'A: rollback locked the source, then the target, before anything else');
SELECT is_empty($$SELECT seq, statement FROM customer_unify.step_log
                   WHERE migration_id = (SELECT id FROM customer_unify.migration WHERE name = 'users_split')
                     AND phase = 'start' AND inverse IS NOT NULL AND outcome <> 'reverted'$$,
                'A: every start step that has an inverse is marked reverted');
SELECT is(pg_temp.live('users_split'), 'source=false, target=false',
          'A: the rolled-back migration holds its relations no more (migration_relation.live)');
SELECT throws_ok($$SELECT customer_unify.rollback('users_split')$$, '55000', NULL,
                 'A: rollback twice raises 55000');
SELECT throws_ok($$SELECT customer_unify.start('users_split')$$, '55000', NULL,
                 'A: start after rollback raises 55000');
INSERT INTO public.users (id, email) VALUES (4, 'di@example.com');
SELECT is((SELECT count(*) FROM public.users), 4::bigint, 'A: the source is writable without the triggers');

-- a rolled-back migration is not live: a new one on the same table is allowed
SELECT lives_ok($$SELECT customer_unify.split('users_split_again', 'public.users'::regclass, 'profiles',
                                              ARRAY['phone'])$$,
                'A: a new split of the same table after rollback');
SELECT is(customer_unify.start('users_split_again')::text, 'started', 'A: and it starts');
SELECT lives_ok($$SELECT customer_unify.rollback('users_split_again')$$, 'A: and rolls back');

-- ================================================================ B: from cut_over
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'accounts_split'), 'backfilled',
          'B: setup: split, start and CALL backfill left the migration backfilled');
SELECT has_table('public', 'account_bios', 'B: the target exists');
SELECT is_empty($$SELECT * FROM customer_unify.verify('accounts_split') WHERE NOT ok$$, 'B: verify() passes');
SELECT lives_ok($$SELECT customer_unify.cutover('accounts_split')$$, 'B: cutover()');
INSERT INTO accounts_split_compat.accounts (id, login, nickname) VALUES (101, 'bob', 'bobby');
UPDATE accounts_split_compat.accounts SET bio = 'edited' WHERE id = 100;
SELECT has_view('accounts_split_compat', 'accounts', 'B: the compat view exists before rollback');
SELECT lives_ok($$SELECT customer_unify.rollback('accounts_split')$$, 'B: rollback() from cut_over');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'accounts_split'), 'rolled_back',
          'B: migration state is rolled_back');
SELECT hasnt_view('accounts_split_compat', 'accounts', 'B: the compat view is dropped');
SELECT hasnt_schema('accounts_split_compat', 'B: the compat schema is dropped');
SELECT hasnt_table('public', 'account_bios', 'B: the target table is dropped');
SELECT hasnt_trigger('public', 'accounts', pg_temp.tg('accounts_split', 'sync'), 'B: the source sync trigger is dropped');
SELECT is(pg_temp.rollback_head('accounts_split', 3),
          ARRAY['LOCK TABLE public.accounts IN ACCESS EXCLUSIVE MODE',
                'LOCK TABLE public.account_bios IN ACCESS EXCLUSIVE MODE',
                'LOCK TABLE accounts_split_compat.accounts IN ACCESS EXCLUSIVE MODE'],
          'B: rollback locked source, target and compat view first, source first');
SELECT is(pg_temp.live('accounts_split'), 'source=false, target=false, view=false',
          'B: the rolled-back migration holds its relations no more');
SELECT is_empty($$SELECT tgrelid::regclass::text || ' ' || tgname FROM pg_trigger
                   WHERE tgrelid IN (to_regclass('public.accounts')) AND NOT tgisinternal
                     AND tgname LIKE 'customer\_unify%'$$,
                'B: no customer_unify trigger of any name is left on the source');
SELECT is(pg_temp.cols('public.accounts'), ARRAY['id', 'login', 'nickname', 'bio'],
          'B: the source keeps all its columns in order');
SELECT is((SELECT string_agg(format('%s|%s|%s|%s', id, login, nickname, bio), ';' ORDER BY id) FROM public.accounts),
          '99|zed||old;100|ann|annie|edited;101|bob|bobby|none',
          'B: writes made through the compat view are all in the source');

-- ================================================================ D: from verified
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'leads_split'), 'backfilled',
          'D: setup: split, start and CALL backfill left the migration backfilled');
SELECT fk_ok('public', 'lead_scores', 'leads_id', 'public', 'leads', 'id', 'D: the backfill added the link FK');
SELECT is_empty($$SELECT * FROM customer_unify.verify('leads_split') WHERE NOT ok$$, 'D: verify() passes');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'leads_split'), 'verified',
          'D: migration state is verified');
SELECT lives_ok($$SELECT customer_unify.rollback('leads_split')$$, 'D: rollback() from verified');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'leads_split'), 'rolled_back',
          'D: migration state is rolled_back');
SELECT hasnt_table('public', 'lead_scores', 'D: the target table is dropped');
SELECT is_empty($$SELECT conname FROM pg_constraint WHERE confrelid = 'public.leads'::regclass$$,
                'D: no foreign key references the source any more');
SELECT hasnt_trigger('public', 'leads', pg_temp.tg('leads_split', 'sync'), 'D: the source sync trigger is dropped');
SELECT is_empty($$SELECT tgrelid::regclass::text || ' ' || tgname FROM pg_trigger
                   WHERE tgrelid IN (to_regclass('public.leads')) AND NOT tgisinternal
                     AND tgname LIKE 'customer\_unify%'$$,
                'D: no customer_unify trigger of any name is left on the source');
SELECT is((SELECT count(*) || '/' || sum(score) FROM public.leads), '50/1275', 'D: the source rows are intact');

-- ================================================================ C: from planned
SELECT lives_ok($$SELECT customer_unify.split('guests_split', 'public.guests'::regclass, 'guest_notes', ARRAY['note'])$$,
                'C: split guests -> guest_notes');
SELECT lives_ok($$SELECT customer_unify.rollback('guests_split')$$, 'C: rollback() from planned');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'guests_split'), 'rolled_back',
          'C: migration state is rolled_back');
SELECT hasnt_table('public', 'guest_notes', 'C: nothing was created');
SELECT is(pg_temp.cols('public.guests'), ARRAY['id', 'note'], 'C: the source is untouched');
SELECT is(pg_temp.live('guests_split'), 'source=false', 'C: the rolled-back plan holds its source no more');
SELECT throws_ok($$SELECT customer_unify.start('guests_split')$$, '55000', NULL,
                 'C: start after rollback raises 55000');

SELECT * FROM finish();
ROLLBACK;

-- ---------------------------------------------------------------- cleanup
-- The DDL guard refuses dropping a live migration's objects: drop the
-- extension first (its triggers and event triggers go with it).
SET client_min_messages = warning;
DROP EXTENSION customer_unify CASCADE;
DROP SCHEMA IF EXISTS accounts_split_compat CASCADE;
DROP TABLE IF EXISTS public.account_bios, public.accounts, public.lead_scores, public.leads CASCADE;

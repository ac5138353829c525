-- 07_backfilled.sql: states that need CALL backfill / CALL run.
-- Those procedures COMMIT and cannot run inside the pgTAP transaction, so the
-- setup below runs first in autocommit mode (test/pgtap/run gives every file a
-- fresh database); the assertions then run in one transaction that is rolled
-- back, and the objects are dropped at the end.
-- Contract: test/API.md backfill (resumable, 'backfilled', FK added NOT VALID
-- then validated), verify ('verified'), cutover (23000 while verify fails),
-- run (start + backfill + verify + cutover, finalize => true).
-- 1.1: the checkpoint is typed (key_type, position and end_position in the
-- key's binary form) per copy stream; finalize compares both shapes exactly
-- and refuses (23000) while they differ.  The sync triggers are ENABLE
-- ALWAYS, so writes under session_replication_role = replica are mirrored
-- too: to corrupt the target on purpose the test disables the DDL guard and
-- the target's sync trigger for a moment (as superuser).
-- a failing setup step must not hide the assertions: they report it
\set ON_ERROR_STOP 0
SET client_min_messages = warning;

CREATE TABLE public.users (
    id          integer PRIMARY KEY,
    email       text NOT NULL,
    first_name  text,
    last_name   text,
    phone       text
);
INSERT INTO public.users
SELECT g, 'user' || g || '@example.com', 'First' || g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'Last' || g END,
       CASE WHEN g % 5 = 0 THEN NULL ELSE '+1555' || lpad(g::text, 7, '0') END
  FROM generate_series(1, 2500) g;

CREATE TABLE public.members (id bigint PRIMARY KEY, handle text NOT NULL, bio text, avatar text);
INSERT INTO public.members SELECT g, 'm' || g, 'bio ' || g, NULL FROM generate_series(1, 300) g;

CREATE TABLE public.clients (id integer PRIMARY KEY, code text NOT NULL, contact text, notes text);
INSERT INTO public.clients SELECT g, 'c' || g, 'contact ' || g, 'notes ' || g FROM generate_series(1, 200) g;

DO $$
BEGIN
    PERFORM customer_unify.split('users_split', 'public.users'::regclass, 'profiles',
                                 ARRAY['first_name', 'last_name', 'phone'], link_column => 'user_id');
    PERFORM customer_unify.start('users_split');
END $$;
-- error paths of the procedure, outside a transaction block; psql keeps the SQLSTATE
\echo '# the next two ERRORs are expected (bad batch_size, unknown migration)'
CALL customer_unify.backfill('users_split', batch_size => 0);
SELECT :'LAST_ERROR_SQLSTATE' AS err_batch_size \gset
CALL customer_unify.backfill('no_such_migration');
SELECT :'LAST_ERROR_SQLSTATE' AS err_unknown \gset
CALL customer_unify.backfill('users_split', batch_size => 1000, max_batches => 1);
CREATE TEMP TABLE after_one_batch AS
SELECT m.state, b.rows_done, b.batches, b.last_key::text AS last_key, b.finished_at,
       b.stream, b.key_type::text AS key_type, b.position, b.end_position,
       (SELECT count(*) FROM public.profiles) AS target_rows
  FROM customer_unify.migration m JOIN customer_unify.backfill_state b ON b.migration_id = m.id
 WHERE m.name = 'users_split';
CALL customer_unify.backfill('users_split', batch_size => 1000);

DO $$
BEGIN
    PERFORM customer_unify.split('members_split', 'public.members'::regclass, 'member_profiles',
                                 ARRAY['bio', 'avatar'], link_column => 'member_id');
END $$;
CALL customer_unify.run('members_split');

DO $$
BEGIN
    PERFORM customer_unify.split('clients_split', 'public.clients'::regclass, 'client_contacts',
                                 ARRAY['contact', 'notes'], link_column => 'client_id');
END $$;
CALL customer_unify.run('clients_split', finalize => true);

RESET client_min_messages;

\set ON_ERROR_STOP 1
BEGIN;
SELECT plan(53);

-- the id of a migration, and the name of one of its triggers
CREATE FUNCTION pg_temp.mid(mname text) RETURNS bigint LANGUAGE sql AS $f$
    SELECT id FROM customer_unify.migration WHERE name = mname
$f$;
CREATE FUNCTION pg_temp.tg(mname text, suffix text) RETURNS name LANGUAGE sql AS $f$
    SELECT ('customer_unify_' || pg_temp.mid(mname) || '_' || suffix)::name
$f$;

-- run sql on public.profiles with the sync trigger of users_split off, so
-- that the write does not reach the source: the DDL guard, which refuses
-- disabling a sync trigger, is disabled for the moment
CREATE FUNCTION pg_temp.behind_the_sync(sql text) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    ALTER EVENT TRIGGER customer_unify_guard_ddl DISABLE;
    EXECUTE format('ALTER TABLE public.profiles DISABLE TRIGGER %I', pg_temp.tg('users_split', 'sync'));
    EXECUTE sql;
    EXECUTE format('ALTER TABLE public.profiles ENABLE ALWAYS TRIGGER %I', pg_temp.tg('users_split', 'sync'));
    ALTER EVENT TRIGGER customer_unify_guard_ddl ENABLE;
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

-- ---------------------------------------------------------------- errors
SELECT is(:'err_batch_size'::text, '22023', 'CALL backfill(batch_size => 0) raises 22023');
SELECT is(:'err_unknown'::text, '42704', 'CALL backfill(unknown) raises 42704');

-- ---------------------------------------------------------------- resumable backfill
SELECT is((SELECT state FROM after_one_batch), 'started', 'after one batch (max_batches => 1) the state is still started');
SELECT is((SELECT rows_done FROM after_one_batch)::bigint, 1000::bigint, 'after one batch rows_done is 1000');
SELECT is((SELECT batches FROM after_one_batch)::bigint, 1::bigint, 'after one batch batches is 1');
SELECT is((SELECT last_key FROM after_one_batch), '1000', 'after one batch the checkpoint last_key is 1000');
SELECT is((SELECT target_rows FROM after_one_batch), 1000::bigint, 'after one batch the target holds 1000 rows');
SELECT is((SELECT format('%s|%s|%s', stream, key_type, position) FROM after_one_batch),
          format('main|integer|%s', int4send(1000)),
          'the checkpoint of stream main keeps the last key copied in the key type''s binary form (int4 1000)');
SELECT is((SELECT end_position FROM after_one_batch), int4send(2500),
          'the checkpoint keeps where the copy ends (the greatest key when it began), in binary form');

-- ---------------------------------------------------------------- backfilled
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'users_split'), 'backfilled',
          'a second CALL backfill resumes and finishes: state backfilled');
SELECT is((SELECT b.rows_done FROM customer_unify.backfill_state b
             JOIN customer_unify.migration m ON m.id = b.migration_id WHERE m.name = 'users_split')::bigint,
          2500::bigint, 'backfill_state.rows_done is 2500');
SELECT isnt((SELECT b.finished_at FROM customer_unify.backfill_state b
               JOIN customer_unify.migration m ON m.id = b.migration_id WHERE m.name = 'users_split'),
            NULL, 'backfill_state.finished_at is set');
SELECT is((SELECT format('%s|%s', (position = end_position)::text, position)
             FROM customer_unify.backfill_state WHERE migration_id = pg_temp.mid('users_split') AND stream = 'main'),
          format('true|%s', int4send(2500)), 'the finished checkpoint stands at its end position, key 2500');
SELECT is((SELECT rows_done FROM customer_unify.progress WHERE name = 'users_split')::bigint, 2500::bigint,
          'progress shows 2500 rows done');
SELECT is((SELECT percent FROM customer_unify.progress WHERE name = 'users_split')::numeric, 100::numeric,
          'progress shows 100 percent');
SELECT set_eq('SELECT id, first_name, last_name, phone FROM public.users',
              'SELECT user_id, first_name, last_name, phone FROM public.profiles',
              'the target holds exactly the source rows (no row lost or duplicated)');
SELECT fk_ok('public', 'profiles', 'user_id', 'public', 'users', 'id', 'FK profiles.user_id -> users.id');
SELECT is((SELECT format('validated=%s on_delete=%s on_update=%s', convalidated::text, confdeltype, confupdtype)
             FROM pg_constraint
            WHERE conrelid = 'public.profiles'::regclass AND conname = 'profiles_user_id_fkey'),
          'validated=true on_delete=c on_update=c',
          'profiles_user_id_fkey is validated, ON DELETE CASCADE ON UPDATE CASCADE');
SELECT ok(EXISTS (SELECT 1 FROM customer_unify.step_log s
                    JOIN customer_unify.migration m ON m.id = s.migration_id
                   WHERE m.name = 'users_split' AND s.phase LIKE 'backfill%'
                     AND s.statement ILIKE '%FOREIGN KEY%'),
          'step_log records the statements the backfill ran (the link FK)');
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.cutover('users_split')$$), 'no error',
          'cutover from backfilled is allowed when its own verify passes (tried, then undone)');

-- ---------------------------------------------------------------- verify
SELECT is_empty($$SELECT * FROM customer_unify.verify('users_split') WHERE NOT ok$$,
                'verify() reports no failing check');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'users_split'), 'verified',
          'verify() with all checks ok moves backfilled to verified');
SELECT ok((SELECT count(*) FROM customer_unify.verify('users_split')) > 0, 'verify() returns checks');

-- ---------------------------------------------------------------- cutover refused while verify fails: 23000
CREATE TEMP TABLE before_cutover AS
SELECT md5(string_agg(format('%s|%s|%s|%s|%s', id, email, first_name, last_name, phone), ';' ORDER BY id)) AS sum
  FROM public.users;
SELECT lives_ok($$SELECT pg_temp.behind_the_sync($q$UPDATE public.profiles SET phone = 'corrupted' WHERE user_id = 7$q$)$$,
                'corrupt one target row behind the sync trigger''s back');
SELECT isnt((SELECT phone FROM public.users WHERE id = 7), 'corrupted', 'the corruption bypassed the sync trigger');
SELECT is((SELECT count(*) FROM pg_trigger
            WHERE tgrelid IN ('public.users'::regclass, 'public.profiles'::regclass)
              AND tgname LIKE 'customer\_unify%' AND tgenabled = 'A')
          + (SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'customer\_unify\_guard\_%' AND evtenabled = 'O'),
          8::bigint, 'afterwards the six sync triggers are ALWAYS again and both guard event triggers enabled');
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.cutover('users_split')$$), '23000',
          'cutover while verify fails raises 23000');
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.cutover('users_split', skip_verify => true)$$), 'no error',
          'skip_verify => true overrides the failing verify (tried, then undone)');
SELECT ok(EXISTS (SELECT 1 FROM customer_unify.verify('users_split') WHERE NOT ok),
          'verify() reports the mismatch');
SELECT hasnt_schema('users_split_compat', 'the refused cutover created no compat schema');
SELECT lives_ok($$SELECT pg_temp.behind_the_sync($q$UPDATE public.profiles p SET phone = u.phone
                                                      FROM public.users u WHERE u.id = p.user_id AND p.user_id = 7$q$)$$,
                'repair the target row behind the sync trigger''s back');
SELECT is_empty($$SELECT * FROM customer_unify.verify('users_split') WHERE NOT ok$$,
                'after the repair verify() passes again');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'users_split'), 'verified',
          'the migration is verified again');

-- ---------------------------------------------------------------- cutover and finalize without skip_verify
SELECT lives_ok($$SELECT customer_unify.cutover('users_split')$$, 'cutover() of a verified migration');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'users_split'), 'cut_over', 'state is cut_over');
SELECT is((SELECT count(*) FROM users_split_compat.users), 2500::bigint, 'the compat view shows all 2500 rows');
-- finalize compares the shapes exactly (under SHARE locks) before it drops anything
SELECT lives_ok($$SELECT pg_temp.behind_the_sync($q$UPDATE public.profiles SET last_name = 'drifted' WHERE user_id = 11$q$)$$,
                'let one target row drift from the source after cutover');
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.finalize('users_split')$$), '23000',
          'finalize while the shapes differ raises 23000');
SELECT is((SELECT format('%s|%s', state, (SELECT count(*) FROM pg_attribute
                                            WHERE attrelid = 'public.users'::regclass AND attname = 'last_name' AND NOT attisdropped))
             FROM customer_unify.migration WHERE name = 'users_split'),
          'cut_over|1', 'the refused finalize leaves the migration cut_over and the source complete');
SELECT lives_ok($$SELECT pg_temp.behind_the_sync($q$UPDATE public.profiles p SET last_name = u.last_name
                                                      FROM public.users u WHERE u.id = p.user_id AND p.user_id = 11$q$)$$,
                'repair the drifted row');
SELECT lives_ok($$SELECT customer_unify.finalize('users_split')$$, 'finalize()');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'users_split'), 'finalized', 'state is finalized');
SELECT hasnt_column('public', 'users', 'phone', 'phone is dropped from the source');
SELECT fk_ok('public', 'profiles', 'user_id', 'public', 'users', 'id', 'the FK stays after finalize');
SELECT is((SELECT md5(string_agg(format('%s|%s|%s|%s|%s', id, email, first_name, last_name, phone), ';' ORDER BY id))
             FROM users_split_compat.users),
          (SELECT sum FROM before_cutover), 'nothing lost: the compat view returns every old value after finalize');

-- ---------------------------------------------------------------- CALL run
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'members_split'), 'cut_over',
          'CALL run() leaves the migration cut_over');
SELECT has_view('members_split_compat', 'members', 'CALL run() created the compat view');
SELECT is((SELECT count(*) FROM public.member_profiles), 300::bigint, 'CALL run() backfilled all 300 rows');
SELECT fk_ok('public', 'member_profiles', 'member_id', 'public', 'members', 'id', 'CALL run() added the FK');
SELECT has_column('public', 'members', 'bio', 'CALL run() without finalize drops no column');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'clients_split'), 'finalized',
          'CALL run(finalize => true) leaves the migration finalized');
SELECT hasnt_column('public', 'clients', 'contact', 'CALL run(finalize => true) dropped the moved columns');
SELECT is((SELECT string_agg(format('%s|%s|%s|%s', id, code, contact, notes), ';' ORDER BY id)
             FROM clients_split_compat.clients WHERE id IN (1, 200)),
          '1|c1|contact 1|notes 1;200|c200|contact 200|notes 200',
          'the compat view of the finalized run returns the old values');

SELECT * FROM finish();
ROLLBACK;

-- ---------------------------------------------------------------- cleanup
-- The DDL guard refuses dropping a live migration's objects: drop the
-- extension first (its triggers and event triggers go with it).
SET client_min_messages = warning;
DROP EXTENSION customer_unify CASCADE;
DROP SCHEMA IF EXISTS clients_split_compat, members_split_compat, users_split_compat CASCADE;
DROP TABLE IF EXISTS public.profiles, public.member_profiles, public.client_contacts CASCADE;
DROP TABLE IF EXISTS public.users, public.members, public.clients CASCADE;

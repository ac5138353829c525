-- 02_split_started.sql: the structure start() leaves behind, and the sync triggers.
-- Contract: test/API.md "What start / cutover / finalize / rollback leave behind" - start.
-- The source is empty at start(); rows are inserted afterwards and reach the
-- target through the sync trigger (CALL backfill cannot run in this transaction).
BEGIN;
SELECT plan(71);

CREATE FUNCTION pg_temp.err(sql text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$f$;

-- collation name of a column
CREATE FUNCTION pg_temp.coll(rel regclass, col name) RETURNS text LANGUAGE sql AS $f$
    SELECT co.collname::text
      FROM pg_attribute a JOIN pg_collation co ON co.oid = a.attcollation
     WHERE a.attrelid = rel AND a.attname = col
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

-- comment of a column
CREATE FUNCTION pg_temp.ccomment(rel regclass, col name) RETURNS text LANGUAGE sql AS $f$
    SELECT col_description(rel, a.attnum)
      FROM pg_attribute a WHERE a.attrelid = rel AND a.attname = col
$f$;

-- a unique index whose key is exactly these columns
CREATE FUNCTION pg_temp.has_unique(rel regclass, cols name[]) RETURNS boolean LANGUAGE sql AS $f$
    SELECT EXISTS (
        SELECT 1 FROM pg_index i
         WHERE i.indrelid = rel AND i.indisunique AND i.indnkeyatts = cardinality(cols)
           AND ARRAY(SELECT a.attname FROM unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY k(n, o)
                       JOIN pg_attribute a ON a.attrelid = rel AND a.attnum = k.n ORDER BY k.o) = cols)
$f$;

CREATE ROLE cu_pgtap_reader NOLOGIN;
CREATE ROLE cu_pgtap_writer NOLOGIN;
CREATE ROLE cu_pgtap_colpriv NOLOGIN;
CREATE ROLE cu_pgtap_stranger NOLOGIN;

CREATE TABLE public.users (
    id          integer PRIMARY KEY,
    email       text NOT NULL,
    first_name  text COLLATE "C" NOT NULL DEFAULT '',
    last_name   varchar(100),
    phone       text COLLATE "POSIX" DEFAULT 'n/a' CONSTRAINT users_phone_check CHECK (phone <> ''),
    score       numeric(10,2) NOT NULL DEFAULT 0,
    updated_at  timestamptz DEFAULT now(),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_score_check CHECK (score >= 0),
    CONSTRAINT users_names_check CHECK (first_name <> last_name)
);
CREATE UNIQUE INDEX users_email_key ON public.users (email);
CREATE INDEX users_last_name_idx ON public.users (last_name);
CREATE UNIQUE INDEX users_phone_key ON public.users (phone);
CREATE INDEX users_name_idx ON public.users (last_name, first_name);
CREATE INDEX users_email_phone_idx ON public.users (email, phone);
COMMENT ON COLUMN public.users.first_name IS 'Given name';
COMMENT ON COLUMN public.users.phone IS 'E.164 phone number';
GRANT SELECT ON public.users TO cu_pgtap_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.users TO cu_pgtap_writer;
GRANT SELECT (first_name, phone), UPDATE (phone) ON public.users TO cu_pgtap_colpriv;
CREATE VIEW public.phone_book AS SELECT id, phone FROM public.users;

SELECT lives_ok($$SELECT customer_unify.split(
                      name        => 'users_split',
                      source      => 'public.users'::regclass,
                      target      => 'profiles',
                      columns     => ARRAY['first_name', 'last_name', 'phone', 'score', 'updated_at'],
                      link_column => 'user_id')$$,
                'split users -> profiles');
SELECT is(customer_unify.start('users_split')::text, 'started', 'start() returns started');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'users_split'), 'started',
          'migration state is started');
SELECT is((SELECT state FROM customer_unify.progress WHERE name = 'users_split'), 'started',
          'progress shows the migration as started');
SELECT ok(EXISTS (SELECT 1 FROM customer_unify.step_log s
                    JOIN customer_unify.migration m ON m.id = s.migration_id
                   WHERE m.name = 'users_split' AND s.phase = 'start'),
          'step_log records the start statements');

-- ---------------------------------------------------------------- target table
SELECT has_table('public', 'profiles', 'target table public.profiles exists');
SELECT is(ARRAY(SELECT attname::text FROM pg_attribute
                 WHERE attrelid = 'public.profiles'::regclass AND attnum > 0 AND NOT attisdropped
                 ORDER BY attnum),
          ARRAY['user_id', 'first_name', 'last_name', 'phone', 'score', 'updated_at'],
          'profiles has the link column then the moved columns in source order');
SELECT col_type_is('public', 'profiles', 'user_id', 'integer', 'user_id has the type of users.id');
SELECT col_not_null('public', 'profiles', 'user_id', 'user_id is NOT NULL');
SELECT col_is_pk('public', 'profiles', 'user_id', 'user_id is the primary key');

SELECT col_type_is('public', 'profiles', 'first_name', 'text', 'first_name keeps type text');
SELECT col_type_is('public', 'profiles', 'last_name', 'character varying(100)', 'last_name keeps varchar(100)');
SELECT col_type_is('public', 'profiles', 'phone', 'text', 'phone keeps type text');
SELECT col_type_is('public', 'profiles', 'score', 'numeric(10,2)', 'score keeps numeric(10,2)');
SELECT col_type_is('public', 'profiles', 'updated_at', 'timestamp with time zone', 'updated_at keeps timestamptz');

SELECT col_not_null('public', 'profiles', 'first_name', 'first_name keeps NOT NULL');
SELECT col_is_null('public', 'profiles', 'last_name', 'last_name stays nullable');
SELECT col_is_null('public', 'profiles', 'phone', 'phone stays nullable');
SELECT col_not_null('public', 'profiles', 'score', 'score keeps NOT NULL');

SELECT col_has_default('public', 'profiles', 'first_name', 'first_name keeps a default');
SELECT col_default_is('public', 'profiles', 'first_name', ''::text, 'first_name default is ''''');
SELECT col_default_is('public', 'profiles', 'phone', 'n/a'::text, 'phone default is ''n/a''');
SELECT col_default_is('public', 'profiles', 'score', '0'::text, 'score default is 0');
SELECT col_default_is('public', 'profiles', 'updated_at', 'now()'::text, 'updated_at default is now()');
SELECT col_hasnt_default('public', 'profiles', 'last_name', 'last_name has no default');

SELECT is(pg_temp.coll('public.profiles', 'first_name'), 'C', 'first_name keeps collation "C"');
SELECT is(pg_temp.coll('public.profiles', 'phone'), 'POSIX', 'phone keeps collation "POSIX"');
SELECT is(pg_temp.coll('public.profiles', 'last_name'), pg_temp.coll('public.users', 'last_name'),
          'last_name keeps the default collation');

SELECT is(pg_temp.ccomment('public.profiles', 'first_name'), 'Given name', 'first_name keeps its comment');
SELECT is(pg_temp.ccomment('public.profiles', 'phone'), 'E.164 phone number', 'phone keeps its comment');

-- CHECK constraints touching only moved columns are carried; mixed ones cannot be
SELECT col_has_check('public', 'profiles', 'phone', 'CHECK (phone <> '''') is carried');
SELECT col_has_check('public', 'profiles', 'score', 'CHECK (score >= 0) is carried');
SELECT col_has_check('public', 'profiles', ARRAY['first_name', 'last_name']::name[],
                     'CHECK (first_name <> last_name) is carried');

-- indexes touching only moved columns are re-created
SELECT is_indexed('public', 'profiles', ARRAY['last_name']::name[], 'index on (last_name) is re-created');
SELECT is_indexed('public', 'profiles', ARRAY['last_name', 'first_name']::name[],
                  'index on (last_name, first_name) is re-created');
SELECT is_indexed('public', 'profiles', ARRAY['phone']::name[], 'index on (phone) is re-created');
SELECT ok(pg_temp.has_unique('public.profiles', ARRAY['phone']::name[]), 'the (phone) index stays UNIQUE');

-- privileges
SELECT table_privs_are('public', 'profiles', 'cu_pgtap_reader', ARRAY['SELECT'],
                       'table privileges of the source are copied (reader)');
SELECT table_privs_are('public', 'profiles', 'cu_pgtap_writer', ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
                       'table privileges of the source are copied (writer)');
SELECT column_privs_are('public', 'profiles', 'first_name', 'cu_pgtap_colpriv', ARRAY['SELECT'],
                        'column privileges on first_name are copied');
SELECT column_privs_are('public', 'profiles', 'phone', 'cu_pgtap_colpriv', ARRAY['SELECT', 'UPDATE'],
                        'column privileges on phone are copied');
SELECT column_privs_are('public', 'profiles', 'last_name', 'cu_pgtap_colpriv', '{}'::name[],
                        'no column privileges invented on last_name');

-- sync triggers
SELECT has_trigger('public', 'users', 'customer_unify_sync', 'sync trigger on the source');
SELECT trigger_is('public', 'users', 'customer_unify_sync', 'customer_unify', 'split_sync_source',
                  'source trigger calls customer_unify.split_sync_source()');
SELECT has_trigger('public', 'profiles', 'customer_unify_sync', 'sync trigger on the target');
SELECT trigger_is('public', 'profiles', 'customer_unify_sync', 'customer_unify', 'split_sync_target',
                  'target trigger calls customer_unify.split_sync_target()');
SELECT trigger_is('public', 'users', 'customer_unify_sync_flush', 'customer_unify', 'split_sync_flush',
                  'flush trigger on the source calls customer_unify.split_sync_flush()');
SELECT is((SELECT (tgtype & 1 = 0)::text FROM pg_trigger
            WHERE tgrelid = 'public.users'::regclass AND tgname = 'customer_unify_sync_flush'),
          'true', 'customer_unify_sync_flush is a statement-level trigger');
SELECT hasnt_trigger('public', 'profiles', 'customer_unify_sync_flush', 'no flush trigger on the target');
SELECT is((SELECT count(*) FROM pg_trigger
            WHERE tgname = 'customer_unify_sync' AND tgenabled <> 'D'
              AND tgrelid IN ('public.users'::regclass, 'public.profiles'::regclass)),
          2::bigint, 'both sync triggers are enabled');

-- source untouched
SELECT is(ARRAY(SELECT attname::text FROM pg_attribute
                 WHERE attrelid = 'public.users'::regclass AND attnum > 0 AND NOT attisdropped
                 ORDER BY attnum),
          ARRAY['id', 'email', 'first_name', 'last_name', 'phone', 'score', 'updated_at', 'created_at'],
          'start drops no source column');
SELECT hasnt_schema('users_split_compat', 'start creates no compat schema');

-- ---------------------------------------------------------------- sync, both directions
INSERT INTO public.users (id, email, first_name, last_name, phone)
VALUES (1, 'ann@example.com', 'Ann', 'Lee', '+15550001'),
       (2, 'bob@example.com', 'Bob', NULL, NULL),
       (3, 'cy@example.com', 'Cy', 'Young', '+15550003');
SELECT is((SELECT string_agg(format('%s|%s|%s|%s|%s', user_id, first_name, last_name, phone, score), ';' ORDER BY user_id)
             FROM public.profiles),
          '1|Ann|Lee|+15550001|0.00;2|Bob|||0.00;3|Cy|Young|+15550003|0.00',
          'rows inserted into the source after start are mirrored to the target');
UPDATE public.users SET phone = '+15559999', score = 5 WHERE id = 1;
SELECT is((SELECT format('%s|%s', phone, score) FROM public.profiles WHERE user_id = 1),
          '+15559999|5.00', 'source UPDATE is mirrored to the target');
UPDATE public.profiles SET last_name = 'Li' WHERE user_id = 1;
SELECT is((SELECT last_name::text FROM public.users WHERE id = 1), 'Li',
          'target UPDATE is mirrored back to the source');
DELETE FROM public.users WHERE id = 2;
SELECT is((SELECT count(*) FROM public.profiles WHERE user_id = 2), 0::bigint,
          'source DELETE is mirrored to the target');
UPDATE public.users SET email = 'cy@example.org' WHERE id = 3;
SELECT is((SELECT format('%s|%s|%s', first_name, last_name, phone) FROM public.profiles WHERE user_id = 3),
          'Cy|Young|+15550003', 'an UPDATE of unmoved columns leaves the target row intact');
SELECT ok((SELECT count(*) FROM customer_unify.verify('users_split')) > 0,
          'verify() runs in state started and returns checks');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'users_split'), 'started',
          'verify() does not move a started migration to verified');

-- ---------------------------------------------------------------- errors in state started
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.start('users_split')$$), '55000',
          'start twice raises 55000');
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.cutover('users_split')$$), '55000',
          'cutover from started (not verified) raises 55000');
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.cutover('users_split', skip_verify => true)$$), '55000',
          'cutover(skip_verify) before the backfill finished raises 55000 (nothing lost)');
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.finalize('users_split')$$), '55000',
          'finalize from started raises 55000');
SELECT throws_ok($$CALL customer_unify.backfill('users_split', batch_size => 100)$$, '25001', NULL,
                 'backfill inside a transaction block raises 25001');
SELECT throws_ok($sql$DO $do$ BEGIN
                     PERFORM customer_unify.split('users_split2', 'public.users'::regclass, 'emails', ARRAY['email']);
                     PERFORM customer_unify.start('users_split2');
                   END $do$$sql$, '55006', NULL,
                 'a second live migration on the same table raises 55006');
SELECT hasnt_table('public', 'emails', 'the refused second migration created nothing');

-- a role that owns neither the table nor the migration can change neither
SET LOCAL ROLE cu_pgtap_stranger;
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.rollback('users_split')$$), '42501',
          'rollback() by a role that does not own the table raises 42501');
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.cutover('users_split', skip_verify => true)$$), '42501',
          'cutover() by a role that does not own the table raises 42501');
SELECT matches(pg_temp.err($$UPDATE customer_unify.migration SET state = 'backfilled' WHERE name = 'users_split'$$),
               '^(no error|42501: .*)$', 'a direct catalog UPDATE by that role runs or is refused ...');
RESET ROLE;
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'users_split'), 'started',
          '... does not touch the migration of another owner (row level security)');

-- dependents
SELECT ok(EXISTS (SELECT 1 FROM customer_unify.dependents('users_split') d WHERE d::text LIKE '%phone_book%'),
          'dependents() lists the view that reads a moved column');

SELECT * FROM finish();
ROLLBACK;

-- 02_split_started.sql: the structure start() leaves behind, and the sync triggers.
-- Contract: test/API.md "What start / cutover / finalize / rollback leave behind" - start.
-- The source is empty at start(); rows are inserted afterwards and reach the
-- target through the sync trigger (CALL backfill cannot run in this transaction).
-- 1.1: the triggers are named after the migration (customer_unify_<id>_*),
-- carry one argument (a customer_unify.sync_map id) and are ENABLE ALWAYS;
-- start() registers the target and freezes every phase's statements; the
-- catalog is written by the engine only; the DDL guard refuses (55006) what
-- would break the live migration.
BEGIN;
SELECT plan(102);

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

-- the id of a migration, and the name of one of its triggers
CREATE FUNCTION pg_temp.mid(mname text) RETURNS bigint LANGUAGE sql AS $f$
    SELECT id FROM customer_unify.migration WHERE name = mname
$f$;
CREATE FUNCTION pg_temp.tg(mname text, suffix text) RETURNS name LANGUAGE sql AS $f$
    SELECT ('customer_unify_' || pg_temp.mid(mname) || '_' || suffix)::name
$f$;
CREATE FUNCTION pg_temp.map_id(mname text, map text) RETURNS bigint LANGUAGE sql AS $f$
    SELECT id FROM customer_unify.sync_map WHERE migration_id = pg_temp.mid(mname) AND name = map
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
GRANT SELECT (id, first_name, phone), UPDATE (phone) ON public.users TO cu_pgtap_colpriv;
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
SELECT is((SELECT string_agg(format('%s|%s|%s|created=%s|live=%s', tag, role, relid::text, created::text, live::text), ';' ORDER BY tag)
             FROM customer_unify.migration_relation WHERE migration_id = pg_temp.mid('users_split')),
          'source|source|users|created=false|live=true;target|target|profiles|created=true|live=true',
          'start registers the target it created next to the source in migration_relation');
SELECT is(ARRAY(SELECT DISTINCT phase FROM customer_unify.step WHERE migration_id = pg_temp.mid('users_split') ORDER BY 1),
          ARRAY['backfill', 'backfill_end', 'cutover', 'finalize', 'orphans', 'start', 'validate'],
          'start freezes the statements of every phase in customer_unify.step');
SELECT is(ARRAY(SELECT statement FROM customer_unify.step_log
                 WHERE migration_id = pg_temp.mid('users_split') AND phase = 'start' ORDER BY seq),
          ARRAY(SELECT statement FROM customer_unify.step
                 WHERE migration_id = pg_temp.mid('users_split') AND phase = 'start' ORDER BY seq),
          'start ran exactly the frozen statements of its phase, in order');
SELECT is((SELECT string_agg(format('%s:%s', seq, outcome), ',' ORDER BY seq) FROM customer_unify.step_log
            WHERE migration_id = pg_temp.mid('users_split') AND phase = 'start'
              AND (seq = 1 OR creates_tag IS NOT NULL)),
          '1:ok,2:ok', 'the first start step (the source''s lock) and the CREATE TABLE that made the target are logged ok');
SELECT is((SELECT creates_tag FROM customer_unify.step_log
            WHERE migration_id = pg_temp.mid('users_split') AND phase = 'start' AND statement LIKE 'CREATE TABLE %'),
          'target', 'step_log.creates_tag names the relation the CREATE TABLE step made');
SELECT is(ARRAY(SELECT statement FROM customer_unify.preview('users_split') WHERE phase = 'start' ORDER BY step),
          ARRAY(SELECT statement FROM customer_unify.step
                 WHERE migration_id = pg_temp.mid('users_split') AND phase = 'start' ORDER BY seq),
          'after start, preview() shows the frozen plan');
SELECT is((SELECT format('%s|%s|%s|%s|%s', stream, key_type, plan->>'key', rows_done, (position IS NULL)::text)
             FROM customer_unify.backfill_state WHERE migration_id = pg_temp.mid('users_split')),
          'main|integer|id|0|true',
          'start creates the checkpoint of the copy stream main: integer keys by id, nothing copied yet');

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
SELECT column_privs_are('public', 'profiles', 'user_id', 'cu_pgtap_colpriv', ARRAY['SELECT'],
                        'the key column''s privileges are copied to the link column');

-- sync triggers: customer_unify_<migration id>_<what>, one argument each (a sync_map id)
SELECT has_trigger('public', 'users', pg_temp.tg('users_split', 'sync'), 'sync trigger on the source');
SELECT trigger_is('public', 'users', pg_temp.tg('users_split', 'sync'), 'customer_unify', 'mirror_row',
                  'source trigger calls customer_unify.mirror_row()');
SELECT has_trigger('public', 'profiles', pg_temp.tg('users_split', 'sync'), 'sync trigger on the target');
SELECT trigger_is('public', 'profiles', pg_temp.tg('users_split', 'sync'), 'customer_unify', 'mirror_row',
                  'target trigger calls customer_unify.mirror_row()');
SELECT trigger_is('public', 'users', pg_temp.tg('users_split', 'flush'), 'customer_unify', 'mirror_flush',
                  'flush trigger on the source calls customer_unify.mirror_flush()');
SELECT is((SELECT (tgtype & 1 = 0)::text FROM pg_trigger
            WHERE tgrelid = 'public.users'::regclass AND tgname = pg_temp.tg('users_split', 'flush')),
          'true', 'the flush trigger is a statement-level trigger');
SELECT hasnt_trigger('public', 'profiles', pg_temp.tg('users_split', 'flush'), 'no flush trigger on the target');
SELECT is((SELECT count(*) FROM pg_trigger
            WHERE tgname = pg_temp.tg('users_split', 'sync') AND tgenabled = 'A'
              AND tgrelid IN ('public.users'::regclass, 'public.profiles'::regclass)),
          2::bigint, 'both sync triggers are enabled, ALWAYS');
SELECT set_eq(
    $$SELECT pg_get_triggerdef(oid) FROM pg_trigger
       WHERE tgrelid IN ('public.users'::regclass, 'public.profiles'::regclass) AND NOT tgisinternal
         AND tgname LIKE 'customer\_unify%'$$,
    format($$VALUES
        ('CREATE TRIGGER customer_unify_%1$s_sync AFTER INSERT OR DELETE OR UPDATE ON public.users FOR EACH ROW WHEN ((NOT customer_unify._mirror_guard((%1$s)::bigint))) EXECUTE FUNCTION customer_unify.mirror_row(''%2$s'')'),
        ('CREATE TRIGGER customer_unify_%1$s_flush AFTER INSERT OR DELETE OR UPDATE ON public.users FOR EACH STATEMENT EXECUTE FUNCTION customer_unify.mirror_flush(''%2$s'')'),
        ('CREATE TRIGGER customer_unify_%1$s_truncate_begin BEFORE TRUNCATE ON public.users FOR EACH STATEMENT EXECUTE FUNCTION customer_unify.mirror_truncate(''%2$s'')'),
        ('CREATE TRIGGER customer_unify_%1$s_truncate AFTER TRUNCATE ON public.users FOR EACH STATEMENT EXECUTE FUNCTION customer_unify.mirror_truncate(''%2$s'')'),
        ('CREATE TRIGGER customer_unify_%1$s_sync AFTER INSERT OR DELETE OR UPDATE ON public.profiles FOR EACH ROW WHEN ((NOT customer_unify._mirror_guard((%1$s)::bigint))) EXECUTE FUNCTION customer_unify.mirror_row(''%3$s'')'),
        ('CREATE TRIGGER customer_unify_%1$s_truncate BEFORE TRUNCATE ON public.profiles FOR EACH STATEMENT EXECUTE FUNCTION customer_unify.mirror_truncate(''%3$s'')')$$,
        pg_temp.mid('users_split'), pg_temp.map_id('users_split', 'forward'), pg_temp.map_id('users_split', 'backward')),
    'exactly the six sync triggers: row, flush and TRUNCATE triggers on the source, row and TRUNCATE triggers on the target, no column lists');
SELECT is_empty($$SELECT tgrelid::regclass::text || ' ' || tgname || ' ' || tgenabled::text FROM pg_trigger
                   WHERE tgrelid IN ('public.users'::regclass, 'public.profiles'::regclass) AND NOT tgisinternal
                     AND tgname LIKE 'customer\_unify%' AND tgenabled <> 'A'$$,
                'every trigger of the migration is ENABLE ALWAYS (fires under session_replication_role = replica too)');
SELECT is_empty($$SELECT t.tgrelid::regclass::text || ' ' || t.tgname FROM pg_trigger t
                   WHERE t.tgrelid IN ('public.users'::regclass, 'public.profiles'::regclass) AND NOT t.tgisinternal
                     AND t.tgname LIKE 'customer\_unify%'
                     AND NOT (t.tgnargs = 1 AND EXISTS (
                         SELECT 1 FROM customer_unify.sync_map m
                           JOIN customer_unify.migration_relation r ON r.migration_id = m.migration_id AND r.tag = m.from_tag
                          WHERE m.id::text = convert_from(substring(t.tgargs from 1 for position('\x00'::bytea in t.tgargs) - 1), 'UTF8')
                            AND m.migration_id = pg_temp.mid('users_split') AND r.relid = t.tgrelid))$$,
                'each trigger''s one argument is the id of its migration''s sync map that starts at the trigger''s table');

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
SET LOCAL session_replication_role = replica;
UPDATE public.users SET phone = '+15550004' WHERE id = 3;
UPDATE public.profiles SET last_name = 'Yung' WHERE user_id = 3;
SET LOCAL session_replication_role = origin;
SELECT is((SELECT format('%s|%s', p.phone, u.last_name) FROM public.profiles p JOIN public.users u ON u.id = p.user_id
            WHERE p.user_id = 3),
          '+15550004|Yung', 'writes under session_replication_role = replica are mirrored both ways');
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
SELECT is(pg_temp.sqlstate_undone($$UPDATE customer_unify.migration SET state = 'backfilled' WHERE name = 'users_split'$$),
          '42501', 'a direct catalog UPDATE by that role is refused (42501) ...');
SELECT is(pg_temp.sqlstate_undone($$INSERT INTO customer_unify.step_log (migration_id, phase, seq, statement, outcome)
                                    SELECT id, 'start', 99, 'SELECT 1', 'ok' FROM customer_unify.migration$$),
          '42501', 'a direct catalog INSERT by that role is refused (42501)');
SELECT is(pg_temp.sqlstate_undone($$DELETE FROM customer_unify.sync_map$$),
          '42501', 'a direct catalog DELETE by that role is refused (42501)');
RESET ROLE;
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'users_split'), 'started',
          '... and the migration of another owner is untouched');

-- ---------------------------------------------------------------- the DDL guard (55006)
SELECT is(pg_temp.sqlstate_undone($$DROP TABLE public.profiles$$), '55006',
          'the guard refuses DROP TABLE of the target');
SELECT matches(pg_temp.err($$DROP TABLE public.profiles$$), '^55006: .*users_split',
               'the refusal names the live migration');
SELECT is(pg_temp.sqlstate_undone($$ALTER TABLE public.users RENAME TO users_old$$), '55006',
          'the guard refuses renaming the source');
SELECT is(pg_temp.sqlstate_undone($$ALTER TABLE public.profiles SET SCHEMA customer_unify$$), '55006',
          'the guard refuses moving the target to another schema');
SELECT is(pg_temp.sqlstate_undone($$ALTER TABLE public.profiles RENAME COLUMN phone TO tel$$), '55006',
          'the guard refuses renaming a copied column of the target');
SELECT is(pg_temp.sqlstate_undone($$ALTER TABLE public.users DROP COLUMN score$$), '55006',
          'the guard refuses dropping a copied column of the source');
SELECT is(pg_temp.sqlstate_undone($$ALTER TABLE public.users ALTER COLUMN score TYPE numeric(12,2)$$), '55006',
          'the guard refuses changing the type of a copied column on one side');
SELECT is(pg_temp.sqlstate_undone(format('ALTER TABLE public.profiles DISABLE TRIGGER %I', pg_temp.tg('users_split', 'sync'))),
          '55006', 'the guard refuses disabling a sync trigger');
SELECT is(pg_temp.sqlstate_undone(format('ALTER TABLE public.users ENABLE TRIGGER %I', pg_temp.tg('users_split', 'sync'))),
          '55006', 'the guard refuses turning a sync trigger from ALWAYS into origin-only');
SELECT is(pg_temp.sqlstate_undone($$ALTER TABLE public.users DISABLE TRIGGER ALL$$), '55006',
          'the guard refuses DISABLE TRIGGER ALL on the source');
SELECT is(pg_temp.sqlstate_undone($$CREATE TABLE public.users_child () INHERITS (public.users)$$), '55006',
          'the guard refuses adding an inheritance child to the source');
SELECT is(pg_temp.sqlstate_undone($$ALTER TABLE public.profiles OWNER TO cu_pgtap_stranger$$), '55006',
          'the guard refuses giving the target another owner than the source');
SELECT is(pg_temp.sqlstate_undone($$ALTER TABLE public.profiles DROP CONSTRAINT profiles_pkey$$), '55006',
          'the guard refuses dropping the unique index the sync finds target rows by');
SELECT lives_ok($$CREATE TABLE public.unrelated (id integer PRIMARY KEY)$$,
                'DDL that leaves the migration alone is let through');
SELECT is((SELECT count(*) FROM pg_trigger
            WHERE tgrelid IN ('public.users'::regclass, 'public.profiles'::regclass) AND NOT tgisinternal
              AND tgname LIKE 'customer\_unify%' AND tgenabled = 'A'),
          6::bigint, 'after the refused DDL all six sync triggers are still there, ALWAYS');

-- ---------------------------------------------------------------- TRUNCATE
SELECT is(pg_temp.sqlstate_undone($$TRUNCATE public.profiles$$), '55006',
          'TRUNCATE of the target alone is refused (55006)');
TRUNCATE public.users;
SELECT is((SELECT count(*) FROM public.profiles), 0::bigint, 'TRUNCATE of the source empties the target too');

-- dependents
SELECT ok(EXISTS (SELECT 1 FROM customer_unify.dependents('users_split') d WHERE d::text LIKE '%phone_book%'),
          'dependents() lists the view that reads a moved column');

SELECT * FROM finish();
ROLLBACK;

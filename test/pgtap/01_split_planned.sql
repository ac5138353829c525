-- 01_split_planned.sql: split() validates everything and creates nothing.
-- Contract: test/API.md "Split" (state 'planned'), preview, the SQLSTATE table;
-- 1.1: a plan registers its source in migration_relation and its sync maps,
-- the frozen plan (customer_unify.step) is only written by start(), and every
-- phase takes its locks first (LOCK TABLE steps, shown by preview).
BEGIN;
SELECT plan(64);

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

-- the id of a migration
CREATE FUNCTION pg_temp.mid(mname text) RETURNS bigint LANGUAGE sql AS $f$
    SELECT id FROM customer_unify.migration WHERE name = mname
$f$;

-- the statements of one phase of preview(), in order
CREATE FUNCTION pg_temp.phase_steps(mname text, ph text) RETURNS text[] LANGUAGE sql AS $f$
    SELECT ARRAY(SELECT statement FROM customer_unify.preview(mname) WHERE phase = ph ORDER BY step)
$f$;

CREATE TABLE public.users (
    id         integer PRIMARY KEY,
    email      text NOT NULL,
    first_name text,
    last_name  text,
    phone      text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE public.existing (id integer PRIMARY KEY);
CREATE TABLE public.nopk (id integer, note text);
CREATE TABLE public.compkey (a integer, b integer, note text, PRIMARY KEY (a, b));
CREATE TABLE public.idcols (
    id     integer PRIMARY KEY,
    seq    integer GENERATED ALWAYS AS IDENTITY,
    note   text,
    shout  text GENERATED ALWAYS AS (upper(note)) STORED,
    extra  text
);
CREATE VIEW public.users_v AS SELECT * FROM public.users;
-- inheritance and partitioning around a source
CREATE TABLE public.par (id integer PRIMARY KEY, note text);
CREATE TABLE public.kid (extra text) INHERITS (public.par);
CREATE TABLE public.parted (id integer PRIMARY KEY, note text) PARTITION BY RANGE (id);
CREATE TABLE public.parted_1 PARTITION OF public.parted FOR VALUES FROM (0) TO (1000);
CREATE ROLE cu_pgtap_stranger NOLOGIN;
GRANT USAGE ON SCHEMA customer_unify TO cu_pgtap_stranger;

-- ---------------------------------------------------------------- a valid plan
SELECT is(pg_typeof(customer_unify.split(
              name        => 'users_split',
              source      => 'public.users'::regclass,
              target      => 'profiles',
              columns     => ARRAY['first_name', 'last_name', 'phone'],
              link_column => 'user_id'))::text,
          'bigint', 'split() returns a bigint migration id');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'users_split'), 'planned',
          'migration row is in state planned');
SELECT is((SELECT kind FROM customer_unify.migration WHERE name = 'users_split'), 'split',
          'migration kind is split');
SELECT is((SELECT source FROM customer_unify.migration WHERE name = 'users_split'),
          'public.users'::regclass, 'migration source is public.users');
SELECT is((SELECT owner FROM customer_unify.migration WHERE name = 'users_split'),
          current_user::name, 'migration owner is the caller');
SELECT is((SELECT jsonb_typeof(spec) FROM customer_unify.migration WHERE name = 'users_split'),
          'object', 'migration spec is a jsonb object');
SELECT is((SELECT state FROM customer_unify.status('users_split')), 'planned',
          'status() reports planned');

-- nothing created
SELECT hasnt_table('public', 'profiles', 'split creates no target table');
SELECT is_empty($$SELECT tgname FROM pg_trigger
                   WHERE tgrelid = 'public.users'::regclass AND NOT tgisinternal AND tgname LIKE 'customer\_unify%'$$,
                'split creates no trigger of any name');
SELECT hasnt_schema('users_split_compat', 'split creates no compat schema');
SELECT is(ARRAY(SELECT attname::text FROM pg_attribute
                 WHERE attrelid = 'public.users'::regclass AND attnum > 0 AND NOT attisdropped
                 ORDER BY attnum),
          ARRAY['id', 'email', 'first_name', 'last_name', 'phone', 'created_at'],
          'split leaves the source columns alone');
SELECT is((SELECT string_agg(format('%s|%s|%s|%s.%s|created=%s|live=%s', tag, role, relid::text, nspname, relname, created::text, live::text), ';')
             FROM customer_unify.migration_relation WHERE migration_id = pg_temp.mid('users_split')),
          'source|source|users|public.users|created=false|live=true',
          'the plan registers its source, and only it, in migration_relation');
SELECT is((SELECT string_agg(format('%s:%s.%s->%s.%s:%s', m.name, m.from_tag, m.from_key, m.to_tag, m.to_key,
                                    (SELECT string_agg(c.from_column || '=' || c.to_column, ',' ORDER BY c.ord)
                                       FROM customer_unify.sync_map_column c WHERE c.map_id = m.id)), ' ' ORDER BY m.name)
             FROM customer_unify.sync_map m WHERE m.migration_id = pg_temp.mid('users_split')),
          'backward:target.user_id->source.id:first_name=first_name,last_name=last_name,phone=phone '
          'forward:source.id->target.user_id:first_name=first_name,last_name=last_name,phone=phone '
          'route:source.id->target.user_id:first_name=first_name,last_name=last_name,phone=phone',
          'the plan maps the moved columns forward, backward and for the compat view router');
SELECT is((SELECT count(*) FROM customer_unify.step WHERE migration_id = pg_temp.mid('users_split')), 0::bigint,
          'the plan is not frozen before start (no customer_unify.step rows)');
SELECT is((SELECT count(*) FROM customer_unify.backfill_state WHERE migration_id = pg_temp.mid('users_split')), 0::bigint,
          'no backfill checkpoint before start');

-- ---------------------------------------------------------------- preview
SELECT bag_has($$SELECT DISTINCT phase FROM customer_unify.preview('users_split')$$,
               $$VALUES ('start'), ('backfill'), ('backfill_end'), ('validate'), ('cutover'), ('finalize'), ('rollback')$$,
               'preview() lists the phases start, backfill, backfill_end, validate, cutover, finalize, rollback');
SELECT is_empty($$SELECT DISTINCT phase FROM customer_unify.preview('users_split')
                   WHERE phase NOT IN ('start', 'backfill', 'backfill_end', 'orphans', 'validate', 'cutover', 'finalize', 'rollback')$$,
                'preview() lists no undocumented phase');
SELECT ok(EXISTS (SELECT 1 FROM customer_unify.preview('users_split')
                   WHERE phase = 'backfill_end' AND statement ILIKE '%FOREIGN KEY%NOT VALID%'),
          'preview() backfill_end adds the link FK NOT VALID');
SELECT ok(EXISTS (SELECT 1 FROM customer_unify.preview('users_split')
                   WHERE phase = 'validate' AND statement ILIKE '%VALIDATE CONSTRAINT%'),
          'preview() validates it in its own phase');
SELECT ok(EXISTS (SELECT 1 FROM customer_unify.preview('users_split')
                   WHERE phase = 'start' AND statement ILIKE '%CREATE TABLE%'
                     AND statement LIKE '%profiles%'),
          'preview() start phase creates the target table profiles');
SELECT ok(EXISTS (SELECT 1 FROM customer_unify.preview('users_split')
                   WHERE phase = 'finalize' AND statement ILIKE '%DROP COLUMN%'),
          'preview() finalize phase drops columns');
-- locks first, in the order writers take them (source, then target)
SELECT is((pg_temp.phase_steps('users_split', 'start'))[1],
          'LOCK TABLE ONLY public.users IN SHARE ROW EXCLUSIVE MODE',
          'preview() start begins by locking the source');
SELECT is((pg_temp.phase_steps('users_split', 'backfill_end'))[1:2],
          ARRAY['LOCK TABLE ONLY public.users IN SHARE ROW EXCLUSIVE MODE',
                'LOCK TABLE ONLY public.profiles IN SHARE ROW EXCLUSIVE MODE'],
          'preview() backfill_end locks the source, then the target');
SELECT is((pg_temp.phase_steps('users_split', 'cutover'))[1:4],
          ARRAY['LOCK TABLE ONLY public.users IN ACCESS SHARE MODE',
                'LOCK TABLE ONLY public.profiles IN ACCESS SHARE MODE',
                format('SELECT customer_unify._gate_verify(%s)', pg_temp.mid('users_split')),
                'CREATE SCHEMA users_split_compat'],
          'preview() cutover locks both tables and passes the verify gate before it creates anything');
SELECT is((pg_temp.phase_steps('users_split', 'finalize'))[1:6],
          ARRAY['LOCK TABLE ONLY public.users IN SHARE MODE',
                'LOCK TABLE ONLY public.profiles IN SHARE MODE',
                format('SELECT customer_unify._gate_dependents(%s)', pg_temp.mid('users_split')),
                format('SELECT customer_unify._gate_verify(%s)', pg_temp.mid('users_split')),
                'LOCK TABLE ONLY public.users IN ACCESS EXCLUSIVE MODE',
                'LOCK TABLE ONLY public.profiles IN ACCESS EXCLUSIVE MODE'],
          'preview() finalize verifies under SHARE locks, then takes ACCESS EXCLUSIVE before changing anything');
SELECT is_empty($$SELECT phase, step, statement, lock_mode FROM customer_unify.preview('users_split')
                   WHERE statement LIKE 'LOCK TABLE ONLY %'
                     AND statement NOT LIKE '% IN ' || lock_mode || ' MODE'$$,
                'preview() reports the mode of every LOCK TABLE step as its lock_mode');
SELECT is((SELECT format('%s|%s', lock_mode, statement) FROM customer_unify.preview('users_split')
            WHERE phase = 'rollback' AND step = 0),
          'ACCESS EXCLUSIVE|LOCK TABLE public.users IN ACCESS EXCLUSIVE MODE, for each table of the migration',
          'preview() rollback begins by locking every table of the migration');
-- the sync triggers start will create: named after the migration, map-driven, ALWAYS
SELECT set_eq(
    $$SELECT substring(statement from '^CREATE TRIGGER (\S+) ') || ' ON ' || substring(statement from ' ON (\S+) FOR EACH ')
                                  || ' ' || substring(statement from 'EXECUTE FUNCTION (\S+)$')
        FROM customer_unify.preview('users_split') WHERE phase = 'start' AND statement LIKE 'CREATE TRIGGER %'$$,
    format($$VALUES ('customer_unify_%1$s_sync ON public.users customer_unify.mirror_row(''%2$s'')'),
                    ('customer_unify_%1$s_flush ON public.users customer_unify.mirror_flush(''%2$s'')'),
                    ('customer_unify_%1$s_truncate_begin ON public.users customer_unify.mirror_truncate(''%2$s'')'),
                    ('customer_unify_%1$s_truncate ON public.users customer_unify.mirror_truncate(''%2$s'')'),
                    ('customer_unify_%1$s_sync ON public.profiles customer_unify.mirror_row(''%3$s'')'),
                    ('customer_unify_%1$s_truncate ON public.profiles customer_unify.mirror_truncate(''%3$s'')')$$,
           pg_temp.mid('users_split'),
           (SELECT id FROM customer_unify.sync_map WHERE migration_id = pg_temp.mid('users_split') AND name = 'forward'),
           (SELECT id FROM customer_unify.sync_map WHERE migration_id = pg_temp.mid('users_split') AND name = 'backward')),
    'preview() start creates the per-migration sync triggers, each with its sync_map id as only argument');
SELECT set_eq(
    $$SELECT substring(statement from '^CREATE TRIGGER (\S+) ') || ' ON ' || substring(statement from ' ON (\S+) FOR EACH ')
        FROM customer_unify.preview('users_split') WHERE phase = 'start' AND statement LIKE 'CREATE TRIGGER %'$$,
    $$SELECT substring(statement from ' TRIGGER (\S+)$') || ' ON ' || substring(statement from '^ALTER TABLE (\S+) ')
        FROM customer_unify.preview('users_split') WHERE phase = 'start' AND statement LIKE 'ALTER TABLE % ENABLE ALWAYS TRIGGER %'$$,
    'preview() start makes every trigger it creates ENABLE ALWAYS');
SELECT hasnt_table('public', 'profiles', 'preview creates nothing');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'users_split'), 'planned',
          'preview does not change the state');

-- ---------------------------------------------------------------- out of order from planned: 55000
SELECT throws_ok($$SELECT customer_unify.cutover('users_split')$$, '55000', NULL,
                 'cutover from planned raises 55000');
SELECT throws_ok($$SELECT customer_unify.cutover('users_split', skip_verify => true)$$, '55000', NULL,
                 'cutover(skip_verify) from planned raises 55000');
SELECT throws_ok($$SELECT customer_unify.finalize('users_split')$$, '55000', NULL,
                 'finalize from planned raises 55000');

-- ---------------------------------------------------------------- validation errors
SELECT throws_ok($$SELECT customer_unify.split('e_src', 'public.no_such_table'::regclass, 'p', ARRAY['x'])$$,
                 '42P01', NULL, 'unknown source table raises 42P01');
SELECT throws_ok($$SELECT customer_unify.split('e_col', 'public.users'::regclass, 'p_col', ARRAY['first_name', 'no_such_col'])$$,
                 '42703', NULL, 'unknown column raises 42703');
SELECT matches(pg_temp.err($$SELECT customer_unify.split('e_col', 'public.users'::regclass, 'p_col', ARRAY['no_such_col'])$$),
               '^42703: .*no_such_col', 'the 42703 message names the column');
SELECT throws_ok($$SELECT customer_unify.split('e_pk', 'public.users'::regclass, 'p_pk', ARRAY['id', 'phone'])$$,
                 '42P10', NULL, 'moving the primary key raises 42P10');
SELECT throws_ok($$SELECT customer_unify.split('e_dup', 'public.users'::regclass, 'p_dup', ARRAY['phone', 'phone'])$$,
                 '42701', NULL, 'a column listed twice raises 42701');
SELECT throws_ok($$SELECT customer_unify.split('e_link', 'public.users'::regclass, 'p_link', ARRAY['phone'], link_column => 'phone')$$,
                 '42701', NULL, 'link column equal to a moved column raises 42701');
SELECT throws_ok($$SELECT customer_unify.split('e_exists', 'public.users'::regclass, 'existing', ARRAY['phone'])$$,
                 '42P07', NULL, 'existing target table raises 42P07');
SELECT matches(pg_temp.err($$SELECT customer_unify.split('e_exists', 'public.users'::regclass, 'existing', ARRAY['phone'])$$),
               '^42P07: .*existing', 'the 42P07 message names the target');
SELECT throws_ok($$SELECT customer_unify.split('e_nopk', 'public.nopk'::regclass, 'p_nopk', ARRAY['note'])$$,
                 '42P16', NULL, 'source without primary key raises 42P16');
SELECT throws_ok($$SELECT customer_unify.split('e_comp', 'public.compkey'::regclass, 'p_comp', ARRAY['note'])$$,
                 '0A000', NULL, 'composite primary key raises 0A000');
SELECT throws_ok($$SELECT customer_unify.split('e_ident', 'public.idcols'::regclass, 'p_ident', ARRAY['seq'])$$,
                 '0A000', NULL, 'moving an identity column raises 0A000');
SELECT throws_ok($$SELECT customer_unify.split('e_gen', 'public.idcols'::regclass, 'p_gen', ARRAY['shout'])$$,
                 '0A000', NULL, 'moving a generated column raises 0A000');
SELECT throws_ok($$SELECT customer_unify.split('e_view', 'public.users_v'::regclass, 'p_view', ARRAY['phone'])$$,
                 '0A000', NULL, 'a view as source raises 0A000');
SELECT throws_ok($$SELECT customer_unify.split('e_par', 'public.par'::regclass, 'p_par', ARRAY['note'])$$,
                 '0A000', NULL, 'a source with inheritance children raises 0A000');
SELECT throws_ok($$SELECT customer_unify.split('e_kid', 'public.kid'::regclass, 'p_kid', ARRAY['extra'])$$,
                 '0A000', NULL, 'a source that inherits from another table raises 0A000');
SELECT throws_ok($$SELECT customer_unify.split('e_parted', 'public.parted'::regclass, 'p_parted', ARRAY['note'])$$,
                 '0A000', NULL, 'a partitioned table as source raises 0A000');
SELECT throws_ok($$SELECT customer_unify.split('e_part', 'public.parted_1'::regclass, 'p_part', ARRAY['note'])$$,
                 '0A000', NULL, 'a partition as source raises 0A000');
SELECT throws_ok($$SELECT customer_unify.split('users_split', 'public.idcols'::regclass, 'p_again', ARRAY['extra'])$$,
                 '42710', NULL, 'a used migration name raises 42710');
SELECT throws_ok($$SELECT customer_unify.split('e_empty', 'public.users'::regclass, 'p_empty', ARRAY[]::text[])$$,
                 '22023', NULL, 'empty column list raises 22023');
SELECT matches(pg_temp.err($$SELECT customer_unify.split(NULL, 'public.users'::regclass, 'p_null', ARRAY['phone'])$$),
               '^(22004|22023): ', 'NULL migration name raises 22004 or 22023');

-- caller does not own the source: 42501, and the message names the table
SET LOCAL ROLE cu_pgtap_stranger;
SELECT matches(pg_temp.err($$SELECT customer_unify.split('e_owner', 'public.users'::regclass, 'p_owner', ARRAY['phone'])$$),
               '^42501: .*users', 'split of a table the caller does not own raises 42501 naming it');
RESET ROLE;

-- ---------------------------------------------------------------- nothing changed by the failures
SELECT is((SELECT count(*) FROM customer_unify.migration), 1::bigint,
          'failed split() calls store no migration');
SELECT is_empty($$SELECT relname FROM pg_class
                   WHERE relname IN ('p', 'p_col', 'p_pk', 'p_dup', 'p_link', 'p_nopk', 'p_comp',
                                     'p_ident', 'p_gen', 'p_view', 'p_par', 'p_kid', 'p_parted', 'p_part',
                                     'p_again', 'p_empty', 'p_null', 'p_owner')$$,
                'failed split() calls create no table');
SELECT is((SELECT count(*) FROM pg_class WHERE relname = 'existing'), 1::bigint,
          'the pre-existing target is untouched');

-- ---------------------------------------------------------------- defaults
SELECT lives_ok($$SELECT customer_unify.split('idcols_split', 'public.idcols'::regclass, 'idcols_notes', ARRAY['extra'])$$,
                'split with only the required arguments');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'idcols_split'), 'planned',
          'second plan on another table is planned');
SELECT ok(EXISTS (SELECT 1 FROM customer_unify.preview('idcols_split')
                   WHERE phase = 'start' AND statement LIKE '%idcols_id%'),
          'default link column is <source table name>_id (preview of start names idcols_id)');
SELECT hasnt_table('public', 'idcols_notes', 'the second plan creates nothing either');

-- ---------------------------------------------------------------- inheritance added after the plan
-- The plan refuses a table with inheritance children; start must too, or the
-- children's rows are never copied (and the guard then refuses every DDL).
CREATE TABLE public.late_par (id integer PRIMARY KEY, note text);
SELECT lives_ok($$SELECT customer_unify.split('late_split', 'public.late_par'::regclass, 'late_notes', ARRAY['note'])$$,
                'split of a table without inheritance children');
CREATE TABLE public.late_kid () INHERITS (public.late_par);
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.start('late_split')$$), '0A000',
          'start() after an inheritance child appeared raises 0A000');

SELECT * FROM finish();
ROLLBACK;

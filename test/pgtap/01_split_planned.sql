-- 01_split_planned.sql: split() validates everything and creates nothing.
-- Contract: test/API.md "Split" (state 'planned'), preview, the SQLSTATE table.
BEGIN;
SELECT plan(46);

CREATE FUNCTION pg_temp.err(sql text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
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
SELECT hasnt_trigger('public', 'users', 'customer_unify_sync', 'split creates no sync trigger');
SELECT hasnt_schema('users_split_compat', 'split creates no compat schema');
SELECT is(ARRAY(SELECT attname::text FROM pg_attribute
                 WHERE attrelid = 'public.users'::regclass AND attnum > 0 AND NOT attisdropped
                 ORDER BY attnum),
          ARRAY['id', 'email', 'first_name', 'last_name', 'phone', 'created_at'],
          'split leaves the source columns alone');

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
                                     'p_ident', 'p_gen', 'p_view', 'p_again', 'p_empty', 'p_null', 'p_owner')$$,
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

SELECT * FROM finish();
ROLLBACK;

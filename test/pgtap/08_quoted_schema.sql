-- 08_quoted_schema.sql: sources and targets in schemas whose names need quoting,
-- target_schema, the default link column '<source table name>_id', a uuid key.
-- Contract: test/API.md split(target_schema => ..., default: the source's
-- schema; link_column default '<source table name>_id'; names taken literally).
-- Statements that touch the target go through pg_temp.call(), so a missing
-- target fails the assertions one by one instead of aborting the file.
BEGIN;
SELECT plan(30);

-- run a statement; its first column as text, or 'ERROR <sqlstate>: <message>'
CREATE FUNCTION pg_temp.call(sql text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE r text;
BEGIN
    EXECUTE sql INTO r;
    RETURN r;
EXCEPTION WHEN OTHERS THEN
    RETURN 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
END
$f$;

-- the id of a migration, and the name of one of its triggers
CREATE FUNCTION pg_temp.mid(mname text) RETURNS bigint LANGUAGE sql AS $f$
    SELECT id FROM customer_unify.migration WHERE name = mname
$f$;
CREATE FUNCTION pg_temp.tg(mname text, suffix text) RETURNS name LANGUAGE sql AS $f$
    SELECT ('customer_unify_' || pg_temp.mid(mname) || '_' || suffix)::name
$f$;

CREATE FUNCTION pg_temp.cols(rel text) RETURNS text[] LANGUAGE sql AS $f$
    SELECT ARRAY(SELECT attname::text FROM pg_attribute
                  WHERE attrelid = to_regclass(rel) AND attnum > 0 AND NOT attisdropped ORDER BY attnum)
$f$;

CREATE SCHEMA "Shop Data";
CREATE SCHEMA "Profile Store";
CREATE TABLE "Shop Data"."Customer List" (
    "Key"        uuid PRIMARY KEY,
    "Login"      text NOT NULL,
    "Nick Name"  text,
    "Notes"      text DEFAULT 'none'
);
CREATE TABLE "Shop Data"."Order Notes" (id bigint PRIMARY KEY, "Body" text);

-- ---------------------------------------------------------------- explicit target_schema
SELECT is(pg_temp.call($$SELECT customer_unify.split(
                      name          => 'store split',
                      source        => '"Shop Data"."Customer List"'::regclass,
                      target        => 'Details',
                      columns       => ARRAY['Nick Name', 'Notes'],
                      target_schema => 'Profile Store') IS NOT NULL$$), 'true',
          'split a table of schema "Shop Data" into schema "Profile Store"');
SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'store split'), 'planned',
          'the migration is planned');
SELECT hasnt_table('Profile Store', 'Details', 'split creates nothing');
SELECT is(pg_temp.call($$SELECT customer_unify.start('store split')$$), 'started', 'start() returns started');
SELECT has_table('Profile Store', 'Details', 'the target is "Profile Store"."Details"');
SELECT hasnt_table('Shop Data', 'Details', 'the target is not in the source schema');
SELECT is(pg_temp.cols('"Profile Store"."Details"'), ARRAY['Customer List_id', 'Nick Name', 'Notes'],
          'target columns: the default link column "Customer List_id", then the moved columns');
SELECT col_type_is('Profile Store', 'Details', 'Customer List_id', 'uuid', 'the link column has the uuid key type');
SELECT col_is_pk('Profile Store', 'Details', 'Customer List_id', 'the link column is the primary key');
SELECT col_default_is('Profile Store', 'Details', 'Notes', 'none'::text, '"Notes" keeps its default');
SELECT trigger_is('Shop Data', 'Customer List', pg_temp.tg('store split', 'sync'), 'customer_unify', 'mirror_row',
                  'sync trigger on "Shop Data"."Customer List"');
SELECT trigger_is('Profile Store', 'Details', pg_temp.tg('store split', 'sync'), 'customer_unify', 'mirror_row',
                  'sync trigger on "Profile Store"."Details"');
SELECT is((SELECT count(*) FROM pg_trigger
            WHERE tgrelid IN ('"Shop Data"."Customer List"'::regclass, '"Profile Store"."Details"'::regclass)
              AND tgname LIKE 'customer\_unify%' AND tgenabled = 'A'),
          6::bigint, 'all six sync triggers across the quoted schemas, ALWAYS');
SELECT is((SELECT string_agg(format('%s:%s.%s', tag, nspname, relname), ', ' ORDER BY tag)
             FROM customer_unify.migration_relation WHERE migration_id = pg_temp.mid('store split')),
          'source:Shop Data.Customer List, target:Profile Store.Details',
          'migration_relation keeps the quoted schema and table names verbatim');
SELECT is((SELECT key_type::text FROM customer_unify.backfill_state WHERE migration_id = pg_temp.mid('store split')),
          'uuid', 'the checkpoint''s key type is uuid');

INSERT INTO "Shop Data"."Customer List" ("Key", "Login", "Nick Name")
VALUES ('00000000-0000-0000-0000-000000000001', 'ann', 'Annie'),
       ('00000000-0000-0000-0000-000000000002', 'bob', NULL);
SELECT is(pg_temp.call($$SELECT string_agg(format('%s|%s|%s', "Customer List_id", "Nick Name", "Notes"), ';'
                                           ORDER BY "Customer List_id")
                           FROM "Profile Store"."Details"$$),
          '00000000-0000-0000-0000-000000000001|Annie|none;00000000-0000-0000-0000-000000000002||none',
          'rows written to the source reach the target across schemas');
SELECT is(pg_temp.call($$WITH u AS (UPDATE "Profile Store"."Details" SET "Notes" = 'vip'
                                     WHERE "Customer List_id" = '00000000-0000-0000-0000-000000000002' RETURNING 1)
                         SELECT count(*) FROM u$$), '1', 'UPDATE of the target');
SELECT is((SELECT "Notes" FROM "Shop Data"."Customer List" WHERE "Login" = 'bob'), 'vip',
          'target writes reach the source across schemas');
DELETE FROM "Shop Data"."Customer List" WHERE "Login" = 'ann';
SELECT is(pg_temp.call($$SELECT count(*) FROM "Profile Store"."Details"$$), '1', 'a source DELETE reaches the target');

SELECT is(pg_temp.call($$SELECT customer_unify.rollback('store split')$$), 'rolled_back', 'rollback()');
SELECT hasnt_table('Profile Store', 'Details', 'rollback drops the target');
SELECT hasnt_trigger('Shop Data', 'Customer List', pg_temp.tg('store split', 'sync'), 'rollback drops the source trigger');
SELECT is_empty($$SELECT tgrelid::regclass::text || ' ' || tgname FROM pg_trigger
                   WHERE tgrelid IN (to_regclass('"Shop Data"."Customer List"')) AND NOT tgisinternal
                     AND tgname LIKE 'customer\_unify%'$$,
                'no customer_unify trigger of any name is left on the source');
SELECT is((SELECT string_agg(format('%s|%s|%s', "Login", "Nick Name", "Notes"), ';' ORDER BY "Login")
             FROM "Shop Data"."Customer List"),
          'bob||vip', 'the source holds every value after rollback');

-- ---------------------------------------------------------------- default target_schema: the source's
SELECT is(pg_temp.call($$SELECT customer_unify.split('notes split', '"Shop Data"."Order Notes"'::regclass,
                                                     'Order Note Bodies', ARRAY['Body']) IS NOT NULL$$), 'true',
          'split without target_schema');
SELECT is(pg_temp.call($$SELECT customer_unify.start('notes split')$$), 'started', 'start() returns started');
SELECT has_table('Shop Data', 'Order Note Bodies', 'the target goes to the source schema "Shop Data"');
SELECT col_is_pk('Shop Data', 'Order Note Bodies', 'Order Notes_id', 'the default link column is "Order Notes_id"');
SELECT is(pg_temp.call($$SELECT customer_unify.rollback('notes split')$$), 'rolled_back', 'rollback()');
SELECT hasnt_table('Shop Data', 'Order Note Bodies', 'rollback drops the target');

SELECT * FROM finish();
ROLLBACK;

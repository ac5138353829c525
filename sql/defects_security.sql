-- Security of the catalog and of the engine (1.1): the catalog is written
-- only through the API, which checks the caller; DDL names come from the
-- catalog; specific SQLSTATEs instead of internal errors.
SET client_min_messages = warning;
CREATE SCHEMA ds;
CREATE ROLE ds_alice;
CREATE ROLE ds_mallory;
GRANT USAGE, CREATE ON SCHEMA ds TO ds_alice, ds_mallory;
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO ds_alice, ds_mallory', current_database()); END $$;
SET ROLE ds_alice;
CREATE TABLE ds.alice_users (id int PRIMARY KEY, email text, nick text);
INSERT INTO ds.alice_users SELECT g, 'e' || g, 'n' || g FROM generate_series(1, 10) g;
SELECT customer_unify.split('ds_alice', 'ds.alice_users', 'alice_bits', ARRAY['nick']) > 0 AS planned;
RESET ROLE;

-------------------------------------------------------------------------------
-- 14. Nobody writes the catalog by hand: not another role (1.0 let it squat
--     a migration on someone else's table), not the owner (1.0 let it set
--     state and skip verify).
-------------------------------------------------------------------------------
SELECT t, has_table_privilege('public', t, 'INSERT') AS ins, has_table_privilege('public', t, 'UPDATE') AS upd,
       has_table_privilege('public', t, 'DELETE') AS del, has_table_privilege('public', t, 'SELECT') AS sel
  FROM unnest(ARRAY['customer_unify.migration', 'customer_unify.step_log', 'customer_unify.backfill_state',
                    'customer_unify.migration_relation', 'customer_unify.step', 'customer_unify.sync_map',
                    'customer_unify.sync_map_column', 'customer_unify.operation']::regclass[]) t;
SET ROLE ds_mallory;
SELECT regress_util.try($$INSERT INTO customer_unify.migration (name, kind, spec, source, owner)
                          VALUES ('squat', 'split', '{}', 'ds.alice_users', 'ds_mallory')$$) AS squat;
SELECT regress_util.try($$DELETE FROM customer_unify.migration$$) AS delete_others;
SELECT regress_util.try($$SELECT customer_unify.split('squat', 'ds.alice_users', 'x_bits', ARRAY['nick'])$$) AS plan_others;
SELECT regress_util.try(format('SELECT customer_unify._create_migration(%L, %L, %L)', 'split', 'squat2',
                               jsonb_build_object('source', 'ds.alice_users'::regclass::oid, 'target', 't', 'columns', ARRAY['nick'])))
       AS create_directly;
SELECT regress_util.try(format('SELECT customer_unify._run_phase(%s, %L)', id, 'start')) AS run_others_phase
  FROM customer_unify.migration WHERE name = 'ds_alice';
SELECT regress_util.try($$SELECT customer_unify.start('ds_alice')$$) AS start_others;
SELECT regress_util.try($$SELECT * FROM customer_unify.verify('ds_alice')$$) AS verify_others;
SELECT regress_util.try($$SELECT customer_unify.rollback('ds_alice')$$) AS rollback_others;
SELECT count(*) AS can_read_the_catalog FROM customer_unify.migration WHERE name = 'ds_alice';
RESET ROLE;
SET ROLE ds_alice;
SELECT regress_util.try($$UPDATE customer_unify.migration SET state = 'verified' WHERE name = 'ds_alice'$$) AS owner_sets_state;
SELECT regress_util.try($$UPDATE customer_unify.migration SET spec = jsonb_set(spec, '{key_type}', '"int); DROP TABLE ds.alice_users; --"') WHERE name = 'ds_alice'$$) AS owner_edits_spec;
SELECT regress_util.try($$INSERT INTO customer_unify.step_log (migration_id, phase, seq, statement, outcome) SELECT id, 'start', 99, 'x', 'ok' FROM customer_unify.migration WHERE name = 'ds_alice'$$) AS owner_logs;
SELECT regress_util.try($$SELECT customer_unify._run_phase(id, 'validate') FROM customer_unify.migration WHERE name = 'ds_alice'$$) AS internal_phase;
SELECT regress_util.try($$SELECT customer_unify._run_phase(id, 'no_such_phase') FROM customer_unify.migration WHERE name = 'ds_alice'$$) AS unknown_phase;
SELECT regress_util.try($$SELECT customer_unify._create_migration('no_such_kind', 'x', '{}')$$) AS unknown_kind;
-- the owner runs the migration through the API; the state follows the phases only
SELECT customer_unify.start('ds_alice');
SELECT regress_util.try($$SELECT customer_unify.cutover('ds_alice', skip_verify => true)$$) AS cutover_before_backfill;
CALL customer_unify.backfill('ds_alice');
SELECT state FROM customer_unify.migration WHERE name = 'ds_alice';
RESET ROLE;
-- what the owner role ran as: every object is its own
SELECT pg_get_userbyid(relowner) AS target_owner FROM pg_class WHERE oid = 'ds.alice_bits'::regclass;
SELECT customer_unify.rollback('ds_alice');

-- identifiers and type names in DDL come from the catalog: a key of a
-- domain with a name that needs quoting in a schema that needs quoting
CREATE SCHEMA "Odd Types";
CREATE DOMAIN "Odd Types"."Key; Dom" AS int CHECK (VALUE > 0);
CREATE TABLE ds.odd (id "Odd Types"."Key; Dom" PRIMARY KEY, nick text);
INSERT INTO ds.odd VALUES (1, 'one'), (2, 'two');
SELECT customer_unify.split('ds_odd', 'ds.odd', 'odd_bits', ARRAY['nick']) > 0 AS planned;
SELECT customer_unify.start('ds_odd');
SELECT format_type(atttypid, atttypmod) AS link_type FROM pg_attribute WHERE attrelid = 'ds.odd_bits'::regclass AND attname = 'odd_id';
CALL customer_unify.backfill('ds_odd');
SELECT count(*) AS failing FROM customer_unify.verify('ds_odd') WHERE NOT ok;
SELECT customer_unify.rollback('ds_odd');

-------------------------------------------------------------------------------
-- 16. Refused up front, not halfway: an owner that cannot create the
--     compatibility schema (1.0 failed at cutover); a rollback after the
--     source was dropped keeps the target, the only copy of the moved
--     columns (1.0 dropped it).
-------------------------------------------------------------------------------
CREATE ROLE ds_nocreate;
GRANT USAGE, CREATE ON SCHEMA ds TO ds_nocreate;
SET ROLE ds_nocreate;
CREATE TABLE ds.nocreate (id int PRIMARY KEY, nick text);
SELECT regress_util.try_detail($$SELECT customer_unify.split('ds_nocreate', 'ds.nocreate', 'nocreate_bits', ARRAY['nick'])$$);
RESET ROLE;
DROP TABLE ds.nocreate;
CREATE TABLE ds.dropped (id int PRIMARY KEY, nick text);
INSERT INTO ds.dropped VALUES (1, 'only copy');
SELECT customer_unify.split('ds_dropped', 'ds.dropped', 'dropped_bits', ARRAY['nick']) > 0 AS planned;
SELECT customer_unify.start('ds_dropped');
CALL customer_unify.backfill('ds_dropped');
SELECT regress_util.try('DROP TABLE ds.dropped CASCADE') AS guard_refuses;
-- a superuser goes around the guard (both of its event triggers)
ALTER EVENT TRIGGER customer_unify_guard_drop DISABLE;
SELECT regress_util.try('DROP TABLE ds.dropped CASCADE') AS still_refused;
ALTER EVENT TRIGGER customer_unify_guard_ddl DISABLE;
DROP TABLE ds.dropped CASCADE;
ALTER EVENT TRIGGER customer_unify_guard_ddl ENABLE;
ALTER EVENT TRIGGER customer_unify_guard_drop ENABLE;
SET client_min_messages = notice;
SELECT customer_unify.rollback('ds_dropped');
SET client_min_messages = warning;
SELECT * FROM ds.dropped_bits;
-- the same from cut_over: the compatibility view went with the CASCADE and
-- holds no data, so only the target is kept
CREATE TABLE ds.dropped2 (id int PRIMARY KEY, nick text);
INSERT INTO ds.dropped2 VALUES (1, 'only copy');
SELECT customer_unify.split('ds_dropped2', 'ds.dropped2', 'dropped2_bits', ARRAY['nick']) > 0 AS planned;
SELECT customer_unify.start('ds_dropped2');
CALL customer_unify.backfill('ds_dropped2');
SELECT customer_unify.cutover('ds_dropped2');
SELECT count(*) AS compat_schemas FROM pg_namespace WHERE nspname LIKE '%dropped2%';
SELECT r.relid AS source_now FROM customer_unify.migration_relation r JOIN customer_unify.migration m ON m.id = r.migration_id
 WHERE m.name = 'ds_dropped2' AND r.role = 'source';
ALTER EVENT TRIGGER customer_unify_guard_drop DISABLE;
ALTER EVENT TRIGGER customer_unify_guard_ddl DISABLE;
DO $$ BEGIN EXECUTE format('DROP TABLE %s CASCADE', (SELECT r.relid::regclass FROM customer_unify.migration_relation r
  JOIN customer_unify.migration m ON m.id = r.migration_id WHERE m.name = 'ds_dropped2' AND r.role = 'source')); END $$;
ALTER EVENT TRIGGER customer_unify_guard_ddl ENABLE;
ALTER EVENT TRIGGER customer_unify_guard_drop ENABLE;
SET client_min_messages = notice;
SELECT customer_unify.rollback('ds_dropped2');
SET client_min_messages = warning;
SELECT * FROM ds.dropped2_bits;
SELECT count(*) AS live_relations FROM customer_unify.migration_relation r JOIN customer_unify.migration m ON m.id = r.migration_id
 WHERE m.name = 'ds_dropped2' AND r.live;
SELECT count(*) AS compat_schemas_left FROM pg_namespace WHERE nspname LIKE '%dropped2%';

-------------------------------------------------------------------------------
-- 18. Errors a user can reach have specific SQLSTATEs (1.0: XX000).
-------------------------------------------------------------------------------
CREATE TABLE ds.t18 (id int PRIMARY KEY, v text);
SELECT regress_util.try($$CREATE TRIGGER bad AFTER INSERT ON ds.t18 FOR EACH ROW EXECUTE FUNCTION customer_unify.mirror_row()$$) AS no_args_created;
SELECT regress_util.try($$INSERT INTO ds.t18 VALUES (1, 'x')$$) AS no_args;
DROP TRIGGER bad ON ds.t18;
CREATE TRIGGER bad AFTER INSERT ON ds.t18 FOR EACH ROW EXECUTE FUNCTION customer_unify.mirror_row('nine');
SELECT regress_util.try($$INSERT INTO ds.t18 VALUES (2, 'x')$$) AS not_a_map_id;
DROP TRIGGER bad ON ds.t18;
CREATE TRIGGER bad AFTER INSERT ON ds.t18 FOR EACH ROW EXECUTE FUNCTION customer_unify.mirror_row('999999');
SELECT regress_util.try($$INSERT INTO ds.t18 VALUES (3, 'x')$$) AS unknown_map;
DROP TRIGGER bad ON ds.t18;
CREATE TRIGGER bad BEFORE INSERT ON ds.t18 FOR EACH ROW EXECUTE FUNCTION customer_unify.mirror_row('1');
SELECT regress_util.try($$INSERT INTO ds.t18 VALUES (4, 'x')$$) AS before_trigger;
DROP TRIGGER bad ON ds.t18;
CREATE TRIGGER bad AFTER INSERT ON ds.t18 FOR EACH ROW EXECUTE FUNCTION customer_unify.compat_route('1');
SELECT regress_util.try($$INSERT INTO ds.t18 VALUES (5, 'x')$$) AS router_not_instead_of;
DROP TRIGGER bad ON ds.t18;
CREATE TRIGGER bad AFTER INSERT ON ds.t18 FOR EACH ROW EXECUTE FUNCTION customer_unify.mirror_flush('1');
SELECT regress_util.try($$INSERT INTO ds.t18 VALUES (6, 'x')$$) AS flush_per_row;
DROP TRIGGER bad ON ds.t18;
SELECT regress_util.try($$SELECT customer_unify.mirror_row()$$) AS called_directly;
-- the backfill of a migration whose target went missing behind the guard's back
CREATE TABLE ds.gone (id int PRIMARY KEY, nick text);
SELECT customer_unify.split('ds_gone', 'ds.gone', 'gone_bits', ARRAY['nick']) > 0 AS planned;
SELECT customer_unify.start('ds_gone');
ALTER EVENT TRIGGER customer_unify_guard_drop DISABLE;
ALTER EVENT TRIGGER customer_unify_guard_ddl DISABLE;
DROP TABLE ds.gone_bits;
ALTER EVENT TRIGGER customer_unify_guard_ddl ENABLE;
ALTER EVENT TRIGGER customer_unify_guard_drop ENABLE;
\set VERBOSITY terse
CALL customer_unify.backfill('ds_gone');
\set VERBOSITY default
SELECT regress_util.try($$INSERT INTO ds.gone VALUES (1, 'x')$$) AS write_without_target;
SELECT customer_unify.rollback('ds_gone');
INSERT INTO ds.gone VALUES (2, 'x');
-- A role may not borrow a migration's router for a view of its own: the
-- router writes as the tables' owner, so it refuses a view that is not the
-- migration's (1.1 map) or not owned by the tables' owner (1.0 arguments).
CREATE TABLE ds.signup (id int PRIMARY KEY, email text, is_admin boolean NOT NULL DEFAULT false, credit int DEFAULT 0);
GRANT INSERT (id, email), SELECT ON ds.signup TO ds_mallory;
GRANT USAGE ON SCHEMA ds TO ds_mallory;
SELECT customer_unify.split('ds_signup', 'ds.signup', 'signup_flags', ARRAY['is_admin', 'credit'], 'signup_id') > 0 AS planned;
CALL customer_unify.run('ds_signup', finalize => true);
SELECT s.id AS route_map FROM customer_unify.sync_map s JOIN customer_unify.migration m ON m.id = s.migration_id
 WHERE m.name = 'ds_signup' AND s.name = 'route' \gset
CREATE SCHEMA ds_m AUTHORIZATION ds_mallory;
SET ROLE ds_mallory;
SELECT regress_util.try($$INSERT INTO ds_signup_compat.signup (id, email, is_admin) VALUES (2, 'b', true)$$) AS own_view_refuses;
CREATE TABLE ds_m.mine (id int, email text, is_admin boolean, credit int);
CREATE VIEW ds_m.ev AS SELECT * FROM ds_m.mine;
\set ECHO none
SELECT format('CREATE TRIGGER r INSTEAD OF INSERT ON ds_m.ev FOR EACH ROW EXECUTE FUNCTION customer_unify.compat_route(%L)', :'route_map') \gexec
\set ECHO all
SELECT regexp_replace(regress_util.try($$INSERT INTO ds_m.ev VALUES (3, 'mallory', true, 1000000)$$), 'map \d+', 'map <id>') AS borrowed_map;
DROP TRIGGER r ON ds_m.ev;
CREATE TRIGGER r INSTEAD OF INSERT ON ds_m.ev FOR EACH ROW EXECUTE FUNCTION customer_unify.compat_view_route(
    '1', 'final', 'ds', 'signup', 'id', 'ds', 'signup_flags', 'signup_id', 'is_admin', 'credit');
SELECT regress_util.try($$INSERT INTO ds_m.ev VALUES (4, 'mallory', true, 1000000)$$) AS borrowed_tables;
RESET ROLE;
SELECT count(*) AS rows_written FROM ds_signup_compat.signup;
DROP SCHEMA ds_m CASCADE;

-- Bad input gets a specific SQLSTATE and a message naming the object, and
-- changes nothing.
SET client_min_messages = warning;
CREATE SCHEMA err;
SET search_path = err, public;
CREATE TABLE users (id int PRIMARY KEY, email text, first_name text, last_name text,
                    ident int GENERATED ALWAYS AS IDENTITY,
                    email_domain text GENERATED ALWAYS AS (split_part(email, '@', 2)) STORED);
CREATE TABLE nokey (id int, a text);
CREATE TABLE twokey (a int, b int, c text, PRIMARY KEY (a, b));
CREATE TABLE mixed_check (id int PRIMARY KEY, a int, b int, CHECK (a < b));
CREATE VIEW users_v AS SELECT * FROM users;
CREATE TABLE existing_target (x int);
INSERT INTO users (id, email, first_name, last_name) SELECT g, 'e' || g, 'f' || g, 'l' || g FROM generate_series(1, 10) g;
SELECT count(*) AS migrations_before FROM customer_unify.migration \gset

-- unknown table (regclass input)
SELECT regress_util.try($$SELECT customer_unify.split('e1', 'err.nope', 'p', ARRAY['first_name'])$$);
-- unknown column, with a name that would be SQL if spliced in
SELECT regress_util.try($$SELECT customer_unify.split('e1', 'err.users', 'p', ARRAY['first_name', 'x); DROP TABLE err.users; --'])$$);
SELECT regress_util.try($$SELECT customer_unify.split('e1', 'err.users', 'p', ARRAY['Email'])$$);
-- the key cannot move
SELECT regress_util.try($$SELECT customer_unify.split('e1', 'err.users', 'p', ARRAY['id'])$$);
-- duplicates and clashes
SELECT regress_util.try($$SELECT customer_unify.split('e1', 'err.users', 'p', ARRAY['first_name', 'first_name'])$$);
SELECT regress_util.try($$SELECT customer_unify.split('e1', 'err.users', 'p', ARRAY['first_name'], link_column => 'first_name')$$);
SELECT regress_util.try($$SELECT customer_unify.split('e1', 'err.users', 'p', ARRAY['first_name'], target_key => 'users_id')$$);
-- the target exists
SELECT regress_util.try($$SELECT customer_unify.split('e1', 'err.users', 'existing_target', ARRAY['first_name'])$$);
-- target schema missing
SELECT regress_util.try($$SELECT customer_unify.split('e1', 'err.users', 'p', ARRAY['first_name'], target_schema => 'no_such_schema')$$);
-- source without / with a composite primary key
SELECT regress_util.try($$SELECT customer_unify.split('e1', 'err.nokey', 'p', ARRAY['a'])$$);
SELECT regress_util.try($$SELECT customer_unify.split('e1', 'err.twokey', 'p', ARRAY['c'])$$);
-- a DEFERRABLE primary key (a foreign key cannot reference it): refused at plan time
CREATE TABLE err.defkey (id int PRIMARY KEY DEFERRABLE, a text);
SELECT regress_util.try_detail($$SELECT customer_unify.split('e1', 'err.defkey', 'p', ARRAY['a'])$$);
DROP TABLE err.defkey;
-- columns that cannot move
SELECT regress_util.try($$SELECT customer_unify.split('e1', 'err.users', 'p', ARRAY['ident'])$$);
SELECT regress_util.try($$SELECT customer_unify.split('e1', 'err.users', 'p', ARRAY['email_domain'])$$);
SELECT regress_util.try($$SELECT customer_unify.split('e1', 'err.users', 'p', ARRAY['email'])$$);
SELECT regress_util.try($$SELECT customer_unify.split('e1', 'err.mixed_check', 'p', ARRAY['a'])$$);
-- not a table
SELECT regress_util.try($$SELECT customer_unify.split('e1', 'err.users_v', 'p', ARRAY['first_name'])$$);
-- bad argument values
SELECT regress_util.try($$SELECT customer_unify.split('e1', 'err.users', 'p', ARRAY[]::text[])$$);
SELECT regress_util.try($$SELECT customer_unify.split(NULL, 'err.users', 'p', ARRAY['first_name'])$$);
SELECT regress_util.try($$SELECT customer_unify.split('', 'err.users', 'p', ARRAY['first_name'])$$);
SELECT regress_util.try($$SELECT customer_unify.split('e1', 'err.users', 'p', ARRAY['first_name', NULL])$$);
SELECT regress_util.try($$SELECT customer_unify.split(repeat('n', 60), 'err.users', 'p', ARRAY['first_name'])$$);
SELECT regress_util.try($$SELECT customer_unify.split('e1', 'err.users', repeat('t', 64), ARRAY['first_name'])$$);

-- a table the caller does not own
CREATE ROLE regress_cu_stranger;
GRANT USAGE ON SCHEMA err TO regress_cu_stranger;
GRANT ALL ON err.users TO regress_cu_stranger;
SET ROLE regress_cu_stranger;
SELECT regress_util.try($$SELECT customer_unify.split('e1', 'err.users', 'p', ARRAY['first_name'])$$);
RESET ROLE;

-- nothing was created by any of the above
SELECT count(*) = :migrations_before AS no_migration_recorded FROM customer_unify.migration;
SELECT to_regclass('err.p') IS NULL AS no_target_created;
SELECT count(*) AS users_rows FROM users;

-- a valid plan, then a second one on the same table, and a reused name
SELECT customer_unify.split('err_split', 'err.users', 'user_names', ARRAY['first_name', 'last_name'], link_column => 'user_id') > 0 AS planned;
SELECT regress_util.try($$SELECT customer_unify.split('err_split2', 'err.users', 'p2', ARRAY['first_name'])$$);
SELECT regress_util.try($$SELECT customer_unify.split('err_split', 'err.twokey', 'p3', ARRAY['c'])$$);
-- the stranger cannot drive someone else's migration
SET ROLE regress_cu_stranger;
SELECT regress_util.try($$SELECT customer_unify.start('err_split')$$);
SELECT regress_util.try($$SELECT customer_unify.rollback('err_split')$$);
RESET ROLE;

-- unknown migration
SELECT regress_util.try($$SELECT customer_unify.start('no_such_migration')$$);
SELECT regress_util.try($$SELECT * FROM customer_unify.verify('no_such_migration')$$);
SELECT regress_util.try($$SELECT * FROM customer_unify.preview(NULL)$$);
CALL customer_unify.backfill('no_such_migration');

-- phases out of order
SELECT regress_util.try($$SELECT customer_unify.cutover('err_split')$$);
SELECT regress_util.try($$SELECT customer_unify.finalize('err_split')$$);
SELECT regress_util.try($$SELECT * FROM customer_unify.verify('err_split')$$);
CALL customer_unify.backfill('err_split');
SELECT customer_unify.start('err_split');
SELECT regress_util.try($$SELECT customer_unify.start('err_split')$$);
SELECT regress_util.try($$SELECT customer_unify.cutover('err_split')$$);
SELECT regress_util.try($$SELECT customer_unify.cutover('err_split', skip_verify => true)$$);

-- backfill arguments and transaction blocks
CALL customer_unify.backfill('err_split', batch_size => 0);
CALL customer_unify.backfill('err_split', max_batches => 0);
CALL customer_unify.backfill('err_split', sleep_ms => -1);
CALL customer_unify.backfill(NULL);
BEGIN;
CALL customer_unify.backfill('err_split');
ROLLBACK;

CALL customer_unify.backfill('err_split');
-- writes to the new table that would break the 1:1 shape are refused
SELECT regress_util.try($$DELETE FROM err.user_names WHERE user_id = 1$$);
SELECT regress_util.try($$INSERT INTO err.user_names (user_id, first_name) VALUES (999, 'ghost')$$);
SELECT regress_util.try($$UPDATE err.user_names SET user_id = 998 WHERE user_id = 2$$);
SELECT count(*) AS user_names_rows FROM err.user_names;
-- session_replication_role = replica no longer goes behind the triggers' back
SET session_replication_role = replica;
UPDATE err.user_names SET last_name = 'replica' WHERE user_id = 3;
RESET session_replication_role;
SELECT last_name FROM err.users WHERE id = 3;
SELECT count(*) AS failing FROM customer_unify.verify('err_split') WHERE NOT ok;
-- verify catches a difference made behind the triggers' back (a superuser
-- switches the DDL guard off, then the sync trigger), and cutover refuses
SELECT format('ALTER TABLE err.user_names DISABLE TRIGGER %I', 'customer_unify_' || m.id || '_sync') AS disable_sync,
       format('ALTER TABLE err.user_names ENABLE ALWAYS TRIGGER %I', 'customer_unify_' || m.id || '_sync') AS enable_sync
  FROM customer_unify.migration m WHERE m.name = 'err_split' \gset
ALTER EVENT TRIGGER customer_unify_guard_ddl DISABLE;
:disable_sync;
UPDATE err.user_names SET last_name = 'tampered' WHERE user_id = 3;
:enable_sync;
ALTER EVENT TRIGGER customer_unify_guard_ddl ENABLE;
SELECT check_name, expected = actual AS same, ok FROM customer_unify.verify('err_split') WHERE NOT ok;
SELECT state FROM customer_unify.migration WHERE name = 'err_split';
SELECT regress_util.try_detail($$SELECT customer_unify.cutover('err_split')$$) LIKE '23000: verification of migration "err_split" failed%DETAIL: rows_differ:last_name: expected 0, got 1%' AS cutover_refused;
UPDATE err.users SET last_name = last_name WHERE id = 3;          -- no change: not mirrored
SELECT count(*) AS still_failing FROM customer_unify.verify('err_split') WHERE NOT ok;
UPDATE err.users SET last_name = 'l3-fixed' WHERE id = 3;         -- a real change is mirrored
SELECT count(*) AS failing FROM customer_unify.verify('err_split') WHERE NOT ok;
SELECT customer_unify.cutover('err_split');
SELECT regress_util.try($$SELECT customer_unify.cutover('err_split')$$);

-- the compat schema name is taken: a new plan is refused up front
CREATE TABLE other (id int PRIMARY KEY, v text);
CREATE SCHEMA taken_compat;
SELECT regress_util.try($$SELECT customer_unify.split('taken', 'err.other', 'other_v', ARRAY['v'])$$);

-- finalize refuses while a view reads a moved column, then succeeds; then no way back
SELECT regress_util.try_detail($$SELECT customer_unify.finalize('err_split')$$);
DROP VIEW users_v;
SELECT customer_unify.finalize('err_split');
SELECT regress_util.try($$SELECT customer_unify.rollback('err_split')$$);
SELECT regress_util.try($$SELECT customer_unify.finalize('err_split')$$);
SELECT regress_util.try($$SELECT * FROM customer_unify.verify('err_split')$$);

DROP OWNED BY regress_cu_stranger;
DROP ROLE regress_cu_stranger;
RESET search_path;

-- The rekey's bad input (1.3): each refusal with its SQLSTATE, before
-- anything is created; and its trigger called outside its contract.
SET client_min_messages = warning;
CREATE ROLE regress_rke_owner LOGIN;
CREATE ROLE regress_rke_other LOGIN;
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO regress_rke_owner', current_database()); END $$;
CREATE SCHEMA rke AUTHORIZATION regress_rke_owner;
GRANT USAGE ON SCHEMA rke TO regress_rke_other;
SET ROLE regress_rke_owner;
CREATE TABLE rke.parent (id bigint PRIMARY KEY, code text UNIQUE);
CREATE TABLE rke.child (parent_ptr_id bigint PRIMARY KEY REFERENCES rke.parent (id), note text);
CREATE TABLE rke.no_key (parent_ptr_id bigint REFERENCES rke.parent (id));
CREATE TABLE rke.two_keys (a bigint REFERENCES rke.parent (id), b int, PRIMARY KEY (a, b));
CREATE TABLE rke.text_key (code text PRIMARY KEY REFERENCES rke.parent (code));
CREATE TABLE rke.plain (id bigint PRIMARY KEY, parent_id bigint REFERENCES rke.parent (id));
CREATE TABLE rke.self_ref (parent_ptr_id bigint PRIMARY KEY REFERENCES rke.self_ref (parent_ptr_id));
CREATE TABLE rke.named (base bigint PRIMARY KEY REFERENCES rke.parent (id));
CREATE TABLE rke.has_id (parent_ptr_id bigint PRIMARY KEY REFERENCES rke.parent (id), id int);
CREATE TABLE rke.hist_ok (history_id serial PRIMARY KEY, parent_ptr_id bigint, note text);
CREATE TABLE rke.hist_nokey (history_id serial PRIMARY KEY, note text);
CREATE TABLE rke.hist_textid (history_id serial PRIMARY KEY, parent_ptr_id bigint, id text);
CREATE TABLE rke.hist_nopk (parent_ptr_id bigint);
CREATE VIEW rke.child_v AS SELECT * FROM rke.child;
CREATE INDEX child_id_key ON rke.plain (id);
RESET ROLE;
CREATE TABLE rke.hist_other (history_id serial PRIMARY KEY, parent_ptr_id bigint);
GRANT ALL ON rke.hist_other TO regress_rke_owner;

-- 1. who may plan it
SET ROLE regress_rke_other;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.child')$$) AS not_owner;
RESET ROLE;
SET ROLE regress_rke_owner;
SELECT regress_util.try($$SELECT customer_unify.rekey(NULL, 'rke.child')$$) AS null_name;
SELECT regress_util.try($$SELECT customer_unify.rekey('', 'rke.child')$$) AS empty_name;
SELECT regress_util.try($$SELECT customer_unify.rekey(repeat('n', 60), 'rke.child')$$) AS long_name;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.child_v')$$) AS a_view;

-- 2. not a child whose key is its parent link
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.no_key')$$) AS no_primary_key;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.two_keys')$$) AS composite_key;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.text_key', link_column => 'parent_code')$$) AS text_key;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.plain', link_column => 'p')$$) AS not_a_child;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.plain', parent_link => 'parent_id', link_column => 'p')$$) AS link_not_key;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.child', parent_link => 'nope')$$) AS no_such_column;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.self_ref')$$) AS self_reference;

-- 3. the new columns
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.named')$$) AS link_not_derivable;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.has_id')$$) AS key_exists;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.child', new_key => 'parent_id')$$) AS same_names;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.child', new_key => 'parent_ptr_id')$$) AS key_is_old_key;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.child', new_key => '')$$) AS empty_key;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.child', link_column => repeat('c', 64))$$) AS long_link;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.child')$$) AS index_name_taken;
DROP INDEX rke.child_id_key;
RESET ROLE;
CREATE SCHEMA rke_e_compat;
SET ROLE regress_rke_owner;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.child')$$) AS compat_schema_taken;
RESET ROLE;
DROP SCHEMA rke_e_compat;
SET ROLE regress_rke_owner;

-- 4. history tables
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.child', history => ARRAY['rke.child'::regclass])$$) AS history_is_source;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.child', history => ARRAY['rke.hist_nokey'::regclass])$$) AS history_without_key;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.child', history => ARRAY['rke.hist_textid'::regclass])$$) AS history_text_id;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.child', history => ARRAY['rke.hist_nopk'::regclass])$$) AS history_without_pk;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.child', history => ARRAY['rke.child_v'::regclass])$$) AS history_a_view;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.child', history => ARRAY['rke.hist_other'::regclass])$$) AS history_other_owner;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.child', history => ARRAY['rke.hist_ok', 'rke.hist_ok']::regclass[])$$) AS history_twice;

-- 5. references that cannot follow
RESET ROLE;
CREATE TABLE rke.orders_other (id bigint PRIMARY KEY, child_id bigint REFERENCES rke.child (parent_ptr_id));
SET ROLE regress_rke_owner;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.child')$$) AS reference_other_owner;
RESET ROLE;
DROP TABLE rke.orders_other;
SET ROLE regress_rke_owner;
CREATE TABLE rke.orders_part (id bigint, child_id bigint REFERENCES rke.child (parent_ptr_id)) PARTITION BY RANGE (id);
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.child')$$) AS reference_partitioned;
DROP TABLE rke.orders_part;
RESET ROLE;
DO $$ BEGIN EXECUTE format('REVOKE CREATE ON DATABASE %I FROM regress_rke_owner', current_database()); END $$;
SET ROLE regress_rke_owner;
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e', 'rke.child')$$) AS no_create_on_database;
RESET ROLE;
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO regress_rke_owner', current_database()); END $$;
SET ROLE regress_rke_owner;

-- nothing was created by any of them
SELECT count(*) AS migrations FROM customer_unify.migration WHERE name = 'rke_e';
SELECT count(*) AS new_columns FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'rke'::regnamespace AND a.attname IN ('id', 'parent_id') AND c.relname = 'child';

-- 6. a plan without history tables; a good plan, and a second one on the same table while it is live
SELECT customer_unify.rekey('rke_nohist', 'rke.has_id', new_key => 'own_id') > 0 AS planned_without_history;
SELECT spec->>'link_column' AS link, jsonb_array_length(spec->'history') AS histories FROM customer_unify.migration WHERE name = 'rke_nohist';
SELECT customer_unify.rekey('rke_e', 'rke.child', history => ARRAY['rke.hist_ok'::regclass]) > 0 AS planned;
SELECT customer_unify.start('rke_e');
SELECT regress_util.try($$SELECT customer_unify.rekey('rke_e2', 'rke.child', new_key => 'own_id', link_column => 'pid')$$) AS second_rekey;
SELECT customer_unify.rollback('rke_e');

-- 7. the trigger outside its contract
SELECT regress_util.try('SELECT customer_unify.rekey_sync()') AS not_a_trigger;
CREATE TABLE rke.t (a bigint, b bigint, c bigint);
CREATE TRIGGER wrong AFTER INSERT ON rke.t FOR EACH ROW EXECUTE FUNCTION customer_unify.rekey_sync('a', 'b', 'c');
SELECT regress_util.try('INSERT INTO rke.t VALUES (1, 1, 1)') AS after_trigger;
DROP TRIGGER wrong ON rke.t;
CREATE TRIGGER wrong BEFORE INSERT ON rke.t FOR EACH ROW EXECUTE FUNCTION customer_unify.rekey_sync('a', 'b');
SELECT regress_util.try('INSERT INTO rke.t VALUES (1, 1, 1)') AS two_arguments;
DROP TRIGGER wrong ON rke.t;
CREATE TRIGGER wrong BEFORE INSERT ON rke.t FOR EACH ROW EXECUTE FUNCTION customer_unify.rekey_sync('a', 'b', 'zz');
SELECT regress_util.try('INSERT INTO rke.t VALUES (1, 1, 1)') AS missing_column;
DROP TRIGGER wrong ON rke.t;
ALTER TABLE rke.t ADD COLUMN d text;
CREATE TRIGGER wrong BEFORE INSERT ON rke.t FOR EACH ROW EXECUTE FUNCTION customer_unify.rekey_sync('a', 'b', 'd');
SELECT regress_util.try($$INSERT INTO rke.t VALUES (1, 1, 1, '1')$$) AS text_column;
DROP TRIGGER wrong ON rke.t;
-- an int4 and an int8 column kept together
ALTER TABLE rke.t ADD COLUMN e int;
CREATE TRIGGER right_one BEFORE INSERT OR UPDATE ON rke.t FOR EACH ROW EXECUTE FUNCTION customer_unify.rekey_sync('a', 'e', 'c');
INSERT INTO rke.t (c) VALUES (42) RETURNING a, e, c;
UPDATE rke.t SET a = 43 WHERE c = 42 RETURNING a, e, c;
UPDATE rke.t SET c = 44 WHERE a = 43 RETURNING a, e, c;
RESET ROLE;
DROP SCHEMA rke CASCADE;
DO $$ BEGIN EXECUTE format('REVOKE CREATE ON DATABASE %I FROM regress_rke_owner', current_database()); END $$;
DROP ROLE regress_rke_owner, regress_rke_other;

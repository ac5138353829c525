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

-- 8. names that need quoting (schema, tables, every column), an
-- application BEFORE trigger on the table, the whole way to finalize
CREATE SCHEMA "Rk Q";
CREATE TABLE "Rk Q"."Users" ("Id" bigint PRIMARY KEY, name text);
CREATE TABLE "Rk Q"."Cust ""Omer""" ("Users_ptr_id" bigint PRIMARY KEY REFERENCES "Rk Q"."Users" ("Id"), "Full Name" text,
                                     "Touched" int NOT NULL DEFAULT 0);
CREATE TABLE "Rk Q"."Or-ders" (id bigint PRIMARY KEY, "Cust Id" bigint REFERENCES "Rk Q"."Cust ""Omer""" ("Users_ptr_id"));
CREATE FUNCTION "Rk Q".touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW."Touched" := NEW."Touched" + 1; RETURN NEW; END $$;
CREATE TRIGGER "a app trigger" BEFORE INSERT OR UPDATE ON "Rk Q"."Cust ""Omer""" FOR EACH ROW EXECUTE FUNCTION "Rk Q".touch();
INSERT INTO "Rk Q"."Users" SELECT g, 'u' || g FROM generate_series(1, 30) g;
INSERT INTO "Rk Q"."Cust ""Omer""" ("Users_ptr_id", "Full Name") SELECT g, 'c' || g FROM generate_series(1, 20) g;
INSERT INTO "Rk Q"."Or-ders" SELECT g, g FROM generate_series(1, 20) g;
SELECT customer_unify.rekey('rke "quoted"', '"Rk Q"."Cust ""Omer"""', new_key => 'Own Id', link_column => 'Users Id') > 0 AS planned;
SELECT customer_unify.start('rke "quoted"');
INSERT INTO "Rk Q"."Cust ""Omer""" ("Users Id", "Full Name") VALUES (21, 'new shape') RETURNING "Own Id", "Users_ptr_id", "Touched";
CALL customer_unify.backfill('rke "quoted"');
SELECT customer_unify.launch('rke "quoted"', until => 'verified');
RESET ROLE;
CALL regress_util.wait_job('rke "quoted"', $$j.state IN ('finished', 'failed')$$);
SET ROLE regress_rke_owner;
SELECT state, last_error FROM customer_unify.jobs WHERE name = 'rke "quoted"';
SELECT customer_unify.cutover('rke "quoted"');
SELECT customer_unify.finalize('rke "quoted"');
SELECT pg_get_constraintdef(c.oid) AS definition FROM pg_constraint c
 WHERE c.conrelid IN ('"Rk Q"."Cust ""Omer"""'::regclass, '"Rk Q"."Or-ders"'::regclass) ORDER BY 1;
-- the application's trigger saw the backfill's UPDATE of each old row once (a known limitation)
SELECT "Touched", count(*) FROM "Rk Q"."Cust ""Omer""" GROUP BY 1 ORDER BY 1;
SELECT count(*) AS orders_by_new_key FROM "Rk Q"."Or-ders" o JOIN "Rk Q"."Cust ""Omer""" c ON c."Own Id" = o."Cust Id";
DROP SCHEMA "Rk Q", "rke ""quoted""_compat" CASCADE;
RESET ROLE;
DROP SCHEMA rke CASCADE;
DO $$ BEGIN EXECUTE format('REVOKE CREATE ON DATABASE %I FROM regress_rke_owner', current_database()); END $$;
DROP ROLE regress_rke_owner, regress_rke_other;

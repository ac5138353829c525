-- The rekey (1.3) on seed 000's schema rebuilt by hand: a Django
-- multi-table-inheritance child users_customer (user_ptr_id PK -> users_user)
-- with its django-simple-history table, orders that reference it and
-- wallets that reference the parent.  Both application shapes write while
-- it runs; rollback leaves schema and data as they were; finalize leaves
-- users_customer(id PK, user_id UNIQUE NOT NULL -> users_user).
SET client_min_messages = warning;
CREATE ROLE regress_rk_owner LOGIN;
CREATE ROLE regress_rk_app LOGIN;
CREATE ROLE regress_rk_hist LOGIN;
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO regress_rk_owner', current_database()); END $$;
CREATE SCHEMA rk AUTHORIZATION regress_rk_owner;
GRANT USAGE ON SCHEMA rk TO regress_rk_app, regress_rk_hist;
SET ROLE regress_rk_owner;
CREATE TABLE rk.users_user (id bigserial PRIMARY KEY, username varchar(150) NOT NULL UNIQUE,
                            email varchar(254) NOT NULL DEFAULT '', password varchar(128) NOT NULL DEFAULT '!');
CREATE TABLE rk.users_customer (
    user_ptr_id  bigint PRIMARY KEY REFERENCES rk.users_user (id) DEFERRABLE INITIALLY DEFERRED,
    phone_number varchar(128) UNIQUE,
    full_name    varchar(255) NOT NULL DEFAULT '',
    is_verified  boolean NOT NULL DEFAULT false);
CREATE TABLE rk.users_historicalcustomer (
    history_id   serial PRIMARY KEY,
    id           bigint NOT NULL,
    username     varchar(150) NOT NULL,
    email        varchar(254) NOT NULL,
    password     varchar(128) NOT NULL,
    user_ptr_id  bigint,
    phone_number varchar(128),
    full_name    varchar(255) NOT NULL,
    is_verified  boolean NOT NULL,
    history_date timestamptz NOT NULL DEFAULT '2026-01-01',
    history_type varchar(1) NOT NULL);
CREATE INDEX ON rk.users_historicalcustomer (id);
CREATE TABLE rk.shop_order (id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES rk.users_customer (user_ptr_id) DEFERRABLE INITIALLY DEFERRED, total numeric NOT NULL);
CREATE TABLE rk.shop_wallet (id bigserial PRIMARY KEY, user_id bigint NOT NULL UNIQUE REFERENCES rk.users_user (id), balance numeric);
INSERT INTO rk.users_user (username, email) SELECT 'u' || g, 'u' || g || '@example.com' FROM generate_series(1, 300) g;
INSERT INTO rk.users_customer SELECT id, '+1555' || lpad(id::text, 7, '0'), 'Name ' || id, id % 2 = 0 FROM rk.users_user WHERE id % 3 <> 0;
INSERT INTO rk.users_historicalcustomer (id, username, email, password, user_ptr_id, phone_number, full_name, is_verified, history_type)
SELECT c.user_ptr_id, u.username, u.email, u.password, c.user_ptr_id, c.phone_number, c.full_name, c.is_verified, '+'
  FROM rk.users_customer c JOIN rk.users_user u ON u.id = c.user_ptr_id;
INSERT INTO rk.shop_order (customer_id, total) SELECT user_ptr_id, g FROM rk.users_customer, generate_series(1, 2) g;
INSERT INTO rk.shop_wallet (user_id, balance) SELECT id, 0 FROM rk.users_user;
GRANT SELECT, INSERT, UPDATE, DELETE ON rk.users_user, rk.users_customer, rk.users_historicalcustomer, rk.shop_order TO regress_rk_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA rk TO regress_rk_app, regress_rk_hist;
-- a role that writes and reads the history only
GRANT SELECT, INSERT ON rk.users_historicalcustomer TO regress_rk_hist;
-- the application sees verified customers only (row-level security)
ALTER TABLE rk.users_customer ENABLE ROW LEVEL SECURITY;
CREATE POLICY verified_only ON rk.users_customer TO regress_rk_app USING (is_verified) WITH CHECK (is_verified);
RESET ROLE;
CREATE TABLE regress_util.rk_before AS
SELECT r::text AS rel, regress_util.shape(r) AS shape, regress_util.fingerprint(r) AS data
  FROM unnest(ARRAY['rk.users_customer', 'rk.users_historicalcustomer', 'rk.shop_order', 'rk.shop_wallet']::regclass[]) r;
GRANT SELECT ON regress_util.rk_before TO PUBLIC;

-- 1. the plan: what follows the new key, what stays on the parent
SET ROLE regress_rk_owner;
SELECT customer_unify.rekey('rk_back', 'rk.users_customer', history => ARRAY['rk.users_historicalcustomer'::regclass]) > 0 AS planned;
SELECT object_type, object_name, dependency, blocks_finalize FROM customer_unify.dependents('rk_back') ORDER BY 1, 2;
-- (migration ids and the parent's OID masked: they depend on the tests before)
SELECT phase, step, regexp_replace(regexp_replace(regexp_replace(statement, 'customer_unify_\d+_', 'customer_unify_N_', 'g'),
                                                  '_gate_verify\(\d+\)', '_gate_verify(N)'), '''\d+'', ''id''', '''<parent oid>'', ''id''') AS statement
  FROM customer_unify.preview('rk_back') WHERE phase IN ('start', 'cutover') ORDER BY phase DESC, step;

-- 2. start, then both application shapes write (as the application's role)
SELECT customer_unify.start('rk_back');
RESET ROLE;
SET ROLE regress_rk_app;
-- v1 (the MTI model) through the compatibility schema: the parent, then the child by user_ptr_id
SET search_path = rk_back_compat, rk;
INSERT INTO users_user (username) VALUES ('v1_during') RETURNING id AS v1_user \gset
INSERT INTO users_customer (user_ptr_id, full_name, is_verified) VALUES (:v1_user, 'v1 during', true) RETURNING user_ptr_id = :v1_user AS v1_insert;
SELECT count(*) AS v1_sees_verified_only FROM users_customer WHERE NOT is_verified;
RESET search_path;
-- v2 (own id, user_id): the trigger gives id and user_ptr_id
INSERT INTO rk.users_user (username) VALUES ('v2_during') RETURNING id AS v2_user \gset
INSERT INTO rk.users_customer (user_id, full_name, is_verified) VALUES (:v2_user, 'v2 during', true)
RETURNING id = :v2_user AS id_is_user, user_ptr_id = :v2_user AS ptr_is_user;
-- v2's history row leaves out the columns the MTI history copied from the parent: filled from it
INSERT INTO rk.users_historicalcustomer (id, user_id, full_name, is_verified, history_type)
VALUES (:v2_user, :v2_user, 'v2 during', true, '+') RETURNING user_ptr_id = :v2_user AS ptr, username, email, password;
-- an update of the link through either shape moves the others
UPDATE rk.users_customer SET full_name = 'v2 renamed' WHERE id = :v2_user RETURNING full_name;
-- disagreeing values are refused before the row is stored
SELECT regress_util.try(format('INSERT INTO rk.users_customer (user_ptr_id, user_id, is_verified) VALUES (%s, %s, true)', :v1_user + 1000, :v1_user)) AS disagree;
SELECT regress_util.try(format('INSERT INTO rk.users_customer (user_ptr_id, id, is_verified) VALUES (%s, %s, true)', :v1_user, :v1_user + 7)) AS id_not_user;
RESET ROLE;
-- the parent's columns are read as the writer: a role that may not read
-- users_user cannot read its password through a history row it writes
SET ROLE regress_rk_hist;
SELECT regress_util.try(format($$INSERT INTO rk.users_historicalcustomer (id, user_id, full_name, is_verified, history_type) VALUES (%s, %s, 'x', true, '+')$$,
                               :v1_user, :v1_user)) AS history_without_parent_rights;
RESET ROLE;
SET ROLE regress_rk_app;
-- row-level security holds for the new shape as for the old
SELECT regress_util.try(format('INSERT INTO rk.users_customer (user_id, is_verified) VALUES (%s, false)', :v2_user)) AS rls_check;
RESET ROLE;

-- 3. the DDL guard keeps the columns the trigger names
SET ROLE regress_rk_owner;
SELECT regress_util.try('ALTER TABLE rk.users_customer DROP COLUMN user_id') AS drop_link;
SELECT regress_util.try('ALTER TABLE rk.users_customer RENAME COLUMN id TO customer_id') AS rename_key;
SELECT regress_util.try('ALTER TABLE rk.users_historicalcustomer DROP COLUMN user_ptr_id') AS drop_history_key;
SELECT regexp_replace(regress_util.try(format('ALTER TABLE rk.users_customer DISABLE TRIGGER %I', t.tgname)), 'customer_unify_\d+_', 'customer_unify_N_') AS disable_trigger
  FROM pg_trigger t WHERE t.tgrelid = 'rk.users_customer'::regclass AND t.tgname LIKE 'customer\_unify\_%\_rekey';

-- 4. backfill; the unique indexes are the job's (CREATE INDEX CONCURRENTLY)
CALL customer_unify.backfill('rk_back', batch_size => 50);
SELECT regexp_replace(check_name, 'customer_unify_\d+_', 'customer_unify_N_') AS check_name, expected, actual, ok
  FROM customer_unify.verify('rk_back') ORDER BY 1;
SELECT regress_util.try($$SELECT customer_unify.cutover('rk_back')$$) AS cutover_before_indexes;
SELECT customer_unify.launch('rk_back', until => 'verified');
RESET ROLE;
CALL regress_util.wait_job('rk_back', $$j.state IN ('finished', 'failed')$$);
SELECT state, last_error FROM customer_unify.jobs WHERE name = 'rk_back';
SELECT state FROM customer_unify.migration WHERE name = 'rk_back';
SELECT bool_and(ok) AS all_ok, count(*) AS checks FROM customer_unify.verify('rk_back');
SET ROLE regress_rk_owner;
SELECT customer_unify.cutover('rk_back');
SELECT conname, convalidated FROM pg_constraint WHERE conrelid IN ('rk.users_customer'::regclass, 'rk.shop_order'::regclass) ORDER BY 1;
-- references stay checked (by the old foreign key and its twin on id)
SELECT regress_util.try('INSERT INTO rk.shop_order (customer_id, total) VALUES (999999, 1); SET CONSTRAINTS ALL IMMEDIATE') AS dangling;

-- 5. rollback from cut_over: schema and old data as they were (the rows the
-- applications wrote meanwhile stay, in the old shape)
SELECT customer_unify.rollback('rk_back');
RESET ROLE;
DELETE FROM rk.users_historicalcustomer WHERE full_name LIKE 'v_ during' OR full_name LIKE 'v2 renamed';
DELETE FROM rk.users_customer WHERE full_name IN ('v1 during', 'v2 during', 'v2 renamed');
SELECT b.rel, b.shape = regress_util.shape(b.rel::regclass) AS same_shape, b.data = regress_util.fingerprint(b.rel::regclass) AS same_data
  FROM regress_util.rk_before b ORDER BY b.rel;
SELECT regress_util.shape('rk.users_historicalcustomer') AS history_after_rollback;
SELECT count(*) AS compat_schema FROM pg_namespace WHERE nspname = 'rk_back_compat';

-- 6. the whole way: start, writes, backfill, job, cutover, finalize
SET ROLE regress_rk_owner;
SELECT customer_unify.rekey('rk_key', 'rk.users_customer', history => ARRAY['rk.users_historicalcustomer'::regclass]) > 0 AS planned;
SELECT customer_unify.launch('rk_key', until => 'cut_over');
RESET ROLE;
CALL regress_util.wait_job('rk_key', $$j.state IN ('finished', 'failed')$$);
SELECT state, last_error FROM customer_unify.jobs WHERE name = 'rk_key';
SET ROLE regress_rk_app;
INSERT INTO rk.users_user (username) VALUES ('v2_cut') RETURNING id AS v2_cut \gset
INSERT INTO rk.users_customer (user_id, is_verified) VALUES (:v2_cut, true) RETURNING id = :v2_cut AS same_id;
INSERT INTO rk.shop_order (customer_id, total) VALUES (:v2_cut, 5);
RESET ROLE;
SET ROLE regress_rk_owner;
SELECT customer_unify.finalize('rk_key');
SELECT regress_util.shape('rk.users_customer') AS customer_after;
SELECT regress_util.shape('rk.shop_order') AS order_after;
SELECT regress_util.shape('rk.users_historicalcustomer') AS history_after;
SELECT regress_util.shape('rk.shop_wallet') = (SELECT shape FROM regress_util.rk_before WHERE rel = 'rk.shop_wallet') AS wallet_untouched;
-- every old id kept: orders still name the same customers, now by id
SELECT count(*) AS orders, count(*) FILTER (WHERE c.id IS NULL) AS dangling
  FROM rk.shop_order o LEFT JOIN rk.users_customer c ON c.id = o.customer_id;
SELECT count(*) FILTER (WHERE id <> user_id) AS id_not_user FROM rk.users_customer;
RESET ROLE;
SET ROLE regress_rk_app;
-- v2 after finalize: ids of their own, above every old one
INSERT INTO rk.users_user (username) VALUES ('v2_after') RETURNING id AS v2_after \gset
INSERT INTO rk.users_customer (user_id, is_verified) VALUES (:v2_after, true)
RETURNING id > (SELECT max(user_id) FROM rk.users_customer WHERE user_id <> :v2_after) AS own_id;
-- v1 after finalize: the view reads the link as user_ptr_id, inserts still work
SET search_path = rk_key_compat, rk;
INSERT INTO users_user (username) VALUES ('v1_after') RETURNING id AS v1_after \gset
INSERT INTO users_customer (user_ptr_id, full_name, is_verified) VALUES (:v1_after, 'v1 after', true) RETURNING user_ptr_id = :v1_after AS v1_insert;
SELECT count(*) AS v1_reads FROM users_customer c JOIN users_user u ON u.id = c.user_ptr_id WHERE u.username = 'v1_after';
RESET search_path;
RESET ROLE;
SELECT state FROM customer_unify.migration WHERE name = 'rk_key';
DROP TABLE regress_util.rk_before;
DO $$ BEGIN EXECUTE format('REVOKE CREATE ON DATABASE %I FROM regress_rk_owner', current_database()); END $$;

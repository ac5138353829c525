-- The whole split lifecycle on a users table modelled on seed 001:
-- plan, preview, start, concurrent writes, a paused and resumed backfill,
-- verify, cutover, writes through the compatibility view, finalize.
SET client_min_messages = notice;
CREATE SCHEMA app;
SET search_path = app, public;
CREATE TABLE users (
    id            bigserial PRIMARY KEY,
    email         text NOT NULL UNIQUE,
    password_hash text NOT NULL DEFAULT 'x',
    first_name    text NOT NULL DEFAULT '',
    last_name     text,
    phone         varchar(20) CHECK (phone ~ '^[0-9+]+$'),
    marketing_consent boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT '2024-01-01'
);
COMMENT ON COLUMN users.phone IS 'E.164 phone number';
CREATE INDEX users_phone_idx ON users (phone);
CREATE TABLE orders (id serial PRIMARY KEY, user_id bigint NOT NULL REFERENCES users (id), total numeric);
INSERT INTO users (email, first_name, last_name, phone, marketing_consent)
SELECT format('user%s@example.com', g), 'First' || g, CASE WHEN g % 7 <> 0 THEN 'Last' || g END,
       CASE WHEN g % 5 <> 0 THEN '+1555' || lpad(g::text, 7, '0') END, g % 2 = 0
  FROM generate_series(1, 1000) g;
INSERT INTO orders (user_id, total) SELECT g, g * 1.5 FROM generate_series(1, 1000, 10) g;
SELECT regress_util.fingerprint('users') AS users_before \gset

-- plan: validates, creates nothing
SELECT customer_unify.split('users_split', 'app.users', 'profiles',
                            ARRAY['first_name', 'last_name', 'phone', 'marketing_consent'],
                            link_column => 'user_id');
SELECT name, kind, state, source, spec FROM customer_unify.migration WHERE name = 'users_split';
SELECT to_regclass('app.profiles') IS NULL AS no_target_yet;
SELECT migration, state, target, columns, next_step FROM customer_unify.status('users_split');

-- preview: every statement, its lock and estimate
SELECT phase, step, lock_mode, statement FROM customer_unify.preview('users_split');

-- start (expand)
SELECT customer_unify.start('users_split');
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid) AS default
  FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = 'app.profiles'::regclass AND a.attnum > 0 ORDER BY a.attnum;
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'app.profiles'::regclass ORDER BY conname;
SELECT indexrelid::regclass, pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'app.profiles'::regclass ORDER BY 1;
SELECT col_description('app.profiles'::regclass, 4) AS phone_comment;
SELECT tgrelid::regclass, tgname FROM pg_trigger WHERE tgname LIKE 'customer_unify%' ORDER BY 1, 2;
-- the source is untouched
SELECT regress_util.fingerprint('users') = :'users_before' AS source_unchanged;

-- writes while live are mirrored (insert, update of a moved column, key change, delete)
INSERT INTO users (email, first_name, phone) VALUES ('new@example.com', 'New', '+15550000001');
UPDATE users SET first_name = 'Changed', phone = NULL WHERE id = 3;
UPDATE users SET email = 'kept-column-only@example.com' WHERE id = 4;
DELETE FROM users WHERE id = 7;
SELECT user_id, first_name, last_name, phone FROM profiles ORDER BY user_id;

-- writes to the new table's moved columns go back to the source
UPDATE profiles SET last_name = 'FromProfiles' WHERE user_id = 1001;
SELECT id, first_name, last_name FROM users WHERE id = 1001;

-- backfill: two batches, then pause; progress is checkpointed
CALL customer_unify.backfill('users_split', batch_size => 300, max_batches => 2);
SELECT state, rows_done, batches, last_key, finished_at IS NULL AS unfinished FROM customer_unify.progress WHERE name = 'users_split';
SELECT count(*) AS copied_so_far FROM profiles;
-- resume to the end
CALL customer_unify.backfill('users_split', batch_size => 300);
SELECT state, rows_done, batches, last_key, finished_at IS NOT NULL AS finished FROM customer_unify.progress WHERE name = 'users_split';
-- a further call is a no-op
CALL customer_unify.backfill('users_split');
SELECT conname, convalidated FROM pg_constraint WHERE conrelid = 'app.profiles'::regclass AND contype = 'f';

-- verify: every check passes and the state moves to verified
SELECT check_name, ok FROM customer_unify.verify('users_split');
SELECT count(*) FILTER (WHERE expected = actual) = count(*) AS expected_equals_actual FROM customer_unify.verify('users_split');
SELECT state FROM customer_unify.migration WHERE name = 'users_split';

-- cutover: the compatibility view has the old name and columns
SELECT customer_unify.cutover('users_split');
SELECT c.relname, c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'users_split_compat';
SELECT attname FROM pg_attribute WHERE attrelid = 'users_split_compat.users'::regclass AND attnum > 0 ORDER BY attnum;
SELECT regress_util.fingerprint('users_split_compat.users') = regress_util.fingerprint('app.users') AS view_equals_old_table;

SET search_path = users_split_compat, app, public;
SELECT id, email, first_name, last_name, phone FROM users WHERE id IN (1, 3, 1001) ORDER BY id;
INSERT INTO users (email, first_name, last_name, phone) VALUES ('via-view@example.com', 'Via', 'View', '+1999') RETURNING id, email, first_name, last_name, phone, marketing_consent;
UPDATE users SET last_name = 'Updated', email = 'renamed@example.com' WHERE id = 2 RETURNING id, email, first_name, last_name;
DELETE FROM users WHERE id = 5 RETURNING id, email, first_name;
UPDATE users SET last_name = 'nobody' WHERE id = -1 RETURNING id;
-- only a kept column, only a moved column, nothing, and the key itself
UPDATE users SET email = 'only-kept@example.com' WHERE id = 10 RETURNING id, email, first_name, phone;
UPDATE users SET phone = '+1000' WHERE id = 11 RETURNING id, email, first_name, phone;
UPDATE users SET phone = phone WHERE id = 12 RETURNING id, email, first_name, phone;
UPDATE users SET id = 5000 WHERE id = 13 RETURNING id, email, first_name, phone;
SET search_path = app, public;
SELECT id, email, first_name, last_name, phone FROM users WHERE id IN (2, 5, 10, 11, 13, 1002, 5000) ORDER BY id;
SELECT user_id, first_name, last_name, phone FROM profiles WHERE user_id IN (2, 5, 10, 11, 13, 1002, 5000) ORDER BY user_id;
SELECT check_name, ok FROM customer_unify.verify('users_split') WHERE NOT ok;

-- finalize: the moved columns leave the source; the view keeps working
SELECT customer_unify.finalize('users_split');
SELECT attname FROM pg_attribute WHERE attrelid = 'app.users'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;
SELECT tgrelid::regclass, tgname, tgargs <> '' AS has_args, tgenabled FROM pg_trigger WHERE tgname LIKE 'customer_unify%' ORDER BY 1, 2;
SET search_path = users_split_compat, app, public;
INSERT INTO users (email, first_name, phone) VALUES ('after-final@example.com', 'After', '+1888') RETURNING id, email, first_name, phone;
UPDATE users SET phone = '+1777', email = 'after-final2@example.com' WHERE email = 'after-final@example.com' RETURNING id, email, phone;
DELETE FROM users WHERE id = 6 RETURNING id, first_name;
SELECT count(*) AS view_rows, count(DISTINCT id) AS distinct_ids FROM users;
SET search_path = app, public;
SELECT count(*) AS profile_rows FROM profiles;
-- orders still reference every user they did
SELECT count(*) AS orphan_orders FROM orders o LEFT JOIN users u ON u.id = o.user_id WHERE u.id IS NULL;

-- the step log: every statement with its phase, lock and outcome
SELECT phase, seq, lock_mode, outcome, inverse IS NOT NULL AS has_inverse
  FROM customer_unify.step_log l JOIN customer_unify.migration m ON m.id = l.migration_id
 WHERE m.name = 'users_split' ORDER BY l.id;
SELECT migration, state, next_step FROM customer_unify.status('users_split');

-- one-shot run on another table
CREATE TABLE customers (id int PRIMARY KEY, name text, notes text);
INSERT INTO customers SELECT g, 'c' || g, CASE WHEN g % 3 = 0 THEN 'vip' END FROM generate_series(1, 50) g;
SELECT customer_unify.split('customers_notes', 'app.customers', 'customer_notes', ARRAY['notes']);
CALL customer_unify.run('customers_notes', batch_size => 20);
SELECT state FROM customer_unify.migration WHERE name = 'customers_notes';
CALL customer_unify.run('customers_notes', finalize => true);
SELECT state FROM customer_unify.migration WHERE name = 'customers_notes';
SELECT count(*), count(notes) FROM customer_notes;
SELECT attname FROM pg_attribute WHERE attrelid = 'app.customer_notes'::regclass AND attnum > 0 ORDER BY attnum;
RESET search_path;

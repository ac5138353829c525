-- The table kit's updated_at (1.3): a migration kind whose start adds a C
-- BEFORE UPDATE trigger that stamps the column only when another column
-- changed; errors with SQLSTATEs, the trigger's behaviour under each
-- option, the DDL guard, rollback and finalize.
SET client_min_messages = warning;
CREATE ROLE regress_kit_owner LOGIN;
CREATE ROLE regress_kit_other LOGIN;
CREATE ROLE regress_kit_writer LOGIN;
CREATE SCHEMA kit AUTHORIZATION regress_kit_owner;
GRANT USAGE ON SCHEMA kit TO regress_kit_other, regress_kit_writer;
SET ROLE regress_kit_owner;
CREATE TABLE kit.customers (
    id          bigint PRIMARY KEY,
    name        text NOT NULL,
    phone       text,
    score       numeric,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    touched_on  date,
    local_ts    timestamp,
    name_len    int GENERATED ALWAYS AS (length(name)) STORED
);
INSERT INTO kit.customers (id, name, phone, score, created_at, updated_at)
SELECT g, 'c' || g, '+1555000' || g, g, '2020-01-01 00:00+00', '2020-01-01 00:00+00' FROM generate_series(1, 5) g;
CREATE VIEW kit.customers_v AS SELECT * FROM kit.customers;
GRANT SELECT, UPDATE ON kit.customers TO regress_kit_writer;
RESET ROLE;

-- 1. bad input, each with its SQLSTATE, nothing created
SET ROLE regress_kit_other;
SELECT regress_util.try($$SELECT customer_unify.updated_at('k', 'kit.customers')$$) AS not_owner;
RESET ROLE;
SET ROLE regress_kit_owner;
SELECT regress_util.try($$SELECT customer_unify.updated_at(NULL, 'kit.customers')$$) AS null_name;
SELECT regress_util.try($$SELECT customer_unify.updated_at('k', 'kit.customers_v')$$) AS a_view;
DROP VIEW kit.customers_v;
SELECT regress_util.try($$SELECT customer_unify.updated_at('k', 'kit.customers', 'modified')$$) AS unknown_column;
SELECT regress_util.try($$SELECT customer_unify.updated_at('k', 'kit.customers', 'name')$$) AS not_a_timestamp;
SELECT regress_util.try($$SELECT customer_unify.updated_at('k', 'kit.customers', 'name_len')$$) AS generated;
SELECT regress_util.try($$SELECT customer_unify.updated_at('k', 'kit.customers', clock => 'wall')$$) AS bad_clock;
SELECT regress_util.try($$SELECT customer_unify.updated_at('k', 'kit.customers', created_column => 'updated_at')$$) AS same_columns;
SELECT regress_util.try($$SELECT customer_unify.updated_at('k', 'kit.customers', created_column => 'born')$$) AS unknown_created;
SELECT count(*) AS migrations FROM customer_unify.migration WHERE name = 'k';

-- 2. plan, preview, start: one trigger, a BEFORE UPDATE row trigger in C
SELECT customer_unify.updated_at('k', 'kit.customers', created_column => 'created_at') > 0 AS planned;
SELECT phase, step, regexp_replace(statement, '(customer_unify_|_gate_verify\()\d+', '\1N', 'g') AS statement, lock_mode FROM customer_unify.preview('k') ORDER BY phase, step;
SELECT customer_unify.start('k');
SELECT regexp_replace(t.tgname, 'customer_unify_\d+_', 'customer_unify_N_', 'g') AS tgname, regexp_replace(pg_get_triggerdef(t.oid), 'customer_unify_\d+_', 'customer_unify_N_', 'g') AS definition FROM pg_trigger t WHERE t.tgrelid = 'kit.customers'::regclass AND NOT t.tgisinternal;
RESET ROLE;

-- 3. the behaviour, transaction clock, explicit assignment kept
SET ROLE regress_kit_writer;
BEGIN;
UPDATE kit.customers SET phone = '+15559999' WHERE id = 1;                        -- a change: stamped
UPDATE kit.customers SET phone = phone, name = name WHERE id = 2;                 -- same values: not stamped
UPDATE kit.customers SET score = 3.0 WHERE id = 3;                                -- same number, other form: stamped
UPDATE kit.customers SET name = 'c4b', updated_at = '2021-06-01 00:00+00' WHERE id = 4;  -- explicit: kept
UPDATE kit.customers SET updated_at = '2022-02-02 00:00+00' WHERE id = 5;         -- only the stamp: kept
UPDATE kit.customers SET created_at = now(), name = 'c1b' WHERE id = 1;           -- protected: old value back
SELECT id, name, updated_at = now() AS stamped_now, nullif(updated_at, now()) AS kept_value, created_at FROM kit.customers ORDER BY id;
COMMIT;
RESET ROLE;

-- 4. the guard keeps the columns the trigger names while the migration is live
SET ROLE regress_kit_owner;
SELECT regress_util.try($$ALTER TABLE kit.customers RENAME COLUMN updated_at TO modified_at$$) AS rename_stamped;
SELECT regress_util.try($$ALTER TABLE kit.customers DROP COLUMN created_at$$) AS drop_protected;
SELECT regexp_replace(regress_util.try($$ALTER TABLE kit.customers DISABLE TRIGGER customer_unify_$$ || (SELECT id FROM customer_unify.migration WHERE name = 'k') || '_updated_at'), 'customer_unify_\d+_', 'customer_unify_N_', 'g') AS disable_trigger;

-- 5. verify: the trigger is there and fires after every other BEFORE UPDATE row trigger
SELECT regexp_replace(check_name, 'customer_unify_\d+_', 'customer_unify_N_', 'g') AS check_name, expected, actual, ok FROM customer_unify.verify('k');
CREATE FUNCTION kit.upper_name() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.name := upper(NEW.name); RETURN NEW; END $$;
CREATE TRIGGER zz_upper_name BEFORE UPDATE ON kit.customers FOR EACH ROW EXECUTE FUNCTION kit.upper_name();
SELECT regexp_replace(check_name, 'customer_unify_\d+_', 'customer_unify_N_', 'g') AS check_name, expected, actual, ok FROM customer_unify.verify('k');
SELECT * FROM customer_unify.dependents('k');
DROP TRIGGER zz_upper_name ON kit.customers;

-- 6. rollback removes the trigger; updates no longer stamp
SELECT customer_unify.rollback('k');
SELECT count(*) AS kit_triggers FROM pg_trigger t WHERE t.tgrelid = 'kit.customers'::regclass AND NOT t.tgisinternal;
UPDATE kit.customers SET phone = '+1' WHERE id = 2;
SELECT updated_at FROM kit.customers WHERE id = 2;

-- 7. statement clock, overwrite, timestamp and date columns, run to finalize
SELECT customer_unify.updated_at('k2', 'kit.customers', 'local_ts', clock => 'statement', keep_explicit => false) > 0 AS planned;
CALL customer_unify.run('k2', finalize => true);
SELECT state FROM customer_unify.migration WHERE name = 'k2';
BEGIN;
SELECT pg_sleep(0.01);
UPDATE kit.customers SET phone = '+2', local_ts = '1999-01-01' WHERE id = 2;     -- overwrite: the explicit value goes
SELECT local_ts > now()::timestamp AS statement_clock, local_ts <> '1999-01-01' AS overwritten FROM kit.customers WHERE id = 2;
COMMIT;
-- a finalized kit leaves its trigger and frees the table; a second updated_at trigger is refused
SELECT t.tgname = 'customer_unify_' || (SELECT id FROM customer_unify.migration WHERE name = 'k2') || '_updated_at' AS kept
  FROM pg_trigger t WHERE t.tgrelid = 'kit.customers'::regclass AND NOT t.tgisinternal;
SELECT regress_util.try($$SELECT customer_unify.updated_at('k3', 'kit.customers', 'touched_on')$$) AS second_trigger;
DO $$ BEGIN
    EXECUTE format('DROP TRIGGER %I ON kit.customers', 'customer_unify_' || (SELECT id FROM customer_unify.migration WHERE name = 'k2') || '_updated_at');
END $$;
-- a date column, stamped with the transaction's date
SELECT customer_unify.updated_at('k3', 'kit.customers', 'touched_on') > 0 AS planned;
SELECT customer_unify.start('k3');
UPDATE kit.customers SET phone = '+3' WHERE id = 3;
SELECT id, touched_on = current_date AS today FROM kit.customers WHERE id IN (3, 4) ORDER BY id;
SELECT customer_unify.rollback('k3');
RESET ROLE;

-- 8. the trigger refuses to be used any other way (errors when it fires)
SET ROLE regress_kit_owner;
CREATE TABLE kit.other (id int PRIMARY KEY, at timestamptz);
INSERT INTO kit.other VALUES (1, NULL);
CREATE TRIGGER t BEFORE INSERT ON kit.other FOR EACH ROW EXECUTE FUNCTION customer_unify.touch_updated_at('at', 'transaction', 'keep', '');
SELECT regress_util.try($$INSERT INTO kit.other VALUES (2, NULL)$$) AS fired_on_insert;
DROP TRIGGER t ON kit.other;
CREATE TRIGGER t BEFORE UPDATE ON kit.other FOR EACH ROW EXECUTE FUNCTION customer_unify.touch_updated_at('at');
SELECT regress_util.try($$UPDATE kit.other SET id = 2$$) AS wrong_arguments;
DROP TRIGGER t ON kit.other;
CREATE TRIGGER t BEFORE UPDATE ON kit.other FOR EACH ROW EXECUTE FUNCTION customer_unify.touch_updated_at('at', 'sundial', 'keep', '');
SELECT regress_util.try($$UPDATE kit.other SET id = 2$$) AS wrong_clock;
DROP TRIGGER t ON kit.other;
CREATE TRIGGER t BEFORE UPDATE ON kit.other FOR EACH ROW EXECUTE FUNCTION customer_unify.touch_updated_at('gone', 'clock', 'keep', '');
SELECT regress_util.try($$UPDATE kit.other SET id = 2$$) AS unknown_column;
DROP TRIGGER t ON kit.other;
SELECT regress_util.try($$SELECT customer_unify.touch_updated_at()$$) AS called_directly;
RESET ROLE;

-- 9. names that need quoting: a table, a stamped and a protected column with spaces, capitals and quotes
SET ROLE regress_kit_owner;
CREATE TABLE kit."Cust Omers" (id int PRIMARY KEY, "Full Name" text, "Updated At" timestamptz NOT NULL DEFAULT '2000-01-01',
                               "Created ""At""" timestamptz NOT NULL DEFAULT '2000-01-01');
INSERT INTO kit."Cust Omers" (id, "Full Name") VALUES (1, 'a'), (2, 'b');
SELECT customer_unify.updated_at('k "q"', 'kit."Cust Omers"', 'Updated At', created_column => 'Created "At"') > 0 AS planned;
SELECT customer_unify.start('k "q"');
BEGIN;
UPDATE kit."Cust Omers" SET "Full Name" = 'a2', "Created ""At""" = now() WHERE id = 1;
UPDATE kit."Cust Omers" SET "Full Name" = "Full Name" WHERE id = 2;
SELECT id, "Updated At" = now() AS stamped, "Created ""At""" AS created FROM kit."Cust Omers" ORDER BY id;
COMMIT;
SELECT regress_util.try($$ALTER TABLE kit."Cust Omers" RENAME COLUMN "Updated At" TO x$$) AS rename_quoted;
SELECT customer_unify.rollback('k "q"');
SELECT count(*) AS kit_triggers FROM pg_trigger t WHERE t.tgrelid = 'kit."Cust Omers"'::regclass AND NOT t.tgisinternal;
RESET ROLE;

DROP SCHEMA kit CASCADE;
DROP ROLE regress_kit_owner, regress_kit_other, regress_kit_writer;

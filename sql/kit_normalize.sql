-- The table kit's normalize_on_write (1.3): a migration kind whose start
-- adds a C BEFORE INSERT OR UPDATE trigger that stores normalize_phone /
-- normalize_email of a column; seed 002's customers, where "no duplicate
-- phone" was checked in application code.  Errors with SQLSTATEs, each
-- on_invalid, varchar limits, the unique index it makes possible, the
-- guard, verify's count of rows written before, rollback and finalize.
SET client_min_messages = warning;
CREATE ROLE regress_norm_owner LOGIN;
CREATE ROLE regress_norm_other LOGIN;
CREATE SCHEMA nk AUTHORIZATION regress_norm_owner;
GRANT USAGE ON SCHEMA nk TO regress_norm_other;
SET ROLE regress_norm_owner;
CREATE TABLE nk.customers (
    id       bigserial PRIMARY KEY,
    name     text NOT NULL,
    phone    varchar(20),
    short    varchar(10),
    email    text,
    visits   int NOT NULL DEFAULT 0
);
INSERT INTO nk.customers (name, phone, email) VALUES
    ('legacy formatted', '(415) 555-0101', 'Legacy@Example.COM'),
    ('legacy garbage', 'call me', 'no address'),
    ('legacy clean', '+14155550103', 'clean@example.com');
RESET ROLE;

-- 1. bad input, each with its SQLSTATE, nothing created
SET ROLE regress_norm_other;
SELECT regress_util.try($$SELECT customer_unify.normalize_on_write('n', 'nk.customers', 'phone', 'phone', 'US')$$) AS not_owner;
RESET ROLE;
SET ROLE regress_norm_owner;
SELECT regress_util.try($$SELECT customer_unify.normalize_on_write(NULL, 'nk.customers', 'phone', 'phone')$$) AS null_name;
SELECT regress_util.try($$SELECT customer_unify.normalize_on_write('n', 'nk.customers', 'phone', 'fax')$$) AS bad_kind;
SELECT regress_util.try($$SELECT customer_unify.normalize_on_write('n', 'nk.customers', 'phone', 'phone', 'US', 'fix')$$) AS bad_on_invalid;
SELECT regress_util.try($$SELECT customer_unify.normalize_on_write('n', 'nk.customers', 'phone', 'phone', 'XX')$$) AS bad_region;
SELECT regress_util.try($$SELECT customer_unify.normalize_on_write('n', 'nk.customers', 'email', 'email', 'US')$$) AS region_for_email;
SELECT regress_util.try($$SELECT customer_unify.normalize_on_write('n', 'nk.customers', 'fax', 'phone', 'US')$$) AS unknown_column;
SELECT regress_util.try($$SELECT customer_unify.normalize_on_write('n', 'nk.customers', 'visits', 'phone', 'US')$$) AS not_text;
SELECT count(*) AS migrations FROM customer_unify.migration WHERE name = 'n';

-- 2. phones, in national form for the US, what does not parse rejected
SELECT customer_unify.normalize_on_write('n', 'nk.customers', 'phone', 'phone', 'us') > 0 AS planned;
SELECT customer_unify.start('n');
SELECT regexp_replace(pg_get_triggerdef(t.oid), 'customer_unify_\d+_', 'customer_unify_N_') AS trigger
  FROM pg_trigger t WHERE t.tgrelid = 'nk.customers'::regclass AND NOT t.tgisinternal;
INSERT INTO nk.customers (name, phone) VALUES ('new national', '(415) 555-0104'), ('new intl', '+1 415 555 0105');
SELECT regexp_replace(regress_util.try_detail($$INSERT INTO nk.customers (name, phone) VALUES ('new garbage', 'n/a')$$), 'customer_unify_\d+_', 'customer_unify_N_', 'g') AS rejected;
-- an update that leaves the phone alone leaves it alone, even a legacy one that does not parse
UPDATE nk.customers SET visits = visits + 1;
UPDATE nk.customers SET phone = '415.555.0106' WHERE name = 'legacy clean';
SELECT regress_util.try($$UPDATE nk.customers SET phone = 'call me later' WHERE name = 'legacy garbage'$$) AS rejected_update;
SELECT name, phone, visits FROM nk.customers ORDER BY id;
-- verify counts the rows written before the trigger that are not in normal form
SELECT regexp_replace(check_name, 'customer_unify_\d+_', 'customer_unify_N_') AS check_name, expected, actual, ok
  FROM customer_unify.verify('n');
-- the unique index the seed's application code tried to be: one number, one spelling
UPDATE nk.customers SET phone = '+14155550101' WHERE name = 'legacy formatted';
UPDATE nk.customers SET phone = NULL WHERE name = 'legacy garbage';
CREATE UNIQUE INDEX customers_phone_key ON nk.customers (phone);
SELECT regress_util.try($$INSERT INTO nk.customers (name, phone) VALUES ('duplicate', '415-555-0104')$$) AS duplicate_spelling;
SELECT ok FROM customer_unify.verify('n') WHERE check_name LIKE 'rows %';
-- the guard keeps the column and the trigger while the migration is live
SELECT regress_util.try($$ALTER TABLE nk.customers RENAME COLUMN phone TO telephone$$) AS rename_column;
SELECT regexp_replace(regress_util.try($$ALTER TABLE nk.customers DISABLE TRIGGER USER$$), 'customer_unify_\d+_', 'customer_unify_N_', 'g') AS disable_trigger;

-- 3. finalize keeps the trigger and frees the table (one live migration per
-- table: kit items on one table run one after another); a second trigger on
-- the column is refused
CALL customer_unify.run('n', finalize => true);
SELECT state FROM customer_unify.migration WHERE name = 'n';
INSERT INTO nk.customers (name, phone) VALUES ('after finalize', '(415) 555-0108');
SELECT phone FROM nk.customers WHERE name = 'after finalize';
SELECT regress_util.try($$SELECT customer_unify.normalize_on_write('n2', 'nk.customers', 'phone', 'email')$$) AS second_on_column;

-- 4. e-mail addresses, what does not normalize stored as NULL; rollback: writes are taken as typed again
SELECT customer_unify.normalize_on_write('e', 'nk.customers', 'email', 'email', on_invalid => 'null') > 0 AS planned;
SELECT customer_unify.start('e');
INSERT INTO nk.customers (name, email) VALUES ('mail', '  Jane.Doe@EXAMPLE.org '), ('no mail', 'jane at example');
SELECT name, email FROM nk.customers WHERE name IN ('mail', 'no mail') ORDER BY name;
SELECT customer_unify.rollback('e');
INSERT INTO nk.customers (name, email) VALUES ('after rollback', 'AS@TYPED.COM');
SELECT email FROM nk.customers WHERE name = 'after rollback';

-- 5. a varchar too short for the normal form (22001); keep: stored as typed
SELECT customer_unify.normalize_on_write('s', 'nk.customers', 'short', 'phone', 'US', 'keep') > 0 AS planned;
SELECT customer_unify.start('s');
SELECT regress_util.try_detail($$UPDATE nk.customers SET short = '4155550107' WHERE name = 'mail'$$) AS too_long;
UPDATE nk.customers SET short = 'ext. 12' WHERE name = 'mail';
SELECT short FROM nk.customers WHERE name = 'mail';
SELECT customer_unify.rollback('s');
SELECT count(*) AS kit_triggers FROM pg_trigger t WHERE t.tgrelid = 'nk.customers'::regclass AND NOT t.tgisinternal;

-- 6. the trigger function refuses to be used another way
CREATE TABLE nk.other (id int PRIMARY KEY, phone text);
CREATE TRIGGER t BEFORE INSERT ON nk.other FOR EACH ROW EXECUTE FUNCTION customer_unify.normalize_on_write('phone', 'fax', '', 'keep');
SELECT regress_util.try($$INSERT INTO nk.other VALUES (1, '+14155550100')$$) AS wrong_arguments;
DROP TRIGGER t ON nk.other;
CREATE TRIGGER t AFTER INSERT ON nk.other FOR EACH ROW EXECUTE FUNCTION customer_unify.normalize_on_write('phone', 'phone', '', 'keep');
SELECT regress_util.try($$INSERT INTO nk.other VALUES (1, '+14155550100')$$) AS after_trigger;
RESET ROLE;

-- 7. names that need quoting, and a citext column
CREATE EXTENSION IF NOT EXISTS citext;
SET ROLE regress_norm_owner;
CREATE TABLE nk."Leads ""2""" (id int PRIMARY KEY, "E Mail" citext, "Phone No" text);
SELECT customer_unify.normalize_on_write('n "q"', 'nk."Leads ""2"""', 'E Mail', 'email') > 0 AS planned;
SELECT customer_unify.start('n "q"');
INSERT INTO nk."Leads ""2""" VALUES (1, ' Ann@EXAMPLE.com ', NULL);
SELECT "E Mail"::text AS stored FROM nk."Leads ""2""";
SELECT regress_util.try($$INSERT INTO nk."Leads ""2""" VALUES (2, 'not an address', NULL)$$) AS rejected_citext;
SELECT regress_util.try($$SELECT customer_unify.normalize_on_write('n2 "q"', 'nk."Leads ""2"""', 'Phone No', 'phone', 'GB')$$) AS live_on_table;
SELECT customer_unify.rollback('n "q"');
SELECT customer_unify.normalize_on_write('n3 "q"', 'nk."Leads ""2"""', 'Phone No', 'phone', 'GB') > 0 AS planned;
SELECT customer_unify.start('n3 "q"');
INSERT INTO nk."Leads ""2""" VALUES (3, NULL, '020 7946 0018');
SELECT "Phone No" FROM nk."Leads ""2""" WHERE id = 3;
SELECT customer_unify.rollback('n3 "q"');
RESET ROLE;

DROP SCHEMA nk CASCADE;
DROP ROLE regress_norm_owner, regress_norm_other;

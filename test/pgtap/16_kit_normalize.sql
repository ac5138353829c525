-- 16_kit_normalize.sql: the objects the kit's normalize_on_write leaves
-- (1.3, src/sql/kit.sql, src/normalize_write.c, sql/kit_normalize.sql):
-- planned creates nothing; started has exactly one BEFORE INSERT OR UPDATE
-- row trigger customer_unify_<id>_normalize calling the C function with
-- the four arguments; writes are normalized, what does not normalize is
-- refused with 23514; rollback leaves the table as it was.
BEGIN;
SELECT plan(14);

CREATE SCHEMA tn;
CREATE TABLE tn.customers (id int PRIMARY KEY, phone text, email text);
INSERT INTO tn.customers VALUES (1, '(415) 555-0100', 'A@Example.com');

SELECT lives_ok($$SELECT customer_unify.normalize_on_write('tn_phone', 'tn.customers', 'phone', 'phone', 'US')$$,
                'normalize_on_write() plans');
SELECT is((SELECT kind || '/' || state FROM customer_unify.migration WHERE name = 'tn_phone'), 'normalize_on_write/planned',
          'a migration of kind normalize_on_write, planned');
SELECT is((SELECT count(*)::int FROM pg_trigger WHERE tgrelid = 'tn.customers'::regclass AND NOT tgisinternal), 0,
          'planned: no trigger yet');
SELECT is(customer_unify.start('tn_phone'), 'started', 'start');
SELECT trigger_is('tn', 'customers', 'customer_unify_' || (SELECT id FROM customer_unify.migration WHERE name = 'tn_phone') || '_normalize',
                  'customer_unify', 'normalize_on_write', 'the trigger calls customer_unify.normalize_on_write');
SELECT is((SELECT (t.tgtype & 1 <> 0) AND (t.tgtype & 66 = 2) AND (t.tgtype & 4 <> 0) AND (t.tgtype & 16 <> 0) AND (t.tgtype & 8 = 0)
             FROM pg_trigger t WHERE t.tgrelid = 'tn.customers'::regclass AND NOT t.tgisinternal),
          true, 'a BEFORE INSERT OR UPDATE ... FOR EACH ROW trigger');
SELECT is((SELECT encode(t.tgargs, 'escape') FROM pg_trigger t WHERE t.tgrelid = 'tn.customers'::regclass AND NOT t.tgisinternal),
          E'phone\\000phone\\000US\\000reject\\000', 'its four arguments, the region upper-cased');
SELECT is((SELECT l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
            WHERE p.oid = 'customer_unify.normalize_on_write()'::regprocedure), 'c', 'the trigger function is C');

INSERT INTO tn.customers VALUES (2, '415.555.0102', NULL);
SELECT is((SELECT phone FROM tn.customers WHERE id = 2), '+14155550102', 'an insert stores the E.164 form');
SELECT throws_ok($$INSERT INTO tn.customers VALUES (3, 'nope', NULL)$$, '23514', NULL, 'what does not parse is refused (23514)');
UPDATE tn.customers SET email = 'b@example.com' WHERE id = 1;
SELECT is((SELECT phone FROM tn.customers WHERE id = 1), '(415) 555-0100', 'an update of another column leaves a row written before alone');
SELECT is((SELECT actual FROM customer_unify.verify('tn_phone') WHERE check_name LIKE 'rows %'), '1',
          'verify counts the row written before, not in normal form');

SELECT is(customer_unify.rollback('tn_phone'), 'rolled_back', 'rollback');
SELECT is((SELECT count(*)::int FROM pg_trigger WHERE tgrelid = 'tn.customers'::regclass AND NOT tgisinternal), 0,
          'rolled back: no trigger');

SELECT * FROM finish();
ROLLBACK;

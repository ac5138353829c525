-- 15_kit_updated_at.sql: the objects the table kit's updated_at leaves at
-- each state, and the trigger's contract (1.3, src/sql/kit.sql, src/touch.c,
-- sql/kit_updated_at.sql): planned creates nothing; started has exactly one
-- BEFORE UPDATE row trigger customer_unify_<id>_updated_at calling the C
-- function touch_updated_at with the four arguments; an update that changes
-- nothing else leaves updated_at; rollback leaves the table as it was; the
-- guard keeps its columns (finalize, after a backfill that COMMITs, is in
-- sql/kit_updated_at.sql).
BEGIN;
SELECT plan(20);

CREATE SCHEMA tk;
CREATE TABLE tk.customers (id int PRIMARY KEY, name text, created_at timestamptz NOT NULL DEFAULT now(),
                           updated_at timestamptz NOT NULL DEFAULT '2000-01-01');
INSERT INTO tk.customers (id, name, created_at) VALUES (1, 'a', '2001-01-01'), (2, 'b', '2001-01-01');

SELECT lives_ok($$SELECT customer_unify.updated_at('tk_touch', 'tk.customers', created_column => 'created_at')$$,
                'updated_at() plans');
SELECT is((SELECT kind || '/' || state FROM customer_unify.migration WHERE name = 'tk_touch'), 'updated_at/planned',
          'a migration of kind updated_at, planned');
SELECT is((SELECT count(*)::int FROM pg_trigger WHERE tgrelid = 'tk.customers'::regclass AND NOT tgisinternal), 0,
          'planned: no trigger yet');
SELECT is((SELECT m.spec->'source_columns' FROM customer_unify.migration m WHERE m.name = 'tk_touch'),
          '["updated_at", "created_at"]'::jsonb, 'the spec names the columns the guard keeps');

SELECT is(customer_unify.start('tk_touch'), 'started', 'start');
SELECT trigger_is('tk', 'customers', 'customer_unify_' || (SELECT id FROM customer_unify.migration WHERE name = 'tk_touch') || '_updated_at',
                  'customer_unify', 'touch_updated_at', 'the trigger calls customer_unify.touch_updated_at');
SELECT is((SELECT (t.tgtype & 1 <> 0) AND (t.tgtype & 66 = 2) AND (t.tgtype & 16 <> 0) AND (t.tgtype & 12 = 0)
             FROM pg_trigger t WHERE t.tgrelid = 'tk.customers'::regclass AND NOT t.tgisinternal),
          true, 'a BEFORE UPDATE ... FOR EACH ROW trigger, on UPDATE only');
SELECT is((SELECT t.tgenabled FROM pg_trigger t WHERE t.tgrelid = 'tk.customers'::regclass AND NOT t.tgisinternal),
          'O'::"char", 'enabled as ordinary triggers are (not ALWAYS: a replica does not restamp)');
SELECT is((SELECT encode(t.tgargs, 'escape') FROM pg_trigger t WHERE t.tgrelid = 'tk.customers'::regclass AND NOT t.tgisinternal),
          E'updated_at\\000transaction\\000keep\\000created_at\\000', 'its four arguments');
SELECT is((SELECT l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
            WHERE p.oid = 'customer_unify.touch_updated_at()'::regprocedure), 'c', 'the trigger function is C');

UPDATE tk.customers SET name = name WHERE id = 1;
SELECT is((SELECT updated_at FROM tk.customers WHERE id = 1), '2000-01-01'::timestamptz, 'an update that changes nothing keeps updated_at');
UPDATE tk.customers SET name = 'b2', created_at = now() WHERE id = 2;
SELECT is((SELECT updated_at FROM tk.customers WHERE id = 2), now(), 'an update that changes a column stamps now()');
SELECT is((SELECT created_at FROM tk.customers WHERE id = 2), '2001-01-01'::timestamptz, 'created_at keeps its value');
SELECT is((SELECT ok FROM customer_unify.verify('tk_touch') WHERE check_name LIKE 'trigger %'), true, 'verify: the trigger is there');

SELECT is(customer_unify.rollback('tk_touch'), 'rolled_back', 'rollback');
SELECT is((SELECT count(*)::int FROM pg_trigger WHERE tgrelid = 'tk.customers'::regclass AND NOT tgisinternal), 0,
          'rolled back: no trigger');

SELECT lives_ok($$SELECT customer_unify.updated_at('tk_touch2', 'tk.customers')$$, 'planned again under another name');
SELECT is(customer_unify.start('tk_touch2'), 'started', 'started again');
SELECT throws_ok($$SELECT customer_unify.cutover('tk_touch2')$$, '55000', NULL,
                 'cutover needs the (empty) backfill first: CALL backfill, outside a transaction (sql/kit_updated_at.sql)');
SELECT throws_ok($$ALTER TABLE tk.customers RENAME COLUMN updated_at TO modified_at$$, '55006', NULL,
                 'the DDL guard keeps the stamped column while the migration is live');
SELECT * FROM finish();
ROLLBACK;

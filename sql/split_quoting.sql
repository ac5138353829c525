-- Names that need quoting (mixed case, spaces, quotes, a semicolon) work end
-- to end: they are taken literally and always quoted in generated SQL.
SET client_min_messages = warning;
CREATE SCHEMA "Sales Team";
SET search_path = "Sales Team", public;
CREATE TABLE "My Users" (
    "User Id"     bigint PRIMARY KEY,
    "E-mail"      text NOT NULL,
    "First Name"  text,
    "last;name"   text DEFAULT 'O''Brien',
    "quo""te"     int CHECK ("quo""te" >= 0)
);
CREATE INDEX "Idx ""First"" Name" ON "My Users" ("First Name");
INSERT INTO "My Users" SELECT g, 'u' || g || '@x', 'Fn' || g, CASE WHEN g % 2 = 0 THEN 'Ln' || g END, g FROM generate_series(1, 120) g;

SELECT customer_unify.split('Quoted Split', '"Sales Team"."My Users"', 'Profile''s "Table"',
                            ARRAY['First Name', 'last;name', 'quo"te'], link_column => 'User Link') > 0 AS planned;
SELECT phase, step, statement FROM customer_unify.preview('Quoted Split') WHERE phase IN ('start', 'cutover') ORDER BY phase DESC, step;
CALL customer_unify.run('Quoted Split', batch_size => 50);
SELECT state FROM customer_unify.migration WHERE name = 'Quoted Split';
SELECT check_name, ok FROM customer_unify.verify('Quoted Split');
SELECT attname FROM pg_attribute WHERE attrelid = '"Sales Team"."Profile''s ""Table"""'::regclass AND attnum > 0 ORDER BY attnum;
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = '"Sales Team"."Profile''s ""Table"""'::regclass ORDER BY 1;

-- writes with quoted names, through the source, the target and the view
UPDATE "My Users" SET "last;name" = 'changed' WHERE "User Id" = 1;
UPDATE "Profile's ""Table""" SET "quo""te" = 42 WHERE "User Link" = 2;
SELECT "User Id", "First Name", "last;name", "quo""te" FROM "My Users" WHERE "User Id" IN (1, 2) ORDER BY 1;
SET search_path = "Quoted Split_compat", "Sales Team", public;
INSERT INTO "My Users" ("User Id", "E-mail", "First Name") VALUES (500, 'q@x', 'Quinn') RETURNING *;
UPDATE "My Users" SET "quo""te" = 7 WHERE "User Id" = 500 RETURNING "User Id", "quo""te";
SELECT regress_util.try($$UPDATE "My Users" SET "quo""te" = -1 WHERE "User Id" = 500$$);
DELETE FROM "My Users" WHERE "User Id" = 500 RETURNING "User Id";
SET search_path = "Sales Team", public;
SELECT check_name, ok FROM customer_unify.verify('Quoted Split') WHERE NOT ok;
SELECT customer_unify.finalize('Quoted Split');
SELECT attname FROM pg_attribute WHERE attrelid = '"Sales Team"."My Users"'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;
SELECT count(*) FROM "Quoted Split_compat"."My Users";
RESET search_path;

-- Bad merge specs get a specific SQLSTATE and a message naming the JSON path
-- and the object, and change nothing.
SET client_min_messages = warning;
CREATE SCHEMA merr;
CREATE TABLE merr.core (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), email text, first_name text, seen timestamptz, score int);
CREATE TABLE merr.nodefault (id int PRIMARY KEY, email text);
CREATE TABLE merr.mustmap (id bigserial PRIMARY KEY, email text, code text NOT NULL);
CREATE TABLE merr.legacy (id int PRIMARY KEY, email text, name text);
CREATE TABLE merr.nokey (id int, email text);
CREATE TABLE merr.twokey (a int, b int, email text, PRIMARY KEY (a, b));
CREATE VIEW merr.legacy_v AS SELECT * FROM merr.legacy;
CREATE TABLE merr.refs (id int PRIMARY KEY, legacy_id int REFERENCES merr.legacy, note text);
CREATE TABLE merr.part (id int PRIMARY KEY, email text) PARTITION BY RANGE (id);
CREATE SCHEMA m1_merge;
SELECT count(*) AS migrations_before FROM customer_unify.migration \gset
CREATE FUNCTION pg_temp.spec(p jsonb) RETURNS text LANGUAGE sql AS $$
    SELECT regress_util.try_detail(format('SELECT customer_unify.merge(%L, %L::jsonb)', 'e1', p))
$$;
-- a valid spec to break one piece at a time
CREATE TEMP TABLE good AS SELECT '{
  "target": {"table": "merr.core"},
  "sources": [{"table": "merr.legacy", "tag": "legacy", "columns": {"email": "lower(email)", "first_name": "name"}}],
  "match": [{"rule": "email", "key": "email"}]
}'::jsonb AS s;

-- the spec's shape
SELECT pg_temp.spec('[]');
SELECT pg_temp.spec((SELECT s FROM good) || '{"colour": "red"}');
SELECT pg_temp.spec((SELECT s FROM good) - 'target');
SELECT pg_temp.spec((SELECT s FROM good) - 'sources');
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{sources}', '[]'));
SELECT pg_temp.spec((SELECT s FROM good) - 'match');
-- the target
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{target,table}', '"merr.nope"'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{target,table}', '"merr.legacy_v"'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{target,table}', '"merr.part"'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{target,table}', '"merr.nokey"'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{target,table}', '"merr.twokey"'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{target,table}', '"merr.nodefault"'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{target,table}', '"merr.mustmap"'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{target}', '{"table": "merr.core", "key": "id"}'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{target}', '{"table": "merr.core", "create": true, "columns": {"email": "text"}}'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{target}', '{"table": "nosuchschema.t", "create": true, "columns": {"email": "text"}}'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{target}', '{"table": "merr.new", "create": true, "key_type": "text", "columns": {"email": "text"}}'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{target}', '{"table": "merr.new", "create": true, "columns": {"email": "no_such_type"}}'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{target}', '{"table": "merr.new", "create": true, "columns": {"id": "int"}}'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{target}', '{"table": "merr.new", "create": true}'));
-- the sources
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{sources,0,table}', '"merr.nope"'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{sources,0,table}', '"merr.core"'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{sources,0,table}', '"merr.nokey"'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{sources,1}', '{"table": "merr.legacy", "columns": {"email": "email"}}'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{sources,0,tag}', '"Bad Tag"'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{sources,0,tag}', '"target"'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{sources,0,colour}', '"red"'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{sources,0,columns}', '{}'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{sources,0,columns}', '{"nope": "email"}'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{sources,0,columns}', '{"email": "no_such_column"}'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{sources,0,columns}', '{"score": "email"}'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{sources,0,columns}', '{"email": "email) FROM merr.core; DROP TABLE merr.core; SELECT (1"}'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{sources,0,columns}', '{"email": 42}'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{sources,0,columns}', '{"email": "$q$x$q$"}'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{sources,0,columns}', '{"email": "id || (SELECT email FROM merr.legacy LIMIT 1)", "first_name": "name, name"}'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{sources,0,columns}', '{"seen": "id"}'));
-- an assignment cast is fine (bigint to integer), as in an INSERT
SELECT regress_util.try($$SELECT customer_unify._merge_check_expression('length(name)::bigint', 'ONLY merr.legacy s', 'integer', '$.x')$$);
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{sources,0,priority}', '0'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{sources,0,keys}', '{"phone": "email"}'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{sources,0,keys}', '{"email": "nope"}'));
-- match rules
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{match}', '[{"rule": "email", "key": "email"}, {"rule": "email", "key": "email"}]'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{match}', '[{"rule": "email"}]'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{match}', '[{"rule": "email", "key": "no_such_column"}]'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{match}', '[{"rule": "email", "key": "email", "weight": 2}]'));
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{match}', '[{"rule": "email", "key": "email", "stop": "x"}]'));
SELECT pg_temp.spec((SELECT s FROM good) || '{"max_key_rows": 1}');
-- survivorship
SELECT pg_temp.spec((SELECT s FROM good) || '{"survivorship": {"default": "loudest"}}');
SELECT pg_temp.spec((SELECT s FROM good) || '{"survivorship": {"columns": {"nope": "priority"}}}');
SELECT pg_temp.spec((SELECT s FROM good) || '{"survivorship": {"columns": {"email": "newest:nope"}}}');
SELECT pg_temp.spec(jsonb_set((SELECT s FROM good), '{sources,0,columns,score}', '"1"') || '{"survivorship": {"columns": {"email": "newest:score"}}}');
-- references
SELECT pg_temp.spec((SELECT s FROM good) || '{"references": {}}');
SELECT pg_temp.spec((SELECT s FROM good) || '{"references": [{"table": "merr.nope", "column": "x", "source": "legacy"}]}');
SELECT pg_temp.spec((SELECT s FROM good) || '{"references": [{"table": "merr.refs", "column": "nope", "source": "legacy"}]}');
SELECT pg_temp.spec((SELECT s FROM good) || '{"references": [{"table": "merr.refs", "column": "note", "source": "nope"}]}');
SELECT pg_temp.spec((SELECT s FROM good) || '{"references": [{"table": "merr.refs", "column": "note", "source": "legacy", "new_column": "legacy_id"}]}');
SELECT pg_temp.spec((SELECT s FROM good) || '{"references": [{"table": "merr.legacy", "column": "id", "source": "legacy"}]}');
-- the name's schemas
SELECT regress_util.try($$SELECT customer_unify.merge('m1', (SELECT s FROM good))$$);
SELECT regress_util.try($$SELECT customer_unify.merge(NULL, (SELECT s FROM good))$$);
SELECT regress_util.try($$SELECT customer_unify.merge('e1', NULL)$$);
SELECT regress_util.try(format('SELECT customer_unify.merge(%L, (SELECT s FROM good))', repeat('x', 60)));
-- nothing was created
SELECT count(*) - :migrations_before AS migrations_added FROM customer_unify.migration;
SELECT count(*) AS work_schemas FROM pg_namespace WHERE nspname LIKE 'e1\_%';
SELECT count(*) AS new_columns FROM pg_attribute WHERE attrelid = 'merr.refs'::regclass AND attnum > 0 AND NOT attisdropped;

-- the same good spec plans; a second plan of the same tables is refused
SELECT customer_unify.merge('e_ok', (SELECT s FROM good)) > 0 AS planned;
SELECT regress_util.try($$SELECT customer_unify.merge('e_ok2', (SELECT s FROM good))$$);
SELECT regress_util.try($$SELECT customer_unify.merge('e_ok', (SELECT s FROM good))$$);
-- the foreign key of merr.refs to the source was found as a reference
SELECT r->>'column' AS column, r->>'new_column' AS new_column, r->>'source' AS source
  FROM customer_unify.migration m, jsonb_array_elements(m.spec->'references') r WHERE m.name = 'e_ok';
-- decisions and crosswalk writes need a live merge and valid tags
SELECT regress_util.try($$SELECT customer_unify.decide('e_ok', 'never', 'legacy', '1', 'target', 'x')$$);
SELECT regress_util.try($$SELECT customer_unify.decide('nope', 'never', 'legacy', '1', 'target', 'x')$$);
SELECT regress_util.try($$SELECT customer_unify.decide('e_ok', 'maybe', 'legacy', '1', 'target', 'x')$$);
SELECT regress_util.try($$SELECT customer_unify._id_map_set((SELECT id FROM customer_unify.migration WHERE name = 'e_ok'), 'legacy', '{1}', '{x}', '{r}')$$);
SELECT regress_util.try($$SELECT customer_unify.conflicts('nope')$$);
SELECT regress_util.try($$SELECT customer_unify.unmerge('e_ok', 'x')$$);
SELECT regress_util.try($$SELECT customer_unify.purge('e_ok')$$);
SELECT customer_unify.start('e_ok');
SELECT regress_util.try($$SELECT customer_unify.decide('e_ok', 'never', 'legacy', '1', 'legacy', '1')$$);
SELECT regress_util.try($$SELECT customer_unify.decide('e_ok', 'never', 'legacy', '1', 'nope', '2')$$);
SELECT regress_util.try($$SELECT customer_unify.unmerge('e_ok', 'no-such-person')$$);
SELECT regress_util.try($$SELECT customer_unify._id_map_set(NULL, 'legacy', '{1}', '{x}', '{r}')$$);
-- a role that does not own the tables may not write the crosswalk
CREATE ROLE merr_other;
GRANT USAGE ON SCHEMA customer_unify TO merr_other;
SET ROLE merr_other;
SELECT regress_util.try($$SELECT customer_unify._id_map_set((SELECT id FROM customer_unify.migration WHERE name = 'e_ok'), 'legacy', '{1}', '{x}', '{r}')$$);
SELECT regress_util.try($$SELECT customer_unify._id_map_clear((SELECT id FROM customer_unify.migration WHERE name = 'e_ok'))$$);
SELECT regress_util.try($$INSERT INTO customer_unify.id_map VALUES (1, 'a', 'pg_class', '1', 'int', 'x', 'r')$$);
SELECT regress_util.try($$SELECT customer_unify.decide('e_ok', 'never', 'legacy', '1', 'target', 'x')$$);
RESET ROLE;
-- the capture trigger is a statement trigger only
SELECT regress_util.try($$CREATE TRIGGER bad AFTER INSERT ON merr.nokey FOR EACH ROW EXECUTE FUNCTION customer_unify.merge_capture('1', 'x', '0')$$);
SELECT regress_util.try($$INSERT INTO merr.nokey VALUES (1, 'a')$$);
DROP TRIGGER IF EXISTS bad ON merr.nokey;
SELECT customer_unify.rollback('e_ok');
REVOKE USAGE ON SCHEMA customer_unify FROM merr_other;
DROP ROLE merr_other;

-- 10_merge_planned.sql: merge() validates the spec, normalizes it and creates nothing.
-- Contract (1.2, src/sql/merge.sql, sql/merge_lifecycle.sql): 'planned'
-- registers the target and the sources (tag, role 'target'/'source') and every
-- reference (tag ref<N>, role 'reference') in migration_relation, stores the
-- normalized spec (an existing target is the anchor source 'target' of
-- priority 0; sources get tags, priorities, key types; foreign keys to a
-- source's key are found as references, new column <column>_merged) and
-- creates no schema, column, trigger or constraint.  A role that does not own
-- the tables cannot plan (42501).
-- Seed 004 in small: core.customers (uuid keys, the surviving table),
-- legacy.customers (integer keys), legacy.ai_customers (varchar(36) keys),
-- legacy.bookings (FK to legacy.customers), legacy.conversations (no FK, named
-- in the spec); and a created target (crm.people) for two other tables.
BEGIN;
SELECT plan(50);

-- run sql and undo it whatever happens; its SQLSTATE, or 'no error'
CREATE FUNCTION pg_temp.sqlstate_undone(sql text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE st text;
BEGIN
    BEGIN
        EXECUTE sql;
        RAISE EXCEPTION 'cu_pgtap: no error, undone' USING ERRCODE = 'P0099';
    EXCEPTION WHEN OTHERS THEN
        st := SQLSTATE;
    END;
    RETURN CASE st WHEN 'P0099' THEN 'no error' ELSE st END;
END
$f$;

-- the id of a migration, and its normalized spec
CREATE FUNCTION pg_temp.mid(mname text) RETURNS bigint LANGUAGE sql AS $f$
    SELECT id FROM customer_unify.migration WHERE name = mname
$f$;
CREATE FUNCTION pg_temp.spec(mname text) RETURNS jsonb LANGUAGE sql AS $f$
    SELECT spec FROM customer_unify.migration WHERE name = mname
$f$;

-- the columns of a table, in order
CREATE FUNCTION pg_temp.cols(rel regclass) RETURNS text[] LANGUAGE sql AS $f$
    SELECT ARRAY(SELECT attname::text FROM pg_attribute
                  WHERE attrelid = rel AND attnum > 0 AND NOT attisdropped ORDER BY attnum)
$f$;

CREATE ROLE cu_pgtap_m10_owner NOLOGIN;     -- owns every table
CREATE ROLE cu_pgtap_m10_reader NOLOGIN;    -- may read them all
CREATE ROLE cu_pgtap_m10_stranger NOLOGIN;  -- USAGE on the schemas, no table privilege
CREATE ROLE cu_pgtap_m10_outsider NOLOGIN;  -- no privilege at all

CREATE SCHEMA core AUTHORIZATION cu_pgtap_m10_owner;
CREATE SCHEMA legacy AUTHORIZATION cu_pgtap_m10_owner;
CREATE SCHEMA crm AUTHORIZATION cu_pgtap_m10_owner;
SET LOCAL ROLE cu_pgtap_m10_owner;
CREATE TABLE core.customers (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    first_name  text,
    last_name   text,
    email       text UNIQUE,
    phone       text,
    updated_at  timestamptz NOT NULL DEFAULT '2025-01-01');
CREATE TABLE legacy.customers (
    id              serial PRIMARY KEY,
    first_name      text,
    last_name       text,
    email           text,
    phone           text,
    loyalty_points  int NOT NULL DEFAULT 0);
CREATE TABLE legacy.ai_customers (id varchar(36) PRIMARY KEY, email text, name text, phone text);
CREATE TABLE legacy.bookings (id bigint PRIMARY KEY, customer_id int REFERENCES legacy.customers ON DELETE CASCADE,
                              total numeric NOT NULL);
CREATE TABLE legacy.conversations (id bigint PRIMARY KEY, customer_id varchar(36), body text);
CREATE TABLE crm.leads (id bigint PRIMARY KEY, email text, name varchar(80));
CREATE TABLE crm.contacts (id text PRIMARY KEY, email text, full_name text);
INSERT INTO core.customers (id, first_name, last_name, email, phone) VALUES
    ('00000000-0000-0000-0000-00000000000a', 'Ana', 'Lima', 'ana@example.com', '+14155550101');
INSERT INTO legacy.customers (first_name, last_name, email, phone) VALUES ('Ana', 'Lima', ' ANA@Example.com ', '(415) 555-0101');
INSERT INTO legacy.ai_customers VALUES ('6f1c7a52-0000-4000-8000-000000000001', 'cy@example.com', 'Cy Diaz', NULL);
INSERT INTO legacy.bookings VALUES (1, 1, 20);
INSERT INTO legacy.conversations VALUES (1, '6f1c7a52-0000-4000-8000-000000000001', 'hi');
GRANT USAGE ON SCHEMA core, legacy, crm TO cu_pgtap_m10_reader, cu_pgtap_m10_stranger;
GRANT SELECT ON ALL TABLES IN SCHEMA core, legacy, crm TO cu_pgtap_m10_reader;
RESET ROLE;

CREATE TEMP TABLE spec AS SELECT $json$ {
  "target": {"table": "core.customers"},
  "sources": [
    {"table": "legacy.customers", "tag": "legacy", "priority": 1,
     "columns": {"first_name": "first_name", "last_name": "last_name", "email": "lower(btrim(email))", "phone": "phone"}},
    {"table": "legacy.ai_customers", "tag": "ai", "priority": 2, "duplicate_free": true,
     "columns": {"first_name": "split_part(name, ' ', 1)", "last_name": "nullif(split_part(name, ' ', 2), '')",
                 "email": "lower(email)", "phone": "phone"}}
  ],
  "match": [
    {"rule": "email", "key": "lower(btrim(email))", "stop": ["noreply@shop.example"]},
    {"rule": "phone", "key": "nullif(right(regexp_replace(phone, '[^0-9]', '', 'g'), 10), '')"}
  ],
  "survivorship": {"columns": {"first_name": "longest"}},
  "references": [{"table": "legacy.conversations", "column": "customer_id", "source": "ai", "new_column": "customer_uuid"}]
} $json$::jsonb AS s;
CREATE TEMP TABLE people_spec AS SELECT $json$ {
  "target": {"table": "crm.people", "create": true, "key": "person_id", "key_type": "bigint",
             "columns": {"email": "text", "name": "varchar(80)"}},
  "sources": [
    {"table": "crm.leads", "tag": "lead", "columns": {"email": "lower(email)", "name": "name"}},
    {"table": "crm.contacts", "columns": {"email": "lower(email)", "name": "full_name"}}
  ],
  "match": [{"rule": "email", "key": "email"}]
} $json$::jsonb AS s;
GRANT SELECT ON spec, people_spec TO PUBLIC;

-- ---------------------------------------------------------------- privileges: only the tables' owner plans
SET LOCAL ROLE cu_pgtap_m10_reader;
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.merge('m', (SELECT s FROM spec))$$), '42501',
          'a role that may read the tables but does not own them cannot plan a merge of them (42501)');
RESET ROLE;
SET LOCAL ROLE cu_pgtap_m10_stranger;
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.merge('m', (SELECT s FROM spec))$$), '42501',
          'a role with USAGE on the schemas but no privilege on the tables cannot plan a merge of them (42501)');
RESET ROLE;
SET LOCAL ROLE cu_pgtap_m10_outsider;
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.merge('m', (SELECT s FROM spec))$$), '42501',
          'a role without any privilege cannot plan a merge of the tables (42501)');
RESET ROLE;
SELECT is((SELECT count(*) FROM customer_unify.migration), 0::bigint, 'the refused plans stored nothing');

-- ---------------------------------------------------------------- a valid plan, by the tables' owner
SET LOCAL ROLE cu_pgtap_m10_owner;
SELECT is(pg_typeof(customer_unify.merge('m', (SELECT s FROM spec)))::text, 'bigint',
          'the owner of the tables plans the merge: merge() returns a bigint migration id');
RESET ROLE;
SELECT is((SELECT format('%s|%s|%s|%s', kind, state, source::text, owner) FROM customer_unify.migration WHERE name = 'm'),
          'merge|planned|core.customers|cu_pgtap_m10_owner',
          'migration row: kind merge, state planned, source the existing target, owner the planner');
SELECT is((SELECT state FROM customer_unify.status('m')), 'planned', 'status() reports planned');
SELECT is((SELECT string_agg(format('%s|%s|%s|created=%s|live=%s', tag, role, relid::text, created::text, live::text), ';' ORDER BY tag)
             FROM customer_unify.migration_relation WHERE migration_id = pg_temp.mid('m')),
          'ai|source|legacy.ai_customers|created=false|live=true;'
          'legacy|source|legacy.customers|created=false|live=true;'
          'ref1|reference|legacy.conversations|created=false|live=true;'
          'ref2|reference|legacy.bookings|created=false|live=true;'
          'target|target|core.customers|created=false|live=true',
          'migration_relation: the target, both sources and both referencing tables, live, none created');
SELECT is((SELECT string_agg(format('%s.%s', nspname, relname), ',' ORDER BY tag)
             FROM customer_unify.migration_relation WHERE migration_id = pg_temp.mid('m')),
          'legacy.ai_customers,legacy.customers,legacy.conversations,legacy.bookings,core.customers',
          'migration_relation keeps the names the relations had when planned');

-- ---------------------------------------------------------------- nothing created
SELECT hasnt_schema('m_merge', 'merge creates no work schema');
SELECT hasnt_schema('m_compat', 'merge creates no compat schema');
SELECT hasnt_schema('m_archive', 'merge creates no archive schema');
SELECT is(pg_temp.cols('legacy.conversations'), ARRAY['id', 'customer_id', 'body'],
          'merge adds no column to the named reference legacy.conversations');
SELECT is(pg_temp.cols('legacy.bookings'), ARRAY['id', 'customer_id', 'total'],
          'merge adds no column to the found reference legacy.bookings');
SELECT is(pg_temp.cols('core.customers'), ARRAY['id', 'first_name', 'last_name', 'email', 'phone', 'updated_at'],
          'merge leaves the target''s columns alone');
SELECT is_empty($$SELECT tgrelid::regclass::text || ' ' || tgname FROM pg_trigger
                   WHERE NOT tgisinternal AND tgrelid IN ('core.customers'::regclass, 'legacy.customers'::regclass,
                         'legacy.ai_customers'::regclass, 'legacy.bookings'::regclass, 'legacy.conversations'::regclass)$$,
                'merge creates no trigger on the target, the sources or the references');
SELECT is((SELECT string_agg(conrelid::regclass::text || ' ' || conname, ',' ORDER BY conrelid::regclass::text, conname)
             FROM pg_constraint WHERE conrelid IN ('legacy.bookings'::regclass, 'legacy.conversations'::regclass)),
          'legacy.bookings bookings_customer_id_fkey,legacy.bookings bookings_pkey,legacy.conversations conversations_pkey',
          'merge adds no constraint to the referencing tables');
SELECT is((SELECT count(*) FROM customer_unify.step WHERE migration_id = pg_temp.mid('m'))
          + (SELECT count(*) FROM customer_unify.step_log WHERE migration_id = pg_temp.mid('m'))
          + (SELECT count(*) FROM customer_unify.backfill_state WHERE migration_id = pg_temp.mid('m')),
          0::bigint, 'no frozen plan, no step ran, no backfill checkpoint before start');
SELECT is((SELECT count(*) FROM customer_unify.id_map WHERE migration_id = pg_temp.mid('m')), 0::bigint,
          'the crosswalk is empty while planned');

-- ---------------------------------------------------------------- the normalized spec
SELECT is(ARRAY(SELECT e->>'tag' FROM jsonb_array_elements(pg_temp.spec('m')->'sources') e),
          ARRAY['target', 'legacy', 'ai'],
          'sources: the existing target first (tag target), then the sources in spec order');
SELECT is((SELECT string_agg(format('%s:%s', e->>'tag', e->>'priority'), ',') FROM jsonb_array_elements(pg_temp.spec('m')->'sources') e),
          'target:0,legacy:1,ai:2', 'priorities: the target''s rows 0, the sources as given');
SELECT is((SELECT string_agg(format('%s:anchor=%s,keep=%s,duplicate_free=%s', e->>'tag', e->>'anchor', e->>'keep', e->>'duplicate_free'), ';')
             FROM jsonb_array_elements(pg_temp.spec('m')->'sources') e),
          'target:anchor=true,keep=true,duplicate_free=false;legacy:anchor=false,keep=false,duplicate_free=false;'
          'ai:anchor=false,keep=false,duplicate_free=true',
          'the anchor source target is kept; the sources default to keep false; duplicate_free as given');
SELECT is((SELECT string_agg(format('%s:%s:%s:%s', e->>'tag', (e->>'relid')::oid::regclass::text, e->>'key', e->>'key_type'), ';')
             FROM jsonb_array_elements(pg_temp.spec('m')->'sources') e),
          'target:core.customers:id:uuid;legacy:legacy.customers:id:integer;ai:legacy.ai_customers:id:character varying(36)',
          'each source carries its table, key and key type (uuid, integer, varchar(36))');
SELECT is(pg_temp.spec('m')->'sources'->0->'columns',
          '{"email": "s.email", "phone": "s.phone", "last_name": "s.last_name", "first_name": "s.first_name"}'::jsonb,
          'the anchor source maps the target''s own mapped columns');
SELECT is(pg_temp.spec('m')->'sources'->2->'columns', (SELECT s->'sources'->1->'columns' FROM spec),
          'a source keeps its column expressions as given');
SELECT is((SELECT format('%s.%s|create=%s|key=%s %s|default=%s', t->>'schema', t->>'table', t->>'create', t->>'key',
                          t->>'key_type', t->>'key_default')
             FROM (SELECT pg_temp.spec('m')->'target' AS t) x),
          'core.customers|create=false|key=id uuid|default=gen_random_uuid()',
          'target: the existing table, its uuid key and the key''s default');
SELECT is(pg_temp.spec('m')->'target'->'columns',
          '{"email": "text", "phone": "text", "last_name": "text", "first_name": "text"}'::jsonb,
          'target: only the columns some source maps, with their types (not updated_at)');
SELECT is((SELECT string_agg(format('%s|%s|%s', r->>'rule', r->>'key', r->'stop'), ';' ORDER BY o)
             FROM jsonb_array_elements(pg_temp.spec('m')->'match') WITH ORDINALITY x(r, o)),
          $t$email|lower(btrim(email))|["noreply@shop.example"];phone|nullif(right(regexp_replace(phone, '[^0-9]', '', 'g'), 10), '')|[]$t$,
          'match rules are kept in order, stop defaults to []');
SELECT is(format('%s|%s', pg_temp.spec('m')->>'max_key_rows', pg_temp.spec('m')->'survivorship'),
          '20|{"columns": {"first_name": "longest"}, "default": "priority"}',
          'max_key_rows defaults to 20, the survivorship default to priority');
SELECT is((SELECT string_agg(format('%s|n=%s|%s.%s:%s|source=%s|new=%s|fk=%s', r->>'tag', r->>'n', (r->>'relid')::oid::regclass::text,
                                    r->>'column', r->>'column_type', r->>'source', r->>'new_column', r->>'fk'), ';' ORDER BY (r->>'n')::int)
             FROM jsonb_array_elements(pg_temp.spec('m')->'references') r),
          'ref1|n=1|legacy.conversations.customer_id:character varying(36)|source=ai|new=customer_uuid|fk=conversations_customer_uuid_fkey;'
          'ref2|n=2|legacy.bookings.customer_id:integer|source=legacy|new=customer_id_merged|fk=bookings_customer_id_merged_fkey',
          'references: the named one first, then the foreign key to legacy.customers found, with new column <column>_merged');
SELECT is(format('%s|%s|%s', pg_temp.spec('m')->>'work_schema', pg_temp.spec('m')->>'compat_schema', pg_temp.spec('m')->>'archive_schema'),
          'm_merge|m_compat|m_archive', 'the spec names the schemas <name>_merge, <name>_compat and <name>_archive');
SELECT is(pg_temp.spec('m')->'args', (SELECT s FROM spec), 'the spec as given is kept under args');

-- ---------------------------------------------------------------- preview: what start will do, nothing ran
SELECT is(ARRAY(SELECT DISTINCT phase FROM customer_unify.preview('m') ORDER BY 1),
          ARRAY['backfill', 'cutover', 'finalize', 'purge', 'rollback', 'start', 'validate'],
          'preview() shows every phase of a merge');
SELECT is(ARRAY(SELECT statement FROM customer_unify.preview('m') WHERE phase = 'start' AND statement LIKE 'LOCK %' ORDER BY step),
          ARRAY['LOCK TABLE ONLY legacy.ai_customers IN SHARE ROW EXCLUSIVE MODE',
                'LOCK TABLE ONLY legacy.customers IN SHARE ROW EXCLUSIVE MODE',
                'LOCK TABLE ONLY core.customers IN SHARE ROW EXCLUSIVE MODE'],
          'start locks the sources and the target first (SHARE ROW EXCLUSIVE: writers wait)');
SELECT is(ARRAY(SELECT regexp_replace(statement, '^ALTER TABLE (\S+) ENABLE ALWAYS TRIGGER customer_unify_[0-9]+_', '\1 ')
                  FROM customer_unify.preview('m') WHERE phase = 'start' AND statement LIKE '%ENABLE ALWAYS TRIGGER%' ORDER BY 1),
          ARRAY['core.customers merge_del', 'core.customers merge_ins', 'core.customers merge_upd',
                'legacy.ai_customers merge_del', 'legacy.ai_customers merge_ins', 'legacy.ai_customers merge_upd',
                'legacy.bookings ref2', 'legacy.conversations ref1',
                'legacy.customers merge_del', 'legacy.customers merge_ins', 'legacy.customers merge_upd'],
          'start will make every capture and reference trigger ENABLE ALWAYS');
SELECT is((SELECT count(*) FROM customer_unify.step_log WHERE migration_id = pg_temp.mid('m'))
          + (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'm\_%'),
          0::bigint, 'preview() runs nothing');

-- ---------------------------------------------------------------- a table of a planned merge is taken
SET LOCAL ROLE cu_pgtap_m10_owner;
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.merge('m_again', (SELECT s FROM spec))$$), '55006',
          'a table of a planned merge cannot take part in another one (55006)');
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.merge('m', (SELECT s FROM people_spec))$$), '42710',
          'migration names are unique (42710)');
RESET ROLE;

-- ---------------------------------------------------------------- a created target
SET LOCAL ROLE cu_pgtap_m10_owner;
SELECT lives_ok($$SELECT customer_unify.merge('p', (SELECT s FROM people_spec))$$,
                'plan a merge of crm.leads and crm.contacts into a new table crm.people');
RESET ROLE;
SELECT hasnt_table('crm', 'people', 'a created target does not exist while planned');
SELECT is((SELECT format('%s|%s|%s', kind, state, source::text) FROM customer_unify.migration WHERE name = 'p'),
          'merge|planned|crm.leads', 'the migration''s source is the first source when the target is created');
SELECT is((SELECT string_agg(format('%s|%s|%s|created=%s|live=%s', tag, role, relid::text, created::text, live::text), ';' ORDER BY tag)
             FROM customer_unify.migration_relation WHERE migration_id = pg_temp.mid('p')),
          'lead|source|crm.leads|created=false|live=true;s2|source|crm.contacts|created=false|live=true',
          'migration_relation: only the sources (the target is registered when start creates it)');
SELECT is((SELECT string_agg(format('%s:%s:anchor=%s:%s', e->>'tag', e->>'priority', e->>'anchor', e->>'key_type'), ',')
             FROM jsonb_array_elements(pg_temp.spec('p')->'sources') e),
          'lead:1:anchor=false:bigint,s2:2:anchor=false:text',
          'no anchor source; a source without tag is s<N>, priorities default to the position');
SELECT is((SELECT format('%s.%s|create=%s|key=%s %s', t->>'schema', t->>'table', t->>'create', t->>'key', t->>'key_type')
             FROM (SELECT pg_temp.spec('p')->'target' AS t) x),
          'crm.people|create=true|key=person_id bigint', 'target: the new table, its key and key type');
SELECT is(ARRAY(SELECT jsonb_object_keys(pg_temp.spec('p')->'target'->'columns') ORDER BY 1), ARRAY['email', 'name'],
          'target: the columns of the new table as given');
SELECT is(pg_temp.spec('p')->'target'->'columns'->>'name', 'varchar(80)',
          'a created target''s column type keeps its type modifier, as written');
SELECT is(jsonb_array_length(pg_temp.spec('p')->'references'), 0, 'no references found for the created target''s sources');

-- ---------------------------------------------------------------- the planned merges hold no rights for others
SET LOCAL ROLE cu_pgtap_m10_reader;
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.start('m')$$), '42501',
          'a role that neither planned the merge nor owns its tables cannot start it (42501)');
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.rollback('p')$$), '42501',
          'nor roll it back (42501)');
RESET ROLE;
SELECT is((SELECT string_agg(name || ':' || state, ',' ORDER BY name) FROM customer_unify.migration), 'm:planned,p:planned',
          'both merges are still planned');

SELECT * FROM finish();
ROLLBACK;

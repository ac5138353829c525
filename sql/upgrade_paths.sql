-- Upgrade paths (in the manner of pg_hint_plan's oldextversions):
-- every version installs from its own script; every ALTER EXTENSION ...
-- UPDATE path ends with exactly the definitions a fresh install of the
-- default version has (function bodies, table columns, constraints,
-- indexes, views, types, triggers, policies, grants, comments, event
-- triggers, dump registration, registry rows); and migrations live on an
-- older version are carried across the update and finished on the new one.
SET client_min_messages = warning;
DROP EXTENSION customer_unify CASCADE;
SET check_function_bodies = off;  -- it reads tables of the extension, not installed yet
CREATE FUNCTION pg_temp.definitions() RETURNS TABLE (kind text, name text, definition text) LANGUAGE sql AS $$
    WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'customer_unify'),
    members AS (
        SELECT d.classid, d.objid FROM pg_depend d, ext
         WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
    )
    -- functions and procedures: the whole definition, privileges, comment
    SELECT 'function', p.oid::regprocedure::text,
           pg_get_functiondef(p.oid) || ' acl=' || coalesce(p.proacl, acldefault('f'::"char", p.proowner))::text ||
           ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '-')
      FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
    UNION ALL
    -- relations: kind, options, privileges (an explicit ACL equal to the
    -- default is the default), comment, row-level security
    SELECT 'relation', c.oid::regclass::text,
           concat_ws(' ', c.relkind, c.relpersistence, c.reloptions::text,
                     -- a default ACL and its explicit form are the same privileges
                     'acl=' || (SELECT array_agg(x ORDER BY x::text)
                                  FROM unnest(coalesce(c.relacl, acldefault((CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::"char",
                                                                            c.relowner))) x)::text,
                     'rls=' || c.relrowsecurity || '/' || c.relforcerowsecurity,
                     'comment=' || coalesce(obj_description(c.oid, 'pg_class'), '-'),
                     CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END)
      FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
    UNION ALL
    -- columns, in order
    SELECT 'column', c.oid::regclass::text || '.' || a.attname,
           concat_ws(' ', row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum), format_type(a.atttypid, a.atttypmod),
                     CASE WHEN a.attnotnull THEN 'not null' END, pg_get_expr(ad.adbin, ad.adrelid),
                     a.attidentity, a.attgenerated, 'acl=' || coalesce(a.attacl::text, '-'),
                     'comment=' || coalesce(col_description(c.oid, a.attnum), '-'))
      FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
    UNION ALL
    -- constraints and indexes of member tables
    SELECT 'constraint', k.conrelid::regclass::text || '.' || k.conname, pg_get_constraintdef(k.oid)
      FROM members m JOIN pg_constraint k ON m.classid = 'pg_class'::regclass AND k.conrelid = m.objid
    UNION ALL
    SELECT 'index', i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
      FROM members m JOIN pg_index i ON m.classid = 'pg_class'::regclass AND i.indrelid = m.objid
    UNION ALL
    -- policies and triggers on member tables
    SELECT 'policy', p.polrelid::regclass::text || '.' || p.polname,
           concat_ws(' ', p.polcmd, p.polpermissive, p.polroles::text, pg_get_expr(p.polqual, p.polrelid),
                     pg_get_expr(p.polwithcheck, p.polrelid))
      FROM members m JOIN pg_policy p ON m.classid = 'pg_class'::regclass AND p.polrelid = m.objid
    UNION ALL
    SELECT 'trigger', t.tgrelid::regclass::text || '.' || t.tgname, pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text
      FROM members m JOIN pg_trigger t ON m.classid = 'pg_class'::regclass AND t.tgrelid = m.objid AND NOT t.tgisinternal
    UNION ALL
    -- types (composite ones: their attributes come with the relation)
    SELECT 'type', ty.oid::regtype::text, concat_ws(' ', ty.typtype, ty.typrelid::regclass::text)
      FROM members m JOIN pg_type ty ON m.classid = 'pg_type'::regclass AND ty.oid = m.objid
    UNION ALL
    SELECT 'event trigger', e.evtname, concat_ws(' ', e.evtevent, e.evtfoid::regprocedure::text, e.evtenabled, e.evttags::text)
      FROM members m JOIN pg_event_trigger e ON m.classid = 'pg_event_trigger'::regclass AND e.oid = m.objid
    UNION ALL
    SELECT 'schema', n.nspname, concat_ws(' ', 'acl=' || coalesce(n.nspacl::text, '-'))
      FROM pg_namespace n WHERE n.nspname = 'customer_unify'
    UNION ALL
    -- what pg_dump keeps of the catalog
    SELECT 'dumped', c.oid::regclass::text, coalesce(x.cond, '')
      FROM pg_extension e, unnest(e.extconfig, e.extcondition) x(rel, cond)
      JOIN pg_class c ON c.oid = x.rel
     WHERE e.extname = 'customer_unify'
    UNION ALL
    -- the registry's rows
    SELECT 'operation', o.kind, concat_ws(' ', o.validate, o.steps, o.copy_plan, o.verify, o.dependents, o.describe, o.security)
      FROM customer_unify.operation o
    UNION ALL
    -- and every member object at all, by description
    SELECT 'member', pg_describe_object(m.classid, m.objid, 0), ''
      FROM members m
$$;
RESET check_function_bodies;
SELECT default_version FROM pg_available_extensions WHERE name = 'customer_unify';
SELECT version FROM pg_available_extension_versions WHERE name = 'customer_unify' ORDER BY version;
-- the fresh install of the default version is the reference
CREATE EXTENSION customer_unify;
CREATE TEMP TABLE reference AS SELECT * FROM pg_temp.definitions();
SELECT kind, count(*) FROM reference GROUP BY kind ORDER BY kind;
DROP EXTENSION customer_unify;
-- every version installs from its script
DO $$
DECLARE v text;
BEGIN
    FOR v IN SELECT version FROM pg_available_extension_versions WHERE name = 'customer_unify' ORDER BY version LOOP
        EXECUTE format('CREATE EXTENSION customer_unify VERSION %L', v);
        RAISE WARNING 'installed %', v;
        EXECUTE 'DROP EXTENSION customer_unify';
    END LOOP;
END
$$;
-- every update path to the default version ends where a fresh install does
CREATE TEMP TABLE differences (path text, side text, kind text, name text, definition text);
DO $$
DECLARE p record;
BEGIN
    FOR p IN
        SELECT u.source, u.target, u.path
          FROM pg_extension_update_paths('customer_unify') u
         WHERE u.path IS NOT NULL
           AND u.target = (SELECT default_version FROM pg_available_extensions WHERE name = 'customer_unify')
         ORDER BY u.source
    LOOP
        EXECUTE format('CREATE EXTENSION customer_unify VERSION %L', p.source);
        EXECUTE format('ALTER EXTENSION customer_unify UPDATE TO %L', p.target);
        INSERT INTO differences
        SELECT p.path, 'fresh install only', * FROM (SELECT * FROM reference EXCEPT SELECT * FROM pg_temp.definitions()) x
        UNION ALL
        SELECT p.path, 'update only', * FROM (SELECT * FROM pg_temp.definitions() EXCEPT SELECT * FROM reference) x;
        RAISE WARNING 'path %: % definitions compared', p.path, (SELECT count(*) FROM reference);
        EXECUTE 'DROP EXTENSION customer_unify';
    END LOOP;
END
$$;
SELECT path, side, kind, name, left(definition, 200) AS definition FROM differences ORDER BY 1, 3, 4, 2;
SELECT count(*) AS update_paths FROM pg_extension_update_paths('customer_unify') WHERE path IS NOT NULL;

-------------------------------------------------------------------------------
-- Migrations live on 1.0 are carried across ALTER EXTENSION UPDATE and
-- finished on the new version: one in the middle of its backfill, one cut
-- over; one finalized on 1.0 keeps its view working.
-------------------------------------------------------------------------------
CREATE EXTENSION customer_unify VERSION '1.0';
CREATE SCHEMA up;
CREATE TABLE up.a (id bigint PRIMARY KEY, email text NOT NULL, nick text, bio text);
INSERT INTO up.a SELECT g, 'a' || g, 'n' || g, 'b' || g FROM generate_series(1, 500) g;
CREATE TABLE up.b (id int PRIMARY KEY, email text NOT NULL, nick text);
INSERT INTO up.b SELECT g, 'b' || g, 'n' || g FROM generate_series(1, 50) g;
CREATE TABLE up.c (id int PRIMARY KEY, email text NOT NULL, nick text);
INSERT INTO up.c SELECT g, 'c' || g, 'n' || g FROM generate_series(1, 20) g;
SELECT customer_unify.split('up_a', 'up.a', 'a_bits', ARRAY['nick', 'bio']) > 0
   AND customer_unify.split('up_b', 'up.b', 'b_bits', ARRAY['nick']) > 0
   AND customer_unify.split('up_c', 'up.c', 'c_bits', ARRAY['nick']) > 0 AS planned;
SELECT customer_unify.start('up_a'), customer_unify.start('up_b'), customer_unify.start('up_c');
CALL customer_unify.backfill('up_a', batch_size => 50, max_batches => 3);
CALL customer_unify.backfill('up_b');
CALL customer_unify.backfill('up_c');
SELECT customer_unify.cutover('up_b'), customer_unify.cutover('up_c');
SELECT customer_unify.finalize('up_c');
-- writes on 1.0's triggers, before the update
UPDATE up.a SET nick = 'before update' WHERE id IN (10, 400);
DELETE FROM up.a WHERE id = 20;
INSERT INTO up_b_compat.b (id, email, nick) VALUES (100, 'via 1.0 view', 'v');
SELECT name, state, (SELECT last_key FROM customer_unify.backfill_state b WHERE b.migration_id = m.id) AS last_key
  FROM customer_unify.migration m ORDER BY name;

ALTER EXTENSION customer_unify UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'customer_unify';
-- the live ones run on 1.1's machinery now; the finalized one keeps its 1.0 router
SELECT m.name, t.tgrelid::regclass AS rel, regexp_replace(t.tgname, '_\d+_', '_<id>_') AS tgname, t.tgenabled
  FROM pg_trigger t JOIN customer_unify.migration m ON t.tgname LIKE 'customer\_unify\_' || m.id || '\_%'
 ORDER BY 1, 2, 3;
SELECT tgrelid::regclass, tgname, tgenabled FROM pg_trigger WHERE tgname IN ('customer_unify_sync', 'customer_unify_sync_flush', 'customer_unify_route')
 ORDER BY 1, 2;
SELECT b.stream, b.last_key, b.position IS NOT NULL AS has_position, b.key_type, b.finished_at IS NOT NULL AS finished
  FROM customer_unify.backfill_state b JOIN customer_unify.migration m ON m.id = b.migration_id ORDER BY m.name;
-- writes on 1.1's triggers, then the migrations are finished
UPDATE up.a SET nick = 'after update' WHERE id IN (11, 401);
DELETE FROM up.a WHERE id = 21;
INSERT INTO up.a VALUES (1000, 'new', 'new row', 'x');
INSERT INTO up_b_compat.b (id, email, nick) VALUES (101, 'via 1.1 view', 'v2');
UPDATE up_b_compat.b SET nick = 'updated via view' WHERE id = 1;
INSERT INTO up_c_compat.c (id, email, nick) VALUES (100, 'finalized on 1.0', 'still works') RETURNING *;
UPDATE up_c_compat.c SET nick = 'updated' WHERE id = 100 RETURNING *;
CALL customer_unify.backfill('up_a', batch_size => 50);
SELECT name, (SELECT count(*) FROM customer_unify.verify(name) v WHERE NOT v.ok) AS failing
  FROM customer_unify.migration WHERE name IN ('up_a', 'up_b') ORDER BY name;
SELECT customer_unify.cutover('up_a');
-- one-letter table names match unrelated functions earlier tests leave behind
-- (split_sync's sync.diff() mentions "b" and "nick"): ignore text matches
SELECT customer_unify.finalize('up_a', ignore_text_matches => true),
       customer_unify.finalize('up_b', ignore_text_matches => true);
SELECT id, email, nick, bio FROM up_a_compat.a WHERE id IN (10, 11, 20, 21, 400, 401, 1000) ORDER BY id;
SELECT count(*) AS rows, count(DISTINCT id) AS ids FROM up_a_compat.a;
SELECT id, email, nick FROM up_b_compat.b WHERE id IN (1, 100, 101) ORDER BY id;
SELECT name, state FROM customer_unify.migration ORDER BY name;
-- a migration started on 1.0 and rolled back on 1.1 leaves nothing behind
CREATE TABLE up.d (id int PRIMARY KEY, nick text);
DROP EXTENSION customer_unify CASCADE;
CREATE EXTENSION customer_unify VERSION '1.0';
SELECT customer_unify.split('up_d', 'up.d', 'd_bits', ARRAY['nick']) > 0 AS planned;
SELECT customer_unify.start('up_d');
CALL customer_unify.backfill('up_d');
SELECT customer_unify.cutover('up_d');
ALTER EXTENSION customer_unify UPDATE;
SELECT customer_unify.rollback('up_d');
SELECT to_regclass('up.d_bits') AS target, to_regnamespace('up_d_compat') AS compat,
       (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'up.d'::regclass) AS triggers_left,
       (SELECT string_agg(attname, ', ' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'up.d'::regclass AND attnum > 0) AS columns;
DROP SCHEMA up CASCADE;
-- leave the default version installed for later tests
DROP EXTENSION customer_unify CASCADE;
CREATE EXTENSION customer_unify;
SELECT extversion FROM pg_extension WHERE extname = 'customer_unify';

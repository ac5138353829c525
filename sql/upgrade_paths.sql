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
           CASE WHEN p.prokind = 'a'
                THEN (SELECT concat_ws(' ', 'aggregate', ag.aggtransfn::regprocedure::text, ag.aggtranstype::regtype::text,
                                       ag.agginitval, p.proparallel)
                        FROM pg_aggregate ag WHERE ag.aggfnoid = p.oid)
                ELSE pg_get_functiondef(p.oid) END || ' acl=' || coalesce(p.proacl, acldefault('f'::"char", p.proowner))::text ||
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
-- the live ones run on 1.1's machinery now (1.2 keeps it); the finalized one keeps its 1.0 router
SELECT m.name, t.tgrelid::regclass AS rel, regexp_replace(t.tgname, '_\d+_', '_<id>_') AS tgname, t.tgenabled
  FROM pg_trigger t JOIN customer_unify.migration m ON t.tgname LIKE 'customer\_unify\_' || m.id || '\_%'
 ORDER BY 1, 2, 3;
SELECT tgrelid::regclass, tgname, tgenabled FROM pg_trigger WHERE tgname IN ('customer_unify_sync', 'customer_unify_sync_flush', 'customer_unify_route')
 ORDER BY 1, 2;
SELECT b.stream, b.last_key, b.position IS NOT NULL AS has_position, b.key_type, b.finished_at IS NOT NULL AS finished
  FROM customer_unify.backfill_state b JOIN customer_unify.migration m ON m.id = b.migration_id ORDER BY m.name;
-- writes on the new version's triggers, then the migrations are finished
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
-- a migration started on 1.0 and rolled back on the default version leaves nothing behind
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

-------------------------------------------------------------------------------
-- Migrations live on 1.1 are carried across ALTER EXTENSION UPDATE to 1.2
-- and finished there: one in every state 1.1 can leave a migration in
-- (planned, started with a partial backfill, backfilled, verified, cut over,
-- finalized), one cut over on 1.1 and rolled back on 1.2.  Every write goes
-- to a shadow table too (plain, no migration), so that each migration's end
-- can be compared with what was written, row for row.  The update keeps the
-- step logs, checkpoints, frozen plans, triggers and views as they were, and
-- adds 1.2's id_map and match_decision.
-------------------------------------------------------------------------------
DROP EXTENSION customer_unify CASCADE;
CREATE EXTENSION customer_unify VERSION '1.1';
SELECT extversion FROM pg_extension WHERE extname = 'customer_unify';
-- everything the extension keeps about live migrations, per migration, as md5s
CREATE FUNCTION pg_temp.kept() RETURNS TABLE (name text, what text, md5 text) LANGUAGE sql AS $$
    SELECT m.name, x.what, x.md5
      FROM customer_unify.migration m,
      LATERAL (
        SELECT 'migration', md5(row(m.*)::text)
        UNION ALL
        SELECT 'step_log', md5(coalesce(string_agg(row(l.*)::text, E'\n' ORDER BY l.id), ''))
          FROM customer_unify.step_log l WHERE l.migration_id = m.id
        UNION ALL
        SELECT 'backfill_state', md5(coalesce(string_agg(row(b.*)::text, E'\n' ORDER BY b.stream), ''))
          FROM customer_unify.backfill_state b WHERE b.migration_id = m.id
        UNION ALL
        SELECT 'step', md5(coalesce(string_agg(row(s.*)::text, E'\n' ORDER BY s.phase, s.seq), ''))
          FROM customer_unify.step s WHERE s.migration_id = m.id
        UNION ALL
        SELECT 'relations', md5(coalesce(string_agg(row(r.*)::text, E'\n' ORDER BY r.tag), ''))
          FROM customer_unify.migration_relation r WHERE r.migration_id = m.id
        UNION ALL
        SELECT 'sync_maps', md5(coalesce(string_agg(row(s.*)::text || row(c.*)::text, E'\n' ORDER BY s.name, c.ord), ''))
          FROM customer_unify.sync_map s LEFT JOIN customer_unify.sync_map_column c ON c.map_id = s.id
         WHERE s.migration_id = m.id
        UNION ALL
        SELECT 'triggers', md5(coalesce(string_agg(pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text, E'\n' ORDER BY t.tgname, t.tgrelid), ''))
          FROM pg_trigger t WHERE t.tgname LIKE 'customer\_unify\_' || m.id || '\_%'
        UNION ALL
        SELECT 'views', md5(coalesce(string_agg(pg_get_viewdef(r.relid) || coalesce(c.reloptions::text, ''), E'\n' ORDER BY r.tag), ''))
          FROM customer_unify.migration_relation r JOIN pg_class c ON c.oid = r.relid
         WHERE r.migration_id = m.id AND c.relkind = 'v'
      ) x(what, md5)
$$;
CREATE SCHEMA up11;
-- what a relation is made of (columns, constraints, indexes, triggers,
-- policies, privileges, options), by its oid; not temporary, as it is used
-- after a reconnect, and it names no table, so finalize's text-match gate
-- does not see it
CREATE FUNCTION up11.shape(rel regclass) RETURNS text LANGUAGE sql AS $$
    SELECT concat_ws(E'\n',
        (SELECT string_agg(concat_ws(' ', a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                                     pg_get_expr(d.adbin, d.adrelid), a.attacl::text), ', ' ORDER BY a.attnum)
           FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped),
        (SELECT string_agg(k.conname || ' ' || pg_get_constraintdef(k.oid), ', ' ORDER BY k.conname)
           FROM pg_constraint k WHERE k.conrelid = rel),
        (SELECT string_agg(pg_get_indexdef(i.indexrelid), ', ' ORDER BY 1) FROM pg_index i WHERE i.indrelid = rel),
        'triggers: ' || (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = rel),
        'policies: ' || (SELECT count(*) FROM pg_policy p WHERE p.polrelid = rel),
        (SELECT concat_ws(' ', c.relkind, c.relacl::text, c.reloptions::text, c.relrowsecurity, c.relforcerowsecurity,
                          obj_description(c.oid, 'pg_class'))
           FROM pg_class c WHERE c.oid = rel))
$$;
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['u11_planned', 'u11_filled', 'u11_verified', 'u11_cut', 'u11_final', 'u11_undo'] LOOP
        EXECUTE format('CREATE TABLE up11.%I (id int PRIMARY KEY, email text NOT NULL, nick text, note text)', t);
        EXECUTE format('INSERT INTO up11.%I SELECT g, %L || g, %L || g, %L || g FROM generate_series(1, 12) g',
                       t, 'e', 'n', 'x');
    END LOOP;
END
$$;
-- the one caught in the middle of its backfill has a text key: its checkpoint is a text in binary form
CREATE TABLE up11.u11_partial (id text PRIMARY KEY, email text NOT NULL, nick text, note text);
INSERT INTO up11.u11_partial SELECT 'k' || lpad(g::text, 2, '0'), 'e' || g, 'n' || g, 'x' || g FROM generate_series(1, 12) g;
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['u11_planned', 'u11_partial', 'u11_filled', 'u11_verified', 'u11_cut', 'u11_final', 'u11_undo'] LOOP
        EXECUTE format('CREATE TABLE up11.%I AS TABLE up11.%I', t || '_shadow', t);
    END LOOP;
END
$$;
SELECT up11.shape('up11.u11_undo') AS undo_shape_before \gset
SELECT count(*) AS migrations FROM (
    SELECT customer_unify.split(t, ('up11.' || t)::regclass, t || '_bits', ARRAY['nick', 'note'], link_column => 'person_id')
      FROM unnest(ARRAY['u11_planned', 'u11_partial', 'u11_filled', 'u11_verified', 'u11_cut', 'u11_final', 'u11_undo']) t) x;
SELECT customer_unify.start(t) FROM unnest(ARRAY['u11_partial', 'u11_filled', 'u11_verified', 'u11_cut', 'u11_final', 'u11_undo']) t;
CALL customer_unify.backfill('u11_partial', batch_size => 2, max_batches => 1);
CALL customer_unify.backfill('u11_filled');
CALL customer_unify.backfill('u11_verified');
CALL customer_unify.backfill('u11_cut');
CALL customer_unify.backfill('u11_final');
CALL customer_unify.backfill('u11_undo');
SELECT count(*) FILTER (WHERE NOT ok) AS failing FROM customer_unify.verify('u11_verified');
SELECT customer_unify.cutover('u11_cut'), customer_unify.cutover('u11_final'), customer_unify.cutover('u11_undo');
SELECT customer_unify.finalize('u11_final');
SELECT name, state FROM customer_unify.migration WHERE name LIKE 'u11%' ORDER BY name;

-- writes on 1.1's triggers and views
UPDATE up11.u11_planned SET nick = 'on 1.1' WHERE id = 1;
UPDATE up11.u11_planned_shadow SET nick = 'on 1.1' WHERE id = 1;
-- the partial one: rows behind and ahead of the checkpoint, a new row, a
-- delete ahead of it, a write to a moved column of the new table
UPDATE up11.u11_partial SET nick = 'on 1.1' WHERE id IN ('k01', 'k07');
UPDATE up11.u11_partial_shadow SET nick = 'on 1.1' WHERE id IN ('k01', 'k07');
DELETE FROM up11.u11_partial WHERE id = 'k05';
DELETE FROM up11.u11_partial_shadow WHERE id = 'k05';
INSERT INTO up11.u11_partial VALUES ('k13', 'e13', 'n13 on 1.1', 'x13');
INSERT INTO up11.u11_partial_shadow VALUES ('k13', 'e13', 'n13 on 1.1', 'x13');
UPDATE up11.u11_partial_bits SET note = 'bits on 1.1' WHERE person_id = 'k02';
UPDATE up11.u11_partial_shadow SET note = 'bits on 1.1' WHERE id = 'k02';
UPDATE up11.u11_filled SET note = 'on 1.1' WHERE id = 3;
UPDATE up11.u11_filled_shadow SET note = 'on 1.1' WHERE id = 3;
INSERT INTO up11.u11_filled VALUES (13, 'e13', 'n13', 'on 1.1');
INSERT INTO up11.u11_filled_shadow VALUES (13, 'e13', 'n13', 'on 1.1');
UPDATE up11.u11_verified_bits SET nick = 'bits on 1.1' WHERE person_id = 4;
UPDATE up11.u11_verified_shadow SET nick = 'bits on 1.1' WHERE id = 4;
DELETE FROM up11.u11_verified WHERE id = 12;
DELETE FROM up11.u11_verified_shadow WHERE id = 12;
INSERT INTO u11_cut_compat.u11_cut (id, email, nick, note) VALUES (13, 'e13', 'view on 1.1', 'x13');
INSERT INTO up11.u11_cut_shadow VALUES (13, 'e13', 'view on 1.1', 'x13');
UPDATE u11_cut_compat.u11_cut SET nick = 'view on 1.1', email = 'e5 on 1.1' WHERE id = 5;
UPDATE up11.u11_cut_shadow SET nick = 'view on 1.1', email = 'e5 on 1.1' WHERE id = 5;
DELETE FROM u11_cut_compat.u11_cut WHERE id = 6;
DELETE FROM up11.u11_cut_shadow WHERE id = 6;
INSERT INTO u11_final_compat.u11_final (id, email, nick, note) VALUES (13, 'e13', 'view on 1.1', 'x13');
INSERT INTO up11.u11_final_shadow VALUES (13, 'e13', 'view on 1.1', 'x13');
UPDATE u11_final_compat.u11_final SET note = 'view on 1.1' WHERE id = 7;
UPDATE up11.u11_final_shadow SET note = 'view on 1.1' WHERE id = 7;
DELETE FROM u11_final_compat.u11_final WHERE id = 8;
DELETE FROM up11.u11_final_shadow WHERE id = 8;
INSERT INTO u11_undo_compat.u11_undo (id, email, nick, note) VALUES (13, 'e13', 'view on 1.1', 'x13');
INSERT INTO up11.u11_undo_shadow VALUES (13, 'e13', 'view on 1.1', 'x13');
UPDATE u11_undo_compat.u11_undo SET nick = 'view on 1.1' WHERE id = 2;
UPDATE up11.u11_undo_shadow SET nick = 'view on 1.1' WHERE id = 2;

-- the state the update must carry: step logs and checkpoints ...
SELECT m.name, m.state, (SELECT count(*) FROM customer_unify.step_log l WHERE l.migration_id = m.id) AS logged_steps,
       b.stream, b.last_key, b.rows_done, b.batches, b.key_type, b.position IS NOT NULL AS has_position,
       b.finished_at IS NOT NULL AS finished
  FROM customer_unify.migration m LEFT JOIN customer_unify.backfill_state b ON b.migration_id = m.id
 WHERE m.name LIKE 'u11%' ORDER BY m.name;
-- ... and everything else of theirs, to compare after the update
CREATE TEMP TABLE kept_on_11 AS SELECT * FROM pg_temp.kept();

ALTER EXTENSION customer_unify UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'customer_unify';
-- the step logs and checkpoints, as they were
SELECT m.name, m.state, (SELECT count(*) FROM customer_unify.step_log l WHERE l.migration_id = m.id) AS logged_steps,
       b.stream, b.last_key, b.rows_done, b.batches, b.key_type, b.position IS NOT NULL AS has_position,
       b.finished_at IS NOT NULL AS finished
  FROM customer_unify.migration m LEFT JOIN customer_unify.backfill_state b ON b.migration_id = m.id
 WHERE m.name LIKE 'u11%' ORDER BY m.name;
-- nothing of the migrations changed, row for row (catalog, triggers, views)
SELECT (SELECT count(*) FROM kept_on_11) AS compared,
       coalesce(string_agg(format('%s %s: %s', coalesce(a.name, b.name), coalesce(a.what, b.what),
                                  CASE WHEN a.md5 IS NULL THEN 'new' WHEN b.md5 IS NULL THEN 'gone' ELSE 'changed' END),
                           E'\n' ORDER BY 1), 'none') AS differences
  FROM kept_on_11 a FULL JOIN pg_temp.kept() b ON a.name = b.name AND a.what = b.what
 WHERE a.md5 IS DISTINCT FROM b.md5;
-- 1.2's catalog tables: members of the extension, kept by pg_dump (whole),
-- owned by its owner, and PUBLIC may read them and nothing else
SELECT c.oid::regclass AS rel,
       EXISTS (SELECT 1 FROM pg_depend d, pg_extension e
                WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_extension'::regclass
                  AND d.refobjid = e.oid AND e.extname = 'customer_unify' AND d.deptype = 'e') AS member,
       c.oid = ANY ((SELECT extconfig FROM pg_extension WHERE extname = 'customer_unify')::oid[]) AS dumped,
       (SELECT quote_literal(x.cond) FROM pg_extension e, unnest(e.extconfig, e.extcondition) x(rel, cond)
         WHERE e.extname = 'customer_unify' AND x.rel = c.oid) AS dump_condition,
       c.relowner = (SELECT extowner FROM pg_extension WHERE extname = 'customer_unify') AS owner_is_extowner,
       (SELECT string_agg(p.priv, ',' ORDER BY p.priv)
          FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) p(priv)
         WHERE has_table_privilege('public', c.oid, p.priv)) AS public_may,
       (SELECT string_agg(DISTINCT p.priv, ',')
          FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'REFERENCES']) p(priv)
         WHERE has_any_column_privilege('public', c.oid, p.priv)) AS public_may_columns,
       (SELECT string_agg(format('%s %s', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END, a.privilege_type), ',')
          FROM aclexplode(c.relacl) a WHERE a.grantee <> c.relowner) AS granted
  FROM pg_class c
 WHERE c.oid IN (to_regclass('customer_unify.id_map'), to_regclass('customer_unify.match_decision'))
 ORDER BY 1;
SELECT count(*) AS new_tables_found FROM (VALUES ('customer_unify.id_map'), ('customer_unify.match_decision')) v(rel)
 WHERE to_regclass(v.rel) IS NOT NULL;

-- writes on 1.2 reach the other shape: first in this session, open across
-- the update (its sync and route plans were made before it) ...
UPDATE up11.u11_planned SET note = 'on 1.2' WHERE id = 2;
UPDATE up11.u11_planned_shadow SET note = 'on 1.2' WHERE id = 2;
UPDATE up11.u11_partial SET nick = 'on 1.2' WHERE id IN ('k02', 'k08');
UPDATE up11.u11_partial_shadow SET nick = 'on 1.2' WHERE id IN ('k02', 'k08');
INSERT INTO u11_cut_compat.u11_cut (id, email, nick, note) VALUES (14, 'e14', 'view on 1.2', 'x14') RETURNING *;
INSERT INTO up11.u11_cut_shadow VALUES (14, 'e14', 'view on 1.2', 'x14');
INSERT INTO u11_final_compat.u11_final (id, email, nick, note) VALUES (14, 'e14', 'view on 1.2', 'x14') RETURNING *;
INSERT INTO up11.u11_final_shadow VALUES (14, 'e14', 'view on 1.2', 'x14');
-- ... then in a session that starts on 1.2
\c -
SET client_min_messages = warning;
DELETE FROM up11.u11_partial WHERE id = 'k06';
DELETE FROM up11.u11_partial_shadow WHERE id = 'k06';
INSERT INTO up11.u11_partial VALUES ('k14', 'e14', 'n14 on 1.2', 'x14');
INSERT INTO up11.u11_partial_shadow VALUES ('k14', 'e14', 'n14 on 1.2', 'x14');
UPDATE up11.u11_partial_bits SET note = 'bits on 1.2' WHERE person_id = 'k07';
UPDATE up11.u11_partial_shadow SET note = 'bits on 1.2' WHERE id = 'k07';
SELECT person_id, nick, note FROM up11.u11_partial_bits ORDER BY 1;
SELECT id, nick, note FROM up11.u11_partial WHERE id IN ('k02', 'k07') ORDER BY 1;
UPDATE up11.u11_filled SET nick = 'on 1.2', email = 'e3 on 1.2' WHERE id = 3;
UPDATE up11.u11_filled_shadow SET nick = 'on 1.2', email = 'e3 on 1.2' WHERE id = 3;
DELETE FROM up11.u11_filled WHERE id = 13;
DELETE FROM up11.u11_filled_shadow WHERE id = 13;
INSERT INTO up11.u11_filled VALUES (14, 'e14', 'n14', 'on 1.2');
INSERT INTO up11.u11_filled_shadow VALUES (14, 'e14', 'n14', 'on 1.2');
SELECT person_id, nick, note FROM up11.u11_filled_bits WHERE person_id IN (3, 13, 14) ORDER BY 1;
UPDATE up11.u11_verified_bits SET note = 'bits on 1.2' WHERE person_id = 4;
UPDATE up11.u11_verified_shadow SET note = 'bits on 1.2' WHERE id = 4;
INSERT INTO up11.u11_verified VALUES (14, 'e14', 'n14 on 1.2', 'x14');
INSERT INTO up11.u11_verified_shadow VALUES (14, 'e14', 'n14 on 1.2', 'x14');
SELECT id, nick, note FROM up11.u11_verified WHERE id = 4;
SELECT person_id, nick, note FROM up11.u11_verified_bits WHERE person_id IN (12, 14) ORDER BY 1;
UPDATE u11_cut_compat.u11_cut SET note = 'view on 1.2' WHERE id IN (5, 13) RETURNING *;
UPDATE up11.u11_cut_shadow SET note = 'view on 1.2' WHERE id IN (5, 13);
DELETE FROM u11_cut_compat.u11_cut WHERE id = 7;
DELETE FROM up11.u11_cut_shadow WHERE id = 7;
SELECT person_id, nick, note FROM up11.u11_cut_bits WHERE person_id IN (5, 6, 7, 13, 14) ORDER BY 1;
-- the view of the one finalized on 1.1 still takes every kind of write
UPDATE u11_final_compat.u11_final SET nick = 'view on 1.2', email = 'e13 on 1.2' WHERE id = 13 RETURNING *;
UPDATE up11.u11_final_shadow SET nick = 'view on 1.2', email = 'e13 on 1.2' WHERE id = 13;
UPDATE u11_final_compat.u11_final SET email = 'e7 on 1.2' WHERE id = 7 RETURNING *;
UPDATE up11.u11_final_shadow SET email = 'e7 on 1.2' WHERE id = 7;
DELETE FROM u11_final_compat.u11_final WHERE id = 9 RETURNING *;
DELETE FROM up11.u11_final_shadow WHERE id = 9;
SELECT person_id, nick, note FROM up11.u11_final_bits WHERE person_id IN (7, 8, 9, 13, 14) ORDER BY 1;
SELECT regress_util.fingerprint('u11_final_compat.u11_final') = regress_util.fingerprint('up11.u11_final_shadow') AS final_view_as_written;
INSERT INTO u11_undo_compat.u11_undo (id, email, nick, note) VALUES (14, 'e14', 'view on 1.2', 'x14');
INSERT INTO up11.u11_undo_shadow VALUES (14, 'e14', 'view on 1.2', 'x14');
UPDATE u11_undo_compat.u11_undo SET note = 'view on 1.2' WHERE id IN (2, 13);
UPDATE up11.u11_undo_shadow SET note = 'view on 1.2' WHERE id IN (2, 13);
DELETE FROM u11_undo_compat.u11_undo WHERE id = 3;
DELETE FROM up11.u11_undo_shadow WHERE id = 3;

-- finished on 1.2.  The partial backfill resumes after its checkpoint k02
-- and copies up to the end position fixed at start (k12): k03 k04 k07 .. k12
-- less k05, k06 (deleted) in 4 batches of 2, so 5 batches in all; k07 and k08
-- are in the new table already (the sync triggers put them there), so it
-- copies 6 rows, 8 in all.  Starting over would make 6 batches.
SELECT customer_unify.start('u11_planned');
CALL customer_unify.backfill('u11_planned');
CALL customer_unify.backfill('u11_partial', batch_size => 2);
SELECT b.last_key, b.rows_done, b.batches, b.finished_at IS NOT NULL AS finished
  FROM customer_unify.backfill_state b JOIN customer_unify.migration m ON m.id = b.migration_id
 WHERE m.name = 'u11_partial';
-- no row lost, none twice, none left over
SELECT (SELECT count(*) FROM up11.u11_partial) AS source_rows, count(*) AS target_rows, count(DISTINCT person_id) AS target_keys,
       count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM up11.u11_partial s WHERE s.id = t.person_id)) AS orphans,
       (SELECT count(*) FROM up11.u11_partial s
         WHERE NOT EXISTS (SELECT 1 FROM up11.u11_partial_bits b WHERE b.person_id = s.id
                              AND (b.nick, b.note) IS NOT DISTINCT FROM (s.nick, s.note))) AS missing_or_different
  FROM up11.u11_partial_bits t;
SELECT m.name, count(*) FILTER (WHERE NOT v.ok) AS failing, count(*) > 0 AS checked
  FROM customer_unify.migration m, customer_unify.verify(m.name) v
 WHERE m.name IN ('u11_planned', 'u11_partial', 'u11_filled', 'u11_verified', 'u11_cut')
 GROUP BY m.name ORDER BY m.name;
SELECT t AS migration, customer_unify.cutover(t) FROM unnest(ARRAY['u11_planned', 'u11_partial', 'u11_filled', 'u11_verified']) t;
SELECT t AS migration, customer_unify.finalize(t) FROM unnest(ARRAY['u11_planned', 'u11_partial', 'u11_filled', 'u11_verified', 'u11_cut']) t;
-- every view holds exactly what was written, through whichever shape and version
SELECT t AS migration,
       regress_util.fingerprint(format('%I.%I', t || '_compat', t)::regclass)
         = regress_util.fingerprint(format('up11.%I', t || '_shadow')::regclass) AS view_as_written,
       (SELECT string_agg(attname, ', ' ORDER BY attnum) FROM pg_attribute
         WHERE attrelid = format('up11.%I', t)::regclass AND attnum > 0 AND NOT attisdropped) AS source_columns_left
  FROM unnest(ARRAY['u11_planned', 'u11_partial', 'u11_filled', 'u11_verified', 'u11_cut', 'u11_final']) t ORDER BY 1;
-- and still take writes
INSERT INTO u11_partial_compat.u11_partial (id, email, nick, note) VALUES ('k15', 'e15', 'after finalize', 'x15');
UPDATE u11_cut_compat.u11_cut SET nick = 'after finalize' WHERE id = 1;
SELECT id, email, nick, note FROM u11_partial_compat.u11_partial WHERE id = 'k15'
UNION ALL
SELECT id::text, email, nick, note FROM u11_cut_compat.u11_cut WHERE id = 1;

-- the one cut over on 1.1 is rolled back on 1.2 and leaves nothing behind:
-- the source is made as before the split and holds what was written
SELECT customer_unify.rollback('u11_undo');
SELECT to_regclass('up11.u11_undo_bits') AS target, to_regnamespace('u11_undo_compat') AS compat,
       up11.shape('up11.u11_undo') = :'undo_shape_before' AS shape_as_before,
       regress_util.fingerprint('up11.u11_undo') = regress_util.fingerprint('up11.u11_undo_shadow') AS data_as_written,
       (SELECT count(*) FROM customer_unify.migration_relation r JOIN customer_unify.migration m ON m.id = r.migration_id
         WHERE m.name = 'u11_undo' AND r.live) AS live_relations,
       (SELECT count(*) FROM pg_trigger t JOIN customer_unify.migration m ON t.tgname LIKE 'customer\_unify\_' || m.id || '\_%'
         WHERE m.name = 'u11_undo') AS triggers_left;
SELECT id, email, nick, note FROM up11.u11_undo WHERE id IN (1, 2, 3, 13, 14) ORDER BY id;
SELECT name, state FROM customer_unify.migration WHERE name LIKE 'u11%' ORDER BY name;
-- none is live any more: their schemas can go with the extension in place
DROP SCHEMA up11, u11_planned_compat, u11_partial_compat, u11_filled_compat, u11_verified_compat,
            u11_cut_compat, u11_final_compat CASCADE;

-------------------------------------------------------------------------------
-- Merges live on 1.2 are carried across ALTER EXTENSION UPDATE to 1.3 and
-- finished there: one backfilled, one cut over, one finalized on 1.2.  The
-- update gives their work schemas 1.3's functions (owned by the tables'
-- owner, not members of the extension): writes after it defer rather than
-- wait, a reference spelled in capitals is found, and each verifies,
-- cuts over and finalizes on 1.3.
-------------------------------------------------------------------------------
DROP EXTENSION customer_unify CASCADE;
CREATE EXTENSION customer_unify VERSION '1.2';
CREATE ROLE up12_owner;
CREATE SCHEMA up12 AUTHORIZATION up12_owner;
GRANT USAGE ON SCHEMA customer_unify TO up12_owner;
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO up12_owner', current_database()); END $$;
SET ROLE up12_owner;
CREATE FUNCTION pg_temp.up12_tables(p text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE up12.%1$s_people (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), email text UNIQUE, name text)', p);
    EXECUTE format('CREATE TABLE up12.%1$s_legacy (id int PRIMARY KEY, email text, name text)', p);
    EXECUTE format('CREATE TABLE up12.%1$s_chats (id int PRIMARY KEY, legacy_id int REFERENCES up12.%1$s_legacy, body text)', p);
    EXECUTE format('INSERT INTO up12.%1$s_people (email, name) VALUES (''ann@x.example'', ''Ann'')', p);
    EXECUTE format('INSERT INTO up12.%1$s_legacy VALUES (1, ''ANN@x.example'', ''Ann L''), (2, ''bob@x.example'', ''Bob'')', p);
    EXECUTE format('INSERT INTO up12.%1$s_chats VALUES (1, 1, ''hi''), (2, 2, ''yo'')', p);
    PERFORM customer_unify.merge(p, format('{"target": {"table": "up12.%1$s_people"},
        "sources": [{"table": "up12.%1$s_legacy", "tag": "legacy", "columns": {"email": "lower(email)", "name": "name"}}],
        "match": [{"rule": "email", "key": "lower(email)"}]}', p)::jsonb);
    PERFORM customer_unify.start(p);
END $$;
SELECT pg_temp.up12_tables(t) FROM unnest(ARRAY['m12_filled', 'm12_cut', 'm12_final']) t;
CALL customer_unify.backfill('m12_filled');
CALL customer_unify.backfill('m12_cut');
CALL customer_unify.backfill('m12_final');
SELECT customer_unify.cutover('m12_cut'), customer_unify.cutover('m12_final'), customer_unify.finalize('m12_final');
-- a write on 1.2's functions
INSERT INTO up12.m12_filled_legacy VALUES (3, 'cy@x.example', 'Cy');
RESET ROLE;
SELECT (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'm12_filled_merge' AND p.proname LIKE 'live\_%') AS live_functions_on_12;
ALTER EXTENSION customer_unify UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'customer_unify';
-- 1.3's functions in each work schema, the owner's, not the extension's
SELECT n.nspname, string_agg(p.proname || ':' || pg_get_userbyid(p.proowner), ', ' ORDER BY p.proname) AS functions,
       bool_or(EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')) AS any_member,
       (SELECT pg_get_userbyid(c.relowner) FROM pg_class c WHERE c.oid = to_regclass(n.nspname || '.pending')) AS pending_owner
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname LIKE 'm12\_%\_merge' AND (p.proname LIKE 'live\_%' OR p.proname IN ('drain', 'repoint'))
 GROUP BY n.nspname ORDER BY 1;
SELECT m.name, count(*) AS upgrade_steps FROM customer_unify.step_log l JOIN customer_unify.migration m ON m.id = l.migration_id
 WHERE l.phase = 'upgrade' AND m.name LIKE 'm12%' GROUP BY 1 ORDER BY 1;
SET ROLE up12_owner;
-- writes on 1.3's: matched at once, a new reference filled
INSERT INTO up12.m12_filled_legacy VALUES (4, 'ANN@X.EXAMPLE', 'Ann again');
INSERT INTO up12.m12_filled_chats VALUES (3, 4, 'later');
UPDATE up12.m12_cut_legacy SET name = 'Bob on 1.3' WHERE id = 2;
INSERT INTO m12_final_archive.m12_final_legacy VALUES (5, 'dee@x.example', 'Dee');
SELECT 'filled' AS m, t.email, count(im.*) AS rows FROM up12.m12_filled_people t
  LEFT JOIN customer_unify.id_map im ON im.target_key = t.id::text AND im.source_tag = 'legacy' GROUP BY 1, 2
UNION ALL
SELECT 'cut', t.email || ' ' || t.name, 1 FROM up12.m12_cut_people t WHERE t.email = 'bob@x.example'
UNION ALL
SELECT 'final', t.email, 1 FROM up12.m12_final_people t WHERE t.email = 'dee@x.example'
ORDER BY 1, 2;
SELECT c.id, p.email FROM up12.m12_filled_chats c JOIN up12.m12_filled_people p ON p.id = c.legacy_id_merged ORDER BY c.id;
-- finished on 1.3
SELECT m.name, count(*) FILTER (WHERE NOT v.ok) AS failing
  FROM customer_unify.migration m, customer_unify.verify(m.name) v
 WHERE m.name IN ('m12_filled', 'm12_cut') GROUP BY 1 ORDER BY 1;
SELECT customer_unify.cutover('m12_filled'), customer_unify.finalize('m12_filled'), customer_unify.finalize('m12_cut');
SELECT customer_unify.purge(t) FROM unnest(ARRAY['m12_filled', 'm12_cut', 'm12_final']) t;
DROP FUNCTION pg_temp.up12_tables(text);
RESET ROLE;
DROP SCHEMA up12 CASCADE;
REVOKE USAGE ON SCHEMA customer_unify FROM up12_owner;
DO $$ BEGIN EXECUTE format('REVOKE CREATE ON DATABASE %I FROM up12_owner', current_database()); END $$;
DROP ROLE up12_owner;

-- leave the default version installed for later tests
DROP EXTENSION customer_unify CASCADE;
CREATE EXTENSION customer_unify;
SELECT extversion FROM pg_extension WHERE extname = 'customer_unify';

-------------------------------------------------------------------------------
-- guard.sql: the application's schema changes under a live migration are
-- refused with a clear error, or followed.
--
-- An event trigger at the end of every DDL command (and one on every drop)
-- checks each live migration (started .. cut_over): its relations exist
-- under the names they had, the columns its maps copy exist with the same
-- types on both sides, its triggers are enabled (ALWAYS), the source has no
-- inheritance children, all its tables have one owner, and the target keeps
-- the unique index (and, after the backfill, the foreign key) the sync
-- needs.  A violation raises 55006 and the DDL is rolled back.  Changes of
-- the source's privileges or row-level security are followed: the target
-- and the compatibility view are given the same (a 'resync' phase, logged).
-- The engine's own DDL (customer_unify._engine_active()) is let through, and
-- so is a restore of a dump (customer_unify._guard_restoring()).
-- TRUNCATE, which fires no event trigger, is handled by the sync triggers.
-------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION customer_unify._guard_refuse(m customer_unify.migration, p_what text, p_detail text)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION '% while migration "%" is live', p_what, m.name
        USING ERRCODE = 'object_in_use',
              DETAIL = p_detail,
              HINT = format('Finalize or roll back migration %L first (SELECT customer_unify.rollback(%L);), or make the change on the new shape after finalize.',
                            m.name, m.name);
END
$$;

-- The live migration's invariants (see the header); raises on the first broken one.
CREATE OR REPLACE FUNCTION customer_unify._guard_check(p_migration bigint) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m customer_unify.migration;
    r record;
    v_owners int;
BEGIN
    SELECT * INTO m FROM customer_unify.migration x WHERE x.id = p_migration;
    FOR r IN
        SELECT x.tag, x.relid, x.nspname, x.relname, c.oid AS cur, n.nspname AS cur_nsp, c.relname AS cur_rel
          FROM customer_unify.migration_relation x
          LEFT JOIN pg_class c ON c.oid = x.relid
          LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE x.migration_id = m.id AND x.live
         ORDER BY array_position(ARRAY['source', 'target', 'view'], x.role), x.tag
    LOOP
        IF r.cur IS NULL THEN
            PERFORM customer_unify._guard_refuse(m, format('cannot drop %s', customer_unify._qual(r.nspname, r.relname)),
                                                 format('It is the %s of the migration.', r.tag));
        ELSIF r.cur_nsp <> r.nspname OR r.cur_rel <> r.relname THEN
            PERFORM customer_unify._guard_refuse(m, format('cannot rename or move %s', customer_unify._qual(r.nspname, r.relname)),
                                                 format('It is the %s of the migration; its statements name it.', r.tag));
        END IF;
    END LOOP;
    -- every column a map copies exists on both sides, with the same type
    FOR r IN
        SELECT s.name, fc.attname AS fcol, tc.attname AS tcol, fr.relid AS frel, tr.relid AS trel,
               mc.from_column, mc.to_column, fc.atttypid AS ftyp, tc.atttypid AS ttyp,
               fc.atttypmod AS ftm, tc.atttypmod AS ttm
          FROM customer_unify.sync_map s
          JOIN customer_unify.sync_map_column mc ON mc.map_id = s.id
          JOIN customer_unify.migration_relation fr ON fr.migration_id = s.migration_id AND fr.tag = s.from_tag
          JOIN customer_unify.migration_relation tr ON tr.migration_id = s.migration_id AND tr.tag = s.to_tag
          LEFT JOIN pg_attribute fc ON fc.attrelid = fr.relid AND fc.attname = mc.from_column AND NOT fc.attisdropped
          LEFT JOIN pg_attribute tc ON tc.attrelid = tr.relid AND tc.attname = mc.to_column AND NOT tc.attisdropped
         WHERE s.migration_id = m.id AND s.name = 'forward'
        UNION ALL
        SELECT s.name, fc.attname, tc.attname, fr.relid, tr.relid, s.from_key, s.to_key,
               fc.atttypid, tc.atttypid, fc.atttypmod, tc.atttypmod
          FROM customer_unify.sync_map s
          JOIN customer_unify.migration_relation fr ON fr.migration_id = s.migration_id AND fr.tag = s.from_tag
          JOIN customer_unify.migration_relation tr ON tr.migration_id = s.migration_id AND tr.tag = s.to_tag
          LEFT JOIN pg_attribute fc ON fc.attrelid = fr.relid AND fc.attname = s.from_key AND NOT fc.attisdropped
          LEFT JOIN pg_attribute tc ON tc.attrelid = tr.relid AND tc.attname = s.to_key AND NOT tc.attisdropped
         WHERE s.migration_id = m.id AND s.name = 'forward'
    LOOP
        IF r.fcol IS NULL THEN
            PERFORM customer_unify._guard_refuse(m, format('cannot drop or rename column %I of %s', r.from_column, r.frel::text),
                                                 'The sync triggers copy it.');
        ELSIF r.tcol IS NULL THEN
            PERFORM customer_unify._guard_refuse(m, format('cannot drop or rename column %I of %s', r.to_column, r.trel::text),
                                                 'The sync triggers copy into it.');
        ELSIF r.ftyp <> r.ttyp OR r.ftm <> r.ttm THEN
            PERFORM customer_unify._guard_refuse(m, format('cannot change the type of column %I', r.from_column),
                                                 format('%s.%I and %s.%I must keep the same type while they are kept in sync.',
                                                        r.frel::text, r.from_column, r.trel::text, r.to_column));
        END IF;
    END LOOP;
    -- the migration's sync triggers fire, whatever session_replication_role
    -- says; the kit's triggers fire as triggers do (not when a replica
    -- applies rows their origin stamped or normalized)
    FOR r IN
        SELECT t.tgname, t.tgrelid::regclass AS rel, t.tgenabled
          FROM customer_unify.migration_relation x
          JOIN pg_trigger t ON t.tgrelid = x.relid
         WHERE x.migration_id = m.id AND x.live AND x.role <> 'view'
           AND t.tgname::text LIKE 'customer\_unify\_' || m.id || '\_%'
           AND t.tgenabled <> CASE WHEN m.kind IN ('updated_at', 'normalize_on_write') THEN 'O' ELSE 'A' END
         ORDER BY t.tgrelid::regclass::text, t.tgname
    LOOP
        PERFORM customer_unify._guard_refuse(m, format('cannot disable trigger %I on %s', r.tgname, r.rel),
                                             CASE WHEN m.kind = 'updated_at' THEN 'Updates would stop stamping the column.'
                                                  WHEN m.kind = 'normalize_on_write' THEN 'Writes would stop being normalized.'
                                                  ELSE 'Writes would stop being mirrored and the shapes would drift apart.' END);
    END LOOP;
    -- the columns the frozen plan names (the compatibility view selects
    -- every column the source had at start)
    FOR r IN
        SELECT c.col FROM jsonb_array_elements_text(coalesce(m.spec->'source_columns', '[]')) c(col)
         WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = m.source AND a.attname = c.col
                              AND a.attnum > 0 AND NOT a.attisdropped)
    LOOP
        PERFORM customer_unify._guard_refuse(m, format('cannot drop or rename column %I of %s', r.col, m.source::text),
                                             'The compatibility view of the migration selects it by this name.');
    END LOOP;
    -- the columns the operation's triggers and frozen statements name on
    -- its other tables too (a rekey: the old key, the new key and the link)
    FOR r IN
        SELECT (e->>0)::oid::regclass AS rel, e->>1 AS col
          FROM jsonb_array_elements(coalesce(m.spec->'kept_columns', '[]')) e
         WHERE m.state <> 'planned'
           AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = (e->>0)::oid AND a.attname = e->>1
                              AND a.attnum > 0 AND NOT a.attisdropped)
    LOOP
        PERFORM customer_unify._guard_refuse(m, format('cannot drop or rename column %I of %s', r.col, r.rel),
                                             'The migration''s trigger and its planned statements name it.');
    END LOOP;
    -- the source keeps the unique key the copy, the sync and the link use
    -- (a merge: every source and the target keep their one-column primary key)
    IF m.kind = 'split' AND NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                    WHERE i.indrelid = m.source AND i.indisunique AND i.indimmediate AND i.indnkeyatts = 1
                      AND a.attname = m.spec->>'key_column' AND i.indpred IS NULL AND i.indexprs IS NULL) THEN
        PERFORM customer_unify._guard_refuse(m, format('cannot drop the primary key of %s', m.source::text),
                                             format('The migration finds rows by %I and the link foreign key references it.',
                                                    m.spec->>'key_column'));
    END IF;
    -- a merge's tables keep their columns' names (its generated functions name them)
    FOR r IN
        SELECT x.relid::regclass AS rel, a.attname, c.was
          FROM customer_unify.migration_relation x
          JOIN pg_attribute a ON a.attrelid = x.relid AND a.attnum > 0 AND NOT a.attisdropped
          JOIN LATERAL jsonb_each_text(m.spec->'column_names'->(x.relid::oid::text)) c(num, was) ON c.num = a.attnum::text
         WHERE m.kind = 'merge' AND x.migration_id = m.id AND x.live AND a.attname::text <> c.was
    LOOP
        PERFORM customer_unify._guard_refuse(m, format('cannot rename column %I of %s', r.was, r.rel),
                                             'The merge''s generated functions and triggers name it.');
    END LOOP;
    -- no rules on the tables (a rule would rewrite the mirrored writes)
    FOR r IN
        SELECT rw.rulename, rw.ev_class::regclass AS rel
          FROM customer_unify.migration_relation x JOIN pg_rewrite rw ON rw.ev_class = x.relid
         WHERE x.migration_id = m.id AND x.live AND x.role <> 'view'
    LOOP
        PERFORM customer_unify._guard_refuse(m, format('cannot create rule %I on %s', r.rulename, r.rel),
                                             'The sync triggers write these tables; a rule would rewrite or discard their writes.');
    END LOOP;
    -- the compatibility view keeps the source's columns, by name and in order
    IF m.state = 'cut_over' AND m.spec ? 'source_columns' AND EXISTS (
        (SELECT a.attnum, a.attname FROM pg_attribute a
          WHERE a.attrelid = customer_unify._relation(m.id, 'view') AND a.attnum > 0 AND NOT a.attisdropped)
        EXCEPT
        (SELECT row_number() OVER (ORDER BY a.attnum), a.attname FROM pg_attribute a
          WHERE a.attrelid = m.source AND a.attnum > 0 AND NOT a.attisdropped
            AND a.attname::text IN (SELECT jsonb_array_elements_text(m.spec->'source_columns')))) THEN
        PERFORM customer_unify._guard_refuse(m, format('cannot change the compatibility view %s', customer_unify._relation(m.id, 'view')::text),
                                             'Old applications read and write the source through it, column for column.');
    END IF;
    -- no inheritance around the source (its rows would not be copied)
    IF EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = m.source OR i.inhrelid = m.source) THEN
        PERFORM customer_unify._guard_refuse(m, format('cannot add inheritance to %s', m.source::text),
                                             'Rows of inheritance children are not copied or kept in sync.');
    END IF;
    -- one owner: mirrored writes run as it
    SELECT count(DISTINCT c.relowner) INTO v_owners
      FROM customer_unify.migration_relation x JOIN pg_class c ON c.oid = x.relid
     WHERE x.migration_id = m.id AND x.live;
    IF v_owners > 1 THEN
        PERFORM customer_unify._guard_refuse(m, 'cannot change the owner of a table of the migration',
                                             'Its tables must keep one owner: the sync triggers write as that role.');
    END IF;
    -- what the sync needs on the target
    FOR r IN
        SELECT x.relid, s.to_key
          FROM customer_unify.migration_relation x
          JOIN customer_unify.sync_map s ON s.migration_id = x.migration_id AND s.name = 'forward' AND s.to_tag = x.tag
         WHERE x.migration_id = m.id AND x.live
           AND NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                            WHERE i.indrelid = x.relid AND i.indisunique AND i.indnkeyatts = 1 AND a.attname = s.to_key
                              AND i.indpred IS NULL AND i.indexprs IS NULL)
    LOOP
        PERFORM customer_unify._guard_refuse(m, format('cannot drop the unique index on %I of %s', r.to_key, r.relid::regclass),
                                             'The sync triggers find the target row through it.');
    END LOOP;
    FOR r IN
        SELECT x.relid FROM customer_unify.migration_relation x
         WHERE m.kind = 'merge' AND x.migration_id = m.id AND x.live AND x.role IN ('source', 'target', 'reference')
           AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = x.relid AND i.indisprimary AND i.indnkeyatts = 1)
    LOOP
        PERFORM customer_unify._guard_refuse(m, format('cannot drop the primary key of %s', r.relid::regclass),
                                             'The merge finds its rows, their crosswalk entries and their references by it.');
    END LOOP;
    IF m.kind = 'split' AND m.state IN ('backfilled', 'verified', 'cut_over') AND NOT EXISTS (
        SELECT 1 FROM pg_constraint c
         WHERE c.conrelid = customer_unify._relation(m.id, 'target') AND c.confrelid = m.source AND c.contype = 'f'
           AND c.confdeltype = 'c' AND c.confupdtype = 'c') THEN
        PERFORM customer_unify._guard_refuse(m, 'cannot drop the link foreign key',
                                             'Its cascades carry deletes and key changes of the source to the target.');
    END IF;
    RETURN true;
END
$$;

-- Do the target and the view still carry the source's privileges and
-- row-level security?  (see _split_security_steps)
CREATE OR REPLACE FUNCTION customer_unify._guard_security_current(p_migration bigint) RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m customer_unify.migration;
BEGIN
    SELECT * INTO m FROM customer_unify.migration x WHERE x.id = p_migration;
    RETURN NOT EXISTS (SELECT 1 FROM customer_unify._security_drift(m));
END
$$;

-- What differs between the security of the source and of its copies.
CREATE OR REPLACE FUNCTION customer_unify._security_drift(m customer_unify.migration)
    RETURNS TABLE (relation text, what text)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH rels AS (
        SELECT x.tag, x.relid FROM customer_unify.migration_relation x
         WHERE x.migration_id = m.id AND x.live AND x.tag IN ('target', 'view') AND m.kind = 'split'
    ), colmap AS (
        -- (relation tag, source column, column there)
        SELECT 'target'::text AS tag, c.from_column AS scol, c.to_column AS col
          FROM customer_unify.sync_map s JOIN customer_unify.sync_map_column c ON c.map_id = s.id
         WHERE s.migration_id = m.id AND s.name = 'forward'
        UNION ALL
        SELECT 'target', s.from_key, s.to_key FROM customer_unify.sync_map s
         WHERE s.migration_id = m.id AND s.name = 'forward'
        UNION ALL
        SELECT 'view', a.attname, a.attname FROM pg_attribute a
         WHERE a.attrelid = m.source AND a.attnum > 0 AND NOT a.attisdropped
    ), want AS (
        SELECT r.tag, NULL::name AS col, e.grantee, e.privilege_type, e.is_grantable
          FROM rels r, pg_class c, aclexplode(c.relacl) e
         WHERE c.oid = m.source AND (e.grantee <> e.grantor OR e.grantee = 0)
        UNION
        SELECT r.tag, cm.col, e.grantee, e.privilege_type, e.is_grantable
          FROM rels r JOIN colmap cm ON cm.tag = r.tag
          JOIN pg_attribute a ON a.attrelid = m.source AND a.attname = cm.scol, aclexplode(a.attacl) e
         WHERE e.grantee <> e.grantor OR e.grantee = 0
    ), have AS (
        SELECT r.tag, NULL::name AS col, e.grantee, e.privilege_type, e.is_grantable
          FROM rels r JOIN pg_class c ON c.oid = r.relid, aclexplode(c.relacl) e
         WHERE e.grantee <> e.grantor OR e.grantee = 0
        UNION
        SELECT r.tag, a.attname, e.grantee, e.privilege_type, e.is_grantable
          FROM rels r JOIN pg_attribute a ON a.attrelid = r.relid AND a.attnum > 0, aclexplode(a.attacl) e
         WHERE e.grantee <> e.grantor OR e.grantee = 0
    )
    SELECT x.tag, 'privileges' FROM ((SELECT * FROM want EXCEPT SELECT * FROM have)
                                     UNION ALL (SELECT * FROM have EXCEPT SELECT * FROM want)) x
     GROUP BY x.tag
    UNION ALL
    SELECT 'target', 'row level security'
      FROM pg_class s, pg_class t
     WHERE s.oid = m.source AND t.oid = customer_unify._relation(m.id, 'target') AND m.kind = 'split'
       AND (s.relrowsecurity, s.relforcerowsecurity) IS DISTINCT FROM (t.relrowsecurity, t.relforcerowsecurity)
    UNION ALL
    SELECT 'target', 'policies'
     WHERE customer_unify._relation(m.id, 'target') IS NOT NULL AND m.kind = 'split'
       AND (SELECT coalesce(array_agg(d.polname || ':' || d.fingerprint ORDER BY d.polname), '{}')
              FROM customer_unify._policy_definitions(m.source) d)
           IS DISTINCT FROM
           (SELECT coalesce(array_agg(p.polname || ':' || substring(obj_description(p.oid, 'pg_policy') from '\(([0-9a-f]{32})\)$')
                                      ORDER BY p.polname), '{}')
              FROM pg_policy p WHERE p.polrelid = customer_unify._relation(m.id, 'target'))
$$;

-- A restore (pg_restore, or psql running a pg_dump script: both run with
-- check_function_bodies off) recreates the migration's objects one by one,
-- each command leaving the migration incomplete until the last: the guard
-- stands aside, and the restored dump is what the dumped database was.
CREATE OR REPLACE FUNCTION customer_unify._guard_restoring() RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    RETURN pg_catalog.current_setting('check_function_bodies') OPERATOR(pg_catalog.=) 'off';

CREATE OR REPLACE FUNCTION customer_unify._guard_ddl() RETURNS event_trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    IF customer_unify._engine_active() OR customer_unify._guard_restoring() THEN
        RETURN;
    END IF;
    FOR r IN
        SELECT DISTINCT m.id FROM customer_unify.migration m
          JOIN customer_unify.migration_relation x ON x.migration_id = m.id
         WHERE x.live AND m.state IN ('started', 'backfilled', 'verified', 'cut_over')
         ORDER BY m.id
    LOOP
        PERFORM customer_unify._guard_check(r.id);
        IF NOT customer_unify._guard_security_current(r.id) THEN
            -- GRANT, REVOKE, policies or RLS of the source changed: follow
            PERFORM customer_unify._run_phase(r.id, 'resync');
        END IF;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION customer_unify._guard_drop() RETURNS event_trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d record;
    m customer_unify.migration;
BEGIN
    IF customer_unify._engine_active() OR customer_unify._guard_restoring() THEN
        RETURN;
    END IF;
    FOR d IN SELECT * FROM pg_event_trigger_dropped_objects() LOOP
        FOR m IN
            SELECT mg.* FROM customer_unify.migration mg
             WHERE mg.state IN ('started', 'backfilled', 'verified', 'cut_over')
               AND (EXISTS (SELECT 1 FROM customer_unify.migration_relation x
                             WHERE x.migration_id = mg.id AND x.live AND x.relid = d.objid
                               AND d.classid = 'pg_class'::regclass)
                    OR (d.object_type = 'trigger' AND d.object_identity LIKE 'customer\_unify\_' || mg.id || '\_% on %')
                    OR (d.object_type = 'schema' AND d.object_name = mg.spec->>'compat_schema'))
        LOOP
            PERFORM customer_unify._guard_refuse(m, format('cannot drop %s %s', d.object_type, d.object_identity),
                                                 'It belongs to the migration.');
        END LOOP;
    END LOOP;
END
$$;


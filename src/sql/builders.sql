-------------------------------------------------------------------------------
-- builders.sql: the shared step builders.  An operation's step generator is
-- made of these: each takes explicit relations and columns and returns the
-- statements (with inverse, lock, and what the engine must register) that
-- do one thing.  Names of existing objects come from the catalog by OID
-- (regclass output, pg_attribute, format_type); new names are the validated
-- ones of the spec; all are quoted.
-------------------------------------------------------------------------------


CREATE OR REPLACE FUNCTION customer_unify._b_step(p_statement text, p_inverse text DEFAULT NULL,
    p_lock_mode text DEFAULT NULL, p_lock_relation text DEFAULT NULL, p_registers jsonb DEFAULT NULL)
    RETURNS customer_unify.step_def
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ROW(p_statement, p_inverse, p_lock_mode, p_lock_relation, p_registers)::customer_unify.step_def
$$;

-- LOCK TABLE: phases take their locks first, in the order writers take them.
CREATE OR REPLACE FUNCTION customer_unify._b_lock(p_rel text, p_mode text)
    RETURNS customer_unify.step_def
    LANGUAGE sql IMMUTABLE STRICT
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT customer_unify._b_step(format('LOCK TABLE ONLY %s IN %s MODE', p_rel, p_mode), NULL, p_mode, p_rel)
$$;

-- A name made of p_name and p_suffix that fits NAMEDATALEN (63 bytes),
-- p_name cut at a character boundary as PostgreSQL cuts the names it makes.
CREATE OR REPLACE FUNCTION customer_unify._b_clip_name(p_name text, p_suffix text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (SELECT left(p_name, n) FROM generate_series(length(p_name), 0, -1) n
             WHERE octet_length(left(p_name, n)) + octet_length(p_suffix) <= 63 LIMIT 1) || p_suffix
$$;

-- A relation's qualified name from the catalog.
CREATE OR REPLACE FUNCTION customer_unify._b_name(p_rel regclass) RETURNS text
    LANGUAGE sql STABLE STRICT
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT customer_unify._qual(n.nspname, c.relname)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p_rel
$$;

-- Columns of a relation in attnum order, with what re-creates them elsewhere.
CREATE OR REPLACE FUNCTION customer_unify._b_columns(p_rel regclass, p_columns text[])
    RETURNS TABLE (attnum int, attname text, typ text, collation_clause text, notnull boolean,
                   default_expr text, comment text, attacl aclitem[], atttypid oid,
                   identity "char", generated "char")
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.attnum::int, a.attname::text, format_type(a.atttypid, a.atttypmod),
           CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                THEN ' COLLATE ' || quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END,
           a.attnotnull,
           pg_get_expr(d.adbin, d.adrelid),
           col_description(a.attrelid, a.attnum),
           a.attacl, a.atttypid, a.attidentity, a.attgenerated
      FROM pg_attribute a
      JOIN pg_type t ON t.oid = a.atttypid
      LEFT JOIN pg_collation co ON co.oid = a.attcollation
      LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = p_rel AND a.attnum > 0 AND NOT a.attisdropped
       AND (p_columns IS NULL OR a.attname::text = ANY (p_columns))
     ORDER BY a.attnum
$$;

-- The btree equality operator of a key column's unique index (or its type's
-- default), as OPERATOR(schema.=), for statements whatever the search_path.
CREATE OR REPLACE FUNCTION customer_unify._b_key_eq(p_rel regclass, p_column text) RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH col AS (
        SELECT a.attnum, a.atttypid FROM pg_attribute a
         WHERE a.attrelid = p_rel AND a.attname = p_column AND NOT a.attisdropped
    ), cls AS (
        SELECT coalesce(
            (SELECT i.indclass[0] FROM pg_index i, col
              WHERE i.indrelid = p_rel AND i.indisunique AND i.indnkeyatts = 1 AND i.indkey[0] = col.attnum
                AND i.indexprs IS NULL AND i.indpred IS NULL
              ORDER BY i.indisprimary DESC LIMIT 1),
            (SELECT oc.oid FROM pg_opclass oc, col
              WHERE oc.opcmethod = (SELECT oid FROM pg_am WHERE amname = 'btree')
                AND oc.opcdefault AND oc.opcintype = col.atttypid)) AS opclass
    )
    SELECT format('OPERATOR(%I.%s)', n.nspname, o.oprname)
      FROM cls
      JOIN pg_opclass oc ON oc.oid = cls.opclass
      JOIN pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amoplefttype = oc.opcintype
                     AND ao.amoprighttype = oc.opcintype AND ao.amopstrategy = 3
      JOIN pg_operator o ON o.oid = ao.amopopr
      JOIN pg_namespace n ON n.oid = o.oprnamespace
$$;

-- GRANT statements re-creating an ACL (of a table, or of one column) on another object.
CREATE OR REPLACE FUNCTION customer_unify._b_grants(p_acl aclitem[], p_object text, p_column text)
    RETURNS SETOF text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('GRANT %s%s ON %s TO %s%s',
                  e.privilege_type,
                  CASE WHEN p_column IS NOT NULL THEN ' (' || quote_ident(p_column) || ')' ELSE '' END,
                  p_object,
                  CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(e.grantee)) END,
                  CASE WHEN e.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
      FROM aclexplode(p_acl) e
     WHERE e.grantee <> e.grantor OR e.grantee = 0
     GROUP BY e.privilege_type, e.grantee, e.is_grantable
     ORDER BY e.grantee, e.privilege_type
$$;

-- The privileges of a source carried to another relation: table privileges,
-- and column privileges through a column map [[source column, other column]].
CREATE OR REPLACE FUNCTION customer_unify._b_privileges(p_source regclass, p_object text, p_column_map jsonb)
    RETURNS SETOF customer_unify.step_def
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT customer_unify._b_step(g, NULL, NULL, p_object)
      FROM (SELECT customer_unify._b_grants(c.relacl, p_object, NULL) AS g, 0 AS o
              FROM pg_class c WHERE c.oid = p_source
            UNION ALL
            SELECT customer_unify._b_grants(a.attacl, p_object, m.pair->>1), m.n
              FROM jsonb_array_elements(p_column_map) WITH ORDINALITY m(pair, n)
              JOIN pg_attribute a ON a.attrelid = p_source AND a.attname = m.pair->>0
             WHERE a.attacl IS NOT NULL) x
     ORDER BY x.o
$$;

-- The roles that may use a source (table or column privileges): they need
-- USAGE on a schema that holds its new shape.
CREATE OR REPLACE FUNCTION customer_unify._b_grantees(p_source regclass) RETURNS SETOF oid
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT e.grantee
      FROM (SELECT c.relacl AS acl, c.relowner FROM pg_class c WHERE c.oid = p_source
            UNION ALL
            SELECT a.attacl, c.relowner FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             WHERE a.attrelid = p_source AND a.attacl IS NOT NULL) x,
           aclexplode(x.acl) e
     WHERE e.grantee <> x.relowner
$$;

CREATE OR REPLACE FUNCTION customer_unify._b_schema_usage(p_source regclass, p_schema text)
    RETURNS SETOF customer_unify.step_def
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT customer_unify._b_step(format('GRANT USAGE ON SCHEMA %I TO %s', p_schema,
                                         CASE WHEN g = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g)) END),
                                  NULL, NULL, quote_ident(p_schema))
      FROM customer_unify._b_grantees(p_source) g
     ORDER BY g
$$;

-- Row-level security of a source carried to a new table that is 1:1 with it:
-- the same switches, and each policy of the source with its expressions
-- evaluated on the source row the new row belongs to.  A comment on each
-- copy records the source policy's definition, so the guard can tell when
-- the source's policies changed.
CREATE OR REPLACE FUNCTION customer_unify._b_policy_copies(p_source regclass, p_source_key text,
    p_target text, p_target_relname text, p_link text)
    RETURNS SETOF customer_unify.step_def
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rel record;
    p record;
    v_srcname name := (SELECT c.relname FROM pg_class c WHERE c.oid = p_source);
    v_row text;
BEGIN
    -- the source row is aliased by the source's own name, so that a policy
    -- naming its table (docs.id) means that row; the target row is named by
    -- its table, or, where the names are the same, by the bare link column
    v_row := format('EXISTS (SELECT 1 FROM ONLY %s %I WHERE %I.%I %s %s',
                    customer_unify._b_name(p_source), v_srcname, v_srcname, p_source_key,
                    customer_unify._b_key_eq(p_source, p_source_key),
                    CASE WHEN p_target_relname <> v_srcname THEN format('%I.%I', p_target_relname, p_link)
                         ELSE quote_ident(p_link) END);
    SELECT c.relrowsecurity, c.relforcerowsecurity INTO v_rel FROM pg_class c WHERE c.oid = p_source;
    IF v_rel.relrowsecurity THEN
        RETURN NEXT customer_unify._b_step(format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', p_target),
                                           NULL, 'SHARE ROW EXCLUSIVE', p_target);
    END IF;
    IF v_rel.relforcerowsecurity THEN
        RETURN NEXT customer_unify._b_step(format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', p_target),
                                           NULL, 'SHARE ROW EXCLUSIVE', p_target);
    END IF;
    FOR p IN SELECT * FROM customer_unify._policy_definitions(p_source) d ORDER BY d.polname LOOP
        RETURN NEXT customer_unify._b_step(
            format('CREATE POLICY %I ON %s AS %s FOR %s TO %s%s%s',
                   p.polname, p_target, p.permissive, p.command, p.roles,
                   CASE WHEN p.qual IS NOT NULL THEN format(' USING (%s AND (%s)))', v_row, p.qual) ELSE '' END,
                   CASE WHEN p.with_check IS NOT NULL THEN format(' WITH CHECK (%s AND (%s)))', v_row, p.with_check) ELSE '' END),
            NULL, 'ACCESS EXCLUSIVE', p_target);
        RETURN NEXT customer_unify._b_step(
            format('COMMENT ON POLICY %I ON %s IS %L', p.polname, p_target,
                   format('customer_unify: copy of policy %s on %s, evaluated on the row of %s it belongs to (%s)',
                          quote_ident(p.polname), p_source::text, p_source::text, p.fingerprint)),
            NULL, NULL, p_target);
    END LOOP;
END
$$;

-- The policies of a relation in the terms CREATE POLICY needs, with a fingerprint.
CREATE OR REPLACE FUNCTION customer_unify._policy_definitions(p_rel regclass)
    RETURNS TABLE (polname text, permissive text, command text, roles text, qual text, with_check text, fingerprint text)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT x.polname, x.permissive, x.command, x.roles, x.qual, x.with_check,
           md5(concat_ws('|', x.polname, x.permissive, x.command, x.roles, x.qual, x.with_check))
      FROM (SELECT p.polname::text,
                   CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END AS permissive,
                   CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                                 WHEN 'd' THEN 'DELETE' ELSE 'ALL' END AS command,
                   (SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END, ', ' ORDER BY r)
                      FROM unnest(p.polroles) r) AS roles,
                   pg_get_expr(p.polqual, p.polrelid) AS qual,
                   pg_get_expr(p.polwithcheck, p.polrelid) AS with_check
              FROM pg_policy p WHERE p.polrelid = p_rel) x
$$;

-- The sync triggers of a 1:1 pair: a row trigger and a statement-level flush
-- on the source, a row trigger on the target, TRUNCATE triggers on both; all
-- fire whatever session_replication_role says (ENABLE ALWAYS).
CREATE OR REPLACE FUNCTION customer_unify._b_sync_triggers(p_migration bigint, p_source text, p_target text,
    p_forward_map bigint, p_backward_map bigint)
    RETURNS SETOF customer_unify.step_def
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_pre text := 'customer_unify_' || p_migration;
    v_when text := format('WHEN (NOT customer_unify._mirror_guard(%s))', p_migration);
    t record;
BEGIN
    FOR t IN
        SELECT * FROM (VALUES
            (1, p_target, v_pre || '_sync', format('AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW %s EXECUTE FUNCTION customer_unify.mirror_row(%L)', p_target, v_when, p_backward_map)),
            (2, p_target, v_pre || '_truncate', format('BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION customer_unify.mirror_truncate(%L)', p_target, p_backward_map)),
            (3, p_source, v_pre || '_flush', format('AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH STATEMENT EXECUTE FUNCTION customer_unify.mirror_flush(%L)', p_source, p_forward_map)),
            (4, p_source, v_pre || '_sync', format('AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW %s EXECUTE FUNCTION customer_unify.mirror_row(%L)', p_source, v_when, p_forward_map)),
            (5, p_source, v_pre || '_truncate_begin', format('BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION customer_unify.mirror_truncate(%L)', p_source, p_forward_map)),
            (6, p_source, v_pre || '_truncate', format('AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION customer_unify.mirror_truncate(%L)', p_source, p_forward_map))
        ) x(n, rel, tgname, def) ORDER BY n
    LOOP
        RETURN NEXT customer_unify._b_step(format('CREATE TRIGGER %I %s', t.tgname, t.def),
                                           format('DROP TRIGGER IF EXISTS %I ON %s', t.tgname, t.rel),
                                           'SHARE ROW EXCLUSIVE', t.rel);
        RETURN NEXT customer_unify._b_step(format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', t.rel, t.tgname),
                                           NULL, 'SHARE ROW EXCLUSIVE', t.rel);
    END LOOP;
END
$$;

-- The drops of those triggers, at finalize.
CREATE OR REPLACE FUNCTION customer_unify._b_drop_sync_triggers(p_migration bigint, p_source text, p_target text)
    RETURNS SETOF customer_unify.step_def
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT customer_unify._b_step(format('DROP TRIGGER %I ON %s', 'customer_unify_' || p_migration || x.suffix, x.rel),
                                  NULL, 'ACCESS EXCLUSIVE', x.rel)
      FROM (VALUES (1, p_source, '_sync'), (2, p_source, '_flush'), (3, p_source, '_truncate_begin'),
                   (4, p_source, '_truncate'), (5, p_target, '_sync'), (6, p_target, '_truncate')) x(n, rel, suffix)
     ORDER BY x.n
$$;

-- A foreign key added NOT VALID (a catalog change), to be validated later.
CREATE OR REPLACE FUNCTION customer_unify._b_foreign_key(p_table text, p_name text, p_definition text)
    RETURNS customer_unify.step_def
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT customer_unify._b_step(
        format('ALTER TABLE %s ADD CONSTRAINT %I %s NOT VALID', p_table, p_name, regexp_replace(p_definition, ' NOT VALID$', '')),
        format('ALTER TABLE IF EXISTS %s DROP CONSTRAINT IF EXISTS %I', p_table, p_name),
        'SHARE ROW EXCLUSIVE', p_table)
$$;

CREATE OR REPLACE FUNCTION customer_unify._b_validate(p_table text, p_name text)
    RETURNS customer_unify.step_def
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT customer_unify._b_step(format('ALTER TABLE %s VALIDATE CONSTRAINT %I', p_table, p_name),
                                  NULL, 'SHARE UPDATE EXCLUSIVE', p_table)
$$;

-- The compatibility view's defaults: a view takes no defaults from its
-- tables, so INSERTs through it get the old table's.  An identity column
-- gets none: the router leaves it out of the INSERT when no value was given,
-- and the table generates it as it would have (no rights on its sequence
-- needed, GENERATED ALWAYS kept).
CREATE OR REPLACE FUNCTION customer_unify._b_view_defaults(p_source regclass, p_view text)
    RETURNS SETOF customer_unify.step_def
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT customer_unify._b_step(
               format('ALTER VIEW %s ALTER COLUMN %I SET DEFAULT %s', p_view, c.attname,
                      c.default_expr),
               NULL, 'ACCESS EXCLUSIVE', p_view)
      FROM customer_unify._b_columns(p_source, NULL) c
     WHERE c.identity = '' AND c.default_expr IS NOT NULL AND c.generated = ''
     ORDER BY c.attnum
$$;

-- The trigger that routes writes through a compatibility view (C router).
-- It stays ENABLE (origin): PostgreSQL refuses ALTER TABLE ... ENABLE ALWAYS
-- on a view, so a view trigger made ALWAYS another way would be dumped by
-- pg_dump as a statement its restore refuses, and be lost.
CREATE OR REPLACE FUNCTION customer_unify._b_route_trigger(p_migration bigint, p_view text, p_route_map bigint)
    RETURNS SETOF customer_unify.step_def
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT customer_unify._b_step(
        format('CREATE TRIGGER %I INSTEAD OF INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION customer_unify.compat_route(%L)',
               'customer_unify_' || p_migration || '_route', p_view, p_route_map),
        format('DROP TRIGGER IF EXISTS %I ON %s', 'customer_unify_' || p_migration || '_route', p_view),
        'SHARE ROW EXCLUSIVE', p_view)
$$;

-- After finalize the router learns the stored rows from these (see router.c).
CREATE OR REPLACE FUNCTION customer_unify._b_capture_triggers(p_migration bigint, p_tables text[])
    RETURNS SETOF customer_unify.step_def
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s FROM unnest(p_tables) WITH ORDINALITY t(rel, n),
           LATERAL (VALUES
               (1, customer_unify._b_step(
                   format('CREATE TRIGGER %I AFTER INSERT OR UPDATE ON %s FOR EACH ROW WHEN (customer_unify._route_capturing()) EXECUTE FUNCTION customer_unify.route_capture()',
                          'customer_unify_' || p_migration || '_capture', t.rel),
                   format('DROP TRIGGER IF EXISTS %I ON %s', 'customer_unify_' || p_migration || '_capture', t.rel),
                   'SHARE ROW EXCLUSIVE', t.rel)),
               (2, customer_unify._b_step(
                   format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', t.rel, 'customer_unify_' || p_migration || '_capture'),
                   NULL, 'SHARE ROW EXCLUSIVE', t.rel))) x(o, s)
     ORDER BY t.n, x.o
$$;

-- REVOKE everything granted on a relation (its table and column privileges),
-- before its privileges are derived again.
CREATE OR REPLACE FUNCTION customer_unify._b_revoke_all(p_rel regclass)
    RETURNS SETOF customer_unify.step_def
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT customer_unify._b_step(x.stmt, NULL, NULL, customer_unify._b_name(p_rel))
      FROM (SELECT DISTINCT 0 AS o, NULL::text AS col, e.grantee,
                   format('REVOKE ALL ON %s FROM %s', customer_unify._b_name(p_rel),
                          CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(e.grantee)) END) AS stmt
              FROM pg_class c, aclexplode(c.relacl) e
             WHERE c.oid = p_rel AND e.grantee <> c.relowner
            UNION
            SELECT DISTINCT a.attnum, a.attname, e.grantee,
                   format('REVOKE ALL (%I) ON %s FROM %s', a.attname, customer_unify._b_name(p_rel),
                          CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(e.grantee)) END)
              FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid, aclexplode(a.attacl) e
             WHERE a.attrelid = p_rel AND a.attnum > 0 AND e.grantee <> c.relowner) x
     ORDER BY x.o, x.col, x.grantee
$$;

-- A phase's steps as the step generators return them (seq from 1, no row estimate).
CREATE OR REPLACE FUNCTION customer_unify._b_phase(p_phase text, p_steps customer_unify.step_def[])
    RETURNS TABLE (phase text, seq int, statement text, inverse text,
                   lock_mode text, lock_relation text, rows_estimate bigint, registers jsonb)
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p_phase, (row_number() OVER (ORDER BY s.n))::int, s.statement, s.inverse, s.lock_mode, s.lock_relation,
           0::bigint, s.registers
      FROM unnest(p_steps) WITH ORDINALITY s(statement, inverse, lock_mode, lock_relation, registers, n)
     WHERE s.statement IS NOT NULL
     ORDER BY s.n
$$;

-- What follows REFERENCES t (c) in a foreign key's definition: its match
-- type, actions and deferrability, from the catalog (to re-create it on
-- other columns).
CREATE OR REPLACE FUNCTION customer_unify._b_fk_options(p_constraint oid) RETURNS text
    LANGUAGE sql STABLE STRICT
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE c.confmatchtype WHEN 'f' THEN ' MATCH FULL' ELSE '' END
           || ' ON UPDATE ' || a.upd || ' ON DELETE ' || a.del
           || CASE WHEN c.condeferrable THEN ' DEFERRABLE' || CASE WHEN c.condeferred THEN ' INITIALLY DEFERRED' ELSE '' END
                   ELSE '' END
      FROM pg_constraint c,
           LATERAL (SELECT (SELECT x.w FROM (VALUES ('a', 'NO ACTION'), ('r', 'RESTRICT'), ('c', 'CASCADE'), ('n', 'SET NULL'),
                                                    ('d', 'SET DEFAULT')) x(k, w) WHERE x.k = c.confupdtype) AS upd,
                           (SELECT x.w FROM (VALUES ('a', 'NO ACTION'), ('r', 'RESTRICT'), ('c', 'CASCADE'), ('n', 'SET NULL'),
                                                    ('d', 'SET DEFAULT')) x(k, w) WHERE x.k = c.confdeltype) AS del) a
     WHERE c.oid = p_constraint AND c.contype = 'f'
$$;

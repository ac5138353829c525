-------------------------------------------------------------------------------
-- split.sql: the split operation - move chosen columns of a table into a new
-- 1:1 table.  An operation is a spec validator, a step generator built from
-- the shared builders, a copy plan, its verify checks and its dependents;
-- the engine does the rest.
-------------------------------------------------------------------------------

-- Validate a split and return its plan for the engine; raises with a
-- specific SQLSTATE on the first problem found, before anything exists.
-- args: source (oid), target, columns, link_column, target_schema, target_key,
-- key_index ('during_copy': the own key's primary key exists during the copy;
-- 'after_copy': a job builds it concurrently once the copy is in).
CREATE OR REPLACE FUNCTION customer_unify._split_validate(p_name text, p_args jsonb)
    RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_source    regclass := (p_args->>'source')::oid::regclass;
    v_target    text := p_args->>'target';
    v_columns   text[] := ARRAY(SELECT jsonb_array_elements_text(p_args->'columns'));
    v_tkey      text := p_args->>'target_key';
    v_kidx      text := coalesce(p_args->>'key_index', 'during_copy');
    v_rel       record;
    v_key       record;
    v_nkey      int;
    v_col       text;
    v_att       record;
    v_link      text;
    v_tschema   text;
    v_con       record;
    v_seen      text[] := '{}';
    v_compat    text;
    v_roles     text;
    v_pairs     jsonb;
BEGIN
    IF p_name IS NULL OR p_args->>'source' IS NULL OR v_target IS NULL OR jsonb_typeof(p_args->'columns') IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'name, source, target and columns must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_name = '' THEN
        RAISE EXCEPTION 'migration name must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_compat := p_name || '_compat';
    IF octet_length(v_compat) > 63 THEN
        RAISE EXCEPTION 'migration name "%" is too long', p_name
            USING ERRCODE = 'name_too_long',
                  DETAIL = 'The compatibility schema is named <name>_compat and must fit in 63 bytes.';
    END IF;

    SELECT c.oid, c.relname, c.relkind, c.relowner, c.relispartition, n.nspname
      INTO v_rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = v_source;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'relation with OID % does not exist', v_source::oid USING ERRCODE = 'undefined_table';
    END IF;
    IF v_rel.relkind <> 'r' THEN
        RAISE EXCEPTION '"%" is not a plain table', v_source::text
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = format('Its relkind is %L; split works on ordinary tables (partitioned tables are not supported).', v_rel.relkind);
    END IF;
    IF v_rel.relispartition THEN
        RAISE EXCEPTION 'table % is a partition', v_source::text
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Writes through the partitioned table would bypass what the split keeps in sync.',
                  HINT = 'Split tables that are not part of a partition tree.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = v_source) THEN
        RAISE EXCEPTION 'table % has inheritance children', v_source::text
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = format('Children: %s. Their rows would not be copied, and finalize would drop their columns.',
                                  (SELECT string_agg(i.inhrelid::regclass::text, ', ' ORDER BY i.inhrelid::regclass::text)
                                     FROM pg_inherits i WHERE i.inhparent = v_source)),
                  HINT = 'Split each table of the hierarchy on its own after detaching it (ALTER TABLE ... NO INHERIT).';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = v_source) THEN
        RAISE EXCEPTION 'table % inherits from another table', v_source::text
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Inherited columns cannot be dropped from a child, and the parent''s queries read the child.',
                  HINT = 'Detach it first (ALTER TABLE ... NO INHERIT).';
    END IF;
    IF NOT pg_has_role(v_rel.relowner, 'MEMBER') THEN
        RAISE EXCEPTION 'must be owner of table %', v_source::text
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Reshaping a table needs the rights of its owner.';
    END IF;

    -- primary key: exactly one column, of a type the engine can order and store
    SELECT count(*) INTO v_nkey
      FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) k
     WHERE i.indrelid = v_source AND i.indisprimary;
    IF v_nkey = 0 THEN
        RAISE EXCEPTION 'table % has no primary key', v_source::text
            USING ERRCODE = 'invalid_table_definition',
                  HINT = 'The split links rows through the primary key; add one first.';
    ELSIF v_nkey > 1 THEN
        RAISE EXCEPTION 'table % has a composite primary key', v_source::text
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'split works on tables with a single-column primary key.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = v_source AND i.indisprimary AND NOT i.indimmediate) THEN
        RAISE EXCEPTION 'the primary key of % is DEFERRABLE', v_source::text
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'The link foreign key of the new table references it, and PostgreSQL does not let a foreign key reference a deferrable key.',
                  HINT = 'Re-create the primary key without DEFERRABLE first.';
    END IF;
    SELECT a.attname, a.atttypid, t.typsend, t.typreceive, format_type(a.atttypid, a.atttypmod) AS typ
      INTO v_key
      FROM pg_index i
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
      JOIN pg_type t ON t.oid = a.atttypid
     WHERE i.indrelid = v_source AND i.indisprimary;
    IF v_key.typsend = 0 OR v_key.typreceive = 0 THEN
        RAISE EXCEPTION 'the primary key of % has type %, which has no binary send/receive functions', v_source::text, v_key.typ
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'The backfill checkpoint keeps keys in their binary form, so that no setting changes how they compare.';
    END IF;

    -- columns to move
    IF cardinality(v_columns) IS NULL OR cardinality(v_columns) = 0 THEN
        RAISE EXCEPTION 'columns must name at least one column of %', v_source::text
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH v_col IN ARRAY v_columns LOOP
        IF v_col IS NULL OR v_col = '' THEN
            RAISE EXCEPTION 'column names must not be null or empty' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_col = ANY (v_seen) THEN
            RAISE EXCEPTION 'column "%" is listed more than once', v_col USING ERRCODE = 'duplicate_column';
        END IF;
        v_seen := v_seen || v_col;
        SELECT a.attnum, a.attidentity, a.attgenerated
          INTO v_att
          FROM pg_attribute a
         WHERE a.attrelid = v_source AND a.attname = v_col AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'column "%" of relation % does not exist', v_col, v_source::text
                USING ERRCODE = 'undefined_column',
                      HINT = 'Column names are taken literally (case and spaces matter); do not quote them.';
        END IF;
        IF v_col = v_key.attname THEN
            RAISE EXCEPTION 'column "%" is the primary key of %', v_col, v_source::text
                USING ERRCODE = 'invalid_column_reference',
                      DETAIL = 'The key stays in the source and is copied into the link column.';
        END IF;
        IF v_att.attidentity <> '' THEN
            RAISE EXCEPTION 'column "%" of % is an identity column and cannot be moved', v_col, v_source::text
                USING ERRCODE = 'feature_not_supported';
        END IF;
        IF v_att.attgenerated <> '' THEN
            RAISE EXCEPTION 'column "%" of % is a generated column and cannot be moved', v_col, v_source::text
                USING ERRCODE = 'feature_not_supported';
        END IF;
    END LOOP;

    -- generated columns that stay behind but read a moved column
    FOR v_att IN
        SELECT a.attname
          FROM pg_attribute a JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = v_source AND a.attgenerated <> '' AND NOT (a.attname = ANY (v_columns))
           AND EXISTS (SELECT 1 FROM pg_depend dep
                        JOIN pg_attribute b ON b.attrelid = dep.refobjid AND b.attnum = dep.refobjsubid
                       WHERE dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid
                         AND dep.refobjid = v_source AND b.attname = ANY (v_columns))
    LOOP
        RAISE EXCEPTION 'generated column "%" of % is computed from a moved column', v_att.attname, v_source::text
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Move it too, or drop the generation expression first.';
    END LOOP;

    -- CHECK constraints that mix moved and kept columns cannot follow either side
    FOR v_con IN
        SELECT c.conname,
               bool_or(a.attname = ANY (v_columns)) AS any_moved,
               bool_and(a.attname = ANY (v_columns)) AS all_moved
          FROM pg_constraint c
          CROSS JOIN LATERAL unnest(c.conkey) k
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k
         WHERE c.conrelid = v_source AND c.contype = 'c'
         GROUP BY c.conname
    LOOP
        IF v_con.any_moved AND NOT v_con.all_moved THEN
            RAISE EXCEPTION 'CHECK constraint "%" of % uses both moved and kept columns', v_con.conname, v_source::text
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'Move all of its columns, or drop or rewrite the constraint before the split.';
        END IF;
    END LOOP;

    -- link column and target
    v_link := coalesce(p_args->>'link_column', v_rel.relname || '_id');
    IF v_link = '' THEN
        RAISE EXCEPTION 'link_column must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF octet_length(v_link) > 63 OR octet_length(v_target) > 63 OR octet_length(coalesce(v_tkey, '')) > 63 THEN
        RAISE EXCEPTION 'identifier longer than 63 bytes' USING ERRCODE = 'name_too_long';
    END IF;
    IF v_link = ANY (v_columns) THEN
        RAISE EXCEPTION 'link column "%" has the name of a moved column', v_link USING ERRCODE = 'duplicate_column';
    END IF;
    IF v_kidx NOT IN ('during_copy', 'after_copy') THEN
        RAISE EXCEPTION 'key_index must be ''during_copy'' or ''after_copy'', not "%"', v_kidx
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_kidx = 'after_copy' AND v_tkey IS NULL THEN
        RAISE EXCEPTION 'key_index => ''after_copy'' needs a target_key'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Without an own key the link column is the new table''s primary key, which the sync triggers need from the start.',
                  HINT = 'Give target_key => ''id'', or leave key_index at ''during_copy''.';
    END IF;
    IF v_tkey IS NOT NULL AND (v_tkey = v_link OR v_tkey = ANY (v_columns)) THEN
        RAISE EXCEPTION 'target_key "%" clashes with another target column', v_tkey USING ERRCODE = 'duplicate_column';
    END IF;
    IF v_target = '' THEN
        RAISE EXCEPTION 'target must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_tschema := coalesce(p_args->>'target_schema', v_rel.nspname);
    IF NOT EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = v_tschema) THEN
        RAISE EXCEPTION 'schema "%" does not exist', v_tschema USING ERRCODE = 'invalid_schema_name';
    END IF;
    -- the steps run as the table's owner: it must be able to create what they create
    IF NOT has_schema_privilege(v_rel.relowner, (SELECT n.oid FROM pg_namespace n WHERE n.nspname = v_tschema), 'CREATE') THEN
        RAISE EXCEPTION 'role % may not create tables in schema "%"', pg_get_userbyid(v_rel.relowner), v_tschema
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The new table is created by (and belongs to) the owner of the source table.',
                  HINT = format('GRANT CREATE ON SCHEMA %I TO %I;', v_tschema, pg_get_userbyid(v_rel.relowner));
    END IF;
    IF NOT has_database_privilege(v_rel.relowner, current_database(), 'CREATE') THEN
        RAISE EXCEPTION 'role % may not create schemas in database "%"', pg_get_userbyid(v_rel.relowner), current_database()
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'cutover creates the compatibility schema as the owner of the source table.',
                  HINT = format('GRANT CREATE ON DATABASE %I TO %I;', current_database(), pg_get_userbyid(v_rel.relowner));
    END IF;
    -- roles that use the source must reach the target's schema, or their queries fail after start
    SELECT string_agg(CASE WHEN g = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g)) END, ', ' ORDER BY g)
      INTO v_roles
      FROM customer_unify._b_grantees(v_source) g
     WHERE v_tschema <> v_rel.nspname
       AND NOT has_schema_privilege(CASE WHEN g = 0 THEN 'public' ELSE pg_get_userbyid(g)::text END,
                                    (SELECT n.oid FROM pg_namespace n WHERE n.nspname = v_tschema), 'USAGE');
    IF v_roles IS NOT NULL THEN
        RAISE EXCEPTION 'roles that use % have no USAGE on schema "%": %', v_source::text, v_tschema, v_roles
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Their reads and writes of the moved columns would fail once they live in the new table.',
                  HINT = format('GRANT USAGE ON SCHEMA %I TO ...; or choose another target_schema.', v_tschema);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = v_tschema AND c.relname = v_target) THEN
        RAISE EXCEPTION 'relation %.% already exists', quote_ident(v_tschema), quote_ident(v_target)
            USING ERRCODE = 'duplicate_table',
                  HINT = 'Choose another target name; split creates the target table itself.';
    END IF;
    -- the copies of its row-level security policies name the target row by
    -- its table, or, when it has the source's name, by the bare link column
    IF v_target = v_rel.relname AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = v_source)
       AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_source AND a.attname = v_link AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'cannot copy the row-level security policies of % to a table of the same name whose link column "%" is also a column of the source',
                        v_source::text, v_link
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Choose another target name or link_column.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = v_compat) THEN
        RAISE EXCEPTION 'schema "%" already exists', v_compat
            USING ERRCODE = 'duplicate_schema',
                  HINT = 'The compatibility view goes into schema <name>_compat; choose another migration name.';
    END IF;

    v_pairs := (SELECT jsonb_agg(jsonb_build_array(c, c) ORDER BY n) FROM unnest(v_columns) WITH ORDINALITY x(c, n));
    RETURN jsonb_build_object(
        'source', v_source::oid,
        'spec', jsonb_build_object(
            'source_schema', v_rel.nspname,
            'source_table',  v_rel.relname,
            'key_column',    v_key.attname,
            'key_type',      v_key.typ,
            'target_schema', v_tschema,
            'target_table',  v_target,
            'link_column',   v_link,
            'target_key',    v_tkey,
            'key_index',     v_kidx,
            'columns',       to_jsonb(v_columns),
            'compat_schema', v_compat,
            'args',          p_args - 'source'),
        'relations', jsonb_build_array(jsonb_build_object('tag', 'source', 'role', 'source', 'relid', v_source::oid)),
        'maps', jsonb_build_array(
            jsonb_build_object('name', 'forward', 'from_tag', 'source', 'to_tag', 'target',
                               'from_key', v_key.attname, 'to_key', v_link, 'columns', v_pairs),
            jsonb_build_object('name', 'backward', 'from_tag', 'target', 'to_tag', 'source',
                               'from_key', v_link, 'to_key', v_key.attname, 'columns', v_pairs),
            jsonb_build_object('name', 'route', 'from_tag', 'source', 'to_tag', 'target',
                               'from_key', v_key.attname, 'to_key', v_link, 'columns', v_pairs)));
END
$$;

-- Roles whose column privileges on the source do not cover every column: a
-- security_invoker view reads every column, so they cannot read through it.
CREATE OR REPLACE FUNCTION customer_unify._split_partial_readers(p_source regclass) RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(DISTINCT CASE WHEN g = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g)) END, ', ')
      FROM customer_unify._b_grantees(p_source) g
     WHERE NOT has_table_privilege(CASE WHEN g = 0 THEN 'public' ELSE pg_get_userbyid(g)::text END, p_source, 'SELECT')
       AND has_any_column_privilege(CASE WHEN g = 0 THEN 'public' ELSE pg_get_userbyid(g)::text END, p_source, 'SELECT')
       AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = p_source AND a.attnum > 0 AND NOT a.attisdropped
                      AND NOT has_column_privilege(CASE WHEN g = 0 THEN 'public' ELSE pg_get_userbyid(g)::text END, p_source, a.attnum, 'SELECT'))
$$;

CREATE OR REPLACE FUNCTION customer_unify.split(
    name          text,
    source        regclass,
    target        text,
    columns       text[],
    link_column   text DEFAULT NULL,
    target_schema text DEFAULT NULL,
    target_key    text DEFAULT NULL,
    key_index     text DEFAULT 'during_copy')
    RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id   bigint;
    v_list text;
BEGIN
    IF split.name IS NULL OR split.source IS NULL OR split.target IS NULL OR split.columns IS NULL THEN
        RAISE EXCEPTION 'name, source, target and columns must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    v_id := customer_unify._create_migration('split', split.name,
                jsonb_build_object('source', split.source::oid, 'target', split.target,
                                   'columns', to_jsonb(split.columns), 'link_column', split.link_column,
                                   'target_schema', split.target_schema, 'target_key', split.target_key,
                                   'key_index', split.key_index));
    -- dependents are found now, not at finalize
    v_list := customer_unify._blocking_dependents(v_id);
    IF v_list IS NOT NULL THEN
        RAISE NOTICE 'objects depend on the columns to move; finalize will refuse until they are changed'
            USING DETAIL = v_list,
                  HINT = format('See SELECT * FROM customer_unify.dependents(%L);', split.name);
    END IF;
    v_list := customer_unify._split_partial_readers(split.source);
    IF v_list IS NOT NULL THEN
        RAISE NOTICE 'roles with SELECT on only some columns of % cannot read its compatibility view: %', split.source::text, v_list
            USING DETAIL = 'A security_invoker view checks every column it reads; they keep reading the tables themselves.',
                  HINT = 'Grant them SELECT on every column, or point them at the new tables.';
    END IF;
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION customer_unify.split(text, regclass, text, text[], text, text, text, text) IS
    'Plans moving columns of a table into a new 1:1 table (key_index => ''after_copy'': a launched job builds the own key''s primary key concurrently after the copy). Validates everything; creates nothing.';

-- What a split keeps in the target, from the catalog: the moved columns in
-- source order with everything that re-creates them.
CREATE OR REPLACE FUNCTION customer_unify._split_moved(m customer_unify.migration)
    RETURNS SETOF text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.to_column::text FROM customer_unify.sync_map s
      JOIN customer_unify.sync_map_column c ON c.map_id = s.id
     WHERE s.migration_id = m.id AND s.name = 'forward'
     ORDER BY c.ord
$$;

-- Constraints of the source (by contype) whose columns all move.
CREATE OR REPLACE FUNCTION customer_unify._split_moved_constraints(m customer_unify.migration, p_contypes "char"[])
    RETURNS TABLE (conname name, contype "char", def text, validated boolean)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.conname, c.contype, pg_get_constraintdef(c.oid), c.convalidated
      FROM pg_constraint c
     WHERE c.conrelid = m.source AND c.contype = ANY (p_contypes)
       AND NOT EXISTS (SELECT 1 FROM unnest(c.conkey) k
                         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k
                        WHERE NOT (a.attname::text IN (SELECT customer_unify._split_moved(m))))
     ORDER BY c.conname
$$;

-- Every statement of a split, per phase: the single source of truth for
-- preview and for what start freezes and the engine runs.
CREATE OR REPLACE FUNCTION customer_unify._split_steps(m customer_unify.migration)
    RETURNS TABLE (phase text, seq int, statement text, inverse text,
                   lock_mode text, lock_relation text, rows_estimate bigint, registers jsonb)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s         jsonb := m.spec;
    v_src     text := customer_unify._b_name(m.source);
    v_tgt     text := customer_unify._qual(s->>'target_schema', s->>'target_table');
    v_cschema text := s->>'compat_schema';
    v_view    text;
    v_key     text;
    v_link    text := s->>'link_column';
    v_fk      text := left(s->>'target_table' || '_' || (s->>'link_column'), 58) || '_fkey';
    v_moved   text[] := ARRAY(SELECT customer_unify._split_moved(m));
    v_pairs   jsonb;
    v_est     bigint;
    v_defs    text[] := '{}';
    v_c       record;
    v_fwd     bigint := customer_unify._map_id(m.id, 'forward');
    v_bwd     bigint := customer_unify._map_id(m.id, 'backward');
    v_route   bigint := customer_unify._map_id(m.id, 'route');
    v_fn      text;
    v_viewcols text[] := '{}';
    v_finalcols text[] := '{}';
    v_key_after boolean := coalesce(s->>'key_index', 'during_copy') = 'after_copy';
    v_link_key  text := customer_unify._b_clip_name(s->>'target_table' || '_' || (s->>'link_column'), '_key');
    st        customer_unify.step_def;
    v_phase   text;
    v_steps   customer_unify.step_def[];
BEGIN
    SELECT a.attname INTO v_key
      FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
     WHERE i.indrelid = m.source AND i.indisprimary;
    v_view := customer_unify._qual(v_cschema, (SELECT c.relname FROM pg_class c WHERE c.oid = m.source));
    v_fn := customer_unify._qual(v_cschema, left((SELECT c.relname FROM pg_class c WHERE c.oid = m.source), 56) || '_moved');
    SELECT GREATEST(c.reltuples, 0)::bigint INTO v_est FROM pg_class c WHERE c.oid = m.source;
    v_pairs := (SELECT jsonb_agg(jsonb_build_array(c, c) ORDER BY n) FROM unnest(v_moved) WITH ORDINALITY x(c, n));

    FOR v_c IN SELECT * FROM customer_unify._b_columns(m.source, v_moved) LOOP
        v_defs := v_defs || (quote_ident(v_c.attname) || ' ' || v_c.typ
                             || coalesce(v_c.collation_clause, '')
                             || coalesce(' DEFAULT ' || v_c.default_expr, '')
                             || CASE WHEN v_c.notnull THEN ' NOT NULL' ELSE '' END);
    END LOOP;

    ---------------------------------------------------------------- start
    v_steps := ARRAY[
        customer_unify._b_lock(v_src, 'SHARE ROW EXCLUSIVE'),
        customer_unify._b_step(
            format('CREATE TABLE %s (%s%I %s NOT NULL, %s, %s)', v_tgt,
                   CASE WHEN s->>'target_key' IS NOT NULL
                        THEN quote_ident(s->>'target_key') || ' bigint GENERATED BY DEFAULT AS IDENTITY '
                             || CASE WHEN v_key_after THEN 'NOT NULL, ' ELSE 'PRIMARY KEY, ' END ELSE '' END,
                   v_link, (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                             WHERE a.attrelid = m.source AND a.attname = v_key),
                   array_to_string(v_defs, ', '),
                   CASE WHEN v_key_after THEN format('CONSTRAINT %I UNIQUE (%I)', v_link_key, v_link)
                        WHEN s->>'target_key' IS NOT NULL THEN format('UNIQUE (%I)', v_link)
                        ELSE format('PRIMARY KEY (%I)', v_link) END),
            format('DROP TABLE IF EXISTS %s', v_tgt), 'ACCESS EXCLUSIVE', v_tgt || ' (new)',
            jsonb_build_object('relation', jsonb_build_object('tag', 'target', 'role', 'target',
                               'nspname', s->>'target_schema', 'relname', s->>'target_table'))
            -- the own key's primary key, built by the job after the copy
            -- (CREATE UNIQUE INDEX CONCURRENTLY, ADD PRIMARY KEY USING INDEX)
            || CASE WHEN v_key_after THEN jsonb_build_object('job_index', jsonb_build_object(
                   'index_name', customer_unify._b_clip_name(s->>'target_table', '_pkey'), 'relation_tag', 'target',
                   'columns', jsonb_build_array(s->>'target_key'), 'is_unique', true, 'as_constraint', 'primary key'))
               ELSE '{}' END)];
    -- until the job attaches the own key, writes to the new table are
    -- logged (a publication) with the link as the row's identity
    IF v_key_after THEN
        v_steps := v_steps || customer_unify._b_step(format('ALTER TABLE %s REPLICA IDENTITY USING INDEX %I', v_tgt, v_link_key),
                                                     NULL, 'ACCESS EXCLUSIVE', v_tgt);
    END IF;
    -- comments of the moved columns
    v_steps := v_steps || ARRAY(
        SELECT customer_unify._b_step(format('COMMENT ON COLUMN %s.%I IS %L', v_tgt, c.attname, c.comment),
                                      NULL, 'SHARE UPDATE EXCLUSIVE', v_tgt)
          FROM customer_unify._b_columns(m.source, v_moved) c WHERE c.comment IS NOT NULL ORDER BY c.attnum);
    -- CHECK constraints on moved columns only, and unique and exclusion
    -- constraints (deferrability kept); a CHECK the source has NOT VALID
    -- comes after the copy (old rows may violate it), NOT VALID still
    v_steps := v_steps || ARRAY(
        SELECT customer_unify._b_step(
                   CASE WHEN c.contype = 'c' THEN format('ALTER TABLE %s ADD CONSTRAINT %I %s', v_tgt, c.conname, c.def)
                        ELSE format('ALTER TABLE %s ADD %s', v_tgt, c.def) END,
                   NULL, 'ACCESS EXCLUSIVE', v_tgt)
          FROM customer_unify._split_moved_constraints(m, ARRAY['c', 'u', 'x']::"char"[]) c
         WHERE c.validated OR c.contype <> 'c'
         ORDER BY c.contype, c.conname);
    -- indexes whose columns, expressions and predicate use only moved columns
    -- (those behind a constraint come with it)
    v_steps := v_steps || ARRAY(
        SELECT customer_unify._b_step(
                   regexp_replace(pg_get_indexdef(i.indexrelid), '^CREATE (UNIQUE )?INDEX .*? ON (ONLY )?' ||
                                  regexp_replace(v_src, '([\.\^\$\*\+\?\(\)\[\]\{\}\|\\])', '\\\1', 'g') || ' USING ',
                                  'CREATE \1INDEX ON ' || replace(v_tgt, '\', '\\') || ' USING '),
                   NULL, 'SHARE', v_tgt)
          FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
         WHERE i.indrelid = m.source AND NOT i.indisprimary
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = m.source)
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                             JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                            WHERE d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid
                              AND d.refobjid = m.source AND d.refobjsubid > 0
                              AND NOT (a.attname::text = ANY (v_moved)))
           AND NOT EXISTS (SELECT 1 FROM unnest(i.indkey) k WHERE k <> 0
                              AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = m.source AND a.attnum = k
                                                 AND a.attname::text = ANY (v_moved)))
         ORDER BY ic.relname);
    -- privileges follow the data: table privileges, moved columns', and the key's on the link
    v_steps := v_steps || ARRAY(SELECT customer_unify._b_privileges(m.source, v_tgt,
                                         v_pairs || jsonb_build_array(jsonb_build_array(v_key, v_link))));
    -- row-level security: the target's rows are visible as their source rows are
    v_steps := v_steps || ARRAY(SELECT customer_unify._b_policy_copies(m.source, v_key, v_tgt, s->>'target_table', v_link));
    v_steps := v_steps || ARRAY(SELECT customer_unify._b_sync_triggers(m.id, v_src, v_tgt, v_fwd, v_bwd));
    phase := 'start'; seq := 0; rows_estimate := 0;
    FOREACH st IN ARRAY v_steps LOOP
        seq := seq + 1;
        statement := st.statement; inverse := st.inverse; lock_mode := st.lock_mode;
        lock_relation := st.lock_relation; registers := st.registers;
        RETURN NEXT;
    END LOOP;

    ---------------------------------------------------------------- backfill (run by the C engine)
    phase := 'backfill'; seq := 1; rows_estimate := v_est; registers := NULL; inverse := NULL;
    statement := customer_unify._copy_statement(jsonb_build_object(
                     'source', m.source::oid::text, 'target_name', v_tgt, 'key', v_key, 'link', v_link, 'columns', v_pairs));
    lock_mode := 'ROW EXCLUSIVE';
    lock_relation := v_tgt || ' (one transaction per batch; ACCESS SHARE on ' || v_src || ')';
    RETURN NEXT;

    ---------------------------------------------------------------- backfill_end
    -- Once every row is copied: lock the source first, in the order writers
    -- lock (source, then target through the triggers), then add the foreign
    -- keys NOT VALID.  From here on ON DELETE / ON UPDATE CASCADE keep the
    -- two tables 1:1, so no new orphan can appear.
    v_steps := ARRAY[
        customer_unify._b_lock(v_src, 'SHARE ROW EXCLUSIVE'),
        customer_unify._b_lock(v_tgt, 'SHARE ROW EXCLUSIVE'),
        customer_unify._b_foreign_key(v_tgt, v_fk,
            format('FOREIGN KEY (%I) REFERENCES %s (%I) ON DELETE CASCADE ON UPDATE CASCADE', v_link, v_src, v_key))];
    -- foreign keys of the source whose columns all move go along, and the
    -- CHECKs the source has NOT VALID
    v_steps := v_steps || ARRAY(
        SELECT customer_unify._b_foreign_key(v_tgt, c.conname, c.def)
          FROM customer_unify._split_moved_constraints(m, ARRAY['f']::"char"[]) c ORDER BY c.conname);
    v_steps := v_steps || ARRAY(
        SELECT customer_unify._b_step(format('ALTER TABLE %s ADD CONSTRAINT %I %s', v_tgt, c.conname, c.def),
                                      NULL, 'SHARE ROW EXCLUSIVE', v_tgt)
          FROM customer_unify._split_moved_constraints(m, ARRAY['c']::"char"[]) c
         WHERE NOT c.validated ORDER BY c.conname);
    phase := 'backfill_end'; seq := 0;
    FOREACH st IN ARRAY v_steps LOOP
        seq := seq + 1;
        statement := st.statement; inverse := st.inverse; lock_mode := st.lock_mode;
        lock_relation := st.lock_relation; registers := st.registers;
        RETURN NEXT;
    END LOOP;

    ---------------------------------------------------------------- orphans
    -- Only when validation finds them: rows a delete removed from the source
    -- while a batch was copying them from its snapshot.
    phase := 'orphans'; seq := 1; inverse := NULL; registers := NULL;
    statement := format('DELETE FROM ONLY %s t WHERE NOT EXISTS (SELECT 1 FROM ONLY %s s WHERE s.%I %s t.%I)',
                        v_tgt, v_src, v_key, customer_unify._b_key_eq(m.source, v_key), v_link);
    lock_mode := 'ROW EXCLUSIVE'; lock_relation := v_tgt;
    RETURN NEXT;

    ---------------------------------------------------------------- validate
    -- One pass per foreign key; VALIDATE takes SHARE UPDATE EXCLUSIVE, so
    -- writers go on.  A key the source had NOT VALID stays so.
    v_steps := ARRAY[customer_unify._b_validate(v_tgt, v_fk)];
    v_steps := v_steps || ARRAY(
        SELECT customer_unify._b_validate(v_tgt, c.conname)
          FROM customer_unify._split_moved_constraints(m, ARRAY['f']::"char"[]) c
         WHERE c.validated ORDER BY c.conname);
    phase := 'validate'; seq := 0;
    FOREACH st IN ARRAY v_steps LOOP
        seq := seq + 1;
        statement := st.statement; inverse := st.inverse; lock_mode := st.lock_mode;
        lock_relation := st.lock_relation; registers := st.registers;
        RETURN NEXT;
    END LOOP;

    ---------------------------------------------------------------- cutover
    -- Until finalize the source is complete and in sync: the view is the
    -- source itself, a simple view PostgreSQL updates natively (its writes are
    -- writes of the source, with its defaults, triggers, privileges, row-level
    -- security, RETURNING and FOR UPDATE); the sync trigger carries them.
    FOR v_c IN SELECT * FROM customer_unify._b_columns(m.source, NULL) LOOP
        v_viewcols := v_viewcols || quote_ident(v_c.attname);
        v_finalcols := v_finalcols || (CASE WHEN v_c.attname = ANY (v_moved) THEN 't.' ELSE 's.' END || quote_ident(v_c.attname));
    END LOOP;
    v_steps := ARRAY[
        customer_unify._b_lock(v_src, 'ACCESS SHARE'),
        customer_unify._b_lock(v_tgt, 'ACCESS SHARE'),
        customer_unify._b_step(format('SELECT customer_unify._gate_verify(%s)', m.id), NULL, 'ACCESS SHARE', v_src || ', ' || v_tgt),
        customer_unify._b_step(format('CREATE SCHEMA %I', v_cschema), format('DROP SCHEMA IF EXISTS %I', v_cschema)),
        customer_unify._b_step(format('COMMENT ON SCHEMA %I IS %L', v_cschema,
                                      format('customer_unify: the old shape of %s for applications not yet moved (migration %s)',
                                             v_src, m.name)))];
    v_steps := v_steps || ARRAY(SELECT customer_unify._b_schema_usage(m.source, v_cschema));
    v_steps := v_steps || customer_unify._b_step(
        format('CREATE VIEW %s WITH (security_invoker = true) AS SELECT %s FROM ONLY %s', v_view,
               array_to_string(v_viewcols, ', '), v_src),
        format('DROP VIEW IF EXISTS %s', v_view), 'ACCESS SHARE', v_src,
        jsonb_build_object('relation', jsonb_build_object('tag', 'view', 'role', 'view',
                           'nspname', v_cschema, 'relname', (SELECT c.relname FROM pg_class c WHERE c.oid = m.source))));
    v_steps := v_steps || ARRAY(SELECT customer_unify._b_privileges(m.source, v_view,
                                         (SELECT jsonb_agg(jsonb_build_array(c.attname, c.attname) ORDER BY c.attnum)
                                            FROM customer_unify._b_columns(m.source, NULL) c)));
    phase := 'cutover'; seq := 0; rows_estimate := 0;
    FOREACH st IN ARRAY v_steps LOOP
        seq := seq + 1;
        statement := st.statement; inverse := st.inverse; lock_mode := st.lock_mode;
        lock_relation := st.lock_relation; registers := st.registers;
        RETURN NEXT;
    END LOOP;

    ---------------------------------------------------------------- finalize
    -- Writes stop (SHARE) while the shapes are compared exactly; only the
    -- catalog changes after it hold ACCESS EXCLUSIVE.
    v_steps := ARRAY[
        customer_unify._b_lock(v_src, 'SHARE'),
        customer_unify._b_lock(v_tgt, 'SHARE'),
        customer_unify._b_step(format('SELECT customer_unify._gate_dependents(%s)', m.id)),
        customer_unify._b_step(format('SELECT customer_unify._gate_verify(%s)', m.id), NULL, 'SHARE', v_src || ', ' || v_tgt),
        customer_unify._b_lock(v_src, 'ACCESS EXCLUSIVE'),
        customer_unify._b_lock(v_tgt, 'ACCESS EXCLUSIVE')];
    v_steps := v_steps || ARRAY(SELECT customer_unify._b_drop_sync_triggers(m.id, v_src, v_tgt));
    -- sequences owned by a moved column now belong to the target's column
    v_steps := v_steps || ARRAY(
        SELECT customer_unify._b_step(format('ALTER SEQUENCE %s OWNED BY %s.%I', d.objid::regclass, v_tgt, a.attname),
                                      NULL, 'ACCESS EXCLUSIVE', d.objid::regclass::text)
          FROM pg_depend d
          JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
         WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
           AND d.refobjid = m.source AND d.deptype = 'a' AND a.attname::text = ANY (v_moved)
           AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = d.objid AND c.relkind = 'S'));
    -- the view now joins: the target's row of a source row through an
    -- inlinable SQL function, so FOR UPDATE locks the source row only and
    -- the planner still joins (and filters on moved columns) with indexes
    v_steps := v_steps || customer_unify._b_step(
        format('CREATE FUNCTION %s(%s) RETURNS SETOF %s LANGUAGE sql STABLE AS %L', v_fn,
               (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = m.source AND a.attname = v_key),
               v_tgt, format('SELECT * FROM ONLY %s t WHERE t.%I %s $1', v_tgt, v_link, customer_unify._b_key_eq(m.source, v_key))),
        NULL, NULL, v_fn);
    v_steps := v_steps || customer_unify._b_step(
        format('CREATE OR REPLACE VIEW %s WITH (security_invoker = true) AS SELECT %s FROM ONLY %s s LEFT JOIN LATERAL %s(s.%I) t ON true',
               v_view, array_to_string(v_finalcols, ', '), v_src, v_fn, v_key),
        NULL, 'ACCESS EXCLUSIVE', v_view,
        jsonb_build_object('map_mode', jsonb_build_object('name', 'route', 'mode', 'final')));
    v_steps := v_steps || customer_unify._b_step(
        format('ALTER TABLE %s %s', v_src, (SELECT string_agg(format('DROP COLUMN %I', c), ', ') FROM unnest(v_moved) c)),
        NULL, 'ACCESS EXCLUSIVE', v_src);
    -- a join is not updatable by itself: the C router writes through it, the
    -- view's defaults fill what an INSERT leaves out, and capture triggers
    -- hand the router the rows it stored
    v_steps := v_steps || ARRAY(SELECT customer_unify._b_view_defaults(m.source, v_view));
    v_steps := v_steps || ARRAY(SELECT customer_unify._b_route_trigger(m.id, v_view, v_route));
    v_steps := v_steps || ARRAY(SELECT customer_unify._b_capture_triggers(m.id, ARRAY[v_src, v_tgt]));
    phase := 'finalize'; seq := 0;
    FOREACH st IN ARRAY v_steps LOOP
        seq := seq + 1;
        statement := st.statement; inverse := st.inverse; lock_mode := st.lock_mode;
        lock_relation := st.lock_relation; registers := st.registers;
        RETURN NEXT;
    END LOOP;
END
$$;

-- The copy stream of a split: source rows by key into the target.
CREATE OR REPLACE FUNCTION customer_unify._split_copy_plan(m customer_unify.migration)
    RETURNS TABLE (stream text, key_type regtype, plan jsonb)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'main', a.atttypid::regtype,
           jsonb_build_object('source_tag', 'source', 'target_tag', 'target', 'key', a.attname,
                              'link', m.spec->>'link_column',
                              'columns', (SELECT jsonb_agg(jsonb_build_array(c, c)) FROM customer_unify._split_moved(m) c))
      FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
     WHERE i.indrelid = m.source AND i.indisprimary
$$;

-- verify: the source's moved columns against the target, row by row, and the link FK.
CREATE OR REPLACE FUNCTION customer_unify._split_verify(m customer_unify.migration, checksums boolean DEFAULT true)
    RETURNS TABLE (check_name text, expected text, actual text, ok boolean)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tgt  regclass := customer_unify._relation(m.id, 'target');
    v_key  text := m.spec->>'key_column';
    v_link text := m.spec->>'link_column';
    v_fk   record;
BEGIN
    IF v_tgt IS NULL THEN
        check_name := 'target_exists'; expected := 'exists'; actual := 'missing'; ok := false;
        RETURN NEXT;
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM customer_unify._compare(
        m.source, format('s.%I', v_key), v_tgt, format('t.%I', v_link),
        format('t.%I %s s.%I', v_link, customer_unify._b_key_eq(m.source, v_key), v_key),
        (SELECT jsonb_agg(jsonb_build_object('name', c, 'left', format('s.%I', c), 'right', format('t.%I', c)))
           FROM customer_unify._split_moved(m) c),
        checksums);
    SELECT c.convalidated INTO v_fk
      FROM pg_constraint c
     WHERE c.conrelid = v_tgt AND c.contype = 'f' AND c.confrelid = m.source;
    check_name := 'link_foreign_key'; expected := 'validated';
    actual := CASE WHEN v_fk IS NULL THEN 'absent' WHEN v_fk.convalidated THEN 'validated' ELSE 'not validated' END;
    ok := expected = actual; RETURN NEXT;
END
$$;

-- Objects that use the moved columns; blocks_finalize: finalize would break them.
CREATE OR REPLACE FUNCTION customer_unify._split_dependents(m customer_unify.migration)
    RETURNS TABLE (object_type text, object_name text, dependency text, blocks_finalize boolean)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH moved AS (
        SELECT a.attnum, a.attname::text AS attname
          FROM pg_attribute a
         WHERE a.attrelid = m.source AND a.attnum > 0 AND NOT a.attisdropped
           AND a.attname::text IN (SELECT customer_unify._split_moved(m))
    ), deps AS (
        SELECT d.classid, d.objid, string_agg(DISTINCT mv.attname, ', ') AS cols
          FROM pg_depend d JOIN moved mv ON mv.attnum = d.refobjsubid
         WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = m.source
           AND d.deptype IN ('n', 'a')
         GROUP BY d.classid, d.objid
    ), own AS (
        -- the migration's own objects
        SELECT r.relid FROM customer_unify.migration_relation r WHERE r.migration_id = m.id
    )
    -- views and rules
    SELECT 'view', r.ev_class::regclass::text, 'reads ' || deps.cols, true
      FROM deps JOIN pg_rewrite r ON deps.classid = 'pg_rewrite'::regclass AND r.oid = deps.objid
     WHERE r.ev_class <> m.source AND r.ev_class NOT IN (SELECT relid FROM own)
    UNION ALL
    -- triggers (WHEN clauses, UPDATE OF lists), other than the migration's own
    SELECT 'trigger', format('%I on %s', t.tgname, t.tgrelid::regclass), 'uses ' || deps.cols, true
      FROM deps JOIN pg_trigger t ON deps.classid = 'pg_trigger'::regclass AND t.oid = deps.objid
     WHERE t.tgname::text NOT LIKE 'customer\_unify\_' || m.id || '\_%'
    UNION ALL
    -- constraints: CHECKs, FKs and unique/exclusion constraints that only use moved columns travel; others block
    SELECT CASE c.contype WHEN 'c' THEN 'check constraint' WHEN 'f' THEN 'foreign key'
                          WHEN 'u' THEN 'unique constraint' WHEN 'x' THEN 'exclusion constraint' ELSE 'constraint' END,
           format('%I on %s', c.conname, c.conrelid::regclass),
           CASE WHEN c.contype IN ('c', 'f', 'u', 'x')
                     AND NOT EXISTS (SELECT 1 FROM unnest(c.conkey) k WHERE k NOT IN (SELECT attnum FROM moved))
                THEN 'moves to the target with ' || deps.cols
                ELSE 'uses ' || deps.cols END,
           NOT (c.contype IN ('c', 'f', 'u', 'x')
                AND NOT EXISTS (SELECT 1 FROM unnest(c.conkey) k WHERE k NOT IN (SELECT attnum FROM moved)))
      FROM deps JOIN pg_constraint c ON deps.classid = 'pg_constraint'::regclass AND c.oid = deps.objid
     WHERE c.conrelid = m.source
    UNION ALL
    -- foreign keys of other tables that reference a moved column
    SELECT 'foreign key', format('%I on %s', c.conname, c.conrelid::regclass),
           'references ' || (SELECT string_agg(mv.attname, ', ') FROM moved mv WHERE mv.attnum = ANY (c.confkey)), true
      FROM pg_constraint c
     WHERE c.contype = 'f' AND c.confrelid = m.source
       AND EXISTS (SELECT 1 FROM moved mv WHERE mv.attnum = ANY (c.confkey))
    UNION ALL
    -- indexes: those on moved columns only are re-created on the target; mixed ones would be lost
    SELECT 'index', i.indexrelid::regclass::text,
           CASE WHEN NOT EXISTS (SELECT 1 FROM unnest(i.indkey) k WHERE k <> 0 AND k NOT IN (SELECT attnum FROM moved))
                     AND NOT EXISTS (SELECT 1 FROM pg_depend d2 WHERE d2.classid = 'pg_class'::regclass
                                        AND d2.objid = i.indexrelid AND d2.refobjid = m.source AND d2.refobjsubid > 0
                                        AND d2.refobjsubid NOT IN (SELECT attnum FROM moved))
                THEN 're-created on the target'
                ELSE 'mixes moved and kept columns; finalize would drop it' END,
           NOT (NOT EXISTS (SELECT 1 FROM unnest(i.indkey) k WHERE k <> 0 AND k NOT IN (SELECT attnum FROM moved))
                AND NOT EXISTS (SELECT 1 FROM pg_depend d2 WHERE d2.classid = 'pg_class'::regclass
                                   AND d2.objid = i.indexrelid AND d2.refobjid = m.source AND d2.refobjsubid > 0
                                   AND d2.refobjsubid NOT IN (SELECT attnum FROM moved)))
      FROM pg_index i
     WHERE i.indrelid = m.source AND NOT i.indisprimary
       AND (EXISTS (SELECT 1 FROM unnest(i.indkey) k WHERE k IN (SELECT attnum FROM moved))
            OR EXISTS (SELECT 1 FROM pg_depend d2 WHERE d2.classid = 'pg_class'::regclass
                          AND d2.objid = i.indexrelid AND d2.refobjid = m.source
                          AND d2.refobjsubid IN (SELECT attnum FROM moved)))
       AND i.indexrelid NOT IN (SELECT c.conindid FROM pg_constraint c WHERE c.conrelid = m.source
                                   AND c.contype IN ('u', 'x'))
    UNION ALL
    -- functions with SQL-standard bodies, policies
    SELECT 'function', deps.objid::regprocedure::text, 'reads ' || deps.cols, true
      FROM deps WHERE deps.classid = 'pg_proc'::regclass
    UNION ALL
    SELECT 'policy', format('%I on %s', p.polname, p.polrelid::regclass), 'uses ' || deps.cols, true
      FROM deps JOIN pg_policy p ON deps.classid = 'pg_policy'::regclass AND p.oid = deps.objid
    UNION ALL
    -- publications: a column list naming a moved column breaks; a publication
    -- of the whole table stops publishing the moved columns
    SELECT 'publication', format('%I on %s', pb.pubname, pr.prrelid::regclass),
           CASE WHEN pr.prattrs IS NOT NULL
                THEN 'its column list has ' || (SELECT string_agg(mv.attname, ', ' ORDER BY mv.attnum) FROM moved mv
                                                 WHERE mv.attnum = ANY (pr.prattrs::int2[]))
                ELSE 'publishes the table; add the target to keep publishing the moved columns' END,
           pr.prattrs IS NOT NULL
      FROM pg_publication_rel pr JOIN pg_publication pb ON pb.oid = pr.prpubid
     WHERE pr.prrelid = m.source
       AND (pr.prattrs IS NULL OR EXISTS (SELECT 1 FROM moved mv WHERE mv.attnum = ANY (pr.prattrs::int2[])))
    UNION ALL
    SELECT 'publication', format('%I (FOR ALL TABLES)', pb.pubname),
           'publishes every table; the moved columns are published from the target', false
      FROM pg_publication pb WHERE pb.puballtables
    UNION ALL
    -- function bodies are not tracked by PostgreSQL: match the column names in the text of
    -- functions that name the table, and of trigger functions of the table's own triggers
    SELECT 'function (text match)', p.oid::regprocedure::text,
           'its body mentions ' || string_agg(DISTINCT mv.attname, ', '), true
      FROM pg_proc p
      JOIN moved mv ON p.prosrc ~ ('\m' || regexp_replace(mv.attname, '([\.\^\$\*\+\?\(\)\[\]\{\}\|\\])', '\\\1', 'g') || '\M')
      JOIN pg_language l ON l.oid = p.prolang AND l.lanname NOT IN ('c', 'internal')
     WHERE p.prosqlbody IS NULL
       AND p.pronamespace <> (SELECT e.extnamespace FROM pg_extension e WHERE e.extname = 'customer_unify')
       AND (p.prosrc ~* ('\m' || regexp_replace(m.spec->>'source_table', '([\.\^\$\*\+\?\(\)\[\]\{\}\|\\])', '\\\1', 'g') || '\M')
            OR p.oid IN (SELECT t.tgfoid FROM pg_trigger t WHERE t.tgrelid = m.source AND NOT t.tgisinternal
                            AND t.tgname::text NOT LIKE 'customer\_unify\_%'))
     GROUP BY p.oid
$$;

-- For status(): the target and the columns it holds.
CREATE OR REPLACE FUNCTION customer_unify._split_describe(m customer_unify.migration)
    RETURNS TABLE (target text, columns text[])
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT customer_unify._qual(m.spec->>'target_schema', m.spec->>'target_table'),
           ARRAY(SELECT customer_unify._split_moved(m))
$$;

-- The source's privileges and row-level security carried again to the
-- target and the view, after the application changed them (the guard runs
-- these as the 'resync' phase).
CREATE OR REPLACE FUNCTION customer_unify._split_security_steps(m customer_unify.migration)
    RETURNS SETOF customer_unify.step_def
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tgt  regclass := customer_unify._relation(m.id, 'target');
    v_view regclass := customer_unify._relation(m.id, 'view');
    v_key  text := m.spec->>'key_column';
    v_link text := m.spec->>'link_column';
    v_pairs jsonb := (SELECT jsonb_agg(jsonb_build_array(c, c)) FROM customer_unify._split_moved(m) c);
    v_rel  record;
    p      record;
BEGIN
    IF v_tgt IS NOT NULL THEN
        RETURN QUERY SELECT * FROM customer_unify._b_revoke_all(v_tgt);
        RETURN QUERY SELECT * FROM customer_unify._b_privileges(m.source, customer_unify._b_name(v_tgt),
                                                                v_pairs || jsonb_build_array(jsonb_build_array(v_key, v_link)));
        FOR p IN SELECT pl.polname FROM pg_policy pl WHERE pl.polrelid = v_tgt ORDER BY pl.polname LOOP
            RETURN NEXT customer_unify._b_step(format('DROP POLICY %I ON %s', p.polname, customer_unify._b_name(v_tgt)),
                                               NULL, 'ACCESS EXCLUSIVE', customer_unify._b_name(v_tgt));
        END LOOP;
        SELECT c.relrowsecurity, c.relforcerowsecurity INTO v_rel FROM pg_class c WHERE c.oid = m.source;
        IF NOT v_rel.relrowsecurity THEN
            RETURN NEXT customer_unify._b_step(format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', customer_unify._b_name(v_tgt)),
                                               NULL, 'SHARE ROW EXCLUSIVE', customer_unify._b_name(v_tgt));
        END IF;
        IF NOT v_rel.relforcerowsecurity THEN
            RETURN NEXT customer_unify._b_step(format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY', customer_unify._b_name(v_tgt)),
                                               NULL, 'SHARE ROW EXCLUSIVE', customer_unify._b_name(v_tgt));
        END IF;
        RETURN QUERY SELECT * FROM customer_unify._b_policy_copies(m.source, v_key, customer_unify._b_name(v_tgt),
                                                                   (SELECT c.relname::text FROM pg_class c WHERE c.oid = v_tgt), v_link);
    END IF;
    IF v_view IS NOT NULL THEN
        RETURN QUERY SELECT * FROM customer_unify._b_revoke_all(v_view);
        RETURN QUERY SELECT * FROM customer_unify._b_privileges(m.source, customer_unify._b_name(v_view),
                                         (SELECT jsonb_agg(jsonb_build_array(c.attname, c.attname) ORDER BY c.attnum)
                                            FROM customer_unify._b_columns(m.source, NULL) c));
        RETURN QUERY SELECT * FROM customer_unify._b_schema_usage(m.source, m.spec->>'compat_schema');
    END IF;
END
$$;

-------------------------------------------------------------------------------
-- merge.sql: the merge operation.  Folds N source tables (any key types)
-- into one target (an existing table that survives, or a new one), matching
-- people on normalized keys, with survivorship per column, the id crosswalk
-- (customer_unify.id_map) and re-pointed references.  Like every operation
-- it is only a validator, a step generator, a copy plan, verify checks,
-- dependents, a description and its security steps; the engine runs them.
--
-- The shape of a live merge (work schema <name>_merge, owned by the tables'
-- owner, made by start and dropped by rollback or purge):
--   match_key            (src, skey, rule, mkey): every usable match key of
--                        every source row, indexed by (rule, mkey);
--   survivors            view: per target key, the value survivorship
--                        chooses for each mapped column from the rows of
--                        the cluster (the crosswalk joined to each source);
--   merged_rows          view: the target rows the merge made (not anchors);
--   apply_<tag>(keys)    per source: re-match the given rows (their current
--                        version, or their absence), fold clusters that a
--                        row now joins, and recompute the target rows of the
--                        clusters touched;
--   ref_<n>()            per reference: BEFORE trigger that fills the new
--                        reference column from the crosswalk.
-- Sources carry statement-level AFTER triggers (C, merge_sync.c) that call
-- their apply function with the keys a statement wrote; the backfill runs
-- the same apply functions over key ranges, so one code path matches rows
-- that existed and rows written while live.
--
-- An existing target is also a source (tag 'target', priority 0): its rows
-- are anchors.  They keep their keys and values; rows of other sources that
-- match an anchor join its cluster.  Clusters without an anchor get a new
-- target row, recomputed whenever a member changes.
-------------------------------------------------------------------------------

-- The first non-NULL value in the aggregate's ORDER BY (survivorship).
CREATE OR REPLACE FUNCTION customer_unify._first_sfunc(anyelement, anyelement) RETURNS anyelement
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_first_sfunc';
DO $do$
BEGIN
    IF to_regprocedure('customer_unify.first_non_null(anyelement)') IS NULL THEN
        CREATE AGGREGATE customer_unify.first_non_null(anyelement) (
            SFUNC = customer_unify._first_sfunc, STYPE = anyelement, PARALLEL = SAFE);
    END IF;
END
$do$;
COMMENT ON AGGREGATE customer_unify.first_non_null(anyelement) IS
    'The first non-NULL value in ORDER BY order: survivorship''s tie-broken choice.';

CREATE OR REPLACE FUNCTION customer_unify._id_map_set(migration bigint, tag text, old_keys text[], target_keys text[], rules text[])
    RETURNS int LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'cu_id_map_set';
CREATE OR REPLACE FUNCTION customer_unify._id_map_delete(migration bigint, tag text, old_keys text[])
    RETURNS int LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'cu_id_map_delete';
CREATE OR REPLACE FUNCTION customer_unify._id_map_retarget(migration bigint, from_keys text[], to_key text)
    RETURNS int LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'cu_id_map_retarget';
CREATE OR REPLACE FUNCTION customer_unify._id_map_clear(migration bigint)
    RETURNS int LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'cu_id_map_clear';
CREATE OR REPLACE FUNCTION customer_unify._merge_apply(migration bigint, tag text, keys text[], targets text[])
    RETURNS void LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'cu_merge_apply';
CREATE OR REPLACE FUNCTION customer_unify._key_text(value text, type regtype)
    RETURNS text LANGUAGE c STABLE STRICT SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'cu_key_text';
COMMENT ON FUNCTION customer_unify._key_text(text, regtype) IS
    'The value read as the type and written back in its text form, or NULL when it is not one: the crosswalk''s spelling of a key held in a column of another type.';
CREATE OR REPLACE FUNCTION customer_unify._merge_hold(migration bigint, target_key text, reason text)
    RETURNS void LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'cu_merge_hold';
CREATE OR REPLACE FUNCTION customer_unify._merge_release(migration bigint, target_keys text[])
    RETURNS int LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'cu_merge_release';
-- (statement level: the SET clause costs once per statement, and pins what
-- the generated call resolves while it runs as the tables' owner)
CREATE OR REPLACE FUNCTION customer_unify.merge_capture() RETURNS trigger
    LANGUAGE c SET search_path = pg_catalog, pg_temp SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres'
    AS 'MODULE_PATHNAME', 'cu_merge_capture';
COMMENT ON FUNCTION customer_unify.merge_capture() IS
    'Statement-level trigger of a merge source: hands the keys a statement wrote to the merge''s apply function.';

-- A validation error naming the JSON path of the spec.
CREATE OR REPLACE FUNCTION customer_unify._merge_fail(p_code text, p_path text, p_message text, p_hint text DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'merge spec %: %', p_path, p_message
        USING ERRCODE = p_code, DETAIL = format('at %s', p_path),
              HINT = coalesce(p_hint, 'Nothing was created; fix the spec and call customer_unify.merge again.');
END
$$;

-- A table of the spec: exists, is a plain table, has a one-column primary key.
CREATE OR REPLACE FUNCTION customer_unify._merge_table(p_name text, p_path text)
    RETURNS TABLE (relid oid, nspname text, relname text, owner oid, key text, key_type text, key_typid oid)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rel regclass;
    v_c   record;
    v_n   int;
BEGIN
    IF p_name IS NULL OR p_name = '' THEN
        PERFORM customer_unify._merge_fail('22023', p_path, 'a table name is required');
    END IF;
    BEGIN
        v_rel := to_regclass(p_name);
    EXCEPTION WHEN insufficient_privilege THEN
        PERFORM customer_unify._merge_fail('42501', p_path, format('permission denied for %s', p_name),
                                           'Reshaping a table needs the rights of its owner.');
    WHEN OTHERS THEN
        PERFORM customer_unify._merge_fail('42602', p_path, format('%L is not a valid table name', p_name));
    END;
    IF v_rel IS NULL THEN
        PERFORM customer_unify._merge_fail('42P01', p_path, format('relation %s does not exist', p_name),
                                           'Names are resolved with search_path = pg_catalog: qualify them with their schema.');
    END IF;
    SELECT c.oid, n.nspname::text AS nspname, c.relname::text AS relname, c.relowner, c.relkind, c.relispartition,
           c.relhassubclass
      INTO v_c FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = v_rel;
    IF NOT pg_has_role(v_c.relowner, 'MEMBER') THEN
        PERFORM customer_unify._merge_fail('42501', p_path, format('must be owner of table %s', v_rel::text),
                                           'Reshaping a table needs the rights of its owner.');
    END IF;
    IF v_c.relkind <> 'r' OR v_c.relispartition OR v_c.relhassubclass
       OR EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = v_rel) THEN
        PERFORM customer_unify._merge_fail('0A000', p_path, format('%s is not a plain table', v_rel::text),
                                           'Views, partitioned tables, partitions and inheritance are not supported.');
    END IF;
    SELECT count(*) INTO v_n FROM pg_index i, unnest(i.indkey) k WHERE i.indrelid = v_rel AND i.indisprimary;
    IF v_n <> 1 THEN
        PERFORM customer_unify._merge_fail('0A000', p_path,
            format('%s needs a primary key of one column (it has %s)', v_rel::text,
                   CASE WHEN v_n = 0 THEN 'none' ELSE v_n || ' columns' END),
            'Add a one-column primary key (or a unique identity column made the primary key) first.');
    END IF;
    RETURN QUERY
        SELECT v_c.oid, v_c.nspname, v_c.relname, v_c.relowner, a.attname::text,
               format_type(a.atttypid, a.atttypmod), a.atttypid
          FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indrelid = v_rel AND i.indisprimary;
END
$$;

-- The crosswalk keeps the keys of the target and the sources as text: a key
-- type whose text depends on TimeZone, extra_float_digits or lc_monetary
-- would spell one key two ways.
CREATE OR REPLACE FUNCTION customer_unify._merge_check_key_type(p_type oid, p_rel regclass, p_path text)
    RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_type IN ('timestamptz'::regtype, 'timetz'::regtype, 'float4'::regtype, 'float8'::regtype, 'money'::regtype) THEN
        PERFORM customer_unify._merge_fail('0A000', p_path,
            format('the primary key of %s is of type %s, whose text form depends on the session''s settings', p_rel::text, format_type(p_type, NULL)),
            'Merge tables keyed by integers, uuid, text, numeric or dates; give this one such a key first.');
    END IF;
END
$$;

-- Is an expression one expression over a relation's row s whose type can be
-- assigned to p_type?  Expressions of the spec are the DBA's SQL, run as the
-- tables' owner like a CHECK constraint: one expression, never a statement
-- list, and never a dollar quote (the generated functions use them).
CREATE OR REPLACE FUNCTION customer_unify._merge_check_expression(p_expr text, p_from text, p_type text, p_path text)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_state text;
    v_msg   text;
    v_type  regtype;
BEGIN
    IF p_expr IS NULL OR btrim(p_expr) = '' THEN
        PERFORM customer_unify._merge_fail('22023', p_path, 'an expression is required');
    END IF;
    IF strpos(p_expr, '$') > 0 OR strpos(p_expr, ';') > 0 THEN
        PERFORM customer_unify._merge_fail('42601', p_path, format('expression %s contains $ or ;', p_expr),
            'An expression of the spec is one SQL expression; write string constants with single quotes.');
    END IF;
    BEGIN
        -- one row of NULLs gives the expression's type without reading the table
        EXECUTE format('SELECT pg_catalog.pg_typeof(%s)::pg_catalog.regtype FROM (SELECT) AS one LEFT JOIN %s ON false WHERE $1',
                       p_expr, p_from)
           INTO v_type USING true;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
        PERFORM customer_unify._merge_fail(
            CASE WHEN v_state IN ('42703', '42883', '42804', '42846', '22P02', '42601', '42P01', '42702', '42501') THEN v_state ELSE '42P17' END,
            p_path, format('expression %s is not valid here: %s', p_expr, v_msg));
    END;
    IF v_type IS DISTINCT FROM p_type::regtype AND v_type <> 'unknown'::regtype
       AND NOT EXISTS (SELECT 1 FROM pg_cast c WHERE c.castsource = v_type AND c.casttarget = p_type::regtype
                          AND c.castcontext IN ('a', 'i'))
       AND NOT (p_type::regtype IN ('text'::regtype, 'character varying'::regtype) AND v_type IN ('character'::regtype, 'name'::regtype))
       AND NOT EXISTS (SELECT 1 FROM pg_type t WHERE t.oid = p_type::regtype AND t.typtype = 'd' AND t.typbasetype = v_type) THEN
        PERFORM customer_unify._merge_fail('42804', p_path,
            format('expression %s is of type %s, which cannot be assigned to %s', p_expr, v_type::text, p_type),
            format('Cast it explicitly: (%s)::%s.', p_expr, p_type));
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION customer_unify._merge_check_tag(p_tag text, p_path text) RETURNS text
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_tag IS NULL OR p_tag !~ '^[a-z][a-z0-9_]{0,29}$' THEN
        PERFORM customer_unify._merge_fail('22023', p_path, format('%s is not a valid name (lower-case letters, digits, _; at most 30)', coalesce(p_tag, 'NULL')));
    END IF;
    RETURN p_tag;
END
$$;

-- A source row in the target's shape: the select list of every target
-- column (name -> type in p_target_columns), from the source's expression
-- where it maps one and NULL of the column's type where it does not.
CREATE OR REPLACE FUNCTION customer_unify._merge_mapped_columns(p_source_columns jsonb, p_target_columns jsonb)
    RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(format('%s AS %I', CASE WHEN p_source_columns ? c.k THEN format('(%s)::%s', p_source_columns->>c.k, c.t)
                                              ELSE format('NULL::%s', c.t) END, c.k), ', ' ORDER BY c.k)
      FROM jsonb_each_text(p_target_columns) c(k, t)
$$;

-------------------------------------------------------------------------------
-- validate: the whole spec, before anything is created.
-------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION customer_unify._merge_validate(p_name text, p_args jsonb)
    RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_bad    text;
    a          jsonb := p_args - 'source';
    v_t        jsonb := a->'target';
    v_tgt      record;
    v_create   boolean;
    v_tschema  text;
    v_ttable   text;
    v_tkey     text;
    v_tkeytype text;
    v_tkeydef  text;
    v_tcols    jsonb := '{}';      -- target column -> type
    v_sources  jsonb := '[]';
    v_rels     jsonb := '[]';
    v_refs     jsonb := '[]';
    v_match    jsonb := '[]';
    v_rules    text[] := '{}';
    v_tags     text[] := '{}';
    v_relids   oid[] := '{}';
    v_src      jsonb;
    v_s        record;
    v_i        int;
    v_j        int;
    v_tag      text;
    v_col      text;
    v_expr     text;
    v_mapped   text;
    v_from     text;
    v_r        jsonb;
    v_surv     jsonb;
    v_rule     text;
    v_ref      record;
    v_refcol   record;
    v_newcol   text;
    v_work     text := p_name || '_merge';
    v_compat   text := p_name || '_compat';
    v_archive  text := p_name || '_archive';
    v_maxrows  int;
    v_first    oid;
    x          record;
BEGIN
    IF p_name IS NULL OR p_args IS NULL THEN
        RAISE EXCEPTION 'name and spec must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF jsonb_typeof(a) IS DISTINCT FROM 'object' THEN
        PERFORM customer_unify._merge_fail('22023', '$', 'the spec must be a JSON object');
    END IF;
    IF octet_length(v_archive) > 63 THEN
        RAISE EXCEPTION 'migration name "%" is too long', p_name
            USING ERRCODE = 'name_too_long',
                  DETAIL = 'The merge''s schemas are named <name>_merge, <name>_compat and <name>_archive and must fit in 63 bytes.';
    END IF;
    FOR x IN SELECT k FROM jsonb_object_keys(a) k
              WHERE k NOT IN ('target', 'sources', 'match', 'max_key_rows', 'survivorship', 'references')
    LOOP
        PERFORM customer_unify._merge_fail('22023', '$.' || x.k, format('unknown key %L', x.k),
            'The spec has target, sources, match, max_key_rows, survivorship and references.');
    END LOOP;
    FOR x IN SELECT s FROM unnest(ARRAY[v_work, v_compat, v_archive]) s
              WHERE EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = s)
    LOOP
        RAISE EXCEPTION 'schema "%" already exists', x.s
            USING ERRCODE = 'duplicate_schema',
                  HINT = 'A merge uses schemas <name>_merge, <name>_compat and <name>_archive; choose another migration name.';
    END LOOP;

    ------------------------------------------------------------ target
    IF jsonb_typeof(v_t) IS DISTINCT FROM 'object' THEN
        PERFORM customer_unify._merge_fail('22023', '$.target', 'target must be an object {"table": ...}');
    END IF;
    v_create := coalesce((v_t->>'create')::boolean, false);
    IF v_create THEN
        BEGIN
            SELECT (parse_ident(v_t->>'table'))[1], (parse_ident(v_t->>'table'))[2] INTO v_tschema, v_ttable;
        EXCEPTION WHEN OTHERS THEN
            PERFORM customer_unify._merge_fail('42602', '$.target.table', format('%L is not a valid table name', v_t->>'table'));
        END;
        IF v_ttable IS NULL THEN
            PERFORM customer_unify._merge_fail('42602', '$.target.table', 'a new target is named schema.table');
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = v_tschema) THEN
            PERFORM customer_unify._merge_fail('3F000', '$.target.table', format('schema %I does not exist', v_tschema));
        END IF;
        IF to_regclass(customer_unify._qual(v_tschema, v_ttable)) IS NOT NULL THEN
            PERFORM customer_unify._merge_fail('42P07', '$.target.table', format('relation %s already exists', customer_unify._qual(v_tschema, v_ttable)),
                                               'Leave out "create" to merge into the existing table.');
        END IF;
        v_tkey := coalesce(v_t->>'key', 'id');
        v_tkeytype := coalesce(v_t->>'key_type', 'bigint');
        IF v_tkeytype NOT IN ('bigint', 'uuid') THEN
            PERFORM customer_unify._merge_fail('22023', '$.target.key_type', format('key_type %L is not bigint or uuid', v_tkeytype));
        END IF;
        IF jsonb_typeof(v_t->'columns') IS DISTINCT FROM 'object' OR v_t->'columns' = '{}' THEN
            PERFORM customer_unify._merge_fail('22023', '$.target.columns', 'a new target needs columns {"name": "type", ...}');
        END IF;
        FOR x IN SELECT k, v FROM jsonb_each_text(v_t->'columns') e(k, v) LOOP
            IF x.k = v_tkey THEN
                PERFORM customer_unify._merge_fail('42701', '$.target.columns.' || x.k, format('column %I is the key', x.k));
            END IF;
            -- a type name, with its modifiers as written (varchar(80), numeric(6,2), text[])
            IF x.v !~ '^[A-Za-z_][A-Za-z0-9_ ."]*(\([0-9, ]+\))?(\[\])*$' THEN
                PERFORM customer_unify._merge_fail('42601', '$.target.columns.' || x.k, format('%L is not a type name', x.v));
            END IF;
            BEGIN
                EXECUTE format('SELECT NULL::%s', x.v);
            EXCEPTION WHEN OTHERS THEN
                PERFORM customer_unify._merge_fail('42704', '$.target.columns.' || x.k, format('type %L does not exist', x.v));
            END;
            v_tcols := v_tcols || jsonb_build_object(x.k, x.v);
        END LOOP;
        v_tkeydef := CASE v_tkeytype WHEN 'uuid' THEN 'pg_catalog.gen_random_uuid()' END;
    ELSE
        IF (v_t - 'table') <> '{}' THEN
            PERFORM customer_unify._merge_fail('22023', '$.target', 'an existing target takes only "table" (its columns come from the catalog)');
        END IF;
        SELECT * INTO v_tgt FROM customer_unify._merge_table(v_t->>'table', '$.target.table');
        PERFORM customer_unify._merge_check_key_type(v_tgt.key_typid, v_tgt.relid, '$.target.table');
        v_tschema := v_tgt.nspname; v_ttable := v_tgt.relname; v_tkey := v_tgt.key; v_tkeytype := v_tgt.key_type;
        SELECT CASE WHEN a.attidentity <> '' THEN format('pg_catalog.nextval(%L::pg_catalog.regclass)', pg_get_serial_sequence(v_tgt.relid::regclass::text, a.attname))
                    ELSE pg_get_expr(d.adbin, d.adrelid) END
          INTO v_tkeydef
          FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = v_tgt.relid AND a.attname = v_tgt.key;
        IF v_tkeydef IS NULL THEN
            PERFORM customer_unify._merge_fail('0A000', '$.target.table',
                format('the key %I of %s has no default to make keys of new rows with', v_tgt.key, v_tgt.relid::regclass::text),
                'Give the key column a DEFAULT (a sequence, an identity or gen_random_uuid()).');
        END IF;
        v_tcols := (SELECT jsonb_object_agg(a.attname, format_type(a.atttypid, a.atttypmod))
                      FROM pg_attribute a WHERE a.attrelid = v_tgt.relid AND a.attnum > 0 AND NOT a.attisdropped
                       AND a.attname <> v_tgt.key AND a.attgenerated = '');
        v_relids := v_relids || v_tgt.relid;
        v_rels := v_rels || jsonb_build_object('tag', 'target', 'role', 'target', 'relid', v_tgt.relid);
        -- the target's own rows are the anchors: a source of priority 0
        v_sources := v_sources || jsonb_build_object('tag', 'target', 'relid', v_tgt.relid, 'key', v_tgt.key,
            'key_type', v_tgt.key_type, 'priority', 0, 'anchor', true, 'keep', true, 'duplicate_free', false,
            'columns', (SELECT jsonb_object_agg(k, format('s.%I', k)) FROM jsonb_object_keys(v_tcols) k),
            'keys', '{}'::jsonb);
        v_tags := v_tags || 'target'::text;
        v_first := v_tgt.relid;
    END IF;

    ------------------------------------------------------------ sources
    IF jsonb_typeof(a->'sources') IS DISTINCT FROM 'array' OR jsonb_array_length(a->'sources') = 0 THEN
        PERFORM customer_unify._merge_fail('22023', '$.sources', 'sources must be a non-empty array');
    END IF;
    -- match rule names first: sources may give their own key expression per rule
    IF jsonb_typeof(a->'match') IS DISTINCT FROM 'array' OR jsonb_array_length(a->'match') = 0 THEN
        PERFORM customer_unify._merge_fail('22023', '$.match', 'match must be a non-empty array of rules');
    END IF;
    FOR v_i IN 0 .. jsonb_array_length(a->'match') - 1 LOOP
        v_r := a->'match'->v_i;
        v_rule := customer_unify._merge_check_tag(v_r->>'rule', format('$.match[%s].rule', v_i));
        IF v_rule = ANY (v_rules) THEN
            PERFORM customer_unify._merge_fail('42710', format('$.match[%s].rule', v_i), format('rule %I appears twice', v_rule));
        END IF;
        FOR x IN SELECT k FROM jsonb_object_keys(v_r) k WHERE k NOT IN ('rule', 'key', 'stop', 'score', 'threshold', 'max_rows') LOOP
            PERFORM customer_unify._merge_fail('22023', format('$.match[%s].%s', v_i, x.k), format('unknown key %L', x.k),
                'A rule has rule, key (over the target''s columns: equal keys match, or, with a score, form a block), '
                'stop (values that never match), score and threshold (a similarity rule), max_rows.');
        END LOOP;
        IF (v_r ? 'score') <> (v_r ? 'threshold') OR (v_r ? 'threshold' AND jsonb_typeof(v_r->'threshold') <> 'number') THEN
            PERFORM customer_unify._merge_fail('22023', format('$.match[%s].threshold', v_i), 'a similarity rule has a score and a numeric threshold');
        END IF;
        IF v_r ? 'max_rows' AND (jsonb_typeof(v_r->'max_rows') <> 'number' OR (v_r->>'max_rows')::numeric < 2) THEN
            PERFORM customer_unify._merge_fail('22023', format('$.match[%s].max_rows', v_i), 'max_rows must be a number >= 2');
        END IF;
        v_rules := v_rules || v_rule;
    END LOOP;

    FOR v_i IN 0 .. jsonb_array_length(a->'sources') - 1 LOOP
        v_src := a->'sources'->v_i;
        FOR x IN SELECT k FROM jsonb_object_keys(v_src) k
                  WHERE k NOT IN ('table', 'tag', 'priority', 'columns', 'keys', 'duplicate_free', 'keep') LOOP
            PERFORM customer_unify._merge_fail('22023', format('$.sources[%s].%s', v_i, x.k), format('unknown key %L', x.k),
                'A source has table, tag, priority, columns, keys, duplicate_free and keep.');
        END LOOP;
        SELECT * INTO v_s FROM customer_unify._merge_table(v_src->>'table', format('$.sources[%s].table', v_i));
        PERFORM customer_unify._merge_check_key_type(v_s.key_typid, v_s.relid, format('$.sources[%s].table', v_i));
        IF v_s.relid = ANY (v_relids) THEN
            PERFORM customer_unify._merge_fail('42710', format('$.sources[%s].table', v_i),
                format('%s is already %s', v_s.relid::regclass::text, CASE WHEN v_s.relid = v_first AND NOT v_create THEN 'the target (its rows are the anchors)' ELSE 'a source' END));
        END IF;
        v_tag := customer_unify._merge_check_tag(coalesce(v_src->>'tag', 's' || (v_i + 1)), format('$.sources[%s].tag', v_i));
        IF v_tag = ANY (v_tags) THEN
            PERFORM customer_unify._merge_fail('42710', format('$.sources[%s].tag', v_i), format('tag %I appears twice', v_tag));
        END IF;
        IF jsonb_typeof(v_src->'columns') IS DISTINCT FROM 'object' OR v_src->'columns' = '{}' THEN
            PERFORM customer_unify._merge_fail('22023', format('$.sources[%s].columns', v_i),
                'columns must map target columns to expressions over the source row: {"first_name": "first_name", ...}');
        END IF;
        v_from := format('ONLY %s s', v_s.relid::regclass::text);
        FOR x IN SELECT k, v FROM jsonb_each(v_src->'columns') e(k, v) LOOP
            IF NOT v_tcols ? x.k THEN
                PERFORM customer_unify._merge_fail('42703', format('$.sources[%s].columns.%s', v_i, x.k),
                    format('column %I does not exist in the target %s', x.k, customer_unify._qual(v_tschema, v_ttable)));
            END IF;
            IF jsonb_typeof(x.v) <> 'string' THEN
                PERFORM customer_unify._merge_fail('22023', format('$.sources[%s].columns.%s', v_i, x.k), 'the expression must be a string');
            END IF;
            PERFORM customer_unify._merge_check_expression(x.v #>> '{}', v_from, v_tcols->>x.k, format('$.sources[%s].columns.%s', v_i, x.k));
        END LOOP;
        IF v_src ? 'keys' AND jsonb_typeof(v_src->'keys') <> 'object' THEN
            PERFORM customer_unify._merge_fail('22023', format('$.sources[%s].keys', v_i), 'keys must be an object {"rule": "expression"}');
        END IF;
        FOR x IN SELECT k, v FROM jsonb_each_text(coalesce(v_src->'keys', '{}')) e(k, v) LOOP
            IF NOT x.k = ANY (v_rules) THEN
                PERFORM customer_unify._merge_fail('22023', format('$.sources[%s].keys.%s', v_i, x.k), format('there is no match rule %I', x.k));
            END IF;
            PERFORM customer_unify._merge_check_expression(x.v, v_from, 'text', format('$.sources[%s].keys.%s', v_i, x.k));
        END LOOP;
        IF v_src ? 'priority' AND (jsonb_typeof(v_src->'priority') <> 'number' OR (v_src->>'priority')::numeric < 1) THEN
            PERFORM customer_unify._merge_fail('22023', format('$.sources[%s].priority', v_i), 'priority must be a number >= 1 (1 is the highest; an existing target is 0)');
        END IF;
        v_relids := v_relids || v_s.relid;
        v_tags := v_tags || v_tag;
        v_first := coalesce(v_first, v_s.relid);
        v_rels := v_rels || jsonb_build_object('tag', v_tag, 'role', 'source', 'relid', v_s.relid);
        v_sources := v_sources || jsonb_build_object('tag', v_tag, 'relid', v_s.relid, 'key', v_s.key, 'key_type', v_s.key_type,
            'priority', coalesce((v_src->>'priority')::int, v_i + 1), 'anchor', false,
            'keep', coalesce((v_src->>'keep')::boolean, false),
            'duplicate_free', coalesce((v_src->>'duplicate_free')::boolean, false),
            'columns', v_src->'columns', 'keys', coalesce(v_src->'keys', '{}'::jsonb));
    END LOOP;

    -- the target's columns the merge writes: those some source maps
    IF NOT v_create THEN
        v_tcols := (SELECT jsonb_object_agg(c.k, c.v) FROM jsonb_each_text(v_tcols) c(k, v)
                     WHERE EXISTS (SELECT 1 FROM jsonb_array_elements(v_sources) e
                                    WHERE NOT (e->>'anchor')::boolean AND e->'columns' ? c.k));
        v_sources := jsonb_set(v_sources, '{0,columns}',
                               (SELECT jsonb_object_agg(k, format('s.%I', k)) FROM jsonb_object_keys(v_tcols) k));
        FOR x IN SELECT a2.attname FROM pg_attribute a2
                  WHERE a2.attrelid = v_tgt.relid AND a2.attnum > 0 AND NOT a2.attisdropped AND a2.attnotnull
                    AND NOT a2.atthasdef AND a2.attidentity = '' AND a2.attgenerated = '' AND a2.attname <> v_tkey
                    AND NOT v_tcols ? a2.attname LOOP
            PERFORM customer_unify._merge_fail('23502', '$.sources',
                format('column %I of %s is NOT NULL without a default, and no source maps it', x.attname, v_tgt.relid::regclass::text),
                'Map it in a source''s columns, or give it a default.');
        END LOOP;
    END IF;

    ------------------------------------------------------------ match rules
    FOR v_i IN 0 .. jsonb_array_length(a->'match') - 1 LOOP
        v_r := a->'match'->v_i;
        IF v_r ? 'stop' AND jsonb_typeof(v_r->'stop') <> 'array' THEN
            PERFORM customer_unify._merge_fail('22023', format('$.match[%s].stop', v_i), 'stop must be an array of values that never match');
        END IF;
        -- a rule's key, over each source's row in the target's shape, unless the source gives its own
        FOR v_j IN 0 .. jsonb_array_length(v_sources) - 1 LOOP
            v_src := v_sources->v_j;
            CONTINUE WHEN v_src->'keys' ? (v_r->>'rule');
            IF v_r->>'key' IS NULL THEN
                CONTINUE;
            END IF;
            v_mapped := customer_unify._merge_mapped_columns(v_src->'columns', v_tcols);
            PERFORM customer_unify._merge_check_expression(v_r->>'key',
                format('(SELECT %s FROM ONLY %s s) t', v_mapped, (v_src->>'relid')::oid::regclass::text), 'text',
                format('$.match[%s].key', v_i));
        END LOOP;
        IF v_r->>'key' IS NULL AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(v_sources) e WHERE e->'keys' ? (v_r->>'rule')) THEN
            PERFORM customer_unify._merge_fail('22023', format('$.match[%s].key', v_i),
                format('rule %I has no key: give "key" over the target''s columns, or "keys" in the sources', v_r->>'rule'));
        END IF;
        IF v_r ? 'score' THEN
            -- over two rows of the target's shape
            v_mapped := customer_unify._merge_mapped_columns('{}', v_tcols);
            PERFORM customer_unify._merge_check_expression(v_r->>'score',
                format('((SELECT %s) a CROSS JOIN (SELECT %s) b)', v_mapped, v_mapped), 'double precision',
                format('$.match[%s].score', v_i));
        END IF;
        v_match := v_match || jsonb_build_object('rule', v_r->>'rule', 'key', v_r->>'key', 'stop', coalesce(v_r->'stop', '[]'::jsonb),
                                                 'score', v_r->>'score', 'threshold', v_r->'threshold', 'max_rows', v_r->'max_rows');
    END LOOP;
    v_maxrows := coalesce((a->>'max_key_rows')::int, 20);
    IF v_maxrows < 2 THEN
        PERFORM customer_unify._merge_fail('22023', '$.max_key_rows', 'max_key_rows must be at least 2');
    END IF;

    ------------------------------------------------------------ survivorship
    v_surv := jsonb_build_object('default', coalesce(a->'survivorship'->>'default', 'priority'),
                                 'columns', coalesce(a->'survivorship'->'columns', '{}'::jsonb));
    FOR x IN SELECT '$.survivorship.default' AS path, NULL::text AS col, v_surv->>'default' AS rule
             UNION ALL SELECT '$.survivorship.columns.' || k, k, v FROM jsonb_each_text(v_surv->'columns') e(k, v)
    LOOP
        IF x.col IS NOT NULL AND NOT v_tcols ? x.col THEN
            PERFORM customer_unify._merge_fail('42703', x.path, format('column %I does not exist in the target', x.col));
        END IF;
        IF x.rule NOT IN ('priority', 'first_non_null', 'longest', 'most_frequent') AND x.rule NOT LIKE 'newest:%' THEN
            PERFORM customer_unify._merge_fail('22023', x.path, format('unknown survivorship rule %L', x.rule),
                'Rules: priority (the highest-priority non-NULL value), first_non_null, longest, most_frequent, newest:<timestamp column>.');
        END IF;
        IF x.rule LIKE 'newest:%' AND NOT v_tcols ? substr(x.rule, 8) THEN
            PERFORM customer_unify._merge_fail('42703', x.path, format('rule %s names column %I, which the target does not have', x.rule, substr(x.rule, 8)));
        END IF;
        IF x.rule LIKE 'newest:%' AND (v_tcols->>substr(x.rule, 8)) NOT IN ('timestamp with time zone', 'timestamp without time zone', 'date') THEN
            PERFORM customer_unify._merge_fail('42804', x.path, format('rule %s needs a timestamp or date column, %I is %s', x.rule, substr(x.rule, 8), v_tcols->>substr(x.rule, 8)));
        END IF;
    END LOOP;

    ------------------------------------------------------------ references
    -- named ones, plus every foreign key to a source's key
    IF a ? 'references' AND jsonb_typeof(a->'references') <> 'array' THEN
        PERFORM customer_unify._merge_fail('22023', '$.references', 'references must be an array');
    END IF;
    v_i := 0;
    FOR x IN
        SELECT r.ord - 1 AS idx, r.v->>'table' AS tbl, r.v->>'column' AS col, r.v->>'source' AS src, r.v->>'new_column' AS newcol,
               r.v AS spec
          FROM jsonb_array_elements(coalesce(a->'references', '[]')) WITH ORDINALITY r(v, ord)
        UNION ALL
        SELECT NULL, k.conrelid::regclass::text, att.attname::text, s->>'tag', NULL, NULL
          FROM jsonb_array_elements(v_sources) s
          JOIN pg_constraint k ON k.contype = 'f' AND k.confrelid = (s->>'relid')::oid AND cardinality(k.conkey) = 1
          JOIN pg_attribute att ON att.attrelid = k.conrelid AND att.attnum = k.conkey[1]
         WHERE NOT (s->>'anchor')::boolean
           -- a source's link to another source is a match key, not a reference
           AND NOT k.conrelid = ANY (v_relids)
           AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(a->'references', '[]')) r
                            WHERE to_regclass(r->>'table') = k.conrelid AND r->>'column' = att.attname)
        ORDER BY 1 NULLS LAST, 2, 3
    LOOP
        IF x.spec IS NOT NULL THEN
            SELECT e.k INTO v_bad FROM jsonb_object_keys(x.spec) e(k)
             WHERE e.k NOT IN ('table', 'column', 'source', 'new_column', 'unresolved') LIMIT 1;
            IF v_bad IS NOT NULL THEN
                PERFORM customer_unify._merge_fail('22023', format('$.references[%s].%s', x.idx, v_bad), format('unknown key %L', v_bad),
                    'A reference takes table, column, source, new_column and unresolved.');
            END IF;
            IF coalesce(x.spec->>'unresolved', 'refuse') NOT IN ('refuse', 'allow') THEN
                PERFORM customer_unify._merge_fail('22023', format('$.references[%s].unresolved', x.idx),
                    format('unresolved must be "refuse" or "allow", not %s', x.spec->'unresolved'),
                    'refuse (the default): verify fails while a value names no row of the source; allow: such values are counted and left as they are.');
            END IF;
        END IF;
        SELECT * INTO v_ref FROM customer_unify._merge_table(x.tbl, CASE WHEN x.idx IS NULL THEN 'foreign key of ' || x.tbl ELSE format('$.references[%s].table', x.idx) END);
        IF v_ref.relid = ANY (v_relids) THEN
            PERFORM customer_unify._merge_fail('0A000', CASE WHEN x.idx IS NULL THEN 'foreign key of ' || x.tbl ELSE format('$.references[%s].table', x.idx) END,
                format('%s is a source or the target of this merge; it cannot also be re-pointed', v_ref.relid::regclass::text));
        END IF;
        SELECT a2.attname, format_type(a2.atttypid, a2.atttypmod) AS typ INTO v_refcol
          FROM pg_attribute a2 WHERE a2.attrelid = v_ref.relid AND a2.attname = x.col AND a2.attnum > 0 AND NOT a2.attisdropped;
        IF NOT FOUND THEN
            PERFORM customer_unify._merge_fail('42703', format('$.references[%s].column', x.idx),
                format('column %I does not exist in %s', x.col, v_ref.relid::regclass::text));
        END IF;
        IF x.src IS NULL OR NOT x.src = ANY (v_tags) OR x.src = 'target' THEN
            PERFORM customer_unify._merge_fail('22023', format('$.references[%s].source', x.idx),
                format('source %s is not a source tag of this merge', coalesce(x.src, 'NULL')),
                'Name the tag of the source whose keys the column holds.');
        END IF;
        v_newcol := coalesce(x.newcol, left(x.col, 50) || '_merged');
        IF EXISTS (SELECT 1 FROM pg_attribute a2 WHERE a2.attrelid = v_ref.relid AND a2.attname = v_newcol AND NOT a2.attisdropped) THEN
            PERFORM customer_unify._merge_fail('42701', CASE WHEN x.idx IS NULL THEN 'foreign key of ' || x.tbl ELSE format('$.references[%s].new_column', x.idx) END,
                format('column %I already exists in %s', v_newcol, v_ref.relid::regclass::text));
        END IF;
        IF EXISTS (SELECT 1 FROM jsonb_array_elements(v_refs) e WHERE (e->>'relid')::oid = v_ref.relid AND e->>'new_column' = v_newcol) THEN
            PERFORM customer_unify._merge_fail('42701', CASE WHEN x.idx IS NULL THEN 'foreign key of ' || x.tbl ELSE format('$.references[%s].new_column', x.idx) END,
                format('two references add column %I to %s', v_newcol, v_ref.relid::regclass::text));
        END IF;
        v_i := v_i + 1;
        IF NOT v_ref.relid = ANY (SELECT (e->>'relid')::oid FROM jsonb_array_elements(v_rels) e) THEN
            v_rels := v_rels || jsonb_build_object('tag', 'ref' || v_i, 'role', 'reference', 'relid', v_ref.relid);
        END IF;
        v_refs := v_refs || jsonb_build_object('n', v_i, 'tag', (SELECT e->>'tag' FROM jsonb_array_elements(v_rels) e WHERE (e->>'relid')::oid = v_ref.relid),
            'relid', v_ref.relid, 'key', v_ref.key, 'column', x.col, 'column_type', v_refcol.typ,
            'source', x.src, 'new_column', v_newcol, 'unresolved', coalesce(x.spec->>'unresolved', 'refuse'),
            'fk', left(v_ref.relname || '_' || v_newcol, 58) || '_fkey');
    END LOOP;

    -- one owner: the merge's triggers write the target and the references as it
    IF (SELECT count(DISTINCT c.relowner) FROM jsonb_array_elements(v_rels) e JOIN pg_class c ON c.oid = (e->>'relid')::oid) > 1 THEN
        PERFORM customer_unify._merge_fail('42501', '$',
            'the tables of a merge must have one owner: ' ||
            (SELECT string_agg(format('%s (%s)', c.oid::regclass, pg_get_userbyid(c.relowner)), ', ' ORDER BY c.oid::regclass::text)
               FROM jsonb_array_elements(v_rels) e JOIN pg_class c ON c.oid = (e->>'relid')::oid),
            'Its triggers write the target and the referencing tables as the sources'' owner; ALTER TABLE ... OWNER TO one role first.');
    END IF;
    RETURN jsonb_build_object(
        'source', v_first,
        'spec', jsonb_build_object(
            'target', jsonb_build_object('schema', v_tschema, 'table', v_ttable, 'create', v_create, 'key', v_tkey,
                                         'key_type', v_tkeytype, 'key_default', v_tkeydef, 'columns', v_tcols),
            'sources', v_sources, 'match', v_match, 'max_key_rows', v_maxrows, 'survivorship', v_surv,
            'references', v_refs, 'work_schema', v_work, 'compat_schema', v_compat, 'archive_schema', v_archive,
            -- the names of the tables' columns by number: the guard refuses a
            -- rename (the generated functions name them)
            'column_names', (SELECT jsonb_object_agg(e->>'relid', (SELECT jsonb_object_agg(att.attnum::text, att.attname)
                                                                     FROM pg_attribute att
                                                                    WHERE att.attrelid = (e->>'relid')::oid AND att.attnum > 0 AND NOT att.attisdropped))
                               FROM jsonb_array_elements(v_rels) e),
            'args', a),
        'relations', v_rels,
        'maps', '[]'::jsonb);
END
$$;

CREATE OR REPLACE FUNCTION customer_unify.merge(name text, spec jsonb)
    RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF merge.name IS NULL OR merge.spec IS NULL THEN
        RAISE EXCEPTION 'name and spec must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN customer_unify._create_migration('merge', merge.name, merge.spec);
END
$$;
COMMENT ON FUNCTION customer_unify.merge(text, jsonb) IS
    'Plans folding source tables into one target with matching, survivorship, an id crosswalk and re-pointed references. Validates the whole spec; creates nothing.';

-------------------------------------------------------------------------------
-- The pieces of SQL the steps are made of.
-------------------------------------------------------------------------------
-- The target, its key and key type.
CREATE OR REPLACE FUNCTION customer_unify._merge_target(m customer_unify.migration)
    RETURNS TABLE (name text, key text, key_type text)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(customer_unify._b_name(customer_unify._relation(m.id, 'target')),
                    customer_unify._qual(m.spec->'target'->>'schema', m.spec->'target'->>'table')),
           m.spec->'target'->>'key', m.spec->'target'->>'key_type'
$$;

-- One source's rows in the target's shape, with the crosswalk: tkey, prio,
-- src, skey and every mapped target column (NULL where the source has none).
CREATE OR REPLACE FUNCTION customer_unify._merge_member_select(m customer_unify.migration, p_src jsonb)
    RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('SELECT im.target_key AS tkey, %s AS prio, %L::text AS src, im.old_key AS skey, %s '
                  'FROM customer_unify.id_map im JOIN ONLY %s s ON s.%I = im.old_key::%s '
                  'WHERE im.migration_id = %s AND im.source_tag = %L',
                  (p_src->>'priority')::int, p_src->>'tag',
                  customer_unify._merge_mapped_columns(p_src->'columns', m.spec->'target'->'columns'),
                  customer_unify._b_name((p_src->>'relid')::oid::regclass), p_src->>'key', p_src->>'key_type',
                  m.id, p_src->>'tag')
$$;

-- The crosswalk's text of the source key a reference value names, as SQL
-- over p_value (the value's expression): the value's own text where the
-- column has the key's type and that type's text is its identity (integers,
-- uuid, text); otherwise the key of the source row the value names by the
-- key's own equality (citext's case, numeric's scale, a uuid spelled in
-- capitals in a varchar column); NULL where it names no row.
CREATE OR REPLACE FUNCTION customer_unify._merge_ref_key_sql(m customer_unify.migration, p_ref jsonb, p_value text)
    RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN p_ref->>'column_type' = s->>'key_type'
             AND (s->>'key_type')::regtype IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype, 'uuid'::regtype, 'text'::regtype)
        THEN format('(%s)::text', p_value)
        ELSE format('(SELECT ks.%1$I::text FROM ONLY %2$s ks WHERE ks.%1$I %3$s %4$s LIMIT 1)',
                    s->>'key', customer_unify._b_name((s->>'relid')::oid::regclass),
                    customer_unify._b_key_eq((s->>'relid')::oid::regclass, s->>'key'),
                    CASE WHEN p_ref->>'column_type' = s->>'key_type' THEN p_value
                         ELSE format('(customer_unify._key_text((%s)::text, %L::regtype))::%s', p_value, s->>'key_type', s->>'key_type') END)
        END
      FROM jsonb_array_elements(m.spec->'sources') s
     WHERE s->>'tag' = p_ref->>'source'
$$;

-- ref_<n>(): the BEFORE trigger of a referencing table that fills the new
-- column from the crosswalk, for the source row the old column names.
CREATE OR REPLACE FUNCTION customer_unify._merge_ref_function_sql(m customer_unify.migration, v_ref jsonb)
    RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT format($f$CREATE OR REPLACE FUNCTION %s.%I() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = 'postgres'
AS $body$
DECLARE
    v_key text;
BEGIN
    -- the source row it names, as the crosswalk spells its key
    v_key := %8$s;
    IF v_key IS NULL THEN
        NEW.%3$I := NULL;
        RETURN NEW;
    END IF;
    -- (not waited for: a transaction matching the row it names again re-points
    -- the references it sees; one it cannot see yet is repoint()'s)
    PERFORM pg_catalog.pg_try_advisory_xact_lock_shared(1129660418, pg_catalog.hashtext(%6$s || ':' || %7$L || ':' || v_key));
    NEW.%3$I := (SELECT im.target_key::%4$s FROM customer_unify.id_map im
                  WHERE im.migration_id = %6$s AND im.source_tag = %7$L AND im.old_key = v_key
                    AND NOT EXISTS (SELECT 1 FROM customer_unify.merge_held h
                                     WHERE h.migration_id = im.migration_id AND h.target_key = im.target_key));
    RETURN NEW;
END
$body$$f$, quote_ident(m.spec->>'work_schema'), 'ref_' || (v_ref->>'n'), v_ref->>'new_column', (customer_unify._merge_target(m)).key_type, v_ref->>'column', m.id, v_ref->>'source',
            customer_unify._merge_ref_key_sql(m, v_ref, format('NEW.%I', v_ref->>'column')))
$fn$;

-- The survivorship aggregate of one target column.
CREATE OR REPLACE FUNCTION customer_unify._merge_survivor(m customer_unify.migration, p_col text)
    RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH r AS (SELECT coalesce(m.spec->'survivorship'->'columns'->>p_col, m.spec->'survivorship'->>'default') AS rule)
    SELECT CASE
             WHEN r.rule IN ('priority', 'first_non_null') THEN
                 format('customer_unify.first_non_null(%I ORDER BY prio, src, skey)', p_col)
             WHEN r.rule = 'longest' THEN
                 format('customer_unify.first_non_null(%I ORDER BY length(%I::text) DESC, prio, src, skey)', p_col, p_col)
             WHEN r.rule = 'most_frequent' THEN
                 format('customer_unify.first_non_null(%I ORDER BY %I DESC, prio, src, skey)', p_col, p_col || '__n')
             ELSE
                 format('customer_unify.first_non_null(%I ORDER BY %I DESC NULLS LAST, prio, src, skey)', p_col, substr(r.rule, 8))
           END
      FROM r
$$;

-- The body of the survivors view: per target key, the surviving values.
CREATE OR REPLACE FUNCTION customer_unify._merge_survivors_sql(m customer_unify.migration)
    RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('SELECT tkey, %s FROM (SELECT u.*%s FROM (%s) u) x GROUP BY tkey%s',
                  (SELECT string_agg(format('%s AS %I', customer_unify._merge_survivor(m, c), c), ', ' ORDER BY c)
                     FROM jsonb_object_keys(m.spec->'target'->'columns') c),
                  (SELECT string_agg(format(', count(*) OVER (PARTITION BY u.tkey, u.%I) AS %I', c, c || '__n'), '' ORDER BY c)
                     FROM jsonb_object_keys(m.spec->'target'->'columns') c
                    WHERE coalesce(m.spec->'survivorship'->'columns'->>c, m.spec->'survivorship'->>'default') = 'most_frequent'),
                  (SELECT string_agg(customer_unify._merge_member_select(m, s), ' UNION ALL ' ORDER BY (s->>'priority')::int, s->>'tag')
                     FROM jsonb_array_elements(m.spec->'sources') s),
                  -- clusters with an anchor keep the anchor's row as it is
                  CASE WHEN (m.spec->'target'->>'create')::boolean THEN ''
                       ELSE format(' HAVING NOT EXISTS (SELECT 1 FROM customer_unify.id_map ia WHERE ia.migration_id = %s '
                                   'AND ia.source_tag = %L AND ia.old_key = x.tkey)', m.id, 'target') END)
$$;

-- The apply function of one source (see the header).
CREATE OR REPLACE FUNCTION customer_unify._merge_apply_sql(m customer_unify.migration, p_src jsonb, p_archived boolean DEFAULT false)
    RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    w        text := quote_ident(m.spec->>'work_schema');
    t        record := customer_unify._merge_target(m);
    v_src    text := CASE WHEN p_archived
                          THEN customer_unify._qual(m.spec->>'archive_schema', (SELECT c.relname::text FROM pg_class c WHERE c.oid = (p_src->>'relid')::oid))
                          ELSE customer_unify._b_name((p_src->>'relid')::oid::regclass) END;
    v_tag    text := p_src->>'tag';
    v_key    text := quote_ident(p_src->>'key');
    v_ktype  text := p_src->>'key_type';
    v_anchor boolean := (p_src->>'anchor')::boolean;
    v_has_anchor boolean := NOT (m.spec->'target'->>'create')::boolean;
    v_mapped text;
    v_keys   text;
    v_isanchor text;
    v_repoint text := '';
    v_follow text := '';
    v_score  text;
    v_limit  text;
    r        jsonb;
BEGIN
    -- similarity rules: the pair's score over a and b (the two rows in the
    -- target's shape) reaches the threshold; exact rules: nothing more
    v_score := coalesce((SELECT 'CASE ka.rule ' || string_agg(format('WHEN %L THEN (%s)::float8 >= %s', r2->>'rule', r2->>'score', r2->>'threshold'), ' ')
                                || ' ELSE true END'
                           FROM jsonb_array_elements(m.spec->'match') r2 WHERE r2->>'score' IS NOT NULL), 'true');
    v_limit := coalesce((SELECT 'CASE ka.rule ' || string_agg(format('WHEN %L THEN %s', r2->>'rule', r2->>'max_rows'), ' ')
                                || ' ELSE ' || (m.spec->>'max_key_rows') || ' END'
                           FROM jsonb_array_elements(m.spec->'match') r2 WHERE r2->>'max_rows' IS NOT NULL), m.spec->>'max_key_rows');
    v_mapped := customer_unify._merge_mapped_columns(p_src->'columns', m.spec->'target'->'columns');
    -- (rule, key) of each rule, from the source's own expression over s or the rule's over the mapped row
    v_keys := (SELECT string_agg(format('(%L, %s)', r2->>'rule',
                                        CASE WHEN p_src->'keys' ? (r2->>'rule')
                                             THEN format('(m.%I)::text', '__k_' || (r2->>'rule'))
                                             WHEN r2->>'key' IS NOT NULL THEN format('(%s)::text', r2->>'key')
                                             ELSE 'NULL::text' END), ', ')
                 FROM jsonb_array_elements(m.spec->'match') r2);
    v_mapped := v_mapped || coalesce((SELECT string_agg(format(', (%s)::text AS %I', e.v, '__k_' || e.k), '')
                                        FROM jsonb_each_text(p_src->'keys') e(k, v)), '');
    v_isanchor := CASE WHEN v_has_anchor
                       THEN format('EXISTS (SELECT 1 FROM customer_unify.id_map ia WHERE ia.migration_id = %s AND ia.source_tag = %L AND ia.old_key = %%s)', m.id, 'target')
                       ELSE '(%s IS NULL)' END;
    FOR r IN SELECT e FROM jsonb_array_elements(m.spec->'references') e LOOP
        v_repoint := v_repoint || format(
            E'        IF v_nowait THEN\n'
             '            PERFORM 1 FROM ONLY %1$s WHERE %2$I = ANY (v_fold::%3$s[]) FOR UPDATE NOWAIT;\n'
             '        END IF;\n'
             '        UPDATE ONLY %1$s SET %2$I = v_t::%3$s WHERE %2$I = ANY (v_fold::%3$s[]);\n',
            customer_unify._b_name((r->>'relid')::oid::regclass), r->>'new_column', t.key_type);
        -- (after finalize the old reference column is gone: nothing to follow)
        IF r->>'source' = v_tag AND NOT p_archived THEN
            -- driven by the referencing rows (an index on the old column serves it),
            -- each looking up its crosswalk row by key
            v_follow := v_follow || format(
                E'    UPDATE ONLY %1$s x SET %2$I = n.k\n'
                 '      FROM (SELECT y.ctid AS row, (SELECT im.target_key::%3$s FROM customer_unify.id_map im\n'
                 '                                    WHERE im.migration_id = %4$s AND im.source_tag = %5$L AND im.old_key = %8$s\n'
                 '                                      AND NOT EXISTS (SELECT 1 FROM customer_unify.merge_held h\n'
                 '                                                       WHERE h.migration_id = im.migration_id AND h.target_key = im.target_key)) AS k\n'
                 '              FROM ONLY %1$s y WHERE y.%6$I = ANY (p_keys::%7$s[])) n\n'
                 '     WHERE x.ctid = n.row AND x.%2$I IS DISTINCT FROM n.k;\n',
                customer_unify._b_name((r->>'relid')::oid::regclass), r->>'new_column', t.key_type, m.id, v_tag,
                r->>'column', r->>'column_type', customer_unify._merge_ref_key_sql(m, r, format('y.%I', r->>'column')));
        END IF;
    END LOOP;
    -- (join_collapse_limit 1: its queries start from the row at hand, as written,
    -- whatever the statistics of the crosswalk, which grows under them, say;
    -- custom plans: a batch's keys are constants the planner sees, never a
    -- generic "= ANY ($1)" filtered row by row over a whole source)
    RETURN format($f$CREATE OR REPLACE FUNCTION %1$s.%2$I(p_keys text[], p_refresh_keys boolean DEFAULT true) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    SET jit = off
    SET plan_cache_mode = force_custom_plan
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = 'postgres'
    SET join_collapse_limit = 1
AS $body$
DECLARE
    v_gone     text[];
    v_affected text[] := '{}';
    v_k        text;
    v_old      text;
    v_t        text;
    v_rule     text;
    v_cands    text[];
    v_fold     text[];
    v_slow     text[];
    v_nowait   boolean := pg_catalog.current_setting('customer_unify.merge_never_wait') = 'on';
    v_fast_keys    text[];
    v_fast_targets text[];
    v_fast_rules   text[];
BEGIN
    IF p_keys IS NULL OR cardinality(p_keys) = 0 THEN
        RETURN 0;
    END IF;
    -- rows that are gone
    IF %8$L AND p_refresh_keys IS NOT TRUE THEN
        -- the backfill: rows of the target the merge itself made are not the target's own
        -- (lookups by key, LATERAL: the crosswalk grows faster than its statistics)
        p_keys := ARRAY(SELECT k.k FROM unnest(p_keys) k(k)
                          LEFT JOIN LATERAL (SELECT 1 AS one FROM customer_unify.id_map ia
                                              WHERE ia.migration_id = %6$s AND ia.source_tag = 'target' AND ia.old_key = k.k LIMIT 1) a ON true
                          LEFT JOIN LATERAL (SELECT 1 AS one FROM customer_unify.id_map im
                                              WHERE im.migration_id = %6$s AND im.target_key = k.k AND im.source_tag <> 'target' LIMIT 1) x ON true
                         WHERE a.one IS NOT NULL OR x.one IS NULL);
    END IF;
    v_gone := ARRAY(SELECT k.k FROM unnest(p_keys) k(k) LEFT JOIN ONLY %3$s s ON s.%4$s = k.k::%5$s WHERE s.%4$s IS NULL);
    IF cardinality(v_gone) > 0 THEN
        v_affected := v_affected || ARRAY(SELECT im.target_key FROM customer_unify.id_map im
                                           WHERE im.migration_id = %6$s AND im.source_tag = %7$L AND im.old_key = ANY (v_gone));
        IF %8$L THEN
            v_affected := v_affected || v_gone;
        END IF;
        PERFORM customer_unify._id_map_delete(%6$s, %7$L, v_gone);
    END IF;
    -- their match keys now (the backfill computes every source's keys
    -- first, so that a key's frequency is known before anything matches)
    DELETE FROM %1$s.match_key mk WHERE mk.src = %7$L AND mk.skey = ANY (v_gone);
    IF p_refresh_keys IS NOT FALSE THEN
        DELETE FROM %1$s.match_key mk WHERE mk.src = %7$L AND mk.skey = ANY (p_keys);
        INSERT INTO %1$s.match_key (src, skey, rule, mkey, row)
        SELECT %7$L, m.skey, x.rule, x.mkey, CASE WHEN x.rule = ANY (%23$L::text[]) THEN pg_catalog.to_jsonb(m) END
          FROM (SELECT s.%4$s::text AS skey, %9$s FROM ONLY %3$s s WHERE s.%4$s = ANY (p_keys::%5$s[])) m
         CROSS JOIN LATERAL (VALUES %10$s) x(rule, mkey)
         WHERE x.mkey IS NOT NULL AND btrim(x.mkey) <> ''
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(%11$L::jsonb) r
                            WHERE r->>'rule' = x.rule AND r->'stop' ? x.mkey);
    END IF;
    IF p_refresh_keys IS NULL THEN
        RETURN cardinality(p_keys);       -- the keys only (the backfill's first pass)
    END IF;
    IF %8$L AND p_refresh_keys IS FALSE THEN
        -- the backfill's first matching pass: the target's own rows are their own
        -- clusters (the other sources join them in the passes after)
        v_fold := ARRAY(SELECT k FROM unnest(p_keys) k WHERE NOT (k = ANY (v_gone)));
        PERFORM customer_unify._id_map_set(%6$s, %7$L, v_fold, v_fold, array_fill('anchor'::text, ARRAY[cardinality(v_fold)]));
        RETURN cardinality(p_keys);
    END IF;
    IF p_refresh_keys THEN
        -- A write of the application: one writer at a time per source row and
        -- per match key, so that a concurrent write of the same person (in
        -- another source, or of the same row) waits for this transaction and
        -- then sees what it matched.  Taken at once, in one order, so that two
        -- of these do not deadlock.
        -- (an application's write, through live_*, takes none it would wait
        -- for: it is deferred instead)
        IF v_nowait THEN
            IF EXISTS (SELECT 1 FROM (SELECT DISTINCT pg_catalog.hashtext(x.lk) AS h
                                        FROM (SELECT %6$s || ':' || %7$L || ':' || k AS lk FROM unnest(p_keys) k
                                              UNION ALL
                                              SELECT %6$s || ':' || mk.rule || ':' || mk.mkey FROM %1$s.match_key mk
                                               WHERE mk.src = %7$L AND mk.skey = ANY (p_keys)) x) l
                        WHERE NOT pg_catalog.pg_try_advisory_xact_lock(1129660418, l.h)) THEN
                RAISE EXCEPTION 'another transaction is matching the same person' USING ERRCODE = 'lock_not_available';
            END IF;
        ELSE
            PERFORM pg_catalog.pg_advisory_xact_lock(1129660418, l.h)
               FROM (SELECT DISTINCT pg_catalog.hashtext(x.lk) AS h
                       FROM (SELECT %6$s || ':' || %7$L || ':' || k AS lk FROM unnest(p_keys) k
                             UNION ALL
                             SELECT %6$s || ':' || mk.rule || ':' || mk.mkey FROM %1$s.match_key mk
                              WHERE mk.src = %7$L AND mk.skey = ANY (p_keys)) x
                      ORDER BY 1) l;
        END IF;
    ELSE
        -- A batch of the backfill: it waits for (and then holds off) the
        -- application's writes of its rows, with row locks (as many as it
        -- likes); races with writes of other rows of the same people are
        -- settled by the reconciliation at the end of the copy.
        PERFORM 1 FROM ONLY %3$s s WHERE s.%4$s = ANY (p_keys::%5$s[]) ORDER BY s.%4$s FOR SHARE;
    END IF;
    IF p_refresh_keys IS FALSE THEN
        -- A batch of the backfill, set-based: a row that links to at most one
        -- cluster, to no other row of its batch, and has neither a crosswalk
        -- row nor an "always" decision of its own joins that cluster (or
        -- starts one) in this one statement.  Every other row goes through
        -- the loop below, after these, as a live write would.
        WITH ka AS MATERIALIZED (
            SELECT mk.src, mk.skey, mk.rule, mk.mkey, mk.row FROM %1$s.match_key mk
             WHERE mk.src = %7$L AND mk.skey = ANY (p_keys) AND NOT (mk.skey = ANY (v_gone))
        ), pairs AS MATERIALIZED (
            -- every usable link of a row of the batch, with the other row's cluster
            SELECT ka.skey AS k, ka.rule, kb.skey AS bkey, kb.src = %7$L AND kb.skey = ANY (p_keys) AS inb,
                   (SELECT im.target_key FROM customer_unify.id_map im
                     WHERE im.migration_id = %6$s AND im.source_tag = kb.src AND im.old_key = kb.skey) AS bt
              FROM ka
              JOIN %1$s.match_key kb ON kb.rule = ka.rule AND kb.mkey = ka.mkey AND (kb.src, kb.skey) <> (ka.src, ka.skey)
              LEFT JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::%1$s.shape, ka.row) a ON true
              LEFT JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::%1$s.shape, kb.row) b ON true
             WHERE NOT (%12$L AND kb.src = %7$L)
               AND (SELECT count(*) FROM %1$s.match_key c WHERE c.rule = ka.rule AND c.mkey = ka.mkey) <= %13$s
               AND %22$s
               AND NOT EXISTS (SELECT 1 FROM customer_unify.match_decision d
                                WHERE d.migration_id = %6$s AND d.decision = 'never'
                                  AND ((d.a_tag, d.a_key, d.b_tag, d.b_key) = (ka.src, ka.skey, kb.src, kb.skey)
                                    OR (d.b_tag, d.b_key, d.a_tag, d.a_key) = (ka.src, ka.skey, kb.src, kb.skey)))
        ), x AS MATERIALIZED (
            -- per row: its clusters, the rule of its link, and whether it links
            -- to another row of the batch, either way (one aggregate, no join:
            -- nothing here has statistics the planner could trust)
            SELECT u.k, min(u.bt) AS cand, coalesce(min(u.rule) FILTER (WHERE u.bt IS NOT NULL), 'new') AS rule,
                   count(DISTINCT u.bt) <= 1 AND NOT bool_or(u.partner)
                   AND NOT EXISTS (SELECT 1 FROM customer_unify.id_map im
                                    WHERE im.migration_id = %6$s AND im.source_tag = %7$L AND im.old_key = u.k)
                   AND NOT EXISTS (SELECT 1 FROM customer_unify.match_decision d
                                    WHERE d.migration_id = %6$s AND d.decision = 'always'
                                      AND ((d.a_tag, d.a_key) = (%7$L, u.k) OR (d.b_tag, d.b_key) = (%7$L, u.k))) AS fast
              FROM (SELECT p.k, p.bt, p.rule, p.inb AS partner FROM pairs p
                    UNION ALL
                    SELECT p.bkey, NULL, NULL, true FROM pairs p WHERE p.inb
                    UNION ALL
                    SELECT k.k, NULL, NULL, false FROM unnest(p_keys) k(k) WHERE NOT (k.k = ANY (v_gone))) u
             GROUP BY u.k
        )
        SELECT f.ks, f.ts, f.rs, (SELECT array_agg(x.k ORDER BY x.k) FROM x WHERE NOT x.fast)
          INTO v_fast_keys, v_fast_targets, v_fast_rules, v_slow
          FROM (SELECT array_agg(x.k ORDER BY x.k) AS ks, array_agg(coalesce(x.cand, (%14$s)::text) ORDER BY x.k) AS ts,
                       array_agg(x.rule ORDER BY x.k) AS rs
                  FROM x WHERE x.fast) f;
        IF cardinality(v_fast_keys) > 0 THEN
            PERFORM customer_unify._id_map_set(%6$s, %7$L, v_fast_keys, v_fast_targets, v_fast_rules);
            v_affected := v_affected || v_fast_targets;
        END IF;
    ELSE
        v_slow := ARRAY(SELECT k FROM unnest(p_keys) k WHERE NOT (k = ANY (v_gone)) ORDER BY k);
    END IF;
    -- each row joins the cluster of the rows it shares a usable key with
    FOR v_k IN SELECT k FROM unnest(coalesce(v_slow, '{}')) WITH ORDINALITY u(k, n) ORDER BY n LOOP
        v_old := (SELECT im.target_key FROM customer_unify.id_map im
                   WHERE im.migration_id = %6$s AND im.source_tag = %7$L AND im.old_key = v_k);
        SELECT array_agg(DISTINCT im.target_key ORDER BY im.target_key), min(ka.rule)
          INTO v_cands, v_rule
          FROM %1$s.match_key ka
          JOIN %1$s.match_key kb ON kb.rule = ka.rule AND kb.mkey = ka.mkey AND (kb.src, kb.skey) <> (ka.src, ka.skey)
          JOIN customer_unify.id_map im ON im.migration_id = %6$s AND im.source_tag = kb.src AND im.old_key = kb.skey
          -- the two rows in the target's shape, for the scores of similarity rules
          LEFT JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::%1$s.shape, ka.row) a ON true
          LEFT JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::%1$s.shape, kb.row) b ON true
         WHERE ka.src = %7$L AND ka.skey = v_k
           AND NOT (%12$L AND kb.src = %7$L)
           AND (SELECT count(*) FROM %1$s.match_key c WHERE c.rule = ka.rule AND c.mkey = ka.mkey) <= %13$s
           AND %22$s
           AND NOT EXISTS (SELECT 1 FROM customer_unify.match_decision d
                            WHERE d.migration_id = %6$s AND d.decision = 'never'
                              AND ((d.a_tag, d.a_key, d.b_tag, d.b_key) = (%7$L, v_k, kb.src, kb.skey)
                                OR (d.b_tag, d.b_key, d.a_tag, d.a_key) = (%7$L, v_k, kb.src, kb.skey)));
        -- rows the DBA said are always this person
        v_cands := v_cands || ARRAY(
            SELECT im.target_key FROM customer_unify.match_decision d
              JOIN customer_unify.id_map im ON im.migration_id = d.migration_id
               AND ((im.source_tag, im.old_key) = (d.b_tag, d.b_key) AND (d.a_tag, d.a_key) = (%7$L, v_k)
                 OR (im.source_tag, im.old_key) = (d.a_tag, d.a_key) AND (d.b_tag, d.b_key) = (%7$L, v_k))
             WHERE d.migration_id = %6$s AND d.decision = 'always');
        IF cardinality(v_cands) = 0 THEN
            v_cands := NULL;
        ELSIF v_rule IS NULL THEN
            v_rule := 'decision';
        END IF;
        IF %8$L THEN
            v_t := v_k;
            v_rule := 'anchor';
        ELSIF v_cands IS NULL THEN
            v_t := coalesce(v_old, (%14$s)::text);
            v_rule := coalesce((SELECT im.rule FROM customer_unify.id_map im
                                 WHERE im.migration_id = %6$s AND im.source_tag = %7$L AND im.old_key = v_k), 'new');
        ELSE
            -- an anchor first, then the row's own cluster, then the smallest key
            -- (joins, not subqueries: the planner would hash every anchor of the crosswalk per row)
            -- (its own cluster only if its keys still link it there: a row whose
            -- keys now lead elsewhere moves alone, and leaves the rest behind)
            SELECT c.c INTO v_t FROM unnest(v_cands) c(c)
              LEFT JOIN customer_unify.id_map ia ON ia.migration_id = %6$s AND ia.source_tag = 'target' AND ia.old_key = c.c
             WHERE c.c IS NOT NULL
             ORDER BY ia.old_key IS NOT NULL DESC, c.c IS NOT DISTINCT FROM v_old DESC, c.c LIMIT 1;
        END IF;
        -- fold the other clusters it now joins into v_t (anchors stay)
        v_fold := ARRAY(SELECT DISTINCT c.c FROM unnest(v_cands) c(c)
                          LEFT JOIN customer_unify.id_map ia ON ia.migration_id = %6$s AND ia.source_tag = 'target' AND ia.old_key = c.c
                         WHERE c.c IS NOT NULL AND c.c <> v_t AND ia.old_key IS NULL);
        IF cardinality(v_fold) > 0 THEN
            IF v_nowait THEN
                -- (an application's write: the rows it would wait for are deferred)
                PERFORM 1 FROM ONLY %18$s WHERE %19$I = ANY (v_fold::%20$s[]) FOR UPDATE NOWAIT;
            END IF;
            PERFORM customer_unify._id_map_retarget(%6$s, v_fold, v_t);
%17$s            DELETE FROM ONLY %18$s WHERE %19$I = ANY (v_fold::%20$s[]);
        END IF;
        PERFORM customer_unify._id_map_set(%6$s, %7$L, ARRAY[v_k], ARRAY[v_t], ARRAY[v_rule]);
        v_affected := v_affected || v_t || v_old;
    END LOOP;
    PERFORM %1$s.recompute(v_affected);
    -- references to these rows follow their cluster (the backfill fills them in its own pass)
    IF p_refresh_keys THEN
%21$s    END IF;
    RETURN cardinality(p_keys);
END
$body$$f$,
        w, 'apply_' || v_tag, v_src, v_key, v_ktype, m.id, v_tag, v_anchor, v_mapped, v_keys,
        (m.spec->'match')::text, (p_src->>'duplicate_free')::boolean, v_limit,
        m.spec->'target'->>'key_default', format(v_isanchor, 'c'), format(v_isanchor, 'c'),
        v_repoint, t.name, t.key, t.key_type, v_follow, v_score,
        ARRAY(SELECT r3->>'rule' FROM jsonb_array_elements(m.spec->'match') r3 WHERE r3->>'score' IS NOT NULL));
END
$fn$;

-- The application's writes never wait for the merge.  live_<tag>(keys), what
-- a source's capture trigger calls, runs apply_<tag> with a lock timeout of
-- one millisecond: when matching the rows would wait for another
-- transaction (one writing the same person, or the DBA's unmerge), the keys
-- are deferred to the work schema's pending table instead and the
-- application's write goes on.  drain() applies what is pending (every
-- live_ call ends with it, so a deferred row is matched by the next write,
-- once the transaction it waited for is over; the validate, cutover and
-- finalize phases and rematch drain too, waiting as the DBA's statements
-- may).  repoint() sets every reference whose new column differs from its
-- row's person (a reference written while its person was being re-matched
-- does not wait for that either).
CREATE OR REPLACE FUNCTION customer_unify._merge_live_sql(m customer_unify.migration, p_archived boolean DEFAULT false)
    RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    w       text := quote_ident(m.spec->>'work_schema');
    t       record := customer_unify._merge_target(m);
    v_sql   text := '';
    v_src   jsonb;
    v_ref   jsonb;
    v_sweep text := '';
BEGIN
    FOR v_src IN SELECT e FROM jsonb_array_elements(m.spec->'sources') e ORDER BY e->>'tag' LOOP
        v_sql := v_sql || format($f$CREATE OR REPLACE FUNCTION %1$s.%2$I(p_keys text[]) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = 'postgres'
    SET lock_timeout = '1ms'
    SET customer_unify.merge_never_wait = on
AS $body$
DECLARE
    v_n bigint := 0;
BEGIN
    BEGIN
        v_n := %1$s.%3$I(p_keys, true);
    EXCEPTION WHEN lock_not_available OR deadlock_detected OR serialization_failure THEN
        INSERT INTO %1$s.pending (src, skey) SELECT %4$L, k FROM unnest(p_keys) k;
        v_n := 0;
    END;
    PERFORM %1$s.drain();
    RETURN v_n;
END
$body$;
REVOKE ALL ON FUNCTION %1$s.%2$I(text[]) FROM PUBLIC;
$f$, w, 'live_' || (v_src->>'tag'), 'apply_' || (v_src->>'tag'), v_src->>'tag');
    END LOOP;
    IF NOT p_archived THEN
        FOR v_ref IN SELECT e FROM jsonb_array_elements(m.spec->'references') e ORDER BY (e->>'n')::int LOOP
            v_sweep := v_sweep || format(
                E'    UPDATE ONLY %1$s x SET %2$I = n.k\n'
                 '      FROM (SELECT y.ctid AS row, (SELECT im.target_key::%3$s FROM customer_unify.id_map im\n'
                 '                                    WHERE im.migration_id = %4$s AND im.source_tag = %5$L AND im.old_key = %6$s\n'
                 '                                      AND NOT EXISTS (SELECT 1 FROM customer_unify.merge_held h\n'
                 '                                                       WHERE h.migration_id = im.migration_id AND h.target_key = im.target_key)) AS k\n'
                 '              FROM ONLY %1$s y WHERE y.%7$I IS NOT NULL OR y.%2$I IS NOT NULL) n\n'
                 '     WHERE x.ctid = n.row AND x.%2$I IS DISTINCT FROM n.k;\n'
                 '    GET DIAGNOSTICS v_one = ROW_COUNT;\n'
                 '    v_n := v_n + v_one;\n',
                customer_unify._b_name((v_ref->>'relid')::oid::regclass), v_ref->>'new_column', t.key_type, m.id, v_ref->>'source',
                customer_unify._merge_ref_key_sql(m, v_ref, format('y.%I', v_ref->>'column')), v_ref->>'column');
        END LOOP;
    END IF;
    RETURN v_sql || format($f$CREATE OR REPLACE FUNCTION %1$s.drain() RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = 'postgres'
AS $body$
DECLARE
    r   record;
    v_n bigint := 0;
BEGIN
    -- (rows another drain holds are its own; rows deferred by a transaction
    -- still open are not visible yet)
    FOR r IN SELECT p.src, array_agg(DISTINCT p.skey) AS keys
               FROM (SELECT q.src, q.skey FROM %1$s.pending q ORDER BY q.deferred_at LIMIT 1000 FOR UPDATE SKIP LOCKED) p
              GROUP BY p.src ORDER BY p.src LOOP
        DELETE FROM %1$s.pending q WHERE q.src = r.src AND q.skey = ANY (r.keys);
        BEGIN
            PERFORM customer_unify._merge_apply(%2$s, r.src, r.keys, NULL);
            v_n := v_n + cardinality(r.keys);
        EXCEPTION WHEN lock_not_available OR deadlock_detected OR serialization_failure THEN
            INSERT INTO %1$s.pending (src, skey) SELECT r.src, k FROM unnest(r.keys) k;
        END;
    END LOOP;
    RETURN v_n;
END
$body$;
REVOKE ALL ON FUNCTION %1$s.drain() FROM PUBLIC;
CREATE OR REPLACE FUNCTION %1$s.repoint() RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = 'postgres'
AS $body$
DECLARE
    v_n   bigint := 0;
    v_one bigint;
BEGIN
%3$s    RETURN v_n;
END
$body$;
REVOKE ALL ON FUNCTION %1$s.repoint() FROM PUBLIC;
$f$, w, m.id, v_sweep);
END
$fn$;

-- reconcile(): rows that share a usable exact key with a row of another
-- cluster (what two concurrent transactions could leave behind: neither saw
-- the other's uncommitted row) are matched again, until none is left or a
-- few rounds made no progress.  The end of the backfill runs it.
CREATE OR REPLACE FUNCTION customer_unify._merge_reconcile_sql(m customer_unify.migration)
    RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT format($f$CREATE OR REPLACE FUNCTION %1$s.reconcile() RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    SET jit = off
    SET plan_cache_mode = force_custom_plan
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = 'postgres'
AS $body$
DECLARE
    r      record;
    v_n    bigint := 0;
    v_left bigint;
    v_round int := 0;
BEGIN
    LOOP
        v_left := 0;
        FOR r IN
            SELECT y.src, array_agg(DISTINCT y.skey ORDER BY y.skey) AS keys
              FROM (SELECT a.src, a.skey, b.src AS bsrc, b.skey AS bskey
                      FROM %1$s.match_key a
                      JOIN %1$s.match_key b ON b.rule = a.rule AND b.mkey = a.mkey AND (a.src, a.skey) <> (b.src, b.skey)
                      JOIN customer_unify.id_map ia ON ia.migration_id = %2$s AND ia.source_tag = a.src AND ia.old_key = a.skey
                      JOIN customer_unify.id_map ib ON ib.migration_id = %2$s AND ib.source_tag = b.src AND ib.old_key = b.skey
                     WHERE a.row IS NULL AND ia.target_key <> ib.target_key AND a.src <> 'target'
                       AND NOT (a.src = b.src AND a.src = ANY (%3$L::text[]))
                       AND (SELECT count(*) FROM %1$s.match_key c WHERE c.rule = a.rule AND c.mkey = a.mkey) <= %4$s
                       AND NOT EXISTS (SELECT 1 FROM customer_unify.match_decision d WHERE d.migration_id = %2$s AND d.decision = 'never'
                                          AND ((d.a_tag, d.a_key, d.b_tag, d.b_key) = (a.src, a.skey, b.src, b.skey)
                                            OR (d.a_tag, d.a_key, d.b_tag, d.b_key) = (b.src, b.skey, a.src, a.skey)))
                       AND NOT (ia.target_key IN (SELECT x.old_key FROM customer_unify.id_map x WHERE x.migration_id = %2$s AND x.source_tag = 'target')
                                AND ib.target_key IN (SELECT x.old_key FROM customer_unify.id_map x WHERE x.migration_id = %2$s AND x.source_tag = 'target'))
                   ) y
             GROUP BY y.src
        LOOP
            PERFORM customer_unify._merge_apply(%2$s, r.src, r.keys, NULL);
            v_left := v_left + cardinality(r.keys);
        END LOOP;
        v_n := v_n + v_left;
        v_round := v_round + 1;
        EXIT WHEN v_left = 0 OR v_round >= 3;
    END LOOP;
    RETURN v_n;
END
$body$$f$, quote_ident(m.spec->>'work_schema'), m.id,
        ARRAY(SELECT e->>'tag' FROM jsonb_array_elements(m.spec->'sources') e WHERE (e->>'duplicate_free')::boolean),
        m.spec->>'max_key_rows')
$fn$;

-- recompute(target keys): the merged rows of those clusters, from their members.
CREATE OR REPLACE FUNCTION customer_unify._merge_recompute_sql(m customer_unify.migration)
    RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    w      text := quote_ident(m.spec->>'work_schema');
    t      record := customer_unify._merge_target(m);
    v_cols text := (SELECT string_agg(quote_ident(c), ', ' ORDER BY c) FROM jsonb_object_keys(m.spec->'target'->'columns') c);
    v_set  text := (SELECT string_agg(format('%I = EXCLUDED.%I', c, c), ', ' ORDER BY c) FROM jsonb_object_keys(m.spec->'target'->'columns') c);
    -- the target keys given that are not anchors (a join: the planner would hash every anchor)
    v_anchor text := format('(SELECT x.k FROM (SELECT DISTINCT k FROM unnest(p_targets) k WHERE k IS NOT NULL) x '
                            'LEFT JOIN customer_unify.id_map ia ON ia.migration_id = %s AND ia.source_tag = %L AND ia.old_key = x.k '
                            'WHERE ia.old_key IS NULL)', m.id, 'target');
BEGIN
    RETURN format($f$CREATE OR REPLACE FUNCTION %1$s.recompute(p_targets text[]) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    SET jit = off
    SET plan_cache_mode = force_custom_plan
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = 'postgres'
AS $body$
DECLARE
    v_keys   text[];
    v_k      text;
    v_msg    text;
    v_detail text;
BEGIN
    IF p_targets IS NULL OR cardinality(p_targets) = 0 THEN
        RETURN;
    END IF;
    v_keys := ARRAY%5$s;
    -- their rows first, each statement below then reads the survivors as of
    -- after the wait (a transaction that wrote them meanwhile is over)
    IF pg_catalog.current_setting('customer_unify.merge_never_wait') = 'on' THEN
        PERFORM 1 FROM ONLY %2$s t WHERE t.%3$I = ANY (v_keys::%4$s[]) FOR UPDATE NOWAIT;
    ELSE
        PERFORM 1 FROM ONLY %2$s t WHERE t.%3$I = ANY (v_keys::%4$s[]) ORDER BY t.%3$I FOR UPDATE;
    END IF;
    -- clusters left without members lose their merged row
    DELETE FROM ONLY %2$s t WHERE t.%3$I = ANY (ARRAY(
        SELECT x.k::%4$s FROM unnest(v_keys) x(k)
          LEFT JOIN LATERAL (SELECT 1 AS one FROM customer_unify.id_map im
                              WHERE im.migration_id = %6$s AND im.target_key = x.k LIMIT 1) im ON true
         WHERE im.one IS NULL));
    PERFORM customer_unify._merge_release(%6$s, p_targets);
    BEGIN
        INSERT INTO %2$s AS t (%3$I, %7$s)
        SELECT v.tkey::%4$s, %9$s
          FROM %1$s.survivors v
         WHERE v.tkey = ANY (v_keys)
        ON CONFLICT (%3$I) DO UPDATE SET %8$s
         WHERE (%10$s) IS DISTINCT FROM (%11$s);
    EXCEPTION WHEN integrity_constraint_violation OR data_exception OR raise_exception THEN
        -- one cluster at a time: the ones the target refuses (its constraints,
        -- or its own triggers) are held for review
        FOREACH v_k IN ARRAY v_keys LOOP
            BEGIN
                INSERT INTO %2$s AS t (%3$I, %7$s)
                SELECT v.tkey::%4$s, %9$s
                  FROM %1$s.survivors v
                 WHERE v.tkey = v_k
                ON CONFLICT (%3$I) DO UPDATE SET %8$s
                 WHERE (%10$s) IS DISTINCT FROM (%11$s);
            EXCEPTION WHEN integrity_constraint_violation OR data_exception OR raise_exception THEN
                GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT, v_detail = PG_EXCEPTION_DETAIL;
                PERFORM customer_unify._merge_hold(%6$s, v_k, v_msg || coalesce(': ' || v_detail, ''));
                DELETE FROM ONLY %2$s t WHERE t.%3$I = v_k::%4$s;
            END;
        END LOOP;
    END;
END
$body$$f$,
        w, t.name, t.key, t.key_type, v_anchor, m.id, v_cols, v_set,
        -- a NULL the survivors leave takes the column's default, as an INSERT would
        (SELECT string_agg(CASE WHEN d.adbin IS NULL THEN format('v.%I', c)
                                ELSE format('coalesce(v.%I, %s)', c, pg_get_expr(d.adbin, d.adrelid)) END, ', ' ORDER BY c)
           FROM jsonb_object_keys(m.spec->'target'->'columns') c
           LEFT JOIN pg_attribute a ON a.attrelid = customer_unify._relation(m.id, 'target') AND a.attname = c
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum),
        (SELECT string_agg(format('t.%I', c), ', ' ORDER BY c) FROM jsonb_object_keys(m.spec->'target'->'columns') c),
        (SELECT string_agg(format('EXCLUDED.%I', c), ', ' ORDER BY c) FROM jsonb_object_keys(m.spec->'target'->'columns') c));
END
$fn$;

-------------------------------------------------------------------------------
-- steps
-------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION customer_unify._merge_steps(m customer_unify.migration)
    RETURNS TABLE (phase text, seq int, statement text, inverse text,
                   lock_mode text, lock_relation text, rows_estimate bigint, registers jsonb)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s        jsonb := m.spec;
    t        record := customer_unify._merge_target(m);
    w        text := quote_ident(m.spec->>'work_schema');
    v_create boolean := (s->'target'->>'create')::boolean;
    v_steps  customer_unify.step_def[];
    v_src    jsonb;
    v_ref    jsonb;
    v_name   text;
    v_trg    text;
    v_phase  text;
    v_all    text[];
    st       customer_unify.step_def;
BEGIN
    v_all := ARRAY(SELECT customer_unify._b_name((e->>'relid')::oid::regclass) FROM jsonb_array_elements(s->'sources') e
                    WHERE NOT (e->>'anchor')::boolean ORDER BY e->>'tag');

    ---------------------------------------------------------------- start
    -- writers of the sources wait (not fail) while triggers are added
    v_steps := ARRAY(SELECT customer_unify._b_lock(x, 'SHARE ROW EXCLUSIVE') FROM unnest(v_all) x);
    IF NOT v_create THEN
        v_steps := v_steps || customer_unify._b_lock(t.name, 'SHARE ROW EXCLUSIVE');
        -- rollback removes the rows the merge added to the surviving table, and the crosswalk
        v_steps := v_steps || customer_unify._b_step(
            format('SELECT %L', 'rows the merge adds to ' || t.name || ' are removed by rollback'),
            -- (a merged row the application has meanwhile referenced, e.g. a new
            -- booking of a merged person, is kept as the table's own, with a notice)
            format($f$DO $do$
DECLARE
    r record;
    v_kept bigint := 0;
BEGIN
    FOR r IN SELECT t.%2$I AS k FROM ONLY %1$s t
              WHERE t.%2$I::text IN (SELECT im.target_key FROM customer_unify.id_map im WHERE im.migration_id = %3$s)
                AND NOT EXISTS (SELECT 1 FROM customer_unify.id_map ia WHERE ia.migration_id = %3$s AND ia.source_tag = 'target'
                                   AND ia.old_key = t.%2$I::text)
    LOOP
        BEGIN
            DELETE FROM ONLY %1$s t WHERE t.%2$I = r.k;
        EXCEPTION WHEN foreign_key_violation THEN
            v_kept := v_kept + 1;
        END;
    END LOOP;
    IF v_kept > 0 THEN
        RAISE NOTICE '%% rows the merge added to %% are kept: the application references them now', v_kept, %4$L
            USING HINT = 'They are ordinary rows of the table from now on.';
    END IF;
    PERFORM customer_unify._id_map_clear(%3$s);
END
$do$$f$, t.name, t.key, m.id, t.name),
            'ROW EXCLUSIVE', t.name);
    ELSE
        v_steps := v_steps || customer_unify._b_step(
            format('CREATE TABLE %s (%I %s %s PRIMARY KEY, %s)', t.name, t.key, t.key_type,
                   CASE t.key_type WHEN 'uuid' THEN 'DEFAULT pg_catalog.gen_random_uuid()' ELSE 'GENERATED BY DEFAULT AS IDENTITY' END,
                   (SELECT string_agg(format('%I %s', c.k, c.v), ', ' ORDER BY c.k) FROM jsonb_each_text(s->'target'->'columns') c(k, v))),
            format('DROP TABLE IF EXISTS %s; SELECT customer_unify._id_map_clear(%s)', t.name, m.id), 'ACCESS EXCLUSIVE', t.name || ' (new)',
            jsonb_build_object('relation', jsonb_build_object('tag', 'target', 'role', 'target',
                               'nspname', s->'target'->>'schema', 'relname', s->'target'->>'table')));
        IF t.key_type = 'bigint' THEN
            -- the crosswalk knows the keys it made: the identity's sequence makes them
            s := jsonb_set(s, '{target,key_default}', to_jsonb(format('pg_catalog.nextval(pg_catalog.pg_get_serial_sequence(%L, %L)::pg_catalog.regclass)', t.name, t.key)));
            m.spec := s;
        END IF;
    END IF;
    v_steps := v_steps || customer_unify._b_step(format('CREATE SCHEMA %s', w), format('DROP SCHEMA IF EXISTS %s CASCADE', w));
    v_steps := v_steps || customer_unify._b_step(format('COMMENT ON SCHEMA %s IS %L', w,
        format('customer_unify: the working state of merge %s (match keys, survivorship, apply functions)', m.name)));
    v_steps := v_steps || customer_unify._b_step(format(
        'CREATE TABLE %s.match_key (src text NOT NULL, skey text NOT NULL, rule text NOT NULL, mkey text NOT NULL, '
        'row jsonb, PRIMARY KEY (src, skey, rule))', w));
    -- a row in the target's shape (the scores of similarity rules read two of them)
    v_steps := v_steps || customer_unify._b_step(format('CREATE TYPE %s.shape AS (%s)', w,
        (SELECT string_agg(format('%I %s', c.k, c.v), ', ' ORDER BY c.k) FROM jsonb_each_text(s->'target'->'columns') c(k, v))));
    v_steps := v_steps || customer_unify._b_step(format('CREATE INDEX match_key_value ON %s.match_key (rule, mkey)', w));
    v_steps := v_steps || customer_unify._b_step(format('CREATE VIEW %s.survivors AS %s', w, customer_unify._merge_survivors_sql(m)));
    v_steps := v_steps || customer_unify._b_step(format(
        'CREATE VIEW %s.stored_survivors AS SELECT v.* FROM %s.survivors v WHERE NOT EXISTS '
        '(SELECT 1 FROM customer_unify.merge_held h WHERE h.migration_id = %s AND h.target_key = v.tkey)', w, w, m.id));
    v_steps := v_steps || customer_unify._b_step(format(
        'CREATE VIEW %s.merged_rows AS SELECT t.* FROM ONLY %s t WHERE %s',
        w, t.name, CASE WHEN v_create THEN 'true'
                        ELSE format('NOT EXISTS (SELECT 1 FROM customer_unify.id_map ia WHERE ia.migration_id = %s AND ia.source_tag = %L AND ia.old_key = t.%I::text)',
                                    m.id, 'target', t.key) END));
    v_steps := v_steps || customer_unify._b_step(customer_unify._merge_recompute_sql(m));
    v_steps := v_steps || customer_unify._b_step(format('REVOKE ALL ON FUNCTION %s.recompute(text[]) FROM PUBLIC', w));
    v_steps := v_steps || customer_unify._b_step(customer_unify._merge_reconcile_sql(m));
    v_steps := v_steps || customer_unify._b_step(format('REVOKE ALL ON FUNCTION %s.reconcile() FROM PUBLIC', w));
    -- references: the new column (filled from the crosswalk by a trigger and the backfill)
    FOR v_ref IN SELECT e FROM jsonb_array_elements(s->'references') e ORDER BY (e->>'n')::int LOOP
        v_name := customer_unify._b_name((v_ref->>'relid')::oid::regclass);
        v_steps := v_steps || customer_unify._b_step(
            format('ALTER TABLE %s ADD COLUMN %I %s', v_name, v_ref->>'new_column', t.key_type),
            format('ALTER TABLE %s DROP COLUMN IF EXISTS %I', v_name, v_ref->>'new_column'), 'ACCESS EXCLUSIVE', v_name);
        v_steps := v_steps || customer_unify._b_step(
            format('COMMENT ON COLUMN %s.%I IS %L', v_name, v_ref->>'new_column',
                   format('customer_unify: %s re-pointed at %s (merge %s)', v_ref->>'column', t.name, m.name)));
        v_steps := v_steps || customer_unify._b_step(customer_unify._merge_ref_function_sql(m, v_ref));
        v_steps := v_steps || customer_unify._b_step(format('REVOKE ALL ON FUNCTION %s.%I() FROM PUBLIC', w, 'ref_' || (v_ref->>'n')));
        v_trg := format('customer_unify_%s_ref%s', m.id, v_ref->>'n');
        v_steps := v_steps || customer_unify._b_step(
            -- (not under the loop guard: the merge's own writes of the column,
            -- the backfill's and the re-pointing of apply_*, bring its value)
            format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OF %I, %I ON %s FOR EACH ROW '
                   'WHEN (NOT customer_unify._mirror_guard(%s)) EXECUTE FUNCTION %s.%I()',
                   v_trg, v_ref->>'column', v_ref->>'new_column', v_name, m.id, w, 'ref_' || (v_ref->>'n')),
            format('DROP TRIGGER IF EXISTS %I ON %s', v_trg, v_name), 'SHARE ROW EXCLUSIVE', v_name);
        v_steps := v_steps || customer_unify._b_step(format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', v_name, v_trg), NULL, 'SHARE ROW EXCLUSIVE', v_name);
        v_steps := v_steps || customer_unify._b_step(
            -- a person the merge removes (its last source row was deleted) leaves the
            -- reference empty, as the old column, which nothing else checks, would dangle
            format('ALTER TABLE %s ADD CONSTRAINT %I FOREIGN KEY (%I) REFERENCES %s (%I) ON DELETE SET NULL NOT VALID',
                   v_name, v_ref->>'fk', v_ref->>'new_column', t.name, t.key),
            NULL, 'SHARE ROW EXCLUSIVE', v_name || ', ' || t.name);
    END LOOP;
    -- the apply function and capture triggers of every source
    FOR v_src IN SELECT e FROM jsonb_array_elements(s->'sources') e ORDER BY (e->>'priority')::int, e->>'tag' LOOP
        v_name := customer_unify._b_name((v_src->>'relid')::oid::regclass);
        v_steps := v_steps || customer_unify._b_step(customer_unify._merge_apply_sql(m, v_src));
        v_steps := v_steps || customer_unify._b_step(format('REVOKE ALL ON FUNCTION %s.%I(text[], boolean) FROM PUBLIC', w, 'apply_' || (v_src->>'tag')));
        v_trg := format('customer_unify_%s_merge', m.id);
        v_steps := v_steps || customer_unify._b_step(
            format($f$DO $do$ BEGIN EXECUTE pg_catalog.format(%L, %L::pg_catalog.regprocedure::pg_catalog.oid); EXECUTE pg_catalog.format(%L, %L::pg_catalog.regprocedure::pg_catalog.oid); EXECUTE pg_catalog.format(%L, %L::pg_catalog.regprocedure::pg_catalog.oid); END $do$$f$,
                   format('CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS customer_unify_new FOR EACH STATEMENT EXECUTE FUNCTION customer_unify.merge_capture(%L, %L, %%L)',
                          v_trg || '_ins', v_name, m.id, v_src->>'tag'), w || '.' || quote_ident('apply_' || (v_src->>'tag')) || '(text[],boolean)',
                   format('CREATE TRIGGER %I AFTER UPDATE ON %s REFERENCING OLD TABLE AS customer_unify_old NEW TABLE AS customer_unify_new FOR EACH STATEMENT EXECUTE FUNCTION customer_unify.merge_capture(%L, %L, %%L)',
                          v_trg || '_upd', v_name, m.id, v_src->>'tag'), w || '.' || quote_ident('apply_' || (v_src->>'tag')) || '(text[],boolean)',
                   format('CREATE TRIGGER %I AFTER DELETE ON %s REFERENCING OLD TABLE AS customer_unify_old FOR EACH STATEMENT EXECUTE FUNCTION customer_unify.merge_capture(%L, %L, %%L)',
                          v_trg || '_del', v_name, m.id, v_src->>'tag'), w || '.' || quote_ident('apply_' || (v_src->>'tag')) || '(text[],boolean)'),
            format('DROP TRIGGER IF EXISTS %I ON %s; DROP TRIGGER IF EXISTS %I ON %s; DROP TRIGGER IF EXISTS %I ON %s',
                   v_trg || '_ins', v_name, v_trg || '_upd', v_name, v_trg || '_del', v_name),
            'SHARE ROW EXCLUSIVE', v_name);
        v_steps := v_steps || customer_unify._b_step(format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', v_name, v_trg || '_ins'), NULL, 'SHARE ROW EXCLUSIVE', v_name);
        v_steps := v_steps || customer_unify._b_step(format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', v_name, v_trg || '_upd'), NULL, 'SHARE ROW EXCLUSIVE', v_name);
        v_steps := v_steps || customer_unify._b_step(format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', v_name, v_trg || '_del'), NULL, 'SHARE ROW EXCLUSIVE', v_name);
    END LOOP;
    -- what the application's writes defer rather than wait for, and the functions around it
    v_steps := v_steps || customer_unify._b_step(format(
        'CREATE TABLE %s.pending (src text NOT NULL, skey text NOT NULL, deferred_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp())', w));
    v_steps := v_steps || customer_unify._b_step(customer_unify._merge_live_sql(m));
    phase := 'start'; seq := 0; rows_estimate := NULL;
    FOREACH st IN ARRAY v_steps LOOP
        seq := seq + 1;
        statement := st.statement; inverse := st.inverse; lock_mode := st.lock_mode;
        lock_relation := st.lock_relation; registers := st.registers;
        RETURN NEXT;
    END LOOP;

    ---------------------------------------------------------------- backfill (what each batch runs, for preview)
    phase := 'backfill'; seq := 0; inverse := NULL; registers := NULL; lock_mode := 'ROW EXCLUSIVE';
    FOR st IN SELECT ROW(p.plan->>'batch', NULL, 'ROW EXCLUSIVE', p.plan->>'source_tag', NULL)::customer_unify.step_def
                FROM customer_unify._merge_copy_plan(m) p ORDER BY p.stream LOOP
        seq := seq + 1; statement := st.statement; lock_relation := st.lock_relation;
        RETURN NEXT;
    END LOOP;
    lock_mode := NULL; lock_relation := NULL;

    ---------------------------------------------------------------- validate (after the copy)
    phase := 'validate'; seq := 1;
    statement := format('SELECT %s.drain()', w); lock_mode := NULL; lock_relation := NULL;
    RETURN NEXT;
    seq := seq + 1;
    statement := format('SELECT %s.reconcile()', w);
    RETURN NEXT;
    seq := seq + 1;
    statement := format('SELECT %s.repoint()', w);
    RETURN NEXT;
    FOR v_ref IN SELECT e FROM jsonb_array_elements(s->'references') e ORDER BY (e->>'n')::int LOOP
        seq := seq + 1;
        v_name := customer_unify._b_name((v_ref->>'relid')::oid::regclass);
        statement := format('ALTER TABLE %s VALIDATE CONSTRAINT %I', v_name, v_ref->>'fk');
        lock_mode := 'SHARE UPDATE EXCLUSIVE'; lock_relation := v_name;
        RETURN NEXT;
    END LOOP;
    seq := seq + 1;
    statement := format('SELECT %L', 'merge copied'); lock_mode := NULL; lock_relation := NULL;
    RETURN NEXT;

    ---------------------------------------------------------------- cutover
    -- each source's old shape, under its old name in <name>_compat: until
    -- purge the view is the source itself, updatable by PostgreSQL, with the
    -- source's privileges; what old code writes there is merged as it lands
    v_phase := 'cutover';
    v_steps := ARRAY(SELECT customer_unify._b_lock(x, 'ACCESS SHARE') FROM unnest(v_all) x);
    v_steps := v_steps || customer_unify._b_step(format('SELECT %s.drain()', w));
    v_steps := v_steps || customer_unify._b_step(format('SELECT %s.repoint()', w));
    v_steps := v_steps || customer_unify._b_step(format('SELECT customer_unify._gate_verify(%s)', m.id), NULL, 'ACCESS SHARE', t.name);
    v_steps := v_steps || customer_unify._b_step(format('CREATE SCHEMA %I', s->>'compat_schema'), format('DROP SCHEMA IF EXISTS %I', s->>'compat_schema'));
    FOR v_src IN SELECT e FROM jsonb_array_elements(s->'sources') e
                  WHERE NOT (e->>'anchor')::boolean AND NOT (e->>'keep')::boolean ORDER BY e->>'tag' LOOP
        v_name := customer_unify._b_name((v_src->>'relid')::oid::regclass);
        v_steps := v_steps || ARRAY(SELECT customer_unify._b_schema_usage((v_src->>'relid')::oid::regclass, s->>'compat_schema'));
        v_steps := v_steps || customer_unify._b_step(
            format('CREATE VIEW %s WITH (security_invoker = true) AS SELECT %s FROM ONLY %s',
                   customer_unify._qual(s->>'compat_schema', (SELECT c.relname FROM pg_class c WHERE c.oid = (v_src->>'relid')::oid)),
                   (SELECT string_agg(quote_ident(c.attname), ', ' ORDER BY c.attnum) FROM customer_unify._b_columns((v_src->>'relid')::oid::regclass, NULL) c),
                   v_name),
            format('DROP VIEW IF EXISTS %s', customer_unify._qual(s->>'compat_schema', (SELECT c.relname FROM pg_class c WHERE c.oid = (v_src->>'relid')::oid))),
            'ACCESS SHARE', v_name,
            jsonb_build_object('relation', jsonb_build_object('tag', 'view_' || (v_src->>'tag'), 'role', 'view',
                               'nspname', s->>'compat_schema', 'relname', (SELECT c.relname FROM pg_class c WHERE c.oid = (v_src->>'relid')::oid))));
        v_steps := v_steps || ARRAY(SELECT customer_unify._b_privileges((v_src->>'relid')::oid::regclass,
                                        customer_unify._qual(s->>'compat_schema', (SELECT c.relname FROM pg_class c WHERE c.oid = (v_src->>'relid')::oid)),
                                        (SELECT jsonb_agg(jsonb_build_array(c.attname, c.attname) ORDER BY c.attnum)
                                           FROM customer_unify._b_columns((v_src->>'relid')::oid::regclass, NULL) c)));
    END LOOP;
    phase := v_phase; seq := 0;
    FOREACH st IN ARRAY v_steps LOOP
        seq := seq + 1;
        statement := st.statement; inverse := st.inverse; lock_mode := st.lock_mode;
        lock_relation := st.lock_relation; registers := st.registers;
        RETURN NEXT;
    END LOOP;

    ---------------------------------------------------------------- finalize
    -- compared exactly with writes paused; then the old tables move to the
    -- archive (nothing is destroyed), the old reference columns are kept in
    -- the archive and dropped; sources marked keep lose their triggers only
    v_phase := 'finalize';
    v_steps := ARRAY(SELECT customer_unify._b_lock(x, 'SHARE') FROM unnest(v_all) x);
    v_steps := v_steps || customer_unify._b_lock(t.name, 'SHARE');
    v_steps := v_steps || customer_unify._b_step(format('SELECT %s.drain()', w));
    v_steps := v_steps || customer_unify._b_step(format('SELECT %s.repoint()', w));
    v_steps := v_steps || customer_unify._b_step(format('SELECT customer_unify._gate_verify(%s)', m.id), NULL, 'SHARE', t.name);
    v_steps := v_steps || customer_unify._b_step(format('CREATE SCHEMA %I', s->>'archive_schema'));
    v_steps := v_steps || customer_unify._b_step(format('COMMENT ON SCHEMA %I IS %L', s->>'archive_schema',
        format('customer_unify: the tables and columns merge %s replaced; customer_unify.purge(%L) drops them', m.name, m.name)));
    FOR v_ref IN SELECT e FROM jsonb_array_elements(s->'references') e ORDER BY (e->>'n')::int LOOP
        v_name := customer_unify._b_name((v_ref->>'relid')::oid::regclass);
        v_steps := v_steps || customer_unify._b_step(
            format('CREATE TABLE %s AS SELECT %I, %I FROM ONLY %s', customer_unify._qual(s->>'archive_schema', 'ref' || (v_ref->>'n') || '_' || (v_ref->>'column')),
                   v_ref->>'key', v_ref->>'column', v_name), NULL, 'SHARE', v_name);
        v_steps := v_steps || customer_unify._b_step(format('DROP TRIGGER IF EXISTS %I ON %s', format('customer_unify_%s_ref%s', m.id, v_ref->>'n'), v_name),
                                                     NULL, 'ACCESS EXCLUSIVE', v_name);
        v_steps := v_steps || customer_unify._b_step(format('ALTER TABLE %s DROP COLUMN %I', v_name, v_ref->>'column'), NULL, 'ACCESS EXCLUSIVE', v_name);
    END LOOP;
    FOR v_src IN SELECT e FROM jsonb_array_elements(s->'sources') e WHERE NOT (e->>'anchor')::boolean ORDER BY e->>'tag' LOOP
        v_name := customer_unify._b_name((v_src->>'relid')::oid::regclass);
        IF (v_src->>'keep')::boolean THEN
            v_trg := format('customer_unify_%s_merge', m.id);
            v_steps := v_steps || customer_unify._b_step(
                format('DROP TRIGGER IF EXISTS %I ON %s; DROP TRIGGER IF EXISTS %I ON %s; DROP TRIGGER IF EXISTS %I ON %s',
                       v_trg || '_ins', v_name, v_trg || '_upd', v_name, v_trg || '_del', v_name), NULL, 'ACCESS EXCLUSIVE', v_name);
        ELSE
            v_steps := v_steps || customer_unify._b_step(format('ALTER TABLE %s SET SCHEMA %I', v_name, s->>'archive_schema'), NULL, 'ACCESS EXCLUSIVE', v_name);
            -- what old code writes through its view still reaches the target
            v_steps := v_steps || customer_unify._b_step(customer_unify._merge_apply_sql(m, v_src, true));
        END IF;
    END LOOP;
    IF NOT v_create THEN
        v_trg := format('customer_unify_%s_merge', m.id);
        v_steps := v_steps || customer_unify._b_step(
            format('DROP TRIGGER IF EXISTS %I ON %s; DROP TRIGGER IF EXISTS %I ON %s; DROP TRIGGER IF EXISTS %I ON %s',
                   v_trg || '_ins', t.name, v_trg || '_upd', t.name, v_trg || '_del', t.name), NULL, 'ACCESS EXCLUSIVE', t.name);
    END IF;
    -- (the old reference columns are gone: nothing left to re-point)
    v_steps := v_steps || customer_unify._b_step(customer_unify._merge_live_sql(m, true));
    phase := v_phase; seq := 0;
    FOREACH st IN ARRAY v_steps LOOP
        seq := seq + 1;
        statement := st.statement; inverse := st.inverse; lock_mode := st.lock_mode;
        lock_relation := st.lock_relation; registers := st.registers;
        RETURN NEXT;
    END LOOP;

    ---------------------------------------------------------------- purge (after finalize)
    phase := 'purge'; seq := 0; inverse := NULL; registers := NULL;
    FOR st IN SELECT * FROM unnest(ARRAY[
                  customer_unify._b_step(format('DROP SCHEMA IF EXISTS %I CASCADE', s->>'compat_schema')),
                  customer_unify._b_step(format('DROP SCHEMA IF EXISTS %I CASCADE', s->>'archive_schema')),
                  customer_unify._b_step(format('DROP SCHEMA IF EXISTS %s CASCADE', w))]) LOOP
        seq := seq + 1; statement := st.statement; lock_mode := 'ACCESS EXCLUSIVE'; lock_relation := NULL;
        RETURN NEXT;
    END LOOP;
END
$fn$;

-------------------------------------------------------------------------------
-- copy plan: one stream per source (anchors first, then by priority), each
-- batch the apply function over the next keys; then one per reference.
-------------------------------------------------------------------------------
-- The keyset of a batch as the engine's statement streams take it ($1 the
-- last key done, not in the first batch; $2 the copy's last key; $3 the
-- batch size): the CTE b of the next keys, to which a stream adds its work
-- and the row (last key, rows) the engine reads.
CREATE OR REPLACE FUNCTION customer_unify._merge_batch_keys(p_rel text, p_key text, p_first boolean)
    RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('WITH b AS MATERIALIZED (SELECT s.%1$I AS k FROM ONLY %2$s s WHERE %3$sNOT (s.%1$I > $2) ORDER BY s.%1$I LIMIT $3), ',
                  p_key, p_rel, CASE WHEN p_first THEN '' ELSE format('s.%I > $1 AND ', p_key) END)
$$;

CREATE OR REPLACE FUNCTION customer_unify._merge_copy_plan(m customer_unify.migration)
    RETURNS TABLE (stream text, key_type regtype, plan jsonb)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH src AS (
        SELECT e AS s, row_number() OVER (ORDER BY (e->>'priority')::int, e->>'tag') AS n,
               customer_unify._b_name((e->>'relid')::oid::regclass) AS rel
          FROM jsonb_array_elements(m.spec->'sources') e
    ), pass AS (
        -- a: every source's match keys; b: matching, in priority order
        SELECT 'a' AS p, 'NULL' AS refresh UNION ALL SELECT 'b', 'false'
    ), t AS (SELECT * FROM customer_unify._merge_target(m))
    SELECT format('%s%s_%s', pass.p, lpad(src.n::text, 2, '0'), src.s->>'tag'), (src.s->>'key_type')::regtype,
           jsonb_build_object('source_tag', src.s->>'tag', 'key', src.s->>'key',
               -- statistics of what the earlier passes filled, before this one plans
               'analyze', jsonb_build_array('customer_unify.id_map', quote_ident(m.spec->>'work_schema') || '.match_key',
                                            (SELECT t.name FROM t)),
               'batch_first', customer_unify._merge_batch_keys(src.rel, src.s->>'key', true) || w.work,
               'batch', customer_unify._merge_batch_keys(src.rel, src.s->>'key', false) || w.work)
      FROM src, pass,
           LATERAL (SELECT format('a AS MATERIALIZED (SELECT %s.%I(ARRAY(SELECT b.k::text FROM b), %s) AS n) '
                                  'SELECT (SELECT b.k FROM b ORDER BY b.k DESC LIMIT 1), (SELECT pg_catalog.count(*) FROM b) FROM a',
                                  quote_ident(m.spec->>'work_schema'), 'apply_' || (src.s->>'tag'), pass.refresh) AS work) w
    UNION ALL
    SELECT format('c%s_ref', lpad(r->>'n', 2, '0')), (SELECT a.atttypid::regtype FROM pg_attribute a WHERE a.attrelid = (r->>'relid')::oid AND a.attname = r->>'key'),
           -- each referencing row looks its old key up in the crosswalk by the crosswalk's key
           jsonb_build_object('source_tag', r->>'tag', 'key', r->>'key',
               'analyze', jsonb_build_array('customer_unify.id_map'),
               'batch_first', customer_unify._merge_batch_keys(w.rel, r->>'key', true) || w.work,
               'batch', customer_unify._merge_batch_keys(w.rel, r->>'key', false) || w.work)
      FROM jsonb_array_elements(m.spec->'references') r, t,
           LATERAL (SELECT customer_unify._b_name((r->>'relid')::oid::regclass) AS rel) rr,
           LATERAL (SELECT rr.rel,
                           format('u AS (UPDATE ONLY %1$s x SET %2$I = (SELECT im.target_key::%3$s FROM customer_unify.id_map im '
                                  'WHERE im.migration_id = %4$s AND im.source_tag = %5$L AND im.old_key = %8$s '
                                  'AND NOT EXISTS (SELECT 1 FROM customer_unify.merge_held h WHERE h.migration_id = %4$s AND h.target_key = im.target_key)) '
                                  'FROM b WHERE x.%7$I = b.k RETURNING 1) '
                                  'SELECT (SELECT b.k FROM b ORDER BY b.k DESC LIMIT 1), (SELECT pg_catalog.count(*) FROM b) + 0 * (SELECT pg_catalog.count(*) FROM u)',
                                  rr.rel, r->>'new_column', t.key_type, m.id, r->>'source', r->>'column', r->>'key',
                                  customer_unify._merge_ref_key_sql(m, r, format('x.%I', r->>'column'))) AS work) w
$$;

-------------------------------------------------------------------------------
-- verify
-------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION customer_unify._merge_verify(m customer_unify.migration, checksums boolean DEFAULT true)
    RETURNS TABLE (check_name text, expected text, actual text, ok boolean)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    -- (the crosswalk's text of a key: the same in every session)
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = 'postgres'
AS $$
DECLARE
    t      record := customer_unify._merge_target(m);
    w      text := quote_ident(m.spec->>'work_schema');
    v_src  jsonb;
    v_dangling bigint;
    v_ref  jsonb;
    v_n    bigint;
    v_m    bigint;
    v_fk   record;
BEGIN
    IF customer_unify._relation(m.id, 'target') IS NULL THEN
        check_name := 'target_exists'; expected := 'exists'; actual := 'missing'; ok := false;
        RETURN NEXT;
        RETURN;
    END IF;
    -- what the application's writes deferred is applied first, now that the
    -- transactions they would have waited for may be over (not in a read-only
    -- transaction: then the check below counts them)
    IF to_regclass(m.spec->>'work_schema' || '.pending') IS NOT NULL
       AND current_setting('transaction_read_only') = 'off' AND m.state IN ('started', 'backfilled', 'verified', 'cut_over') THEN
        EXECUTE format('SELECT %s.drain()', w);
    END IF;
    -- every source row is in the crosswalk exactly once (its primary key makes "once")
    FOR v_src IN SELECT e FROM jsonb_array_elements(m.spec->'sources') e ORDER BY (e->>'priority')::int, e->>'tag' LOOP
        EXECUTE format('SELECT count(*), count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM customer_unify.id_map im '
                       'WHERE im.migration_id = %s AND im.source_tag = %L AND im.old_key = s.%I::text)) FROM ONLY %s s',
                       m.id, v_src->>'tag', v_src->>'key', customer_unify._b_name((v_src->>'relid')::oid::regclass))
           INTO v_n, v_m;
        IF (v_src->>'anchor')::boolean THEN
            -- the target's own rows: anchors, or rows the merge made
            EXECUTE format('SELECT count(*) FROM ONLY %s s WHERE NOT EXISTS (SELECT 1 FROM customer_unify.id_map im '
                           'WHERE im.migration_id = %s AND im.target_key = s.%I::text)',
                           customer_unify._b_name((v_src->>'relid')::oid::regclass), m.id, v_src->>'key')
               INTO v_m;
        END IF;
        check_name := format('source %s: rows not in the crosswalk', v_src->>'tag');
        expected := '0'; actual := v_m::text; ok := v_m = 0; RETURN NEXT;
        EXECUTE format('SELECT count(*) FROM customer_unify.id_map im WHERE im.migration_id = %s AND im.source_tag = %L '
                       'AND NOT EXISTS (SELECT 1 FROM ONLY %s s WHERE s.%I = im.old_key::%s)',
                       m.id, v_src->>'tag', customer_unify._b_name((v_src->>'relid')::oid::regclass), v_src->>'key', v_src->>'key_type')
           INTO v_m;
        check_name := format('source %s: crosswalk rows without their source row', v_src->>'tag');
        expected := '0'; actual := v_m::text; ok := v_m = 0; RETURN NEXT;
    END LOOP;
    -- every cluster has its target row; every merged row has members
    EXECUTE format('SELECT count(DISTINCT im.target_key) FROM customer_unify.id_map im WHERE im.migration_id = %s '
                   'AND NOT EXISTS (SELECT 1 FROM ONLY %s t WHERE t.%I = im.target_key::%s) '
                   'AND NOT EXISTS (SELECT 1 FROM customer_unify.merge_held h WHERE h.migration_id = im.migration_id AND h.target_key = im.target_key)',
                   m.id, t.name, t.key, t.key_type)
       INTO v_m;
    check_name := 'clusters without a target row'; expected := '0'; actual := v_m::text; ok := v_m = 0; RETURN NEXT;
    SELECT count(*) INTO v_m FROM customer_unify.merge_held h WHERE h.migration_id = m.id;
    check_name := 'clusters held for review'; expected := '0'; actual := v_m::text; ok := v_m = 0; RETURN NEXT;
    -- rows an application's write deferred rather than wait (drain() and rematch(name) apply them)
    IF to_regclass(m.spec->>'work_schema' || '.pending') IS NOT NULL THEN
        EXECUTE format('SELECT count(DISTINCT (p.src, p.skey)) FROM %s.pending p', w) INTO v_m;
        check_name := 'rows deferred, not matched yet'; expected := '0'; actual := v_m::text; ok := v_m = 0; RETURN NEXT;
    END IF;
    EXECUTE format('SELECT count(*) FROM %s.merged_rows t WHERE NOT EXISTS (SELECT 1 FROM customer_unify.id_map im '
                   'WHERE im.migration_id = %s AND im.target_key = t.%I::text)', w, m.id, t.key)
       INTO v_m;
    check_name := 'merged rows without source rows'; expected := '0'; actual := v_m::text; ok := v_m = 0; RETURN NEXT;
    -- no usable match key links two target rows, one of them merged (a
    -- missed merge); rows kept apart on purpose (a "never" decision, two rows
    -- of a duplicate-free source, two anchors) do not count
    EXECUTE format('SELECT count(DISTINCT (a.rule, a.mkey)) FROM %1$s.match_key a '
                   'JOIN %1$s.match_key b ON b.rule = a.rule AND b.mkey = a.mkey AND (a.src, a.skey) < (b.src, b.skey) '
                   'JOIN customer_unify.id_map ia ON ia.migration_id = %2$s AND ia.source_tag = a.src AND ia.old_key = a.skey '
                   'JOIN customer_unify.id_map ib ON ib.migration_id = %2$s AND ib.source_tag = b.src AND ib.old_key = b.skey '
                   'WHERE ia.target_key <> ib.target_key AND NOT (a.src = %3$L AND b.src = %3$L) '
                   'AND a.row IS NULL '
                   'AND NOT (a.src = b.src AND a.src = ANY (%4$L::text[])) '
                   'AND (SELECT count(*) FROM %1$s.match_key c WHERE c.rule = a.rule AND c.mkey = a.mkey) <= %5$s '
                   'AND NOT EXISTS (SELECT 1 FROM customer_unify.match_decision d WHERE d.migration_id = %2$s AND d.decision = %6$L '
                   '  AND ((d.a_tag, d.a_key, d.b_tag, d.b_key) = (a.src, a.skey, b.src, b.skey) '
                   '    OR (d.a_tag, d.a_key, d.b_tag, d.b_key) = (b.src, b.skey, a.src, a.skey)))',
                   w, m.id, 'target',
                   ARRAY(SELECT e->>'tag' FROM jsonb_array_elements(m.spec->'sources') e WHERE (e->>'duplicate_free')::boolean),
                   m.spec->>'max_key_rows', 'never')
       INTO v_m;
    check_name := 'match keys shared by two target rows'; expected := '0'; actual := v_m::text; ok := v_m = 0; RETURN NEXT;
    -- the merged rows hold what survivorship chooses now
    RETURN QUERY SELECT 'survivorship: ' || c.check_name, c.expected, c.actual, c.ok FROM customer_unify._compare(
        (quote_ident(m.spec->>'work_schema') || '.stored_survivors')::regclass, 's.tkey',
        (quote_ident(m.spec->>'work_schema') || '.merged_rows')::regclass, format('t.%I::text', t.key),
        format('t.%I::text = s.tkey', t.key),
        -- where survivorship has no value, a column's default stood in (recompute)
        (SELECT jsonb_agg(jsonb_build_object('name', c2,
                    'left', CASE WHEN a.atthasdef THEN format('coalesce(s.%I, t.%I)', c2, c2) ELSE format('s.%I', c2) END,
                    'right', format('t.%I', c2)) ORDER BY c2)
           FROM jsonb_object_keys(m.spec->'target'->'columns') c2
           LEFT JOIN pg_attribute a ON a.attrelid = customer_unify._relation(m.id, 'target') AND a.attname = c2),
        checksums) c;
    -- references: every row's new column is its old key's target, and the FK holds
    FOR v_ref IN SELECT e FROM jsonb_array_elements(m.spec->'references') e ORDER BY (e->>'n')::int LOOP
        -- (each value by the source row it names, as the re-pointing finds it; a
        -- value that names none has nothing to be re-pointed to, and finalize
        -- would drop the only column that still holds it)
        EXECUTE format('SELECT count(*) FILTER (WHERE k.k IS NOT NULL AND x.%3$I IS DISTINCT FROM '
                       '(SELECT im.target_key::%4$s FROM customer_unify.id_map im WHERE im.migration_id = %5$s '
                       'AND im.source_tag = %6$L AND im.old_key = k.k '
                       'AND NOT EXISTS (SELECT 1 FROM customer_unify.merge_held h WHERE h.migration_id = im.migration_id AND h.target_key = im.target_key))), '
                       'count(*) FILTER (WHERE k.k IS NULL) '
                       'FROM ONLY %1$s x CROSS JOIN LATERAL (SELECT %7$s AS k) k WHERE x.%2$I IS NOT NULL',
                       customer_unify._b_name((v_ref->>'relid')::oid::regclass), v_ref->>'column', v_ref->>'new_column',
                       t.key_type, m.id, v_ref->>'source', customer_unify._merge_ref_key_sql(m, v_ref, format('x.%I', v_ref->>'column')))
           INTO v_m, v_dangling;
        check_name := format('reference %s.%s: rows not re-pointed', (v_ref->>'relid')::oid::regclass::text, v_ref->>'column');
        expected := '0'; actual := v_m::text; ok := v_m = 0; RETURN NEXT;
        check_name := format('reference %s.%s: values that name no %s row', (v_ref->>'relid')::oid::regclass::text, v_ref->>'column', v_ref->>'source');
        -- (where the spec allows them, they are counted and left alone)
        expected := CASE WHEN v_ref->>'unresolved' = 'allow' THEN 'any (allowed)' ELSE '0' END;
        actual := v_dangling::text; ok := v_dangling = 0 OR v_ref->>'unresolved' = 'allow'; RETURN NEXT;
        SELECT c.convalidated INTO v_fk FROM pg_constraint c
         WHERE c.conrelid = (v_ref->>'relid')::oid AND c.conname = v_ref->>'fk';
        check_name := format('reference %s.%s: foreign key', (v_ref->>'relid')::oid::regclass::text, v_ref->>'new_column');
        expected := 'validated';
        actual := CASE WHEN v_fk IS NULL THEN 'absent' WHEN v_fk.convalidated THEN 'validated' ELSE 'not validated' END;
        ok := expected = actual; RETURN NEXT;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION customer_unify._merge_dependents(m customer_unify.migration)
    RETURNS TABLE (object_type text, object_name text, dependency text, blocks_finalize boolean)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    -- triggers of the application on the sources (e.g. one that writes between them)
    SELECT 'trigger', format('%s on %s', t.tgname, t.tgrelid::regclass), pg_get_triggerdef(t.oid), false
      FROM pg_trigger t JOIN jsonb_array_elements(m.spec->'sources') s ON (s->>'relid')::oid = t.tgrelid
     WHERE NOT t.tgisinternal AND t.tgname NOT LIKE format('customer\_unify\_%s\_%%', m.id)
    UNION ALL
    -- views and functions reading the sources (they follow the table into the archive at finalize)
    SELECT 'view', d.objid::regclass::text, format('reads %s', d.refobjid::regclass), false
      FROM pg_depend d JOIN pg_rewrite rw ON rw.oid = d.objid
      JOIN jsonb_array_elements(m.spec->'sources') s ON (s->>'relid')::oid = d.refobjid
     WHERE d.classid = 'pg_rewrite'::regclass AND rw.ev_class <> d.refobjid
       AND NOT (s->>'anchor')::boolean
    UNION ALL
    -- the reference columns finalize drops
    SELECT 'column', format('%s.%s', (r->>'relid')::oid::regclass, r->>'column'),
           format('re-pointed to %s; dropped by finalize (kept in the archive)', r->>'new_column'), false
      FROM jsonb_array_elements(m.spec->'references') r
$$;

CREATE OR REPLACE FUNCTION customer_unify._merge_describe(m customer_unify.migration)
    RETURNS TABLE (target text, columns text[])
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (customer_unify._merge_target(m)).name,
           ARRAY(SELECT k FROM jsonb_object_keys(m.spec->'target'->'columns') k ORDER BY k)
$$;

-- A merge carries no row-level security or privileges of its own: the
-- target keeps its own, the compatibility views take their source's at cutover.
CREATE OR REPLACE FUNCTION customer_unify._merge_security_steps(m customer_unify.migration)
    RETURNS SETOF customer_unify.step_def
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM customer_unify._b_step(NULL) WHERE false
$$;

-------------------------------------------------------------------------------
-- Public functions of merge
-------------------------------------------------------------------------------
-- Values survivorship overrode: per merged person and column, the kept
-- value and where it came from, and every other value with its source.
CREATE OR REPLACE FUNCTION customer_unify.conflicts(name text)
    RETURNS TABLE (target_key text, column_name text, kept_value text, kept_from text, other_value text, other_from text)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    -- (the crosswalk's text of a key: the same in every session)
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = 'postgres'
AS $$
DECLARE
    m customer_unify.migration := customer_unify._get(conflicts.name);
    t record;
    c text;
    v_members text;
BEGIN
    IF m.kind <> 'merge' THEN
        RAISE EXCEPTION 'migration "%" is a %, not a merge', m.name, m.kind USING ERRCODE = 'wrong_object_type';
    END IF;
    t := customer_unify._merge_target(m);
    v_members := (SELECT string_agg(customer_unify._merge_member_select(m, s), ' UNION ALL ')
                    FROM jsonb_array_elements(m.spec->'sources') s);
    FOR c IN SELECT k FROM jsonb_object_keys(m.spec->'target'->'columns') k ORDER BY k LOOP
        RETURN QUERY EXECUTE format(
            'WITH mem AS (%s) '
            'SELECT mem.tkey, %L::text, tv.v, ('
            '         SELECT string_agg(format(%L, k.src, k.skey), %L ORDER BY k.prio, k.src, k.skey) FROM mem k '
            '          WHERE k.tkey = mem.tkey AND k.%I::text IS NOT DISTINCT FROM tv.v), '
            '       mem.%I::text, format(%L, mem.src, mem.skey) '
            '  FROM mem JOIN ONLY %s t ON t.%I::text = mem.tkey '
            '  CROSS JOIN LATERAL (SELECT t.%I::text AS v) tv '
            ' WHERE mem.%I IS NOT NULL AND mem.%I::text IS DISTINCT FROM tv.v '
            ' ORDER BY 1, 6', v_members, c, '%s:%s', ', ', c, c, '%s:%s', t.name, t.key, c, c, c);
    END LOOP;
END
$$;
COMMENT ON FUNCTION customer_unify.conflicts(text) IS
    'Every value of a source row that differs from what the merged target row kept: target key, column, kept value and its sources, the other value and its source.';

-- Record that two source rows are never (or always) the same person; the
-- matcher obeys it from the next write or re-match of either row.
CREATE OR REPLACE FUNCTION customer_unify.decide(name text, decision text, a_tag text, a_key text, b_tag text, b_key text)
    RETURNS void
    LANGUAGE c
    SET search_path = pg_catalog, pg_temp
    -- (the crosswalk's text of a key: the same in every session)
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = 'postgres'
    AS 'MODULE_PATHNAME', 'cu_match_decide';
COMMENT ON FUNCTION customer_unify.decide(text, text, text, text, text, text) IS
    'Stores a manual decision about two source rows of a merge (never: keep them apart; always: merge them); it survives re-runs of the match.';

-- Split a wrongly merged person: one row out of its cluster (source_tag and
-- old_key given), or every row into a cluster of its own; "never"
-- decisions keep them apart from then on, and their references follow.
CREATE OR REPLACE FUNCTION customer_unify.unmerge(name text, target_key text, source_tag text DEFAULT NULL, old_key text DEFAULT NULL)
    RETURNS TABLE (row_tag text, row_key text, new_target_key text, held boolean)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    -- (the crosswalk's text of a key: the same in every session)
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = 'postgres'
AS $$
DECLARE
    m customer_unify.migration := customer_unify._get(unmerge.name);
    w text;
    r record;
    p record;
    v_moved text[] := '{}';
BEGIN
    IF m.kind <> 'merge' THEN
        RAISE EXCEPTION 'migration "%" is a %, not a merge', m.name, m.kind USING ERRCODE = 'wrong_object_type';
    END IF;
    IF m.state NOT IN ('started', 'backfilled', 'verified', 'cut_over') THEN
        RAISE EXCEPTION 'cannot unmerge in migration "%": it is %', m.name, m.state
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'unmerge works while the merge is live (started .. cut_over).';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM customer_unify.id_map im WHERE im.migration_id = m.id AND im.target_key = unmerge.target_key) THEN
        RAISE EXCEPTION 'merge "%" has no person with target key %', m.name, unmerge.target_key
            USING ERRCODE = 'no_data_found';
    END IF;
    IF (unmerge.source_tag IS NULL) <> (unmerge.old_key IS NULL) THEN
        RAISE EXCEPTION 'give both source_tag and old_key, or neither' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF unmerge.source_tag IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM customer_unify.id_map im WHERE im.migration_id = m.id AND im.target_key = unmerge.target_key
           AND im.source_tag = unmerge.source_tag AND im.old_key = unmerge.old_key) THEN
        RAISE EXCEPTION 'row %:% is not part of person %', unmerge.source_tag, unmerge.old_key, unmerge.target_key
            USING ERRCODE = 'no_data_found';
    END IF;
    IF unmerge.source_tag = 'target' THEN
        RAISE EXCEPTION 'the surviving table''s own row % cannot leave its person', unmerge.old_key
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Unmerge the other rows from it instead.';
    END IF;
    w := quote_ident(m.spec->>'work_schema');
    -- the rows that leave: the one named, or all but the first (an anchor first)
    FOR r IN SELECT im.source_tag AS tag, im.old_key AS key FROM customer_unify.id_map im
              WHERE im.migration_id = m.id AND im.target_key = unmerge.target_key
                AND (unmerge.source_tag IS NULL OR (im.source_tag, im.old_key) = (unmerge.source_tag, unmerge.old_key))
              ORDER BY im.source_tag = 'target' DESC,
                       (SELECT (e->>'priority')::int FROM jsonb_array_elements(m.spec->'sources') e WHERE e->>'tag' = im.source_tag),
                       im.source_tag, im.old_key
             OFFSET CASE WHEN unmerge.source_tag IS NULL THEN 1 ELSE 0 END LOOP
        -- never again with any other row of the person
        FOR p IN SELECT o.source_tag, o.old_key FROM customer_unify.id_map o
                  WHERE o.migration_id = m.id AND o.target_key = unmerge.target_key
                    AND (o.source_tag, o.old_key) <> (r.tag, r.key) LOOP
            PERFORM customer_unify.decide(m.name, 'never', r.tag, r.key, p.source_tag, p.old_key);
        END LOOP;
        v_moved := v_moved || (r.tag || ':' || r.key);
    END LOOP;
    FOR r IN SELECT split_part(x, ':', 1) AS tag, substr(x, strpos(x, ':') + 1) AS key FROM unnest(v_moved) x LOOP
        PERFORM customer_unify._id_map_delete(m.id, r.tag, ARRAY[r.key]);
        PERFORM customer_unify._merge_apply(m.id, r.tag, ARRAY[r.key], NULL);
    END LOOP;
    PERFORM customer_unify._merge_apply(m.id, 'target', NULL, ARRAY[unmerge.target_key]);
    RETURN QUERY SELECT im.source_tag, im.old_key, im.target_key,
                        EXISTS (SELECT 1 FROM customer_unify.merge_held h WHERE h.migration_id = m.id AND h.target_key = im.target_key)
                   FROM customer_unify.id_map im
                  WHERE im.migration_id = m.id AND (im.source_tag || ':' || im.old_key) = ANY (v_moved)
                  ORDER BY 1, 2;
END
$$;
COMMENT ON FUNCTION customer_unify.unmerge(text, text, text, text) IS
    'Takes one row (or every row) out of a merged person: each is matched again, kept apart from the rest by "never" decisions, and its references follow; before finalize.';

-- Match rows again: after decisions, the rows of held clusters (no rows
-- named), or the rows named.
CREATE OR REPLACE FUNCTION customer_unify.rematch(name text, source_tag text DEFAULT NULL, old_keys text[] DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    -- (the crosswalk's text of a key: the same in every session)
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = 'postgres'
AS $$
DECLARE
    m customer_unify.migration := customer_unify._get(rematch.name);
    r record;
    v_more bigint;
    v_n bigint := 0;
BEGIN
    IF m.kind <> 'merge' THEN
        RAISE EXCEPTION 'migration "%" is a %, not a merge', m.name, m.kind USING ERRCODE = 'wrong_object_type';
    END IF;
    IF m.state NOT IN ('started', 'backfilled', 'verified', 'cut_over') THEN
        RAISE EXCEPTION 'cannot rematch in migration "%": it is %', m.name, m.state
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF (rematch.source_tag IS NULL) <> (rematch.old_keys IS NULL)
       OR (rematch.source_tag IS NOT NULL AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(m.spec->'sources') e WHERE e->>'tag' = rematch.source_tag)) THEN
        RAISE EXCEPTION 'give a source tag of merge "%" and its keys, or neither', m.name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR r IN SELECT im.source_tag AS tag, array_agg(im.old_key ORDER BY im.old_key) AS keys
               FROM customer_unify.id_map im
              WHERE im.migration_id = m.id
                AND (rematch.source_tag IS NULL
                     AND im.target_key IN (SELECT h.target_key FROM customer_unify.merge_held h WHERE h.migration_id = m.id))
              GROUP BY im.source_tag
             UNION ALL
             SELECT rematch.source_tag, rematch.old_keys WHERE rematch.source_tag IS NOT NULL
    LOOP
        PERFORM customer_unify._merge_apply(m.id, r.tag, r.keys, NULL);
        v_n := v_n + cardinality(r.keys);
    END LOOP;
    IF rematch.source_tag IS NULL THEN
        -- and what the application's writes deferred, and references written meanwhile
        EXECUTE format('SELECT %1$s.drain() + %1$s.repoint()', quote_ident(m.spec->>'work_schema')) INTO v_more;
        v_n := v_n + v_more;
    END IF;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION customer_unify.rematch(text, text, text[]) IS
    'Matches rows of a merge again (by default the rows of clusters held for review), e.g. after customer_unify.decide().';

CREATE OR REPLACE FUNCTION customer_unify.purge(name text) RETURNS text
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT customer_unify._run_phase((customer_unify._get(purge.name)).id, 'purge')
$$;
COMMENT ON FUNCTION customer_unify.purge(text) IS
    'After finalize: drops what the migration kept for safety (a merge''s archive schema, compatibility views and working state).';

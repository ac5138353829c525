-------------------------------------------------------------------------------
-- kit.sql: the table kit's operations (1.3: updated_at, normalize_on_write).  Each is a
-- migration kind on the engine like split and merge: a spec validator, a
-- step generator, a copy plan (none: nothing is copied), its verify checks,
-- dependents and description.  start adds what the kit item needs,
-- rollback takes it away; finalize leaves it in place and ends the
-- migration (the table is then free for other migrations).
-------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION customer_unify.touch_updated_at() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_touch_updated_at';
COMMENT ON FUNCTION customer_unify.touch_updated_at() IS
    'BEFORE UPDATE row trigger of the kit''s updated_at: stamps the column (argument 1) with the clock (2: transaction, statement, clock) only when another column changed, keeps an explicit assignment (3: keep / overwrite) and the old value of a protected column (4, '''' for none).';

-- The name of the kit's trigger for migration id: customer_unify_<id>_<item>
-- (the DDL guard knows the engine's triggers by that prefix).
CREATE OR REPLACE FUNCTION customer_unify._kit_trigger_name(p_id bigint, p_item text DEFAULT 'updated_at') RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    SET search_path = pg_catalog, pg_temp
    RETURN 'customer_unify_' || p_id || '_' || p_item;

-- BEFORE row triggers of the table on the events p_events (INSERT 4,
-- UPDATE 16) that fire after the kit's (their name sorts after p_after):
-- what they change the kit's trigger does not see.
CREATE OR REPLACE FUNCTION customer_unify._kit_later_triggers(p_table regclass, p_after text, p_events int DEFAULT 16)
    RETURNS SETOF name
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.tgname
      FROM pg_trigger t
     WHERE t.tgrelid = p_table AND NOT t.tgisinternal AND t.tgname > p_after
       AND (t.tgtype & 1) <> 0      -- FOR EACH ROW
       AND (t.tgtype & 66) = 2      -- BEFORE, not INSTEAD OF
       AND (t.tgtype & p_events) <> 0
     ORDER BY t.tgname
$$;

-- The table a kit item is planned on, checked: it exists, the caller acts
-- for its owner (42501, before anything else is told), an ordinary table.
CREATE OR REPLACE FUNCTION customer_unify._kit_table(p_args jsonb, OUT source regclass, OUT relname name, OUT nspname name)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rel record;
BEGIN
    source := (p_args->>'source')::oid::regclass;
    SELECT c.relname, c.relkind, c.relowner, n.nspname INTO v_rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = source;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'relation with OID % does not exist', p_args->>'source' USING ERRCODE = 'undefined_table';
    END IF;
    IF NOT pg_has_role(v_rel.relowner, 'MEMBER') THEN
        RAISE EXCEPTION 'must be owner of table %', source::text
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The kit adds a trigger to the table, which only its owner may do.';
    END IF;
    IF v_rel.relkind <> 'r' THEN
        RAISE EXCEPTION '% is not an ordinary table', source::text
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'The kit works on ordinary tables (a partitioned table: plan it on each partition).';
    END IF;
    relname := v_rel.relname; nspname := v_rel.nspname;
END
$$;

-- A column the kit item names, checked: it exists (42703), not generated (22023).
CREATE OR REPLACE FUNCTION customer_unify._kit_column(p_source regclass, p_column text, OUT atttypid regtype)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_att record;
BEGIN
    SELECT a.atttypid, a.attgenerated INTO v_att FROM pg_attribute a
     WHERE a.attrelid = p_source AND a.attname = p_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'column "%" of % does not exist', p_column, p_source::text USING ERRCODE = 'undefined_column';
    END IF;
    IF v_att.attgenerated <> '' THEN
        RAISE EXCEPTION 'column "%" of % is a generated column', p_column, p_source::text
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    atttypid := v_att.atttypid;
END
$$;

-- A kit item's plan for the engine: its table is its only relation, and
-- the DDL guard keeps the columns it names while the migration is live.
CREATE OR REPLACE FUNCTION customer_unify._kit_plan(p_source regclass, p_relname name, p_nspname name, p_spec jsonb,
                                                    p_columns text[], p_args jsonb)
    RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'source', p_source::oid,
        'spec', p_spec || jsonb_build_object(
            'source_schema',  p_nspname,
            'source_table',   p_relname,
            'source_columns', to_jsonb(ARRAY(SELECT c FROM unnest(p_columns) c WHERE c IS NOT NULL)),
            'args',           p_args - 'source'),
        'relations', jsonb_build_array(jsonb_build_object('tag', 'source', 'role', 'source', 'relid', p_source::oid)),
        'maps', '[]'::jsonb)
$$;

-- Refuse a second kit trigger of one function on the table (42710).
CREATE OR REPLACE FUNCTION customer_unify._kit_refuse_second(p_source regclass, p_function regprocedure, p_what text)
    RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = p_source AND NOT t.tgisinternal AND t.tgfoid = p_function) THEN
        RAISE EXCEPTION '% already has a customer_unify % trigger', p_source::text, p_what
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Roll back (or drop the trigger of) the migration that made it first.';
    END IF;
END
$$;

-- The steps of a kit item that is one trigger: start creates it (its
-- inverse drops it), cutover is the verify gate; nothing is copied.
CREATE OR REPLACE FUNCTION customer_unify._kit_trigger_steps(m customer_unify.migration, p_create text, p_trigger text)
    RETURNS TABLE (phase text, seq int, statement text, inverse text,
                   lock_mode text, lock_relation text, rows_estimate bigint, registers jsonb)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_src text := customer_unify._b_name(m.source);
BEGIN
    phase := 'start'; seq := 1; rows_estimate := 0; registers := NULL;
    statement := p_create;
    inverse := format('DROP TRIGGER IF EXISTS %I ON %s', p_trigger, v_src);
    lock_mode := 'SHARE ROW EXCLUSIVE'; lock_relation := v_src;
    RETURN NEXT;
    phase := 'cutover'; seq := 1; inverse := NULL; lock_mode := NULL; lock_relation := NULL;
    statement := format('SELECT customer_unify._gate_verify(%s)', m.id);
    RETURN NEXT;
END
$$;

-- verify's check that the kit's trigger is there and fires (as ordinary triggers do).
CREATE OR REPLACE FUNCTION customer_unify._kit_trigger_check(m customer_unify.migration, p_trigger text)
    RETURNS TABLE (check_name text, expected text, actual text, ok boolean)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('trigger %I on %s', p_trigger, m.source::regclass::text), 'enabled',
           coalesce((SELECT CASE t.tgenabled WHEN 'D' THEN 'disabled' WHEN 'R' THEN 'enabled for replica only'
                                             WHEN 'A' THEN 'enabled always' ELSE 'enabled' END
                       FROM pg_trigger t WHERE t.tgrelid = m.source AND t.tgname = p_trigger), 'missing') AS actual,
           coalesce((SELECT t.tgenabled = 'O' FROM pg_trigger t WHERE t.tgrelid = m.source AND t.tgname = p_trigger), false)
$$;

-- Plan a kit item of kind p_kind on a column of a table (the API functions' body).
CREATE OR REPLACE FUNCTION customer_unify._kit_create(p_kind text, p_name text, p_source regclass, p_column text, p_args jsonb)
    RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_name IS NULL OR p_source IS NULL OR p_column IS NULL THEN
        RAISE EXCEPTION 'name, source and column_name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN customer_unify._create_migration(p_kind, p_name,
               p_args || jsonb_build_object('source', p_source::oid, 'column', p_column));
END
$$;

-- What nothing of the kit has: a copy, security to carry.
CREATE OR REPLACE FUNCTION customer_unify._kit_copy_plan(m customer_unify.migration)
    RETURNS TABLE (stream text, key_type regtype, plan jsonb)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT NULL::text, NULL::regtype, NULL::jsonb WHERE false
$$;

CREATE OR REPLACE FUNCTION customer_unify._kit_security_steps(m customer_unify.migration)
    RETURNS SETOF customer_unify.step_def
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM customer_unify._b_step(NULL) WHERE false
$$;

-- A kit item's target is its table, its columns those the guard keeps.
CREATE OR REPLACE FUNCTION customer_unify._kit_describe(m customer_unify.migration)
    RETURNS TABLE (target text, columns text[])
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.source::regclass::text, ARRAY(SELECT jsonb_array_elements_text(m.spec->'source_columns'))
$$;

-------------------------------------------------------------------------------
-- updated_at
-------------------------------------------------------------------------------
-- Validate an updated_at kit item and return its plan for the engine.
-- args: source (oid), column, clock, keep_explicit, created_column.
CREATE OR REPLACE FUNCTION customer_unify._kit_updated_at_validate(p_name text, p_args jsonb)
    RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t         record := customer_unify._kit_table(p_args);
    v_column  text := coalesce(p_args->>'column', 'updated_at');
    v_clock   text := coalesce(p_args->>'clock', 'transaction');
    v_keep    boolean := coalesce((p_args->>'keep_explicit')::boolean, true);
    v_created text := p_args->>'created_column';
    v_type    regtype;
    v_later   text;
BEGIN
    IF v_clock NOT IN ('transaction', 'statement', 'clock') THEN
        RAISE EXCEPTION 'clock must be ''transaction'', ''statement'' or ''clock'', not "%"', v_clock
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'transaction: now(), the same for every row of a transaction; statement: statement_timestamp(); clock: clock_timestamp().';
    END IF;
    v_type := customer_unify._kit_column(t.source, v_column);
    IF v_type NOT IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype) THEN
        RAISE EXCEPTION 'column "%" of % is of type %, not timestamptz, timestamp or date', v_column, t.source::text, v_type
            USING ERRCODE = 'datatype_mismatch';
    END IF;
    IF v_created IS NOT NULL THEN
        PERFORM customer_unify._kit_column(t.source, v_created);
    END IF;
    IF v_created = v_column THEN
        RAISE EXCEPTION 'created_column and column are both "%"', v_column
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'created_column names a column that keeps its value (created_at); column is the one stamped.';
    END IF;
    PERFORM customer_unify._kit_refuse_second(t.source, 'customer_unify.touch_updated_at()'::regprocedure, 'updated_at');
    -- told, not refused: triggers that fire after the kit's
    v_later := (SELECT string_agg(quote_ident(x), ', ') FROM customer_unify._kit_later_triggers(t.source, 'customer_unify_') x);
    IF v_later IS NOT NULL THEN
        RAISE NOTICE 'BEFORE UPDATE triggers of % fire after the updated_at trigger: %', t.source::text, v_later
            USING DETAIL = 'Row triggers fire in name order; what these change does not stamp the column.';
    END IF;
    RETURN customer_unify._kit_plan(t.source, t.relname, t.nspname,
               jsonb_build_object('column', v_column, 'clock', v_clock, 'keep_explicit', v_keep, 'created_column', v_created),
               ARRAY[v_column, v_created], p_args);
END
$$;

CREATE OR REPLACE FUNCTION customer_unify.updated_at(
    name           text,
    source         regclass,
    column_name    text DEFAULT 'updated_at',
    clock          text DEFAULT 'transaction',
    keep_explicit  boolean DEFAULT true,
    created_column text DEFAULT NULL)
    RETURNS bigint
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT customer_unify._kit_create('updated_at', updated_at.name, updated_at.source, updated_at.column_name,
               jsonb_build_object('clock', updated_at.clock, 'keep_explicit', updated_at.keep_explicit,
                                  'created_column', updated_at.created_column))
$$;
COMMENT ON FUNCTION customer_unify.updated_at(text, regclass, text, text, boolean, text) IS
    'Plans a C trigger that stamps column_name on UPDATE only when another column changed (keep_explicit: an UPDATE that sets it itself keeps its value; created_column keeps its old value). Validates everything; creates nothing.';

CREATE OR REPLACE FUNCTION customer_unify._kit_updated_at_steps(m customer_unify.migration)
    RETURNS TABLE (phase text, seq int, statement text, inverse text,
                   lock_mode text, lock_relation text, rows_estimate bigint, registers jsonb)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    -- the columns' names from the catalog (the guard keeps them while the migration is live)
    SELECT * FROM customer_unify._kit_trigger_steps(m,
        format('CREATE TRIGGER %I BEFORE UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION customer_unify.touch_updated_at(%L, %L, %L, %L)',
               customer_unify._kit_trigger_name(m.id), customer_unify._b_name(m.source),
               (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = m.source AND a.attname = m.spec->>'column' AND NOT a.attisdropped),
               m.spec->>'clock', CASE WHEN (m.spec->>'keep_explicit')::boolean THEN 'keep' ELSE 'overwrite' END,
               coalesce((SELECT a.attname FROM pg_attribute a WHERE a.attrelid = m.source AND a.attname = m.spec->>'created_column'
                            AND NOT a.attisdropped), '')),
        customer_unify._kit_trigger_name(m.id))
$$;

CREATE OR REPLACE FUNCTION customer_unify._kit_updated_at_verify(m customer_unify.migration, checksums boolean DEFAULT true)
    RETURNS TABLE (check_name text, expected text, actual text, ok boolean)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM customer_unify._kit_trigger_check(m, customer_unify._kit_trigger_name(m.id))
    UNION ALL
    SELECT 'BEFORE UPDATE row triggers that fire after it', 'none', coalesce(l.names, 'none'), l.names IS NULL
      FROM (SELECT string_agg(quote_ident(x), ', ') AS names
              FROM customer_unify._kit_later_triggers(m.source, customer_unify._kit_trigger_name(m.id)) x) l
$$;

CREATE OR REPLACE FUNCTION customer_unify._kit_updated_at_dependents(m customer_unify.migration)
    RETURNS TABLE (object_type text, object_name text, dependency text, blocks_finalize boolean)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'trigger', format('%I on %s', t, m.source::regclass), 'fires after the updated_at trigger: its changes do not stamp', false
      FROM customer_unify._kit_later_triggers(m.source, customer_unify._kit_trigger_name(m.id)) t
$$;

-------------------------------------------------------------------------------
-- normalize_on_write
-------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION customer_unify.normalize_on_write() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_normalize_on_write';
COMMENT ON FUNCTION customer_unify.normalize_on_write() IS
    'BEFORE INSERT OR UPDATE row trigger of the kit''s normalize_on_write: stores normalize_email / normalize_phone of the column (argument 1) as written (2: email / phone, 3: the default region or ''''), and for what does not normalize (4) rejects it (23514), keeps it or stores NULL. An UPDATE that leaves the column as it was is left alone.';

-- Validate a normalize_on_write kit item.  args: source (oid), column,
-- kind ('email' | 'phone'), region, on_invalid ('reject' | 'keep' | 'null').
CREATE OR REPLACE FUNCTION customer_unify._kit_normalize_validate(p_name text, p_args jsonb)
    RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t         record := customer_unify._kit_table(p_args);
    v_column  text := p_args->>'column';
    v_kind    text := p_args->>'kind';
    v_region  text := upper(btrim(coalesce(p_args->>'region', '')));
    v_invalid text := coalesce(p_args->>'on_invalid', 'reject');
    v_type    regtype;
BEGIN
    IF v_kind IS NULL OR v_kind NOT IN ('email', 'phone') THEN
        RAISE EXCEPTION 'kind must be ''email'' or ''phone'', not "%"', coalesce(v_kind, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_invalid NOT IN ('reject', 'keep', 'null') THEN
        RAISE EXCEPTION 'on_invalid must be ''reject'', ''keep'' or ''null'', not "%"', v_invalid
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'reject: the write fails (23514) naming the value; keep: stored as typed; null: stored as NULL.';
    END IF;
    IF v_kind = 'email' AND v_region <> '' THEN
        RAISE EXCEPTION 'a region is for phone numbers, not e-mail addresses' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_region <> '' THEN
        PERFORM customer_unify.normalize_phone('+14155550100', v_region);   -- 22023 for a region libphonenumber does not know
    END IF;
    v_type := customer_unify._kit_column(t.source, v_column);
    IF v_type NOT IN ('text'::regtype, 'varchar'::regtype)
       AND (SELECT y.typname FROM pg_type y WHERE y.oid = v_type) <> 'citext' THEN
        RAISE EXCEPTION 'column "%" of % is of type %, not text, varchar or citext', v_column, t.source::text, v_type
            USING ERRCODE = 'datatype_mismatch';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_trigger x WHERE x.tgrelid = t.source AND NOT x.tgisinternal
                  AND x.tgfoid = 'customer_unify.normalize_on_write()'::regprocedure
                  AND split_part(encode(x.tgargs, 'escape'), '\000', 1) = v_column) THEN
        RAISE EXCEPTION 'column "%" of % already has a customer_unify normalize_on_write trigger', v_column, t.source::text
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Roll back (or drop the trigger of) the migration that made it first.';
    END IF;
    RETURN customer_unify._kit_plan(t.source, t.relname, t.nspname,
               jsonb_build_object('column', v_column, 'kind', v_kind, 'region', v_region, 'on_invalid', v_invalid),
               ARRAY[v_column], p_args);
END
$$;

CREATE OR REPLACE FUNCTION customer_unify.normalize_on_write(
    name       text,
    source     regclass,
    column_name text,
    kind       text,
    region     text DEFAULT '',
    on_invalid text DEFAULT 'reject')
    RETURNS bigint
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT customer_unify._kit_create('normalize_on_write', normalize_on_write.name, normalize_on_write.source,
               normalize_on_write.column_name,
               jsonb_build_object('kind', normalize_on_write.kind, 'region', normalize_on_write.region,
                                  'on_invalid', normalize_on_write.on_invalid))
$$;
COMMENT ON FUNCTION customer_unify.normalize_on_write(text, regclass, text, text, text, text) IS
    'Plans a C trigger that stores normalize_email / normalize_phone of column_name on every INSERT and every UPDATE that changes it (on_invalid: reject, keep or null what does not normalize). Rows written before are not rewritten; verify counts them. Validates everything; creates nothing.';

CREATE OR REPLACE FUNCTION customer_unify._kit_normalize_steps(m customer_unify.migration)
    RETURNS TABLE (phase text, seq int, statement text, inverse text,
                   lock_mode text, lock_relation text, rows_estimate bigint, registers jsonb)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM customer_unify._kit_trigger_steps(m,
        format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION customer_unify.normalize_on_write(%L, %L, %L, %L)',
               customer_unify._kit_trigger_name(m.id, 'normalize'), customer_unify._b_name(m.source),
               (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = m.source AND a.attname = m.spec->>'column' AND NOT a.attisdropped),
               m.spec->>'kind', m.spec->>'region', m.spec->>'on_invalid'),
        customer_unify._kit_trigger_name(m.id, 'normalize'))
$$;

-- verify: the trigger, and the rows written before it that are not in
-- normal form (start does not rewrite them: what was typed stays until the
-- DBA decides; a unique index on the column wants them normalized first).
CREATE OR REPLACE FUNCTION customer_unify._kit_normalize_verify(m customer_unify.migration, checksums boolean DEFAULT true)
    RETURNS TABLE (check_name text, expected text, actual text, ok boolean)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_col   text := (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = m.source AND a.attname = m.spec->>'column'
                        AND NOT a.attisdropped);
    v_key   text := CASE m.spec->>'kind'
                        WHEN 'email' THEN format('customer_unify.normalize_email(%I::text)', v_col)
                        ELSE format('customer_unify.normalize_phone(%I::text, %L)', v_col, m.spec->>'region') END;
    v_count bigint;
BEGIN
    RETURN QUERY SELECT * FROM customer_unify._kit_trigger_check(m, customer_unify._kit_trigger_name(m.id, 'normalize'));
    EXECUTE format('SELECT count(*) FROM ONLY %s WHERE %I IS NOT NULL AND %s IS DISTINCT FROM %I::text',
                   customer_unify._b_name(m.source), v_col, v_key, v_col) INTO v_count;
    check_name := format('rows whose %s is not in normal form (written before the trigger%s)', v_col,
                         CASE WHEN m.spec->>'on_invalid' = 'keep' THEN ', or kept as typed' ELSE '' END);
    expected := '0'; actual := v_count::text; ok := v_count = 0;
    RETURN NEXT;
END
$$;

CREATE OR REPLACE FUNCTION customer_unify._kit_normalize_dependents(m customer_unify.migration)
    RETURNS TABLE (object_type text, object_name text, dependency text, blocks_finalize boolean)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'trigger', format('%I on %s', t, m.source::regclass), 'fires after the normalize trigger: what it writes is not normalized', false
      FROM customer_unify._kit_later_triggers(m.source, customer_unify._kit_trigger_name(m.id, 'normalize'), 20) t
$$;

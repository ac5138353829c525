-------------------------------------------------------------------------------
-- kit.sql: the table kit's operations (1.3: updated_at).  Each is a
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

-- The name of the kit's trigger for migration id.
CREATE OR REPLACE FUNCTION customer_unify._kit_trigger_name(p_id bigint) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    SET search_path = pg_catalog, pg_temp
    RETURN 'customer_unify_' || p_id || '_updated_at';

-- BEFORE UPDATE row triggers of the table that fire after the kit's (their
-- name sorts after p_after): what they change does not stamp the column.
CREATE OR REPLACE FUNCTION customer_unify._kit_later_triggers(p_table regclass, p_after text) RETURNS SETOF name
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.tgname
      FROM pg_trigger t
     WHERE t.tgrelid = p_table AND NOT t.tgisinternal AND t.tgname > p_after
       AND (t.tgtype & 1) <> 0      -- FOR EACH ROW
       AND (t.tgtype & 66) = 2      -- BEFORE, not INSTEAD OF
       AND (t.tgtype & 16) <> 0     -- UPDATE
     ORDER BY t.tgname
$$;

-- Validate an updated_at kit item and return its plan for the engine.
-- args: source (oid), column, clock, keep_explicit, created_column.
CREATE OR REPLACE FUNCTION customer_unify._kit_updated_at_validate(p_name text, p_args jsonb)
    RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_source  regclass := (p_args->>'source')::oid::regclass;
    v_column  text := coalesce(p_args->>'column', 'updated_at');
    v_clock   text := coalesce(p_args->>'clock', 'transaction');
    v_keep    boolean := coalesce((p_args->>'keep_explicit')::boolean, true);
    v_created text := p_args->>'created_column';
    v_rel     record;
    v_att     record;
    v_later   text;
BEGIN
    SELECT c.relname, c.relkind, c.relowner, n.nspname INTO v_rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = v_source;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'relation with OID % does not exist', p_args->>'source' USING ERRCODE = 'undefined_table';
    END IF;
    IF NOT pg_has_role(v_rel.relowner, 'MEMBER') THEN
        RAISE EXCEPTION 'must be owner of table %', v_source::text
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The kit adds a trigger to the table, which only its owner may do.';
    END IF;
    IF v_rel.relkind <> 'r' THEN
        RAISE EXCEPTION '% is not an ordinary table', v_source::text
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'updated_at works on ordinary tables (a partitioned table: plan it on each partition).';
    END IF;
    IF v_clock NOT IN ('transaction', 'statement', 'clock') THEN
        RAISE EXCEPTION 'clock must be ''transaction'', ''statement'' or ''clock'', not "%"', v_clock
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'transaction: now(), the same for every row of a transaction; statement: statement_timestamp(); clock: clock_timestamp().';
    END IF;
    FOR v_att IN
        SELECT c.col, c.role, a.attnum, a.atttypid, a.attgenerated
          FROM (VALUES (v_column, 'column'), (v_created, 'created_column')) c(col, role)
          LEFT JOIN pg_attribute a ON a.attrelid = v_source AND a.attname = c.col AND a.attnum > 0 AND NOT a.attisdropped
         WHERE c.col IS NOT NULL
    LOOP
        IF v_att.attnum IS NULL THEN
            RAISE EXCEPTION 'column "%" of % does not exist', v_att.col, v_source::text
                USING ERRCODE = 'undefined_column';
        END IF;
        IF v_att.attgenerated <> '' THEN
            RAISE EXCEPTION 'column "%" of % is a generated column', v_att.col, v_source::text
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_att.role = 'column' AND v_att.atttypid NOT IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype) THEN
            RAISE EXCEPTION 'column "%" of % is of type %, not timestamptz, timestamp or date', v_att.col, v_source::text,
                            format_type(v_att.atttypid, NULL)
                USING ERRCODE = 'datatype_mismatch';
        END IF;
    END LOOP;
    IF v_created = v_column THEN
        RAISE EXCEPTION 'created_column and column are both "%"', v_column
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'created_column names a column that keeps its value (created_at); column is the one stamped.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = v_source AND NOT t.tgisinternal
                  AND t.tgfoid = 'customer_unify.touch_updated_at()'::regprocedure) THEN
        RAISE EXCEPTION '% already has a customer_unify updated_at trigger', v_source::text
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Roll back (or drop the trigger of) the migration that made it first.';
    END IF;
    -- told, not refused: triggers that fire after the kit's
    v_later := (SELECT string_agg(quote_ident(t), ', ') FROM customer_unify._kit_later_triggers(v_source, 'customer_unify_') t);
    IF v_later IS NOT NULL THEN
        RAISE NOTICE 'BEFORE UPDATE triggers of % fire after the updated_at trigger: %', v_source::text, v_later
            USING DETAIL = 'Row triggers fire in name order; what these change does not stamp the column.';
    END IF;
    RETURN jsonb_build_object(
        'source', v_source::oid,
        'spec', jsonb_build_object(
            'source_schema',  v_rel.nspname,
            'source_table',   v_rel.relname,
            'column',         v_column,
            'clock',          v_clock,
            'keep_explicit',  v_keep,
            'created_column', v_created,
            -- the DDL guard refuses renames and drops of these while the migration is live
            'source_columns', to_jsonb(ARRAY(SELECT c FROM unnest(ARRAY[v_column, v_created]) c WHERE c IS NOT NULL)),
            'args',           p_args - 'source'),
        'relations', jsonb_build_array(jsonb_build_object('tag', 'source', 'role', 'source', 'relid', v_source::oid)),
        'maps', '[]'::jsonb);
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
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF updated_at.name IS NULL OR updated_at.source IS NULL OR updated_at.column_name IS NULL THEN
        RAISE EXCEPTION 'name, source and column_name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN customer_unify._create_migration('updated_at', updated_at.name,
               jsonb_build_object('source', updated_at.source::oid, 'column', updated_at.column_name,
                                  'clock', updated_at.clock, 'keep_explicit', updated_at.keep_explicit,
                                  'created_column', updated_at.created_column));
END
$$;
COMMENT ON FUNCTION customer_unify.updated_at(text, regclass, text, text, boolean, text) IS
    'Plans a C trigger that stamps column_name on UPDATE only when another column changed (keep_explicit: an UPDATE that sets it itself keeps its value; created_column keeps its old value). Validates everything; creates nothing.';

CREATE OR REPLACE FUNCTION customer_unify._kit_updated_at_steps(m customer_unify.migration)
    RETURNS TABLE (phase text, seq int, statement text, inverse text,
                   lock_mode text, lock_relation text, rows_estimate bigint, registers jsonb)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s       jsonb := m.spec;
    v_src   text := customer_unify._b_name(m.source);
    v_trg   text := customer_unify._kit_trigger_name(m.id);
    -- the columns' names from the catalog (the guard keeps them while the migration is live)
    v_col   text := (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = m.source AND a.attname = s->>'column'
                        AND NOT a.attisdropped);
    v_crt   text := (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = m.source AND a.attname = s->>'created_column'
                        AND NOT a.attisdropped);
BEGIN
    phase := 'start'; seq := 1; rows_estimate := 0; registers := NULL;
    statement := format('CREATE TRIGGER %I BEFORE UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION customer_unify.touch_updated_at(%L, %L, %L, %L)',
                        v_trg, v_src, v_col, s->>'clock',
                        CASE WHEN (s->>'keep_explicit')::boolean THEN 'keep' ELSE 'overwrite' END, coalesce(v_crt, ''));
    inverse := format('DROP TRIGGER IF EXISTS %I ON %s', v_trg, v_src);
    lock_mode := 'SHARE ROW EXCLUSIVE'; lock_relation := v_src;
    RETURN NEXT;
    -- nothing to copy, nothing to swap: the other phases only move the state
    phase := 'cutover'; seq := 1; inverse := NULL; lock_mode := NULL; lock_relation := NULL;
    statement := format('SELECT customer_unify._gate_verify(%s)', m.id);
    RETURN NEXT;
END
$$;

CREATE OR REPLACE FUNCTION customer_unify._kit_updated_at_copy_plan(m customer_unify.migration)
    RETURNS TABLE (stream text, key_type regtype, plan jsonb)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT NULL::text, NULL::regtype, NULL::jsonb WHERE false
$$;

CREATE OR REPLACE FUNCTION customer_unify._kit_updated_at_verify(m customer_unify.migration, checksums boolean DEFAULT true)
    RETURNS TABLE (check_name text, expected text, actual text, ok boolean)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_trg   text := customer_unify._kit_trigger_name(m.id);
    v_state text;
    v_later text;
BEGIN
    SELECT CASE t.tgenabled WHEN 'D' THEN 'disabled' WHEN 'R' THEN 'enabled for replica only' ELSE 'enabled' END
      INTO v_state FROM pg_trigger t WHERE t.tgrelid = m.source AND t.tgname = v_trg;
    check_name := format('trigger %I on %s', v_trg, m.source::regclass::text);
    expected := 'enabled'; actual := coalesce(v_state, 'missing'); ok := actual = expected;
    RETURN NEXT;
    v_later := (SELECT string_agg(quote_ident(t), ', ') FROM customer_unify._kit_later_triggers(m.source, v_trg) t);
    check_name := 'BEFORE UPDATE row triggers that fire after it';
    expected := 'none'; actual := coalesce(v_later, 'none'); ok := v_later IS NULL;
    RETURN NEXT;
END
$$;

CREATE OR REPLACE FUNCTION customer_unify._kit_updated_at_dependents(m customer_unify.migration)
    RETURNS TABLE (object_type text, object_name text, dependency text, blocks_finalize boolean)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'trigger', format('%I on %s', t, m.source::regclass), 'fires after the updated_at trigger: its changes do not stamp', false
      FROM customer_unify._kit_later_triggers(m.source, customer_unify._kit_trigger_name(m.id)) t
$$;

CREATE OR REPLACE FUNCTION customer_unify._kit_updated_at_describe(m customer_unify.migration)
    RETURNS TABLE (target text, columns text[])
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.source::regclass::text,
           ARRAY(SELECT c FROM unnest(ARRAY[m.spec->>'column', m.spec->>'created_column']) c WHERE c IS NOT NULL)
$$;

CREATE OR REPLACE FUNCTION customer_unify._kit_updated_at_security_steps(m customer_unify.migration)
    RETURNS SETOF customer_unify.step_def
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM customer_unify._b_step(NULL) WHERE false
$$;

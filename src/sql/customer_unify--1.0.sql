/* customer_unify 1.0: catalog, the split operation, verify, cutover, finalize, rollback.
 *
 * Orchestration lives here in PL/pgSQL; the hot paths (sync triggers, the batch
 * copy engine, the compatibility-view router) are C functions in the module.
 * Every generated statement quotes identifiers with format('%I') and every
 * function pins search_path, except the two procedures that COMMIT (PostgreSQL
 * forbids transaction control in procedures with a SET clause): they set
 * search_path locally in each transaction they open.
 */
\echo Use "CREATE EXTENSION customer_unify" to load this file. \quit

-------------------------------------------------------------------------------
-- Catalog
-------------------------------------------------------------------------------
CREATE TABLE customer_unify.migration (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name <> ''),
    kind        text NOT NULL CHECK (kind IN ('split', 'merge', 'rekey', 'separate')),
    spec        jsonb NOT NULL,
    state       text NOT NULL DEFAULT 'planned'
                CHECK (state IN ('planned', 'started', 'backfilled', 'verified',
                                 'cut_over', 'finalized', 'rolled_back', 'failed')),
    source      regclass NOT NULL,
    owner       name NOT NULL DEFAULT current_user,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE customer_unify.migration IS
    'One row per reshaping operation: its validated plan (spec) and where it is in planned -> started -> backfilled -> verified -> cut_over -> finalized.';

-- one live migration per source table
CREATE UNIQUE INDEX migration_one_live_per_source
    ON customer_unify.migration (source)
    WHERE state IN ('planned', 'started', 'backfilled', 'verified', 'cut_over');

CREATE TABLE customer_unify.step_log (
    id            bigserial PRIMARY KEY,
    migration_id  bigint NOT NULL REFERENCES customer_unify.migration (id) ON DELETE CASCADE,
    phase         text NOT NULL,
    seq           int NOT NULL,
    statement     text NOT NULL,
    inverse       text,
    lock_mode     text,
    lock_relation text,
    rows          bigint,
    duration_ms   numeric,
    attempts      int NOT NULL DEFAULT 1,
    outcome       text NOT NULL CHECK (outcome IN ('ok', 'failed', 'reverted')),
    error         text,
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX step_log_migration ON customer_unify.step_log (migration_id, id);
COMMENT ON TABLE customer_unify.step_log IS
    'Every statement run for a migration, with its inverse; rollback replays the inverses backwards.';

CREATE TABLE customer_unify.backfill_state (
    migration_id   bigint PRIMARY KEY REFERENCES customer_unify.migration (id) ON DELETE CASCADE,
    last_key       text,
    end_key        text,
    rows_done      bigint NOT NULL DEFAULT 0,
    rows_total     bigint,
    batches        bigint NOT NULL DEFAULT 0,
    batch_size     int,
    retries        bigint NOT NULL DEFAULT 0,
    run_started_at timestamptz,
    run_rows       bigint NOT NULL DEFAULT 0,
    started_at     timestamptz,
    updated_at     timestamptz,
    finished_at    timestamptz
);
COMMENT ON TABLE customer_unify.backfill_state IS
    'Checkpoint of the batch copy: the last key copied is committed with each batch, so a backfill resumes after a cancel, crash or restart.';

SELECT pg_catalog.pg_extension_config_dump('customer_unify.migration', '');
SELECT pg_catalog.pg_extension_config_dump('customer_unify.migration_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('customer_unify.step_log', '');
SELECT pg_catalog.pg_extension_config_dump('customer_unify.step_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('customer_unify.backfill_state', '');

CREATE VIEW customer_unify.progress WITH (security_invoker = true) AS
SELECT m.name,
       m.kind,
       m.state,
       b.rows_done,
       b.rows_total,
       round(100.0 * b.rows_done / NULLIF(GREATEST(b.rows_total, b.rows_done), 0), 1) AS percent,
       CASE WHEN b.updated_at > b.run_started_at
            THEN round(b.run_rows / EXTRACT(epoch FROM b.updated_at - b.run_started_at))
       END AS rows_per_sec,
       CASE WHEN b.finished_at IS NULL AND b.run_rows > 0 AND b.updated_at > b.run_started_at
                 AND b.rows_total > b.rows_done
            THEN make_interval(secs => (b.rows_total - b.rows_done)
                               / (b.run_rows / EXTRACT(epoch FROM b.updated_at - b.run_started_at)))
       END AS eta,
       b.batches,
       b.last_key,
       b.started_at,
       b.updated_at,
       b.finished_at
  FROM customer_unify.migration m
  LEFT JOIN customer_unify.backfill_state b ON b.migration_id = m.id;
COMMENT ON VIEW customer_unify.progress IS 'Backfill progress of every migration: rows done / estimated total, rate and ETA.';

-- Anyone may read the catalog (the sync triggers fire as the writing role);
-- only members of a migration's owner role may change its rows.
GRANT USAGE ON SCHEMA customer_unify TO PUBLIC;
GRANT SELECT ON customer_unify.migration, customer_unify.step_log,
                customer_unify.backfill_state, customer_unify.progress TO PUBLIC;
GRANT INSERT, UPDATE, DELETE ON customer_unify.migration, customer_unify.step_log,
                customer_unify.backfill_state TO PUBLIC;
GRANT USAGE ON SEQUENCE customer_unify.migration_id_seq, customer_unify.step_log_id_seq TO PUBLIC;

ALTER TABLE customer_unify.migration ENABLE ROW LEVEL SECURITY;
ALTER TABLE customer_unify.step_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE customer_unify.backfill_state ENABLE ROW LEVEL SECURITY;

CREATE POLICY read_all ON customer_unify.migration FOR SELECT USING (true);
CREATE POLICY owner_writes ON customer_unify.migration FOR INSERT
    WITH CHECK (pg_catalog.pg_has_role(owner, 'MEMBER'));
CREATE POLICY owner_updates ON customer_unify.migration FOR UPDATE
    USING (pg_catalog.pg_has_role(owner, 'MEMBER'))
    WITH CHECK (pg_catalog.pg_has_role(owner, 'MEMBER'));
CREATE POLICY owner_deletes ON customer_unify.migration FOR DELETE
    USING (pg_catalog.pg_has_role(owner, 'MEMBER'));

CREATE POLICY read_all ON customer_unify.step_log FOR SELECT USING (true);
CREATE POLICY owner_writes ON customer_unify.step_log FOR ALL
    USING (EXISTS (SELECT 1 FROM customer_unify.migration m
                    WHERE m.id = migration_id AND pg_catalog.pg_has_role(m.owner, 'MEMBER')))
    WITH CHECK (EXISTS (SELECT 1 FROM customer_unify.migration m
                    WHERE m.id = migration_id AND pg_catalog.pg_has_role(m.owner, 'MEMBER')));

CREATE POLICY read_all ON customer_unify.backfill_state FOR SELECT USING (true);
CREATE POLICY owner_writes ON customer_unify.backfill_state FOR ALL
    USING (EXISTS (SELECT 1 FROM customer_unify.migration m
                    WHERE m.id = migration_id AND pg_catalog.pg_has_role(m.owner, 'MEMBER')))
    WITH CHECK (EXISTS (SELECT 1 FROM customer_unify.migration m
                    WHERE m.id = migration_id AND pg_catalog.pg_has_role(m.owner, 'MEMBER')));

-------------------------------------------------------------------------------
-- C entry points
--
-- The row-level C functions below carry no SET search_path: a SET clause costs
-- a GUC save/restore on every row. They do not need one: every statement they
-- prepare names relations schema-qualified and operators as
-- OPERATOR(pg_catalog.=), and parameters are typed by OID.
-------------------------------------------------------------------------------
-- true while this backend is writing a mirrored row (the sync loop guard)
CREATE FUNCTION customer_unify._sync_guard_active() RETURNS boolean
    LANGUAGE c VOLATILE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'cu_sync_guard_active';

CREATE FUNCTION customer_unify.split_sync_source() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_split_sync_source';
COMMENT ON FUNCTION customer_unify.split_sync_source() IS
    'AFTER ROW trigger on a split source: mirrors INSERT/UPDATE/DELETE of the moved columns into the target.';

CREATE FUNCTION customer_unify.split_sync_flush() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_split_sync_flush';
COMMENT ON FUNCTION customer_unify.split_sync_flush() IS
    'AFTER STATEMENT trigger on a split source: writes the rows the row trigger collected with one statement.';

CREATE FUNCTION customer_unify.split_sync_target() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_split_sync_target';
COMMENT ON FUNCTION customer_unify.split_sync_target() IS
    'AFTER ROW trigger on a split target: mirrors writes of the moved columns back into the source.';

CREATE FUNCTION customer_unify.compat_view_route() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_compat_view_route';
COMMENT ON FUNCTION customer_unify.compat_view_route() IS
    'INSTEAD OF trigger of a compatibility view: routes INSERT/UPDATE/DELETE (with RETURNING) to the new tables.';

-- The batch copy engine. Commits after every batch, so it cannot carry a SET
-- clause; it pins search_path with a transaction-local setting per batch.
CREATE PROCEDURE customer_unify.backfill(
    name            text,
    batch_size      integer DEFAULT 10000,
    max_batches     integer DEFAULT NULL,
    sleep_ms        integer DEFAULT 0,
    lock_timeout_ms integer DEFAULT 2000)
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_backfill';
COMMENT ON PROCEDURE customer_unify.backfill(text, integer, integer, integer, integer) IS
    'Copies existing rows in primary-key batches, COMMIT and checkpoint after each; resumable.';

-------------------------------------------------------------------------------
-- Internal helpers
-------------------------------------------------------------------------------
CREATE FUNCTION customer_unify._qual(p_schema text, p_rel text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    SET search_path = pg_catalog, pg_temp
    RETURN pg_catalog.quote_ident(p_schema) OPERATOR(pg_catalog.||) '.'
           OPERATOR(pg_catalog.||) pg_catalog.quote_ident(p_rel);

-- Fetch a migration by name, or raise 42704.
CREATE FUNCTION customer_unify._get(p_name text) RETURNS customer_unify.migration
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v customer_unify.migration;
BEGIN
    IF p_name IS NULL THEN
        RAISE EXCEPTION 'migration name must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO v FROM customer_unify.migration m WHERE m.name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'migration "%" does not exist', p_name
            USING ERRCODE = 'undefined_object',
                  HINT = 'List migrations with: SELECT name, state FROM customer_unify.progress;';
    END IF;
    RETURN v;
END
$$;

-- Raise 42501 unless the caller may act for the migration (member of its owner
-- and of the source table's owner).
CREATE FUNCTION customer_unify._check_owner(m customer_unify.migration) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_owner oid;
BEGIN
    IF NOT pg_has_role(m.owner, 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied for migration "%"', m.name
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('The migration belongs to role %I.', m.owner);
    END IF;
    SELECT c.relowner INTO v_owner FROM pg_class c WHERE c.oid = m.source;
    IF FOUND AND NOT pg_has_role(v_owner, 'MEMBER') THEN
        RAISE EXCEPTION 'must be owner of table %', m.source::text
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$$;

-- Raise 55000 unless the migration is in one of the allowed states.
CREATE FUNCTION customer_unify._require_state(m customer_unify.migration, p_allowed text[], p_action text)
    RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT (m.state = ANY (p_allowed)) THEN
        RAISE EXCEPTION 'cannot % migration "%": it is %', p_action, m.name, m.state
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('%s needs state %s.', p_action, array_to_string(p_allowed, ' or ')),
                  HINT = customer_unify._next_step_hint(m.state, m.name);
    END IF;
END
$$;

CREATE FUNCTION customer_unify._next_step_hint(p_state text, p_name text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE p_state
        WHEN 'planned'     THEN format('Next: SELECT customer_unify.start(%L);', p_name)
        WHEN 'started'     THEN format('Next: CALL customer_unify.backfill(%L);', p_name)
        WHEN 'backfilled'  THEN format('Next: SELECT * FROM customer_unify.verify(%L);', p_name)
        WHEN 'verified'    THEN format('Next: SELECT customer_unify.cutover(%L);', p_name)
        WHEN 'cut_over'    THEN format('Next: SELECT customer_unify.finalize(%L); or customer_unify.rollback(%L);', p_name, p_name)
        WHEN 'finalized'   THEN 'The migration is finished; nothing more to do.'
        WHEN 'rolled_back' THEN 'The migration was rolled back; plan a new one under another name.'
        ELSE 'Inspect customer_unify.step_log for this migration.'
    END
$$;

CREATE FUNCTION customer_unify._set_state(p_id bigint, p_state text) RETURNS void
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE customer_unify.migration m
       SET state = p_state, updated_at = now()
     WHERE m.id = p_id;
$$;

-- Run one statement of a migration under a short lock_timeout, retried with
-- exponential backoff, and record it (with its inverse) in the step log.
CREATE FUNCTION customer_unify._exec_step(
    p_migration bigint, p_phase text, p_seq int, p_sql text, p_inverse text,
    p_lock_mode text, p_lock_relation text)
    RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_timeout_ms int := COALESCE(NULLIF(current_setting('customer_unify.lock_timeout_ms', true), '')::int, 500);
    v_retries    int := COALESCE(NULLIF(current_setting('customer_unify.lock_retries', true), '')::int, 20);
    v_saved      text := current_setting('lock_timeout');
    v_attempt    int := 0;
    v_rows       bigint := 0;
    v_t0         timestamptz;
BEGIN
    LOOP
        v_attempt := v_attempt + 1;
        v_t0 := clock_timestamp();
        BEGIN
            PERFORM set_config('lock_timeout', v_timeout_ms || 'ms', true);
            EXECUTE p_sql;
            GET DIAGNOSTICS v_rows = ROW_COUNT;
            PERFORM set_config('lock_timeout', v_saved, true);
            EXIT;
        EXCEPTION WHEN lock_not_available THEN
            PERFORM set_config('lock_timeout', v_saved, true);
            IF v_attempt > v_retries THEN
                RAISE EXCEPTION 'could not obtain % lock on % after % attempts', p_lock_mode, p_lock_relation, v_attempt
                    USING ERRCODE = 'lock_not_available',
                          DETAIL = format('Statement: %s', p_sql),
                          HINT = 'A long-running transaction holds a conflicting lock; find it in pg_locks / pg_stat_activity, or raise customer_unify.lock_retries / customer_unify.lock_timeout_ms.';
            END IF;
            PERFORM pg_sleep(LEAST(2.0, 0.05 * power(2, v_attempt - 1)) * (0.5 + random() / 2));
        END;
    END LOOP;
    INSERT INTO customer_unify.step_log
        (migration_id, phase, seq, statement, inverse, lock_mode, lock_relation, rows,
         duration_ms, attempts, outcome, started_at)
    VALUES (p_migration, p_phase, p_seq, p_sql, p_inverse, p_lock_mode, p_lock_relation, v_rows,
            round((EXTRACT(epoch FROM clock_timestamp() - v_t0) * 1000)::numeric, 3), v_attempt, 'ok', v_t0);
    RETURN v_rows;
END
$$;

-------------------------------------------------------------------------------
-- Split: validation
-------------------------------------------------------------------------------
-- Validate a split and return its spec; raises with a specific SQLSTATE on the
-- first problem found. Used by split() at plan time and again by start().
CREATE FUNCTION customer_unify._split_validate(
    p_name text, p_source regclass, p_target text, p_columns text[],
    p_link_column text, p_target_schema text, p_target_key text)
    RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rel       record;
    v_key       record;
    v_nkey      int;
    v_col       text;
    v_att       record;
    v_link      text;
    v_tschema   text;
    v_con       record;
    v_seen      text[] := '{}';
BEGIN
    IF p_name IS NULL OR p_source IS NULL OR p_target IS NULL OR p_columns IS NULL THEN
        RAISE EXCEPTION 'name, source, target and columns must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_name = '' THEN
        RAISE EXCEPTION 'migration name must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF octet_length(p_name || '_compat') > 63 THEN
        RAISE EXCEPTION 'migration name "%" is too long', p_name
            USING ERRCODE = 'name_too_long',
                  DETAIL = 'The compatibility schema is named <name>_compat and must fit in 63 bytes.';
    END IF;

    SELECT c.oid, c.relname, c.relkind, c.relowner, n.nspname
      INTO v_rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p_source;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'relation with OID % does not exist', p_source::oid USING ERRCODE = 'undefined_table';
    END IF;
    IF v_rel.relkind <> 'r' THEN
        RAISE EXCEPTION '"%" is not a plain table', p_source::text
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = format('Its relkind is %L; split works on ordinary tables (partitioned tables are not supported in 1.0).', v_rel.relkind);
    END IF;
    IF NOT pg_has_role(v_rel.relowner, 'MEMBER') THEN
        RAISE EXCEPTION 'must be owner of table %', p_source::text
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Reshaping a table needs the rights of its owner.';
    END IF;

    -- primary key: exactly one column
    SELECT count(*) INTO v_nkey
      FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) k
     WHERE i.indrelid = p_source AND i.indisprimary;
    IF v_nkey = 0 THEN
        RAISE EXCEPTION 'table % has no primary key', p_source::text
            USING ERRCODE = 'invalid_table_definition',
                  HINT = 'The split links rows through the primary key; add one first.';
    ELSIF v_nkey > 1 THEN
        RAISE EXCEPTION 'table % has a composite primary key', p_source::text
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Version 1.0 splits tables with a single-column primary key.';
    END IF;
    SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS typ, a.atttypid
      INTO v_key
      FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
     WHERE i.indrelid = p_source AND i.indisprimary;

    -- columns to move
    IF cardinality(p_columns) = 0 THEN
        RAISE EXCEPTION 'columns must name at least one column of %', p_source::text
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH v_col IN ARRAY p_columns LOOP
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
         WHERE a.attrelid = p_source AND a.attname = v_col AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'column "%" of relation % does not exist', v_col, p_source::text
                USING ERRCODE = 'undefined_column',
                      HINT = 'Column names are taken literally (case and spaces matter); do not quote them.';
        END IF;
        IF v_col = v_key.attname THEN
            RAISE EXCEPTION 'column "%" is the primary key of %', v_col, p_source::text
                USING ERRCODE = 'invalid_column_reference',
                      DETAIL = 'The key stays in the source and is copied into the link column.';
        END IF;
        IF v_att.attidentity <> '' THEN
            RAISE EXCEPTION 'column "%" of % is an identity column and cannot be moved', v_col, p_source::text
                USING ERRCODE = 'feature_not_supported';
        END IF;
        IF v_att.attgenerated <> '' THEN
            RAISE EXCEPTION 'column "%" of % is a generated column and cannot be moved', v_col, p_source::text
                USING ERRCODE = 'feature_not_supported';
        END IF;
    END LOOP;

    -- generated columns that stay behind but read a moved column
    FOR v_att IN
        SELECT a.attname
          FROM pg_attribute a JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = p_source AND a.attgenerated <> '' AND NOT (a.attname = ANY (p_columns))
           AND EXISTS (SELECT 1 FROM pg_depend dep
                        JOIN pg_attribute b ON b.attrelid = dep.refobjid AND b.attnum = dep.refobjsubid
                       WHERE dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid
                         AND dep.refobjid = p_source AND b.attname = ANY (p_columns))
    LOOP
        RAISE EXCEPTION 'generated column "%" of % is computed from a moved column', v_att.attname, p_source::text
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Move it too, or drop the generation expression first.';
    END LOOP;

    -- CHECK constraints that mix moved and kept columns cannot follow either side
    FOR v_con IN
        SELECT c.conname,
               bool_or(a.attname = ANY (p_columns)) AS any_moved,
               bool_and(a.attname = ANY (p_columns)) AS all_moved
          FROM pg_constraint c
          CROSS JOIN LATERAL unnest(c.conkey) k
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k
         WHERE c.conrelid = p_source AND c.contype = 'c'
         GROUP BY c.conname
    LOOP
        IF v_con.any_moved AND NOT v_con.all_moved THEN
            RAISE EXCEPTION 'CHECK constraint "%" of % uses both moved and kept columns', v_con.conname, p_source::text
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'Move all of its columns, or drop or rewrite the constraint before the split.';
        END IF;
    END LOOP;

    -- link column and target
    v_link := COALESCE(p_link_column, v_rel.relname || '_id');
    IF v_link = '' THEN
        RAISE EXCEPTION 'link_column must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF octet_length(v_link) > 63 OR octet_length(p_target) > 63 OR octet_length(COALESCE(p_target_key, '')) > 63 THEN
        RAISE EXCEPTION 'identifier longer than 63 bytes' USING ERRCODE = 'name_too_long';
    END IF;
    IF v_link = ANY (p_columns) THEN
        RAISE EXCEPTION 'link column "%" has the name of a moved column', v_link USING ERRCODE = 'duplicate_column';
    END IF;
    IF p_target_key IS NOT NULL AND (p_target_key = v_link OR p_target_key = ANY (p_columns)) THEN
        RAISE EXCEPTION 'target_key "%" clashes with another target column', p_target_key USING ERRCODE = 'duplicate_column';
    END IF;
    IF p_target = '' THEN
        RAISE EXCEPTION 'target must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_tschema := COALESCE(p_target_schema, v_rel.nspname);
    IF NOT EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = v_tschema) THEN
        RAISE EXCEPTION 'schema "%" does not exist', v_tschema USING ERRCODE = 'invalid_schema_name';
    END IF;
    IF NOT has_schema_privilege(v_tschema, 'CREATE') THEN
        RAISE EXCEPTION 'permission denied to create a table in schema "%"', v_tschema
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = v_tschema AND c.relname = p_target) THEN
        RAISE EXCEPTION 'relation %.% already exists', quote_ident(v_tschema), quote_ident(p_target)
            USING ERRCODE = 'duplicate_table',
                  HINT = 'Choose another target name; split creates the target table itself.';
    END IF;

    RETURN jsonb_build_object(
        'source_schema', v_rel.nspname,
        'source_table',  v_rel.relname,
        'key_column',    v_key.attname,
        'key_type',      v_key.typ,
        'target_schema', v_tschema,
        'target_table',  p_target,
        'link_column',   v_link,
        'target_key',    p_target_key,
        'columns',       to_jsonb(p_columns),
        'compat_schema', p_name || '_compat');
END
$$;

-------------------------------------------------------------------------------
-- Split: the plan
-------------------------------------------------------------------------------
CREATE FUNCTION customer_unify.split(
    name          text,
    source        regclass,
    target        text,
    columns       text[],
    link_column   text DEFAULT NULL,
    target_schema text DEFAULT NULL,
    target_key    text DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_spec jsonb;
    v_id   bigint;
    v_live text;
BEGIN
    IF EXISTS (SELECT 1 FROM customer_unify.migration m WHERE m.name = split.name) THEN
        RAISE EXCEPTION 'migration "%" already exists', split.name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Migration names are unique, including finished and rolled-back ones.';
    END IF;
    v_spec := customer_unify._split_validate(split.name, split.source, split.target, split.columns,
                                             split.link_column, split.target_schema, split.target_key);
    SELECT m.name INTO v_live FROM customer_unify.migration m
     WHERE m.source = split.source
       AND m.state IN ('planned', 'started', 'backfilled', 'verified', 'cut_over');
    IF FOUND THEN
        RAISE EXCEPTION 'table % already has a live migration "%"', split.source::text, v_live
            USING ERRCODE = 'object_in_use',
                  HINT = 'Finalize or roll back that migration first.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = v_spec->>'compat_schema') THEN
        RAISE EXCEPTION 'schema "%" already exists', v_spec->>'compat_schema'
            USING ERRCODE = 'duplicate_schema',
                  HINT = 'The compatibility view goes into schema <name>_compat; choose another migration name.';
    END IF;
    BEGIN
        INSERT INTO customer_unify.migration (name, kind, spec, source)
        VALUES (split.name, 'split', v_spec, split.source)
        RETURNING id INTO v_id;
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION 'table % or name "%" is already used by a live migration', split.source::text, split.name
            USING ERRCODE = 'object_in_use';
    END;
    -- dependents are found now, not at finalize
    SELECT string_agg(format('%s %s (%s)', d.object_type, d.object_name, d.dependency), E'\n' ORDER BY d.object_type, d.object_name)
      INTO v_live
      FROM customer_unify._split_dependents((SELECT m FROM customer_unify.migration m WHERE m.id = v_id)) d
     WHERE d.blocks_finalize;
    IF v_live IS NOT NULL THEN
        RAISE NOTICE 'objects depend on the columns to move; finalize will refuse until they are changed'
            USING DETAIL = v_live,
                  HINT = format('See SELECT * FROM customer_unify.dependents(%L);', split.name);
    END IF;
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION customer_unify.split(text, regclass, text, text[], text, text, text) IS
    'Plans moving columns of a table into a new 1:1 table. Validates everything; creates nothing.';

-- Moved columns with everything needed to re-create them (source order).
CREATE FUNCTION customer_unify._split_columns(p_spec jsonb, p_source regclass)
    RETURNS TABLE (attnum int, attname text, typ text, collation_clause text, notnull boolean,
                   default_expr text, comment text, attacl aclitem[])
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.attnum::int, a.attname::text, format_type(a.atttypid, a.atttypmod),
           CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                THEN ' COLLATE ' || quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END,
           a.attnotnull,
           pg_get_expr(d.adbin, d.adrelid),
           col_description(a.attrelid, a.attnum),
           a.attacl
      FROM pg_attribute a
      JOIN pg_type t ON t.oid = a.atttypid
      LEFT JOIN pg_collation co ON co.oid = a.attcollation
      LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = p_source AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attname::text IN (SELECT jsonb_array_elements_text(p_spec->'columns'))
     ORDER BY a.attnum
$$;

-- GRANT statements re-creating an ACL on another object.
CREATE FUNCTION customer_unify._grants(p_acl aclitem[], p_object text, p_columns text)
    RETURNS SETOF text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('GRANT %s%s ON %s TO %s%s',
                  e.privilege_type,
                  CASE WHEN p_columns IS NOT NULL THEN ' (' || p_columns || ')' ELSE '' END,
                  p_object,
                  CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(e.grantee)) END,
                  CASE WHEN e.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
      FROM aclexplode(p_acl) e
     WHERE e.grantee <> e.grantor OR e.grantee = 0
     GROUP BY e.privilege_type, e.grantee, e.is_grantable
     ORDER BY e.grantee, e.privilege_type
$$;

-- Constraints of the source (CHECK 'c' or FOREIGN KEY 'f') whose columns all
-- move: they travel to the target.
CREATE FUNCTION customer_unify._moved_constraints(m customer_unify.migration, p_contype "char")
    RETURNS TABLE (conname name, def text)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.conname, pg_get_constraintdef(c.oid)
      FROM pg_constraint c
     WHERE c.conrelid = m.source AND c.contype = p_contype
       AND NOT EXISTS (SELECT 1 FROM unnest(c.conkey) k
                         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k
                        WHERE NOT (a.attname::text IN (SELECT jsonb_array_elements_text(m.spec->'columns'))))
     ORDER BY c.conname
$$;

-- Every statement of a split, per phase, with inverse, lock mode and estimate.
-- The single source of truth for preview(), start(), cutover(), finalize().
CREATE FUNCTION customer_unify._split_steps(m customer_unify.migration)
    RETURNS TABLE (phase text, seq int, statement text, inverse text,
                   lock_mode text, lock_relation text, rows_estimate bigint)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s        jsonb := m.spec;
    v_src    text := customer_unify._qual(s->>'source_schema', s->>'source_table');
    v_tgt    text := customer_unify._qual(s->>'target_schema', s->>'target_table');
    v_cschema text := quote_ident(s->>'compat_schema');
    v_view   text := customer_unify._qual(s->>'compat_schema', s->>'source_table');
    v_key    text := quote_ident(s->>'key_column');
    v_link   text := quote_ident(s->>'link_column');
    v_fk     text := quote_ident(left(s->>'target_table' || '_' || (s->>'link_column'), 58) || '_fkey');
    v_est    bigint;
    v_defs   text[] := '{}';
    v_cols   text[] := '{}';
    v_c      record;
    v_seq    int := 0;
    v_args   text;
    v_stmt   text;
    v_viewcols text[] := '{}';
    v_srcacl aclitem[];
    v_g      text;
BEGIN
    SELECT GREATEST(c.reltuples, 0)::bigint, c.relacl INTO v_est, v_srcacl FROM pg_class c WHERE c.oid = m.source;

    FOR v_c IN SELECT * FROM customer_unify._split_columns(s, m.source) LOOP
        v_cols := v_cols || quote_ident(v_c.attname);
        v_defs := v_defs || (quote_ident(v_c.attname) || ' ' || v_c.typ
                             || COALESCE(v_c.collation_clause, '')
                             || COALESCE(' DEFAULT ' || v_c.default_expr, '')
                             || CASE WHEN v_c.notnull THEN ' NOT NULL' ELSE '' END);
    END LOOP;
    -- CHECK constraints touching only moved columns travel with them
    FOR v_c IN
        SELECT * FROM customer_unify._moved_constraints(m, 'c')
    LOOP
        v_defs := v_defs || ('CONSTRAINT ' || quote_ident(v_c.conname) || ' ' || v_c.def);
    END LOOP;

    ---------------------------------------------------------------- start
    v_seq := 1;
    phase := 'start'; seq := v_seq;
    statement := format('CREATE TABLE %s (%s%s %s NOT NULL, %s, %s)', v_tgt,
        CASE WHEN s->>'target_key' IS NOT NULL
             THEN quote_ident(s->>'target_key') || ' bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, ' ELSE '' END,
        v_link, s->>'key_type', array_to_string(v_defs, ', '),
        CASE WHEN s->>'target_key' IS NOT NULL THEN format('UNIQUE (%s)', v_link)
             ELSE format('PRIMARY KEY (%s)', v_link) END);
    inverse := format('DROP TABLE IF EXISTS %s', v_tgt);
    lock_mode := 'ACCESS EXCLUSIVE'; lock_relation := v_tgt || ' (new)'; rows_estimate := 0;
    RETURN NEXT;

    FOR v_c IN SELECT * FROM customer_unify._split_columns(s, m.source) c WHERE c.comment IS NOT NULL LOOP
        v_seq := v_seq + 1; seq := v_seq;
        statement := format('COMMENT ON COLUMN %s.%I IS %L', v_tgt, v_c.attname, v_c.comment);
        inverse := NULL; lock_mode := 'SHARE UPDATE EXCLUSIVE'; lock_relation := v_tgt;
        RETURN NEXT;
    END LOOP;

    -- indexes whose columns, expressions and predicate use only moved columns
    FOR v_c IN
        SELECT pg_get_indexdef(i.indexrelid) AS def, ic.relname AS idxname
          FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
         WHERE i.indrelid = m.source AND NOT i.indisprimary
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                             JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                            WHERE d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid
                              AND d.refobjid = m.source AND d.refobjsubid > 0
                              AND NOT (a.attname::text IN (SELECT jsonb_array_elements_text(s->'columns'))))
           AND NOT EXISTS (SELECT 1 FROM unnest(i.indkey) k WHERE k <> 0
                              AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = m.source AND a.attnum = k
                                                 AND a.attname::text IN (SELECT jsonb_array_elements_text(s->'columns'))))
         ORDER BY ic.relname
    LOOP
        v_seq := v_seq + 1; seq := v_seq;
        -- "CREATE [UNIQUE] INDEX name ON [ONLY] schema.table USING ..." -> unnamed index on the target
        statement := regexp_replace(v_c.def, '^CREATE (UNIQUE )?INDEX .*? ON (ONLY )?' ||
                                    regexp_replace(v_src, '([\.\^\$\*\+\?\(\)\[\]\{\}\|\\])', '\\\1', 'g') || ' USING ',
                                    'CREATE \1INDEX ON ' || replace(v_tgt, '\', '\\') || ' USING ');
        inverse := NULL; lock_mode := 'SHARE'; lock_relation := v_tgt;
        RETURN NEXT;
    END LOOP;

    -- table privileges and column privileges follow the data
    FOR v_g IN SELECT customer_unify._grants(v_srcacl, v_tgt, NULL) LOOP
        v_seq := v_seq + 1; seq := v_seq;
        statement := v_g; inverse := NULL; lock_mode := NULL; lock_relation := v_tgt;
        RETURN NEXT;
    END LOOP;
    FOR v_c IN SELECT * FROM customer_unify._split_columns(s, m.source) c WHERE c.attacl IS NOT NULL LOOP
        FOR v_g IN SELECT customer_unify._grants(v_c.attacl, v_tgt, quote_ident(v_c.attname)) LOOP
            v_seq := v_seq + 1; seq := v_seq;
            statement := v_g; inverse := NULL; lock_mode := NULL; lock_relation := v_tgt;
            RETURN NEXT;
        END LOOP;
    END LOOP;

    v_args := '';
    FOR v_c IN SELECT * FROM jsonb_array_elements_text(s->'columns') WITH ORDINALITY x(c, n) ORDER BY n LOOP
        v_args := v_args || format(', %L', v_c.c);
    END LOOP;
    v_seq := v_seq + 1; seq := v_seq;
    statement := format('CREATE TRIGGER customer_unify_sync AFTER INSERT OR UPDATE OF %s, %s OR DELETE ON %s '
                        'FOR EACH ROW WHEN (NOT customer_unify._sync_guard_active()) '
                        'EXECUTE FUNCTION customer_unify.split_sync_target(%s%s)',
                        v_link, array_to_string(v_cols, ', '), v_tgt,
                        format('%L, %L, %L, %L, %L', m.id, s->>'source_schema', s->>'source_table',
                               s->>'link_column', s->>'key_column'),
                        v_args);
    inverse := format('DROP TRIGGER IF EXISTS customer_unify_sync ON %s', v_tgt);
    lock_mode := 'SHARE ROW EXCLUSIVE'; lock_relation := v_tgt;
    RETURN NEXT;

    v_seq := v_seq + 1; seq := v_seq;
    statement := format('CREATE TRIGGER customer_unify_sync_flush AFTER INSERT OR UPDATE OR DELETE ON %s '
                        'FOR EACH STATEMENT EXECUTE FUNCTION customer_unify.split_sync_flush()', v_src);
    inverse := format('DROP TRIGGER IF EXISTS customer_unify_sync_flush ON %s', v_src);
    lock_mode := 'SHARE ROW EXCLUSIVE'; lock_relation := v_src;
    RETURN NEXT;

    v_seq := v_seq + 1; seq := v_seq;
    statement := format('CREATE TRIGGER customer_unify_sync AFTER INSERT OR UPDATE OF %s, %s OR DELETE ON %s '
                        'FOR EACH ROW WHEN (NOT customer_unify._sync_guard_active()) '
                        'EXECUTE FUNCTION customer_unify.split_sync_source(%s)',
                        v_key, array_to_string(v_cols, ', '), v_src,
                        format('%L, %L, %L, %L, %L', m.id, s->>'target_schema', s->>'target_table',
                               s->>'key_column', s->>'link_column') || v_args);
    inverse := format('DROP TRIGGER IF EXISTS customer_unify_sync ON %s', v_src);
    lock_mode := 'SHARE ROW EXCLUSIVE'; lock_relation := v_src;
    RETURN NEXT;

    ---------------------------------------------------------------- backfill (run by the C engine)
    phase := 'backfill'; seq := 1;
    statement := format('INSERT INTO %s (%s, %s) SELECT s.%s, s.%s FROM ONLY %s s WHERE s.%s > $1 AND s.%s <= $2 '
                        'AND NOT EXISTS (SELECT 1 FROM ONLY %s t WHERE t.%s = s.%s) ORDER BY s.%s LIMIT $3 RETURNING %s',
                        v_tgt, v_link, array_to_string(v_cols, ', '), v_key, array_to_string(v_cols, ', s.'),
                        v_src, v_key, v_key, v_tgt, v_link, v_key, v_key, v_link);
    inverse := NULL; lock_mode := 'ROW EXCLUSIVE'; lock_relation := v_tgt || ' (one transaction per batch; ACCESS SHARE on ' || v_src || ')';
    rows_estimate := v_est;
    RETURN NEXT;

    ---------------------------------------------------------------- backfill_end
    -- Transaction 1, once every row is copied: lock the source first, in the
    -- order writers lock (source, then target through the triggers), so the
    -- ALTER never holds the target while waiting for the source; the lock
    -- also waits out every write in flight. Then add the foreign keys NOT
    -- VALID. From here on ON DELETE / ON UPDATE CASCADE keep the two tables
    -- 1:1, so no new orphan can appear.
    phase := 'backfill_end'; rows_estimate := v_est;
    seq := 1;
    statement := format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', v_src);
    inverse := NULL; lock_mode := 'SHARE ROW EXCLUSIVE'; lock_relation := v_src;
    RETURN NEXT;
    seq := 2;
    statement := format('ALTER TABLE %s ADD CONSTRAINT %s FOREIGN KEY (%s) REFERENCES %s (%s) ON DELETE CASCADE ON UPDATE CASCADE NOT VALID',
                        v_tgt, v_fk, v_link, v_src, v_key);
    inverse := format('ALTER TABLE IF EXISTS %s DROP CONSTRAINT IF EXISTS %s', v_tgt, v_fk);
    lock_mode := 'SHARE ROW EXCLUSIVE'; lock_relation := v_tgt || ', ' || v_src;
    RETURN NEXT;
    v_seq := 2;
    -- foreign keys of the source whose columns all move go along, validated the same way
    FOR v_c IN
        SELECT * FROM customer_unify._moved_constraints(m, 'f')
    LOOP
        v_seq := v_seq + 1; seq := v_seq;
        statement := format('ALTER TABLE %s ADD CONSTRAINT %I %s NOT VALID', v_tgt, v_c.conname,
                            regexp_replace(v_c.def, ' NOT VALID$', ''));
        inverse := format('ALTER TABLE IF EXISTS %s DROP CONSTRAINT IF EXISTS %I', v_tgt, v_c.conname);
        lock_mode := 'SHARE ROW EXCLUSIVE'; lock_relation := v_tgt;
        RETURN NEXT;
    END LOOP;

    ---------------------------------------------------------------- orphans
    -- Only when validation finds them: rows a delete removed from the source
    -- while a batch was copying them from its snapshot (the delete's mirror
    -- ran before the copy was visible). Run in transaction 2, then validate again.
    phase := 'orphans'; seq := 1;
    statement := format('DELETE FROM ONLY %s t WHERE NOT EXISTS (SELECT 1 FROM ONLY %s s WHERE s.%s OPERATOR(pg_catalog.=) t.%s)',
                        v_tgt, v_src, v_key, v_link);
    inverse := NULL; lock_mode := 'ROW EXCLUSIVE'; lock_relation := v_tgt;
    RETURN NEXT;

    ---------------------------------------------------------------- validate
    -- Transaction 2: one pass per foreign key. VALIDATE takes SHARE UPDATE
    -- EXCLUSIVE on the target and ROW SHARE on the referenced table, so
    -- writers go on while it runs.
    phase := 'validate';
    seq := 1;
    statement := format('ALTER TABLE %s VALIDATE CONSTRAINT %s', v_tgt, v_fk);
    inverse := NULL; lock_mode := 'SHARE UPDATE EXCLUSIVE'; lock_relation := v_tgt || ' (ROW SHARE on ' || v_src || ')';
    RETURN NEXT;
    v_seq := 1;
    FOR v_c IN
        SELECT * FROM customer_unify._moved_constraints(m, 'f')
    LOOP
        v_seq := v_seq + 1; seq := v_seq;
        statement := format('ALTER TABLE %s VALIDATE CONSTRAINT %I', v_tgt, v_c.conname);
        inverse := NULL; lock_mode := 'SHARE UPDATE EXCLUSIVE'; lock_relation := v_tgt;
        RETURN NEXT;
    END LOOP;

    ---------------------------------------------------------------- cutover
    phase := 'cutover'; rows_estimate := 0;
    seq := 1;
    statement := format('CREATE SCHEMA %s', v_cschema);
    inverse := format('DROP SCHEMA IF EXISTS %s', v_cschema);
    lock_mode := NULL; lock_relation := NULL;
    RETURN NEXT;

    FOR v_c IN
        SELECT a.attname, (a.attname::text IN (SELECT jsonb_array_elements_text(s->'columns'))) AS moved
          FROM pg_attribute a
         WHERE a.attrelid = m.source AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attnum
    LOOP
        v_viewcols := v_viewcols || (CASE WHEN v_c.moved THEN 't.' ELSE 's.' END || quote_ident(v_c.attname));
    END LOOP;
    seq := 2;
    statement := format('CREATE VIEW %s WITH (security_invoker = true) AS SELECT %s FROM ONLY %s s LEFT JOIN ONLY %s t ON t.%s OPERATOR(pg_catalog.=) s.%s',
                        v_view, array_to_string(v_viewcols, ', '), v_src, v_tgt, v_link, v_key);
    inverse := format('DROP VIEW IF EXISTS %s', v_view);
    lock_mode := 'ACCESS SHARE'; lock_relation := v_src || ', ' || v_tgt;
    RETURN NEXT;
    v_seq := 2;
    -- column defaults, so INSERTs through the view get them (identity columns: their sequence)
    FOR v_c IN
        SELECT a.attname,
               CASE WHEN a.attidentity <> ''
                    THEN format('nextval(%L::regclass)', pg_get_serial_sequence(m.source::text, a.attname))
                    ELSE pg_get_expr(d.adbin, d.adrelid) END AS def
          FROM pg_attribute a
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = m.source AND a.attnum > 0 AND NOT a.attisdropped
           AND (a.attidentity <> '' OR (d.adbin IS NOT NULL AND a.attgenerated = ''))
         ORDER BY a.attnum
    LOOP
        v_seq := v_seq + 1; seq := v_seq;
        statement := format('ALTER VIEW %s ALTER COLUMN %I SET DEFAULT %s', v_view, v_c.attname, v_c.def);
        inverse := NULL; lock_mode := 'ACCESS EXCLUSIVE'; lock_relation := v_view || ' (new)';
        RETURN NEXT;
    END LOOP;
    FOR v_g IN SELECT customer_unify._grants(v_srcacl, v_view, NULL) LOOP
        v_seq := v_seq + 1; seq := v_seq;
        statement := v_g; inverse := NULL; lock_mode := NULL; lock_relation := v_view;
        RETURN NEXT;
    END LOOP;
    FOR v_g IN
        SELECT DISTINCT format('GRANT USAGE ON SCHEMA %s TO %s', v_cschema,
                               CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(e.grantee)) END)
          FROM aclexplode(v_srcacl) e
         WHERE e.grantee <> e.grantor OR e.grantee = 0
    LOOP
        v_seq := v_seq + 1; seq := v_seq;
        statement := v_g; inverse := NULL; lock_mode := NULL; lock_relation := v_cschema;
        RETURN NEXT;
    END LOOP;
    v_args := format('%L, %L, %L, %L, %L, %L, %L, %L', m.id, 'live', s->>'source_schema', s->>'source_table',
                     s->>'key_column', s->>'target_schema', s->>'target_table', s->>'link_column');
    FOR v_c IN SELECT * FROM jsonb_array_elements_text(s->'columns') WITH ORDINALITY x(c, n) ORDER BY n LOOP
        v_args := v_args || format(', %L', v_c.c);
    END LOOP;
    v_seq := v_seq + 1; seq := v_seq;
    statement := format('CREATE TRIGGER customer_unify_route INSTEAD OF INSERT OR UPDATE OR DELETE ON %s '
                        'FOR EACH ROW EXECUTE FUNCTION customer_unify.compat_view_route(%s)', v_view, v_args);
    inverse := format('DROP TRIGGER IF EXISTS customer_unify_route ON %s', v_view);
    lock_mode := 'SHARE ROW EXCLUSIVE'; lock_relation := v_view;
    RETURN NEXT;

    ---------------------------------------------------------------- finalize
    phase := 'finalize'; inverse := NULL;
    seq := 1;
    statement := format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', v_src);
    lock_mode := 'ACCESS EXCLUSIVE'; lock_relation := v_src;
    RETURN NEXT;
    seq := 2;
    statement := format('DROP TRIGGER customer_unify_sync ON %s', v_src);
    RETURN NEXT;
    seq := 3;
    statement := format('DROP TRIGGER customer_unify_sync_flush ON %s', v_src);
    RETURN NEXT;
    seq := 4;
    statement := format('DROP TRIGGER customer_unify_sync ON %s', v_tgt);
    lock_relation := v_tgt;
    RETURN NEXT;
    v_seq := 4;
    -- sequences owned by a moved column now belong to the target's column
    FOR v_c IN
        SELECT d.objid::regclass::text AS seq, a.attname
          FROM pg_depend d
          JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
         WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
           AND d.refobjid = m.source AND d.deptype = 'a'
           AND a.attname::text IN (SELECT jsonb_array_elements_text(s->'columns'))
           AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = d.objid AND c.relkind = 'S')
    LOOP
        v_seq := v_seq + 1; seq := v_seq;
        statement := format('ALTER SEQUENCE %s OWNED BY %s.%I', v_c.seq, v_tgt, v_c.attname);
        lock_relation := v_c.seq;
        RETURN NEXT;
    END LOOP;
    v_seq := v_seq + 1; seq := v_seq;
    SELECT string_agg(format('DROP COLUMN %s', c), ', ') INTO v_stmt FROM unnest(v_cols) c;
    statement := format('ALTER TABLE %s %s', v_src, v_stmt);
    lock_mode := 'ACCESS EXCLUSIVE'; lock_relation := v_src;
    RETURN NEXT;
    v_seq := v_seq + 1; seq := v_seq;
    statement := format('DROP TRIGGER customer_unify_route ON %s', v_view);
    lock_relation := v_view;
    RETURN NEXT;
    v_seq := v_seq + 1; seq := v_seq;
    statement := format('CREATE TRIGGER customer_unify_route INSTEAD OF INSERT OR UPDATE OR DELETE ON %s '
                        'FOR EACH ROW EXECUTE FUNCTION customer_unify.compat_view_route(%s)', v_view,
                        replace(v_args, quote_literal('live'), quote_literal('final')));
    RETURN NEXT;
END
$$;

-------------------------------------------------------------------------------
-- Split: dependents of the moved columns
-------------------------------------------------------------------------------
CREATE FUNCTION customer_unify._split_dependents(m customer_unify.migration)
    RETURNS TABLE (object_type text, object_name text, dependency text, blocks_finalize boolean)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH moved AS (
        SELECT a.attnum, a.attname::text AS attname
          FROM pg_attribute a
         WHERE a.attrelid = m.source AND a.attnum > 0 AND NOT a.attisdropped
           AND a.attname::text IN (SELECT jsonb_array_elements_text(m.spec->'columns'))
    ), deps AS (
        SELECT d.classid, d.objid, string_agg(DISTINCT mv.attname, ', ') AS cols
          FROM pg_depend d JOIN moved mv ON mv.attnum = d.refobjsubid
         WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = m.source
           AND d.deptype IN ('n', 'a')
         GROUP BY d.classid, d.objid
    )
    -- views and rules
    SELECT 'view', r.ev_class::regclass::text, 'reads ' || deps.cols, true
      FROM deps JOIN pg_rewrite r ON deps.classid = 'pg_rewrite'::regclass AND r.oid = deps.objid
     WHERE r.ev_class <> m.source
    UNION ALL
    -- triggers (WHEN clauses, UPDATE OF lists), other than our own
    SELECT 'trigger', format('%I on %s', t.tgname, t.tgrelid::regclass), 'uses ' || deps.cols, true
      FROM deps JOIN pg_trigger t ON deps.classid = 'pg_trigger'::regclass AND t.oid = deps.objid
     WHERE t.tgname NOT IN ('customer_unify_sync', 'customer_unify_sync_flush', 'customer_unify_route')
    UNION ALL
    -- constraints: CHECKs and FKs that only use moved columns travel; others block
    SELECT CASE c.contype WHEN 'c' THEN 'check constraint' WHEN 'f' THEN 'foreign key'
                          WHEN 'u' THEN 'unique constraint' ELSE 'constraint' END,
           format('%I on %s', c.conname, c.conrelid::regclass),
           CASE WHEN c.contype IN ('c', 'f', 'u')
                     AND NOT EXISTS (SELECT 1 FROM unnest(c.conkey) k WHERE k NOT IN (SELECT attnum FROM moved))
                THEN CASE c.contype WHEN 'u' THEN 're-created on the target as a unique index on '
                                    ELSE 'moves to the target with ' END || deps.cols
                ELSE 'uses ' || deps.cols END,
           NOT (c.contype IN ('c', 'f', 'u')
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
       AND NOT i.indisprimary
       AND i.indexrelid NOT IN (SELECT c.conindid FROM pg_constraint c WHERE c.conrelid = m.source AND c.contype = 'u'
                                   AND EXISTS (SELECT 1 FROM unnest(c.conkey) k WHERE k NOT IN (SELECT attnum FROM moved)))
    UNION ALL
    -- functions with SQL-standard bodies, policies, statistics and defaults recorded in pg_depend
    SELECT 'function', deps.objid::regprocedure::text, 'reads ' || deps.cols, true
      FROM deps WHERE deps.classid = 'pg_proc'::regclass
    UNION ALL
    SELECT 'policy', format('%I on %s', p.polname, p.polrelid::regclass), 'uses ' || deps.cols, true
      FROM deps JOIN pg_policy p ON deps.classid = 'pg_policy'::regclass AND p.oid = deps.objid
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
                            AND t.tgname NOT IN ('customer_unify_sync', 'customer_unify_sync_flush')))
     GROUP BY p.oid
$$;

CREATE FUNCTION customer_unify.dependents(name text)
    RETURNS TABLE (object_type text, object_name text, dependency text, blocks_finalize boolean)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m customer_unify.migration := customer_unify._get(dependents.name);
BEGIN
    RETURN QUERY SELECT * FROM customer_unify._split_dependents(m) d ORDER BY 1, 2;
END
$$;
COMMENT ON FUNCTION customer_unify.dependents(text) IS
    'Objects that depend on the moved columns; those with blocks_finalize would break when finalize drops the columns.';

-------------------------------------------------------------------------------
-- Phases
-------------------------------------------------------------------------------
CREATE FUNCTION customer_unify.preview(name text)
    RETURNS TABLE (phase text, step int, statement text, lock_mode text, lock_relation text, rows_estimate bigint)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m customer_unify.migration := customer_unify._get(preview.name);
BEGIN
    RETURN QUERY
        SELECT s.phase, s.seq, s.statement, s.lock_mode, s.lock_relation, s.rows_estimate
          FROM customer_unify._split_steps(m) s
        UNION ALL
        SELECT 'rollback', 0, format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', m.source::text),
               'ACCESS EXCLUSIVE', m.source::text, NULL::bigint
        UNION ALL
        SELECT 'rollback', (row_number() OVER ())::int, s.inverse, NULL, NULL, NULL::bigint
          FROM (SELECT * FROM customer_unify._split_steps(m) x
                 WHERE x.inverse IS NOT NULL AND x.phase IN ('start', 'backfill_end', 'cutover')
                 ORDER BY array_position(ARRAY['start', 'backfill_end', 'cutover'], x.phase) DESC, x.seq DESC) s;
END
$$;
COMMENT ON FUNCTION customer_unify.preview(text) IS
    'Every statement each phase will run, with its lock mode and row estimate; rollback lists what undoes them.';

CREATE FUNCTION customer_unify._run_phase(m customer_unify.migration, p_phase text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v record;
BEGIN
    FOR v IN SELECT * FROM customer_unify._split_steps(m) s WHERE s.phase = p_phase ORDER BY s.seq LOOP
        -- a phase interrupted by a crash resumes after its last committed step
        CONTINUE WHEN EXISTS (SELECT 1 FROM customer_unify.step_log l
                               WHERE l.migration_id = m.id AND l.phase = v.phase AND l.seq = v.seq
                                 AND l.outcome = 'ok');
        PERFORM customer_unify._exec_step(m.id, v.phase, v.seq, v.statement, v.inverse, v.lock_mode, v.lock_relation);
    END LOOP;
END
$$;

CREATE FUNCTION customer_unify.start(name text) RETURNS text
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m customer_unify.migration := customer_unify._get(start.name);
    s jsonb;
BEGIN
    PERFORM customer_unify._check_owner(m);
    PERFORM customer_unify._require_state(m, ARRAY['planned'], 'start');
    -- the source may have changed since the plan: validate again before the first statement
    s := m.spec;
    PERFORM customer_unify._split_validate(m.name, m.source, s->>'target_table',
                                           ARRAY(SELECT jsonb_array_elements_text(s->'columns')),
                                           s->>'link_column', s->>'target_schema', s->>'target_key');
    PERFORM customer_unify._run_phase(m, 'start');
    PERFORM customer_unify._set_state(m.id, 'started');
    RETURN 'started';
END
$$;
COMMENT ON FUNCTION customer_unify.start(text) IS
    'Expand: creates the target table and installs the sync triggers. The source is not changed.';

-- Called by the C backfill engine once every row is copied, in two
-- transactions: p_phase 'backfill_end' (FKs added NOT VALID, source locked
-- first), then 'validate' (one pass per FK, writers not blocked; orphans a
-- racing delete left are removed only if validation finds any), which marks
-- the migration backfilled. Steps already run are skipped, so a crash between
-- the two resumes where it stopped.
CREATE FUNCTION customer_unify._backfill_complete(p_id bigint, p_phase text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m customer_unify.migration;
BEGIN
    SELECT * INTO m FROM customer_unify.migration x WHERE x.id = p_id;
    PERFORM customer_unify._require_state(m, ARRAY['started'], 'complete the backfill of');
    IF p_phase NOT IN ('backfill_end', 'validate') THEN
        RAISE EXCEPTION 'unknown backfill phase %', p_phase USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_phase = 'validate' THEN
        BEGIN
            PERFORM customer_unify._run_phase(m, 'validate');
        EXCEPTION WHEN foreign_key_violation THEN
            -- a delete raced a batch: remove the rows it orphaned, validate again
            PERFORM customer_unify._run_phase(m, 'orphans');
            PERFORM customer_unify._run_phase(m, 'validate');
        END;
    ELSE
        PERFORM customer_unify._run_phase(m, p_phase);
    END IF;
    IF p_phase = 'validate' THEN
        UPDATE customer_unify.backfill_state b SET finished_at = clock_timestamp() WHERE b.migration_id = p_id;
        PERFORM customer_unify._set_state(p_id, 'backfilled');
    END IF;
END
$$;

CREATE FUNCTION customer_unify._split_verify(m customer_unify.migration)
    RETURNS TABLE (check_name text, expected text, actual text, ok boolean)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s        jsonb := m.spec;
    v_src    text := customer_unify._qual(s->>'source_schema', s->>'source_table');
    v_tgt    text := customer_unify._qual(s->>'target_schema', s->>'target_table');
    v_key    text := quote_ident(s->>'key_column');
    v_link   text := quote_ident(s->>'link_column');
    v_cols   text[] := ARRAY(SELECT jsonb_array_elements_text(s->'columns'));
    v_shash  text := '';
    v_thash  text := '';
    v_sql    text;
    v_res    jsonb;
    v_fk     record;
    c        text;
    i        int := 0;
BEGIN
    FOREACH c IN ARRAY v_cols LOOP
        i := i + 1;
        v_shash := v_shash || format(', sum(hashtextextended(ROW(s.%s, s.%I)::text, 0)::numeric) AS h%s', v_key, c, i);
        v_thash := v_thash || format(', sum(hashtextextended(ROW(t.%s, t.%I)::text, 0)::numeric) AS h%s', v_link, c, i);
    END LOOP;
    -- one statement, one snapshot: both shapes are compared at the same instant
    v_sql := format(
        'SELECT jsonb_build_object(''src'', (SELECT to_jsonb(x) FROM (SELECT count(*) AS n%s FROM ONLY %s s) x), '
        '''tgt'', (SELECT to_jsonb(x) FROM (SELECT count(*) AS n%s FROM ONLY %s t) x), '
        '''missing'', (SELECT count(*) FROM ONLY %s s WHERE NOT EXISTS (SELECT 1 FROM ONLY %s t WHERE t.%s OPERATOR(pg_catalog.=) s.%s)), '
        '''orphans'', (SELECT count(*) FROM ONLY %s t WHERE NOT EXISTS (SELECT 1 FROM ONLY %s s WHERE s.%s OPERATOR(pg_catalog.=) t.%s)))',
        v_shash, v_src, v_thash, v_tgt, v_src, v_tgt, v_link, v_key, v_tgt, v_src, v_key, v_link);
    EXECUTE v_sql INTO v_res;

    check_name := 'row_count'; expected := v_res->'src'->>'n'; actual := v_res->'tgt'->>'n';
    ok := expected = actual; RETURN NEXT;
    check_name := 'missing_in_target'; expected := '0'; actual := v_res->>'missing';
    ok := expected = actual; RETURN NEXT;
    check_name := 'orphans_in_target'; expected := '0'; actual := v_res->>'orphans';
    ok := expected = actual; RETURN NEXT;
    i := 0;
    FOREACH c IN ARRAY v_cols LOOP
        i := i + 1;
        check_name := 'checksum:' || c;
        expected := COALESCE(v_res->'src'->>('h' || i), 'empty');
        actual := COALESCE(v_res->'tgt'->>('h' || i), 'empty');
        ok := expected = actual; RETURN NEXT;
    END LOOP;
    SELECT c2.convalidated INTO v_fk
      FROM pg_constraint c2
     WHERE c2.conrelid = to_regclass(v_tgt) AND c2.contype = 'f' AND c2.confrelid = m.source;
    check_name := 'link_foreign_key'; expected := 'validated';
    actual := CASE WHEN v_fk IS NULL THEN 'absent' WHEN v_fk.convalidated THEN 'validated' ELSE 'not validated' END;
    ok := expected = actual; RETURN NEXT;
END
$$;

CREATE FUNCTION customer_unify.verify(name text)
    RETURNS TABLE (check_name text, expected text, actual text, ok boolean)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m customer_unify.migration := customer_unify._get(verify.name);
    v_all boolean := true;
    r record;
BEGIN
    PERFORM customer_unify._require_state(m, ARRAY['started', 'backfilled', 'verified', 'cut_over'], 'verify');
    FOR r IN SELECT * FROM customer_unify._split_verify(m) LOOP
        check_name := r.check_name; expected := r.expected; actual := r.actual; ok := r.ok;
        v_all := v_all AND r.ok;
        RETURN NEXT;
    END LOOP;
    IF v_all AND m.state = 'backfilled' AND pg_has_role(m.owner, 'MEMBER') THEN
        PERFORM customer_unify._set_state(m.id, 'verified');
    END IF;
END
$$;
COMMENT ON FUNCTION customer_unify.verify(text) IS
    'Named checks of the new shape against the old: row counts, missing and orphan rows, per-column checksums, link FK.';

CREATE FUNCTION customer_unify.cutover(name text, skip_verify boolean DEFAULT false) RETURNS text
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m customer_unify.migration := customer_unify._get(cutover.name);
    v_failed text;
BEGIN
    PERFORM customer_unify._check_owner(m);
    PERFORM customer_unify._require_state(m, ARRAY['backfilled', 'verified'], 'cut over');
    IF NOT skip_verify THEN
        SELECT string_agg(format('%s: expected %s, got %s', v.check_name, v.expected, v.actual), '; ')
          INTO v_failed
          FROM customer_unify._split_verify(m) v WHERE NOT v.ok;
        IF v_failed IS NOT NULL THEN
            RAISE EXCEPTION 'verification of migration "%" failed', m.name
                USING ERRCODE = 'integrity_constraint_violation',
                      DETAIL = v_failed,
                      HINT = 'Inspect SELECT * FROM customer_unify.verify(...); pass skip_verify => true only if you accept the differences.';
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = m.spec->>'compat_schema') THEN
        RAISE EXCEPTION 'schema "%" already exists', m.spec->>'compat_schema'
            USING ERRCODE = 'duplicate_schema',
                  HINT = 'Drop or rename it; cutover creates the compatibility view there.';
    END IF;
    PERFORM customer_unify._run_phase(m, 'cutover');
    PERFORM customer_unify._set_state(m.id, 'cut_over');
    RETURN 'cut_over';
END
$$;
COMMENT ON FUNCTION customer_unify.cutover(text, boolean) IS
    'Re-runs verify, then creates the updatable compatibility view <name>_compat.<source> with the old shape.';

CREATE FUNCTION customer_unify.finalize(name text, ignore_text_matches boolean DEFAULT false) RETURNS text
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m customer_unify.migration := customer_unify._get(finalize.name);
    v_list text;
BEGIN
    PERFORM customer_unify._check_owner(m);
    PERFORM customer_unify._require_state(m, ARRAY['cut_over'], 'finalize');
    SELECT string_agg(format('%s %s (%s)', d.object_type, d.object_name, d.dependency), E'\n' ORDER BY d.object_type, d.object_name)
      INTO v_list
      FROM customer_unify._split_dependents(m) d
     WHERE d.blocks_finalize AND NOT (ignore_text_matches AND d.object_type = 'function (text match)');
    IF v_list IS NOT NULL THEN
        RAISE EXCEPTION 'cannot finalize migration "%": objects depend on the moved columns', m.name
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = v_list,
                  HINT = 'Point them at the new table or the compatibility view first; text matches can be overridden with ignore_text_matches => true.';
    END IF;
    PERFORM customer_unify._run_phase(m, 'finalize');
    PERFORM customer_unify._set_state(m.id, 'finalized');
    RETURN 'finalized';
END
$$;
COMMENT ON FUNCTION customer_unify.finalize(text, boolean) IS
    'Contract: drops the sync triggers and the moved columns from the source. After this there is no rollback.';

CREATE FUNCTION customer_unify.rollback(name text) RETURNS text
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m customer_unify.migration := customer_unify._get(rollback.name);
    v record;
BEGIN
    PERFORM customer_unify._check_owner(m);
    IF m.state = 'finalized' THEN
        RAISE EXCEPTION 'cannot roll back migration "%": it is finalized', m.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'finalize dropped the moved columns from the source; the data lives in the target now.';
    END IF;
    PERFORM customer_unify._require_state(m, ARRAY['planned', 'started', 'backfilled', 'verified', 'cut_over'], 'roll back');
    -- take the source first, in the order writers lock (source, then target
    -- through the triggers), so no inverse holds the target while waiting for it
    IF m.state <> 'planned' AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = m.source) THEN
        PERFORM customer_unify._exec_step(m.id, 'rollback', 0,
                                          format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', m.source::text),
                                          NULL, 'ACCESS EXCLUSIVE', m.source::text);
    END IF;
    -- replay the inverses of everything that ran, newest first
    FOR v IN
        SELECT l.* FROM customer_unify.step_log l
         WHERE l.migration_id = m.id AND l.outcome = 'ok' AND l.inverse IS NOT NULL
         ORDER BY l.id DESC
    LOOP
        PERFORM customer_unify._exec_step(m.id, 'rollback', v.seq, v.inverse, NULL, 'ACCESS EXCLUSIVE', v.lock_relation);
        UPDATE customer_unify.step_log l SET outcome = 'reverted' WHERE l.id = v.id;
    END LOOP;
    PERFORM customer_unify._set_state(m.id, 'rolled_back');
    RETURN 'rolled_back';
END
$$;
COMMENT ON FUNCTION customer_unify.rollback(text) IS
    'Undoes a migration from any state before finalize by replaying the step log backwards; the source was never changed.';

CREATE FUNCTION customer_unify.status(name text)
    RETURNS TABLE (migration text, kind text, state text, source text, target text, columns text[],
                   rows_done bigint, rows_total bigint, percent numeric, steps_run bigint,
                   created_at timestamptz, updated_at timestamptz, next_step text)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m customer_unify.migration := customer_unify._get(status.name);
BEGIN
    RETURN QUERY
        SELECT m.name, m.kind, m.state, m.source::text,
               customer_unify._qual(m.spec->>'target_schema', m.spec->>'target_table'),
               ARRAY(SELECT jsonb_array_elements_text(m.spec->'columns')),
               p.rows_done, p.rows_total, p.percent,
               (SELECT count(*) FROM customer_unify.step_log l WHERE l.migration_id = m.id),
               m.created_at, m.updated_at,
               customer_unify._next_step_hint(m.state, m.name)
          FROM customer_unify.progress p WHERE p.name = m.name;
END
$$;

-- One shot: start, backfill, verify, cutover (and finalize on request).
-- Commits between phases, so it carries no SET clause; it pins search_path per transaction.
CREATE PROCEDURE customer_unify.run(name text, batch_size integer DEFAULT 10000, sleep_ms integer DEFAULT 0,
                                    finalize boolean DEFAULT false)
    LANGUAGE plpgsql
AS $$
DECLARE
    v_state  text;
    v_failed text;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    v_state := (customer_unify._get(run.name)).state;
    IF v_state = 'planned' THEN
        v_state := customer_unify.start(run.name);
        COMMIT;
    END IF;
    IF v_state = 'started' THEN
        CALL customer_unify.backfill(run.name, run.batch_size, NULL, run.sleep_ms);
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        v_state := (customer_unify._get(run.name)).state;
    END IF;
    IF v_state = 'backfilled' THEN
        SELECT pg_catalog.string_agg(v.check_name, ', ') INTO v_failed
          FROM customer_unify.verify(run.name) v WHERE NOT v.ok;
        IF v_failed IS NOT NULL THEN
            RAISE EXCEPTION 'verification of migration "%" failed: %', run.name, v_failed
                USING ERRCODE = 'integrity_constraint_violation',
                      HINT = 'Inspect SELECT * FROM customer_unify.verify(...).';
        END IF;
        v_state := (customer_unify._get(run.name)).state;
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    END IF;
    IF v_state = 'verified' THEN
        v_state := customer_unify.cutover(run.name);
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    END IF;
    IF run.finalize AND v_state = 'cut_over' THEN
        v_state := customer_unify.finalize(run.name);
    END IF;
    RAISE NOTICE 'migration "%" is %', run.name, v_state;
END
$$;
COMMENT ON PROCEDURE customer_unify.run(text, integer, integer, boolean) IS
    'Runs start, backfill, verify and cutover in one call (finalize => true also finalizes); resumes where it stopped.';

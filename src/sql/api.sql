-------------------------------------------------------------------------------
-- api.sql: the public functions.  Each dispatches on the migration's kind
-- (customer_unify.operation) and leaves the work to the engine; none calls
-- an operation's own functions by name.
-------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION customer_unify.dependents(name text)
    RETURNS TABLE (object_type text, object_name text, dependency text, blocks_finalize boolean)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m customer_unify.migration := customer_unify._get(dependents.name);
BEGIN
    RETURN QUERY EXECUTE format('SELECT * FROM %s($1) d ORDER BY 1, 2',
                                customer_unify._operation_function(m.kind, 'dependents')) USING m;
END
$$;
COMMENT ON FUNCTION customer_unify.dependents(text) IS
    'Objects that depend on what the migration changes; those with blocks_finalize would break when finalize runs.';

CREATE OR REPLACE FUNCTION customer_unify.preview(name text)
    RETURNS TABLE (phase text, step int, statement text, lock_mode text, lock_relation text, rows_estimate bigint)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m customer_unify.migration := customer_unify._get(preview.name);
BEGIN
    IF EXISTS (SELECT 1 FROM customer_unify.step s WHERE s.migration_id = m.id) THEN
        -- started: the frozen plan, and the rollback of what ran
        RETURN QUERY
            SELECT s.phase, s.seq, s.statement, s.lock_mode, s.lock_relation, s.rows_estimate
              FROM customer_unify.step s WHERE s.migration_id = m.id
             ORDER BY array_position(ARRAY['start', 'backfill', 'backfill_end', 'orphans', 'validate', 'cutover', 'finalize'], s.phase), s.seq;
        RETURN QUERY
            SELECT 'rollback'::text, 0, format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE, for each table of the migration', m.source::text),
                   'ACCESS EXCLUSIVE'::text, m.source::text, NULL::bigint
            UNION ALL
            SELECT 'rollback', (row_number() OVER (ORDER BY x.ord))::int, x.inverse, NULL, NULL, NULL
              FROM (SELECT s.inverse, row_number() OVER (ORDER BY array_position(ARRAY['start', 'backfill_end', 'cutover'], s.phase) DESC, s.seq DESC) AS ord
                      FROM customer_unify.step s
                     WHERE s.migration_id = m.id AND s.inverse IS NOT NULL AND s.phase IN ('start', 'backfill_end', 'cutover')) x;
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'WITH s AS (SELECT * FROM %s($1)) '
        'SELECT s.phase, s.seq, s.statement, s.lock_mode, s.lock_relation, s.rows_estimate FROM s '
        'UNION ALL SELECT %L, 0, %L, %L, %L, NULL::bigint '
        'UNION ALL SELECT %L, (row_number() OVER (ORDER BY array_position(ARRAY[%L, %L, %L], s.phase) DESC, s.seq DESC))::int, '
        '       s.inverse, NULL, NULL, NULL FROM s WHERE s.inverse IS NOT NULL AND s.phase IN (%L, %L, %L)',
        customer_unify._operation_function(m.kind, 'steps'),
        'rollback', format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE, for each table of the migration', m.source::text),
        'ACCESS EXCLUSIVE', m.source::text,
        'rollback', 'start', 'backfill_end', 'cutover', 'start', 'backfill_end', 'cutover') USING m;
END
$$;
COMMENT ON FUNCTION customer_unify.preview(text) IS
    'Every statement each phase will run, with its lock mode and row estimate; rollback lists what undoes them.';

CREATE OR REPLACE FUNCTION customer_unify.start(name text) RETURNS text
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT customer_unify._run_phase((customer_unify._get(start.name)).id, 'start')
$$;
COMMENT ON FUNCTION customer_unify.start(text) IS
    'Expand: creates the new shape and installs the sync triggers. The old shape is not changed.';

-- The batch copy engine.  Commits after every batch, so it cannot carry a SET
-- clause; it pins search_path with a transaction-local setting per batch.
CREATE OR REPLACE PROCEDURE customer_unify.backfill(
    name            text,
    batch_size      integer DEFAULT 10000,
    max_batches     integer DEFAULT NULL,
    sleep_ms        integer DEFAULT 0,
    lock_timeout_ms integer DEFAULT 2000)
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_backfill_run';
COMMENT ON PROCEDURE customer_unify.backfill(text, integer, integer, integer, integer) IS
    'Copies existing rows in primary-key batches, COMMIT and checkpoint after each; resumable.';

CREATE OR REPLACE FUNCTION customer_unify.verify(name text)
    RETURNS TABLE (check_name text, expected text, actual text, ok boolean)
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM customer_unify._verify((customer_unify._get(verify.name)).id)
$$;
COMMENT ON FUNCTION customer_unify.verify(text) IS
    'Named checks of the new shape against the old: row counts, missing and orphan rows, per-column differences and checksums, link FK. All ok moves backfilled to verified.';

CREATE OR REPLACE FUNCTION customer_unify.cutover(name text, skip_verify boolean DEFAULT false) RETURNS text
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT customer_unify._run_phase((customer_unify._get(cutover.name)).id, 'cutover',
                                     jsonb_build_object('skip_verify', coalesce(cutover.skip_verify, false)))
$$;
COMMENT ON FUNCTION customer_unify.cutover(text, boolean) IS
    'Re-runs verify, then creates the updatable compatibility view <name>_compat.<source> with the old shape.';

CREATE OR REPLACE FUNCTION customer_unify.finalize(name text, ignore_text_matches boolean DEFAULT false) RETURNS text
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT customer_unify._run_phase((customer_unify._get(finalize.name)).id, 'finalize',
                                     jsonb_build_object('ignore_text_matches', coalesce(finalize.ignore_text_matches, false)))
$$;
COMMENT ON FUNCTION customer_unify.finalize(text, boolean) IS
    'Contract: with writes paused, compares both shapes exactly and refuses on any difference; then drops the sync triggers and what moved from the old shape. After this there is no rollback.';

CREATE OR REPLACE FUNCTION customer_unify.rollback(name text) RETURNS text
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT customer_unify._run_phase((customer_unify._get(rollback.name)).id, 'rollback')
$$;
COMMENT ON FUNCTION customer_unify.rollback(text) IS
    'Undoes a migration from any state before finalize by replaying the step log backwards; the old shape was never changed.';

CREATE OR REPLACE FUNCTION customer_unify.status(name text)
    RETURNS TABLE (migration text, kind text, state text, source text, target text, columns text[],
                   rows_done bigint, rows_total bigint, percent numeric, steps_run bigint,
                   created_at timestamptz, updated_at timestamptz, next_step text,
                   job_state text, job_error text)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m customer_unify.migration := customer_unify._get(status.name);
    d record;
BEGIN
    EXECUTE format('SELECT * FROM %s($1)', customer_unify._operation_function(m.kind, 'describe')) INTO d USING m;
    RETURN QUERY
        SELECT m.name, m.kind, m.state, m.source::text, d.target, d.columns,
               sum(p.rows_done)::bigint, sum(p.rows_total)::bigint,
               round(100.0 * sum(p.rows_done) / NULLIF(GREATEST(sum(p.rows_total), sum(p.rows_done)), 0), 1),
               (SELECT count(*) FROM customer_unify.step_log l WHERE l.migration_id = m.id),
               m.created_at, m.updated_at,
               customer_unify._next_step_hint(m.state, m.name),
               min(p.job_state), min(p.job_error)
          FROM customer_unify.progress p WHERE p.name = m.name;
END
$$;

-- One shot: start, backfill, verify, cutover (and finalize on request).
-- Commits between phases, so it carries no SET clause; it pins search_path per transaction.
CREATE OR REPLACE PROCEDURE customer_unify.run(name text, batch_size integer DEFAULT 10000, sleep_ms integer DEFAULT 0,
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

-------------------------------------------------------------------------------
-- engine.sql: the engine's C entry points and its SQL helpers.
--
-- search_path: every SQL and PL/pgSQL function pins it.  The exceptions:
--  * the row-level C trigger functions and the guards their WHEN clauses call
--    carry no SET clause, which would cost a GUC save/restore per row; they
--    need none, every statement they prepare is schema-qualified and names
--    operators by schema (OPERATOR(pg_catalog.=), or the key's own);
--  * the procedures that COMMIT (backfill, run) cannot carry one; they set it
--    transaction-locally in each transaction they open;
--  * the compatibility view's row function (see builders.sql) must stay
--    inlinable, which a SET clause forbids; its body is schema-qualified.
-------------------------------------------------------------------------------

-- true while a mirrored write of this migration runs (the sync triggers' WHEN)
CREATE OR REPLACE FUNCTION customer_unify._mirror_guard(migration bigint) RETURNS boolean
    LANGUAGE c VOLATILE STRICT PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'cu_mirror_guard';

-- true while the engine runs a migration's own statements (the DDL guard stands aside)
CREATE OR REPLACE FUNCTION customer_unify._engine_active() RETURNS boolean
    LANGUAGE c VOLATILE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'cu_engine_active';

-- true while the view router waits for the row its statement stored
CREATE OR REPLACE FUNCTION customer_unify._route_capturing() RETURNS boolean
    LANGUAGE c VOLATILE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'cu_route_capturing';

CREATE OR REPLACE FUNCTION customer_unify.mirror_row() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_mirror_row';
COMMENT ON FUNCTION customer_unify.mirror_row() IS
    'AFTER ROW sync trigger of a live migration: mirrors the row into the other shape, as its sync_map (the one argument) says.';

CREATE OR REPLACE FUNCTION customer_unify.mirror_flush() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_mirror_flush';
COMMENT ON FUNCTION customer_unify.mirror_flush() IS
    'AFTER STATEMENT sync trigger: writes the rows the row trigger collected with one statement.';

CREATE OR REPLACE FUNCTION customer_unify.mirror_truncate() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_mirror_truncate';
COMMENT ON FUNCTION customer_unify.mirror_truncate() IS
    'TRUNCATE triggers of a live migration: a TRUNCATE of the source empties the target too; the target alone cannot be truncated.';

CREATE OR REPLACE FUNCTION customer_unify.compat_route() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_compat_route';
COMMENT ON FUNCTION customer_unify.compat_route() IS
    'INSTEAD OF trigger of a compatibility view: routes INSERT/UPDATE/DELETE (with RETURNING) to the new tables.';

CREATE OR REPLACE FUNCTION customer_unify.route_capture() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_route_capture';
COMMENT ON FUNCTION customer_unify.route_capture() IS
    'After finalize: hands the compatibility-view router the row versions its statements stored.';

-- The trigger functions of 1.0, whose arguments carried the names themselves:
-- kept so that triggers 1.0 made (a migration finalized on 1.0 keeps its
-- view's router) go on working.  New migrations use the functions above.
CREATE OR REPLACE FUNCTION customer_unify._sync_guard_active() RETURNS boolean
    LANGUAGE c VOLATILE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'cu_sync_guard_active';
CREATE OR REPLACE FUNCTION customer_unify.split_sync_source() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_split_sync_source';
COMMENT ON FUNCTION customer_unify.split_sync_source() IS
    '1.0 sync trigger of a split source (arguments: names); kept for triggers made by 1.0.';
CREATE OR REPLACE FUNCTION customer_unify.split_sync_flush() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_split_sync_flush';
COMMENT ON FUNCTION customer_unify.split_sync_flush() IS
    '1.0 statement-level sync trigger of a split source; kept for triggers made by 1.0.';
CREATE OR REPLACE FUNCTION customer_unify.split_sync_target() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_split_sync_target';
COMMENT ON FUNCTION customer_unify.split_sync_target() IS
    '1.0 sync trigger of a split target (arguments: names); kept for triggers made by 1.0.';
CREATE OR REPLACE FUNCTION customer_unify.compat_view_route() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_compat_view_route';
COMMENT ON FUNCTION customer_unify.compat_view_route() IS
    '1.0 router of a compatibility view (arguments: names); kept for views made by 1.0.';

-- The engine (engine.c): the only writers of the catalog.
CREATE OR REPLACE FUNCTION customer_unify._create_migration(kind text, name text, args jsonb) RETURNS bigint
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_create_migration';
CREATE OR REPLACE FUNCTION customer_unify._run_phase(migration bigint, phase text, options jsonb DEFAULT NULL) RETURNS text
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_run_phase';
CREATE OR REPLACE FUNCTION customer_unify._verify(migration bigint)
    RETURNS TABLE (check_name text, expected text, actual text, ok boolean)
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_verify';
CREATE OR REPLACE FUNCTION customer_unify._phase_option(key text) RETURNS text
    LANGUAGE c STABLE STRICT
    AS 'MODULE_PATHNAME', 'cu_phase_option';
CREATE OR REPLACE FUNCTION customer_unify._copy_statement(plan jsonb) RETURNS text
    LANGUAGE c STABLE STRICT
    AS 'MODULE_PATHNAME', 'cu_copy_statement';
CREATE OR REPLACE FUNCTION customer_unify._plan_cache_stats(
    OUT entries bigint, OUT valid_entries bigint, OUT plans bigint, OUT builds bigint, OUT invalidations bigint)
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_plan_cache_stats';
COMMENT ON FUNCTION customer_unify._plan_cache_stats() IS
    'This backend''s cache of sync-trigger and router plans: entries, valid ones, kept plans, builds and invalidations since it started.';

-------------------------------------------------------------------------------
-- Helpers
-------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION customer_unify._qual(p_schema text, p_rel text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    SET search_path = pg_catalog, pg_temp
    RETURN pg_catalog.quote_ident(p_schema) OPERATOR(pg_catalog.||) '.'
           OPERATOR(pg_catalog.||) pg_catalog.quote_ident(p_rel);

-- Fetch a migration by name, or raise 42704.
CREATE OR REPLACE FUNCTION customer_unify._get(p_name text) RETURNS customer_unify.migration
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

CREATE OR REPLACE FUNCTION customer_unify._next_step_hint(p_state text, p_name text) RETURNS text
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

-- The function of an operation for one role (validate, steps, ...), for dynamic calls.
CREATE OR REPLACE FUNCTION customer_unify._operation_function(p_kind text, p_role text) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v text;
BEGIN
    EXECUTE format('SELECT o.%I::regproc::text FROM customer_unify.operation o WHERE o.kind = $1', p_role)
       INTO v USING p_kind;
    IF v IS NULL THEN
        RAISE EXCEPTION 'unknown kind of migration "%"', p_kind USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN v;
END
$$;

-- A relation of a migration by tag (NULL when it is not registered or gone).
CREATE OR REPLACE FUNCTION customer_unify._relation(p_migration bigint, p_tag text) RETURNS regclass
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.relid FROM customer_unify.migration_relation r
      JOIN pg_class c ON c.oid = r.relid
     WHERE r.migration_id = p_migration AND r.tag = p_tag
$$;

-- The id of a sync map of a migration.
CREATE OR REPLACE FUNCTION customer_unify._map_id(p_migration bigint, p_name text) RETURNS bigint
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.id FROM customer_unify.sync_map s WHERE s.migration_id = p_migration AND s.name = p_name
$$;

-------------------------------------------------------------------------------
-- Gates: steps of a phase that decide whether it may go on.  They read the
-- options the phase was called with (customer_unify._phase_option) and say
-- what they decided (kept in step_log.note).
-------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION customer_unify._gate_verify(p_migration bigint) RETURNS text
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m customer_unify.migration;
    v_failed text;
BEGIN
    SELECT * INTO m FROM customer_unify.migration x WHERE x.id = p_migration;
    -- the indexes its job builds are structure, not data: skip_verify does not skip them
    SELECT string_agg(format('%s: expected %s, got %s', c.check_name, c.expected, c.actual), '; ' ORDER BY c.check_name)
      INTO v_failed FROM customer_unify._job_index_checks(m.id) c WHERE NOT c.ok;
    IF v_failed IS NOT NULL THEN
        RAISE EXCEPTION 'migration "%" has indexes its job has not built', m.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = v_failed,
                  HINT = format('SELECT customer_unify.launch(%L); builds them; nothing was changed.', m.name);
    END IF;
    IF customer_unify._phase_option('skip_verify') = 'true' THEN
        RETURN 'verify skipped: called with skip_verify => true';
    END IF;
    -- the exact row-by-row comparison, without the checksums a DBA reads
    EXECUTE format('SELECT string_agg(format(%L, v.check_name, v.expected, v.actual), %L ORDER BY v.check_name) FROM %s($1, false) v WHERE NOT v.ok',
                   '%s: expected %s, got %s', '; ', customer_unify._operation_function(m.kind, 'verify'))
       INTO v_failed USING m;
    IF v_failed IS NOT NULL THEN
        RAISE EXCEPTION 'verification of migration "%" failed', m.name
            USING ERRCODE = 'integrity_constraint_violation',
                  DETAIL = v_failed,
                  HINT = 'Inspect SELECT * FROM customer_unify.verify(...); nothing was changed.';
    END IF;
    RETURN 'verified';
END
$$;

CREATE OR REPLACE FUNCTION customer_unify._gate_dependents(p_migration bigint) RETURNS text
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m customer_unify.migration;
    v_ignore boolean := coalesce(customer_unify._phase_option('ignore_text_matches') = 'true', false);
    v_list text;
BEGIN
    SELECT * INTO m FROM customer_unify.migration x WHERE x.id = p_migration;
    EXECUTE format('SELECT string_agg(format(%L, d.object_type, d.object_name, d.dependency), $3 ORDER BY d.object_type, d.object_name) '
                   'FROM %s($1) d WHERE d.blocks_finalize AND NOT ($2 AND d.object_type = %L)',
                   '%s %s (%s)', customer_unify._operation_function(m.kind, 'dependents'), 'function (text match)')
       INTO v_list USING m, v_ignore, E'\n';
    IF v_list IS NOT NULL THEN
        RAISE EXCEPTION 'cannot finalize migration "%": objects depend on the moved columns', m.name
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = v_list,
                  HINT = 'Point them at the new table or the compatibility view first; text matches can be overridden with ignore_text_matches => true.';
    END IF;
    RETURN CASE WHEN v_ignore THEN 'no blocking dependents (text matches ignored)' ELSE 'no blocking dependents' END;
END
$$;

-- The dependents of a migration that block its finalize, one per line (NULL:
-- none); the operation's plan function tells the DBA about them at once.
CREATE OR REPLACE FUNCTION customer_unify._blocking_dependents(p_migration bigint) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m customer_unify.migration;
    v_list text;
BEGIN
    SELECT * INTO m FROM customer_unify.migration x WHERE x.id = p_migration;
    EXECUTE format('SELECT string_agg(format(%L, d.object_type, d.object_name, d.dependency), $2 ORDER BY d.object_type, d.object_name) '
                   'FROM %s($1) d WHERE d.blocks_finalize',
                   '%s %s (%s)', customer_unify._operation_function(m.kind, 'dependents'))
       INTO v_list USING m, E'\n';
    RETURN v_list;
END
$$;

-------------------------------------------------------------------------------
-- Progress
-------------------------------------------------------------------------------
CREATE OR REPLACE VIEW customer_unify.progress WITH (security_invoker = true) AS
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
       b.finished_at,
       b.stream,
       customer_unify._job_state(j) AS job_state,
       j.phase AS job_phase,
       j.throttled_ms,
       j.throttle_reason,
       j.last_sqlstate AS job_sqlstate,
       j.last_error AS job_error
  FROM customer_unify.migration m
  LEFT JOIN customer_unify.backfill_state b ON b.migration_id = m.id
  LEFT JOIN customer_unify.job j ON j.migration_id = m.id;
COMMENT ON VIEW customer_unify.progress IS 'Backfill progress of every migration and copy stream: rows done / estimated total, rate and ETA; for a launched migration its job''s state, phase, time throttled and why, and last error.';
GRANT SELECT ON customer_unify.progress TO PUBLIC;

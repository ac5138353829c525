-------------------------------------------------------------------------------
-- jobs.sql: background jobs (src/jobs.c).  A job runs a migration's phases
-- in a background worker, as the migration's owner, from its state up to
-- `until`; it stops between two batches (or phases) when paused or
-- cancelled, and resume() continues it from the engine's checkpoint, also
-- after the worker was killed or the server restarted.  Each control
-- function checks that the caller may act for the migration (42501).
-------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION customer_unify._job_alive(migration bigint) RETURNS boolean
    LANGUAGE c VOLATILE STRICT
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'cu_job_alive';
COMMENT ON FUNCTION customer_unify._job_alive(bigint) IS
    'Does a worker of the migration''s job live (it holds the job''s advisory lock)?';

CREATE OR REPLACE FUNCTION customer_unify._job_state(j customer_unify.job) RETURNS text
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF j.state IN ('starting', 'running') AND NOT customer_unify._job_alive(j.migration_id) THEN
        -- the worker may have ended between the caller's snapshot and this look
        -- at its lock (it commits its last state, then exits): read the row again
        RETURN (SELECT CASE WHEN x.state IN ('starting', 'running') THEN 'interrupted' ELSE x.state END
                  FROM customer_unify.job x WHERE x.migration_id = j.migration_id);
    END IF;
    RETURN j.state;
END
$$;
COMMENT ON FUNCTION customer_unify._job_state(customer_unify.job) IS
    'The job''s state as the views show it: interrupted when it says starting or running but no worker holds its lock.';

-- The index that serves a planned index of the job: valid, on the table it
-- is planned for, the same key columns in order, the same uniqueness, no
-- expression or predicate; attached when it carries the planned constraint.
-- An attached one first, then the one of the planned name (an index a DBA
-- made by hand serves as well as the job's).  No row: none serves it.
CREATE OR REPLACE FUNCTION customer_unify._job_index_match(p_migration bigint, p_index_name text)
    RETURNS TABLE (index_oid oid, index_name name, attached boolean)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.indexrelid, ic.relname, a.attached
      FROM customer_unify.job_index x
      JOIN customer_unify.migration_relation r ON r.migration_id = x.migration_id AND r.tag = x.relation_tag AND r.live
      JOIN pg_index i ON i.indrelid = r.relid AND i.indisvalid AND i.indisunique = x.is_unique
                     AND i.indexprs IS NULL AND i.indpred IS NULL AND i.indnkeyatts = cardinality(x.columns)
      JOIN pg_class ic ON ic.oid = i.indexrelid
      CROSS JOIN LATERAL (SELECT x.as_constraint IS NULL OR EXISTS (
                                 SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = r.relid
                                    AND k.contype = CASE x.as_constraint WHEN 'primary key' THEN 'p' ELSE 'u' END) AS attached) a
     WHERE x.migration_id = p_migration AND x.index_name = p_index_name
       AND ARRAY(SELECT att.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
                   JOIN pg_attribute att ON att.attrelid = r.relid AND att.attnum = k.n
                  WHERE k.o <= i.indnkeyatts ORDER BY k.o) = x.columns
     ORDER BY a.attached DESC, ic.relname = x.index_name DESC, ic.relname
     LIMIT 1
$$;
COMMENT ON FUNCTION customer_unify._job_index_match(bigint, text) IS
    'The valid index (of the planned name, or any equivalent one) that serves an index the job plans, and whether it carries the planned constraint.';

-- verify's checks of the indexes the job builds: each must be served by a
-- valid index, attached when planned so (not only marked built).
CREATE OR REPLACE FUNCTION customer_unify._job_index_checks(p_migration bigint)
    RETURNS TABLE (check_name text, expected text, actual text, ok boolean)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'index ' || x.index_name || ' built by the job',
           'built' || coalesce(', attached as ' || x.as_constraint, ''),
           CASE WHEN mt.index_oid IS NOT NULL AND mt.attached
                THEN 'built' || coalesce(', attached as ' || x.as_constraint, '')
                     || CASE WHEN mt.index_name <> x.index_name THEN ' (by index ' || quote_ident(mt.index_name) || ')' ELSE '' END
                WHEN mt.index_oid IS NOT NULL THEN 'built, not attached'
                WHEN x.state = 'built' THEN 'missing (dropped or changed after it was built)'
                ELSE x.state || ' (SELECT customer_unify.launch(' || quote_literal(m.name) || ') builds it with CREATE INDEX CONCURRENTLY)' END,
           mt.index_oid IS NOT NULL AND mt.attached
      FROM customer_unify.job_index x
      JOIN customer_unify.migration m ON m.id = x.migration_id
      LEFT JOIN LATERAL customer_unify._job_index_match(x.migration_id, x.index_name) mt ON true
     WHERE x.migration_id = p_migration
     ORDER BY x.index_name
$$;
COMMENT ON FUNCTION customer_unify._job_index_checks(bigint) IS
    'verify''s check of each index the migration''s job builds: served by a valid index, attached as planned.';

CREATE OR REPLACE FUNCTION customer_unify.launch(name text, until text DEFAULT 'backfilled',
                                                 batch_size integer DEFAULT 10000,
                                                 lock_timeout_ms integer DEFAULT 2000) RETURNS text
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'cu_job_launch';
COMMENT ON FUNCTION customer_unify.launch(text, text, integer, integer) IS
    'Runs the migration''s phases (start, backfill, verify, cutover, finalize) up to until in a background worker, as the migration''s owner; returns at once.';

CREATE OR REPLACE FUNCTION customer_unify.pause(name text) RETURNS text
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'cu_job_pause';
COMMENT ON FUNCTION customer_unify.pause(text) IS
    'Asks the migration''s running job to stop after its current batch or phase; resume() continues it.';

CREATE OR REPLACE FUNCTION customer_unify.resume(name text) RETURNS text
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'cu_job_resume';
COMMENT ON FUNCTION customer_unify.resume(text) IS
    'Continues a paused, interrupted (worker killed, server restarted) or failed job from the engine''s checkpoint.';

CREATE OR REPLACE FUNCTION customer_unify.cancel(name text) RETURNS text
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'cu_job_cancel';
COMMENT ON FUNCTION customer_unify.cancel(text) IS
    'Stops the migration''s job for good after its current batch; the migration keeps its state and checkpoint.';

CREATE OR REPLACE FUNCTION customer_unify.set_throttle(name text, nice double precision DEFAULT 0.5,
                                                       chunk_ms integer DEFAULT 20,
                                                       max_lag_bytes bigint DEFAULT NULL,
                                                       window_start time DEFAULT NULL,
                                                       window_end time DEFAULT NULL,
                                                       throttle_query text DEFAULT NULL,
                                                       max_lock_waits integer DEFAULT NULL,
                                                       max_wal_bytes_per_sec bigint DEFAULT NULL) RETURNS void
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'cu_job_set_throttle';
COMMENT ON FUNCTION customer_unify.set_throttle(text, double precision, integer, bigint, time, time, text, integer, bigint) IS
    'Throttles the migration''s job from its next batch: sleep nice x batch time (0.5 unless given), batches of about chunk_ms (20 unless given; NULL: fixed batch_size), hold while replication lags more than max_lag_bytes, outside window_start .. window_end, while throttle_query returns true or while more than max_lock_waits lock requests on the migration''s tables wait, and sleep to keep the WAL the job writes under max_wal_bytes_per_sec. NULL turns one off.';

CREATE OR REPLACE FUNCTION customer_unify.add_index(name text, columns text[], is_unique boolean DEFAULT false,
                                                    relation_tag text DEFAULT 'target',
                                                    index_name text DEFAULT NULL,
                                                    as_constraint text DEFAULT NULL) RETURNS text
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'cu_job_add_index';
COMMENT ON FUNCTION customer_unify.add_index(text, text[], boolean, text, text, text) IS
    'Plans an index the migration''s job builds with CREATE [UNIQUE] INDEX CONCURRENTLY on a table the migration created, once the copy is in, and attaches with ADD CONSTRAINT ... USING INDEX when as_constraint is ''primary key'' or ''unique''; returns its name.';

CREATE OR REPLACE VIEW customer_unify.jobs WITH (security_invoker = true) AS
SELECT m.name,
       m.kind,
       m.state AS migration_state,
       customer_unify._job_state(j) AS state,
       j.request,
       j.until,
       j.phase,
       j.role,
       j.pid,
       (SELECT sum(b.rows_done)::bigint FROM customer_unify.backfill_state b WHERE b.migration_id = m.id) AS rows_done,
       (SELECT sum(b.rows_total)::bigint FROM customer_unify.backfill_state b WHERE b.migration_id = m.id) AS rows_total,
       j.batch_size,
       j.throttled_ms,
       j.throttle_reason,
       j.launched_at,
       j.started_at,
       j.updated_at,
       j.finished_at,
       j.last_sqlstate,
       j.last_error
  FROM customer_unify.job j
  JOIN customer_unify.migration m ON m.id = j.migration_id;
COMMENT ON VIEW customer_unify.jobs IS
    'Background jobs: state (interrupted when the worker is gone), phase, progress, throttling and last error.';
GRANT SELECT ON customer_unify.jobs TO PUBLIC;

/* customer_unify 1.3: the engine (catalog, phases, sync triggers, copy,
 * verify, guard), the split and merge operations on it, the normalizers
 * and the matcher.
 *
 * Assembled by `make sql` from src/sql/catalog.sql and the pieces listed in
 * the Makefile's SQL_PIECES; edit those, not this file.
 *
 * Orchestration is SQL and PL/pgSQL; the hot paths (sync triggers, the batch
 * copy engine, the compatibility-view router) and every write of the catalog
 * are C functions in the module.  Every generated statement quotes
 * identifiers (format('%I'), quote_ident) and every function pins
 * search_path, except the documented exceptions in src/sql/engine.sql.
 */
\echo Use "CREATE EXTENSION customer_unify" to load this file. \quit
-------------------------------------------------------------------------------
-- catalog/operation.sql: the registry of operations (1.1).  Its rows are
-- made by the release scripts (once.sql), not by users: not dumped.
-------------------------------------------------------------------------------
-- The operations (kinds of migration) and the functions that make each one:
-- the engine dispatches on kind through this table.
CREATE TABLE customer_unify.operation (
    kind        text PRIMARY KEY,
    validate    regprocedure NOT NULL,
    steps       regprocedure NOT NULL,
    copy_plan   regprocedure NOT NULL,
    verify      regprocedure NOT NULL,
    dependents  regprocedure NOT NULL,
    describe    regprocedure NOT NULL,
    security    regprocedure NOT NULL
);
COMMENT ON TABLE customer_unify.operation IS
    'The operations of the engine: for each kind, its spec validator, step generator, copy plan, verify checks, dependents, description and the steps that carry the source''s security to its copies.';

GRANT SELECT ON customer_unify.operation TO PUBLIC;

-------------------------------------------------------------------------------
-- catalog/base.sql: the tables 1.0 had, in their 1.1 shape (fresh install;
-- updates/1.0--1.1-pre.sql alters 1.0's into the same).
--
-- Every table is written only by the engine's C functions, which check the
-- caller's rights and then write as the extension's owner; no role has
-- INSERT, UPDATE or DELETE on them.  Everyone may read them (progress,
-- status).  The tables a migration carries are registered with
-- pg_extension_config_dump, so pg_dump keeps them.
--
-- The column order of each table is that of 1.0 followed by what 1.1 added,
-- so that a fresh install and 1.0 updated to 1.1 are the same
-- (sql/upgrade_paths.sql compares them).
-------------------------------------------------------------------------------

CREATE TABLE customer_unify.migration (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name <> ''),
    kind        text NOT NULL CONSTRAINT migration_kind_fkey REFERENCES customer_unify.operation (kind),
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
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    creates_tag   text,
    note          text
);
CREATE INDEX step_log_migration ON customer_unify.step_log (migration_id, id);
COMMENT ON TABLE customer_unify.step_log IS
    'Every statement run for a migration, with its inverse; rollback replays the inverses backwards.';

CREATE TABLE customer_unify.backfill_state (
    migration_id   bigint NOT NULL REFERENCES customer_unify.migration (id) ON DELETE CASCADE,
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
    finished_at    timestamptz,
    stream         text NOT NULL DEFAULT 'main',
    key_type       regtype,
    position       bytea,
    end_position   bytea,
    plan           jsonb,
    CONSTRAINT backfill_state_pkey PRIMARY KEY (migration_id, stream)
);
COMMENT ON TABLE customer_unify.backfill_state IS
    'One row per copy stream of a migration: its plan and checkpoint. position is the last key copied in the key type''s binary form (last_key is its text, for people), committed with each batch.';

SELECT pg_catalog.pg_extension_config_dump('customer_unify.migration', '');
SELECT pg_catalog.pg_extension_config_dump('customer_unify.migration_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('customer_unify.step_log', '');
SELECT pg_catalog.pg_extension_config_dump('customer_unify.step_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('customer_unify.backfill_state', '');

-- Anyone may read the catalog; nobody writes it but the engine.
GRANT USAGE ON SCHEMA customer_unify TO PUBLIC;
GRANT SELECT ON customer_unify.migration, customer_unify.step_log, customer_unify.backfill_state TO PUBLIC;

-------------------------------------------------------------------------------
-- catalog/engine.sql: the tables 1.1 added to the catalog (fresh install and
-- update alike).  Written only by the engine's C functions; read by all.
-------------------------------------------------------------------------------
-- The relations a migration owns or works on, by tag.  While a migration is
-- live (planned .. cut_over) each relation belongs to it alone.
CREATE TABLE customer_unify.migration_relation (
    migration_id bigint NOT NULL REFERENCES customer_unify.migration (id) ON DELETE CASCADE,
    tag          text NOT NULL,
    relid        regclass NOT NULL,
    role         text NOT NULL CHECK (role IN ('source', 'target', 'view', 'reference', 'history', 'archive')),
    created      boolean NOT NULL DEFAULT false,
    nspname      name NOT NULL,
    relname      name NOT NULL,
    live         boolean NOT NULL DEFAULT true,
    PRIMARY KEY (migration_id, tag)
);
CREATE UNIQUE INDEX migration_relation_one_live
    ON customer_unify.migration_relation (relid) WHERE live;
COMMENT ON TABLE customer_unify.migration_relation IS
    'Relations of each migration (source, target, compatibility view, ...) with the names they had when registered; a relation takes part in one live migration at most.';

-- Every statement of every phase, generated once by start() and run from here.
CREATE TABLE customer_unify.step (
    migration_id  bigint NOT NULL REFERENCES customer_unify.migration (id) ON DELETE CASCADE,
    phase         text NOT NULL,
    seq           int NOT NULL,
    statement     text NOT NULL,
    inverse       text,
    lock_mode     text,
    lock_relation text,
    rows_estimate bigint,
    registers     jsonb,
    PRIMARY KEY (migration_id, phase, seq)
);
COMMENT ON TABLE customer_unify.step IS
    'The frozen plan: every statement of every phase, generated at start; phases, resume and rollback run exactly these.';

-- What the C sync triggers and the view router copy where.  A trigger carries
-- one argument, the id of its map.
CREATE TABLE customer_unify.sync_map (
    id            bigserial PRIMARY KEY,
    migration_id  bigint NOT NULL REFERENCES customer_unify.migration (id) ON DELETE CASCADE,
    name          text NOT NULL,
    from_tag      text NOT NULL,
    to_tag        text NOT NULL,
    from_key      name NOT NULL,
    to_key        name NOT NULL,
    mode          text NOT NULL DEFAULT 'live' CHECK (mode IN ('live', 'final')),
    UNIQUE (migration_id, name)
);
CREATE TABLE customer_unify.sync_map_column (
    map_id       bigint NOT NULL REFERENCES customer_unify.sync_map (id) ON DELETE CASCADE,
    ord          int NOT NULL,
    from_column  name NOT NULL,
    to_column    name NOT NULL,
    PRIMARY KEY (map_id, ord)
);
COMMENT ON TABLE customer_unify.sync_map IS
    'Maps of the sync triggers and the compatibility-view router: from which relation (by tag) and key to which, with the column pairs in sync_map_column.';

SELECT pg_catalog.pg_extension_config_dump('customer_unify.migration_relation', '');
SELECT pg_catalog.pg_extension_config_dump('customer_unify.step', '');
SELECT pg_catalog.pg_extension_config_dump('customer_unify.sync_map', '');
SELECT pg_catalog.pg_extension_config_dump('customer_unify.sync_map_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('customer_unify.sync_map_column', '');

GRANT SELECT ON customer_unify.migration_relation, customer_unify.step,
                customer_unify.sync_map, customer_unify.sync_map_column TO PUBLIC;

-- A statement of a phase as a step builder returns it (builders.sql).
CREATE TYPE customer_unify.step_def AS (
    statement     text,
    inverse       text,
    lock_mode     text,
    lock_relation text,
    registers     jsonb
);
COMMENT ON TYPE customer_unify.step_def IS
    'One statement of a phase as a builder returns it; the operation adds the phase and the order.';
-------------------------------------------------------------------------------
-- catalog/merge.sql: the tables 1.2 added to the catalog (fresh install and
-- update alike): the id crosswalk of the operations that give rows new keys
-- and the DBA's decisions about matches.  Written only by the engine's C
-- functions (as the extension's owner, after checking the caller's rights
-- on the migration); read by all; kept by pg_dump.
-------------------------------------------------------------------------------
-- Every source row of a merge and the key of the target row it became.
-- Permanent: finalize keeps it, so old keys stay resolvable.
CREATE TABLE customer_unify.id_map (
    migration_id bigint NOT NULL REFERENCES customer_unify.migration (id) ON DELETE CASCADE,
    source_tag   text NOT NULL,
    source       regclass NOT NULL,
    old_key      text NOT NULL,
    old_key_type regtype NOT NULL,
    target_key   text NOT NULL,
    rule         text NOT NULL,
    merged_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration_id, source_tag, old_key)
);
CREATE INDEX id_map_target ON customer_unify.id_map (migration_id, target_key);
COMMENT ON TABLE customer_unify.id_map IS
    'The id crosswalk: each source row of a merge (its table and old key, as text and with its type), the key of the target row it became and the match rule that put it there.';

-- Manual decisions about two source rows: never merge them, or always.
-- They outlive re-runs of the match.
CREATE TABLE customer_unify.match_decision (
    migration_id bigint NOT NULL REFERENCES customer_unify.migration (id) ON DELETE CASCADE,
    decision     text NOT NULL CHECK (decision IN ('never', 'always')),
    a_tag        text NOT NULL,
    a_key        text NOT NULL,
    b_tag        text NOT NULL,
    b_key        text NOT NULL,
    decided_by   name NOT NULL DEFAULT current_user,
    decided_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration_id, a_tag, a_key, b_tag, b_key)
);
COMMENT ON TABLE customer_unify.match_decision IS
    'Decisions of the DBA about pairs of source rows of a merge (never merge, always merge); the matcher obeys them.';

SELECT pg_catalog.pg_extension_config_dump('customer_unify.id_map', '');
SELECT pg_catalog.pg_extension_config_dump('customer_unify.match_decision', '');

GRANT SELECT ON customer_unify.id_map, customer_unify.match_decision TO PUBLIC;

-- Clusters whose merged row the target refuses (a unique constraint of the
-- target that the match rules do not cover, e.g. two people with one
-- placeholder email): held for the DBA instead of failing the write that
-- formed them.  References to them stay empty until they are resolved.
CREATE TABLE customer_unify.merge_held (
    migration_id bigint NOT NULL REFERENCES customer_unify.migration (id) ON DELETE CASCADE,
    target_key   text NOT NULL,
    reason       text NOT NULL,
    held_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration_id, target_key)
);
COMMENT ON TABLE customer_unify.merge_held IS
    'Clusters of a merge held for review: the target refused their merged row (the reason says why); verify and cutover wait until they are resolved.';
SELECT pg_catalog.pg_extension_config_dump('customer_unify.merge_held', '');
GRANT SELECT ON customer_unify.merge_held TO PUBLIC;
-------------------------------------------------------------------------------
-- catalog/normalize-types.sql: the types 1.2 added for the normalizers (fresh
-- install and update alike; the functions on them are in normalize.sql).
-------------------------------------------------------------------------------
CREATE TYPE customer_unify.person_name AS (first_name text, last_name text);
COMMENT ON TYPE customer_unify.person_name IS
    'A person''s name in two parts, as split_name returns it and join_name takes it.';
-------------------------------------------------------------------------------
-- catalog/jobs.sql: background jobs (1.3; fresh install and update alike).
-- One row per migration that has or had a job: what its worker is asked to
-- do, what it does, its throttling, and how it ended.  Written only by the
-- C functions of src/jobs.c, as the extension's owner; read by all.
-------------------------------------------------------------------------------
CREATE TABLE customer_unify.job (
    migration_id    bigint PRIMARY KEY REFERENCES customer_unify.migration (id) ON DELETE CASCADE,
    state           text NOT NULL DEFAULT 'idle'
                    CHECK (state IN ('idle', 'starting', 'running', 'paused', 'cancelled', 'finished', 'failed')),
    request         text CHECK (request IN ('pause', 'cancel')),
    until           text NOT NULL DEFAULT 'backfilled'
                    CHECK (until IN ('started', 'backfilled', 'verified', 'cut_over', 'finalized')),
    batch_size      integer NOT NULL DEFAULT 10000 CHECK (batch_size > 0),
    lock_timeout_ms integer NOT NULL DEFAULT 2000 CHECK (lock_timeout_ms > 0),
    generation      integer NOT NULL DEFAULT 0,
    role            name,
    pid             integer,
    phase           text,
    launched_at     timestamptz,
    started_at      timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at     timestamptz,
    last_error      text,
    last_sqlstate   text,
    nice            double precision DEFAULT 0.5 CHECK (nice >= 0),  -- with chunk_ms 20: the default throttle (make bench, figure 8)
    chunk_ms        integer DEFAULT 20 CHECK (chunk_ms > 0),
    max_lag_bytes   bigint CHECK (max_lag_bytes > 0),
    window_start    time,
    window_end      time,
    throttle_query  text,
    max_lock_waits  integer CHECK (max_lock_waits >= 0),
    max_wal_bytes_per_sec bigint CHECK (max_wal_bytes_per_sec > 0),
    throttled_ms    bigint NOT NULL DEFAULT 0,
    throttle_reason text,
    CHECK ((window_start IS NULL) = (window_end IS NULL))
);
COMMENT ON TABLE customer_unify.job IS
    'Background job of a migration (launch, pause, resume, cancel, set_throttle): its worker''s state, request, throttling and last error.';
SELECT pg_catalog.pg_extension_config_dump('customer_unify.job', '');
REVOKE ALL ON customer_unify.job FROM PUBLIC;
GRANT SELECT ON customer_unify.job TO PUBLIC;

-- Indexes a job builds with CREATE [UNIQUE] INDEX CONCURRENTLY on a table its
-- migration created, once the copy is in (add_index); written by src/jobs.c.
CREATE TABLE customer_unify.job_index (
    migration_id bigint NOT NULL REFERENCES customer_unify.migration (id) ON DELETE CASCADE,
    index_name   name NOT NULL,
    relation_tag text NOT NULL,
    columns      name[] NOT NULL,
    is_unique    boolean NOT NULL DEFAULT false,
    as_constraint text CHECK (as_constraint IN ('primary key', 'unique')),
    state        text NOT NULL DEFAULT 'planned' CHECK (state IN ('planned', 'built', 'failed')),
    last_error   text,
    built_at     timestamptz,
    PRIMARY KEY (migration_id, index_name)
);
COMMENT ON TABLE customer_unify.job_index IS
    'Indexes a migration''s job builds concurrently on the tables the migration created, after the backfill, and attaches as a primary key or unique constraint (as_constraint): planned, built or failed (an invalid index dropped).';
SELECT pg_catalog.pg_extension_config_dump('customer_unify.job_index', '');
REVOKE ALL ON customer_unify.job_index FROM PUBLIC;
GRANT SELECT ON customer_unify.job_index TO PUBLIC;
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
-------------------------------------------------------------------------------
-- verify.sql: the one comparison every operation's verify is made of.
--
-- _compare(left, right, join condition, key expressions, columns) compares
-- two relations row by row in one statement (one snapshot): rows on each
-- side, rows of the left missing on the right, rows of the right with no
-- left row, and per column the number of rows whose values differ, with an
-- order-independent checksum of each side for people to compare.  A column
-- is (name, expression over the left row s, expression over the right row t);
-- the join condition pairs the rows (an equality of keys, or a path through
-- a mapping).  It runs as the caller: engine.c's _verify runs it as the
-- tables' owner, so no row is hidden from it.
-------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION customer_unify._compare(
    p_left regclass, p_left_key text,
    p_right regclass, p_right_key text,
    p_join text,
    p_columns jsonb,
    p_checksums boolean DEFAULT true)
    RETURNS TABLE (check_name text, expected text, actual text, ok boolean)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sel text := '';
    v_res jsonb;
    c record;
    v_whole boolean := NOT p_checksums;
BEGIN
    -- rows differ when their stored images do (the *= of REFRESH MATERIALIZED
    -- VIEW CONCURRENTLY): exact for every type, json, xml and point included,
    -- which have no equality operator; two NULLs are the same.  Without
    -- checksums, whole rows are compared first (one comparison a row); only
    -- if some differ is the comparison run again per column, to say which.
    <<compare>>
    LOOP
        v_sel := '';
        IF v_whole THEN
            SELECT format(' || jsonb_build_object(''dall'', count(*) FILTER (WHERE %s AND %s AND NOT pg_catalog.record_image_eq(ROW(%s), ROW(%s))))',
                          format('(%s) IS NOT NULL', p_left_key), format('(%s) IS NOT NULL', p_right_key),
                          string_agg(x.col->>'left', ', ' ORDER BY x.n), string_agg(x.col->>'right', ', ' ORDER BY x.n))
              INTO v_sel
              FROM jsonb_array_elements(p_columns) WITH ORDINALITY x(col, n);
        END IF;
        FOR c IN SELECT x.col, x.n FROM jsonb_array_elements(p_columns) WITH ORDINALITY x(col, n) WHERE NOT v_whole ORDER BY x.n LOOP
            -- one jsonb_build_object per column: a function takes 100 arguments at most
            v_sel := v_sel || ' || jsonb_build_object(';
            IF p_checksums THEN
                v_sel := v_sel || format(
                    '''l%1$s'', sum(hashtextextended(ROW(%2$s, %3$s)::text, 0)::numeric) FILTER (WHERE %6$s), '
                    '''r%1$s'', sum(hashtextextended(ROW(%4$s, %5$s)::text, 0)::numeric) FILTER (WHERE %7$s), ',
                    c.n, p_left_key, c.col->>'left', p_right_key, c.col->>'right',
                    format('(%s) IS NOT NULL', p_left_key), format('(%s) IS NOT NULL', p_right_key));
            END IF;
            v_sel := v_sel || format(
                '''d%1$s'', count(*) FILTER (WHERE %4$s AND %5$s AND NOT pg_catalog.record_image_eq(ROW(%2$s), ROW(%3$s))))',
                c.n, c.col->>'left', c.col->>'right',
                format('(%s) IS NOT NULL', p_left_key), format('(%s) IS NOT NULL', p_right_key));
        END LOOP;
        EXECUTE format(
            'SELECT jsonb_build_object(''left_rows'', count(*) FILTER (WHERE %1$s), '
            '''right_rows'', count(*) FILTER (WHERE %2$s), '
            '''missing'', count(*) FILTER (WHERE %1$s AND NOT %2$s), '
            '''orphans'', count(*) FILTER (WHERE %2$s AND NOT %1$s))%3$s '
            'FROM ONLY %4$s s FULL JOIN ONLY %5$s t ON %6$s',
            format('(%s) IS NOT NULL', p_left_key), format('(%s) IS NOT NULL', p_right_key),
            coalesce(v_sel, ''), p_left, p_right, p_join)
           INTO v_res;
        EXIT compare WHEN NOT v_whole OR coalesce((v_res->>'dall')::bigint, 0) = 0;
        v_whole := false;
    END LOOP;

    check_name := 'row_count'; expected := v_res->>'left_rows'; actual := v_res->>'right_rows';
    ok := expected = actual; RETURN NEXT;
    check_name := 'missing_in_target'; expected := '0'; actual := v_res->>'missing';
    ok := expected = actual; RETURN NEXT;
    check_name := 'orphans_in_target'; expected := '0'; actual := v_res->>'orphans';
    ok := expected = actual; RETURN NEXT;
    FOR c IN SELECT x.col, x.n FROM jsonb_array_elements(p_columns) WITH ORDINALITY x(col, n) ORDER BY x.n LOOP
        IF p_checksums THEN
            check_name := 'checksum:' || (c.col->>'name');
            expected := coalesce(v_res->>('l' || c.n), 'empty');
            actual := coalesce(v_res->>('r' || c.n), 'empty');
            ok := expected = actual AND (v_res->>('d' || c.n))::bigint = 0;
            IF expected = actual AND NOT ok THEN
                actual := actual || format(' (but %s rows differ)', v_res->>('d' || c.n));
            END IF;
        ELSE
            check_name := 'rows_differ:' || (c.col->>'name');
            expected := '0'; actual := coalesce(v_res->>('d' || c.n), '0');
            ok := expected = actual;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION customer_unify._compare(regclass, text, regclass, text, text, jsonb, boolean) IS
    'Compares two relations row by row in one statement: counts, missing and orphan rows, and per column the rows that differ; with p_checksums also a checksum of each side, for the DBA (the row-by-row comparison alone is exact: it is what finalize runs while writes wait).';
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
-------------------------------------------------------------------------------
-- normalize.sql: the normalizers (C, src/normalize.c and src/phone.cpp) that
-- give the match keys of e-mail addresses, phone numbers and names.
--
-- A key is what two values are matched on, never a rewrite of what was
-- typed; NULL means "not an address / not a number", and matching skips it.
-- The keys are IMMUTABLE so that expression indexes can hold them, but they
-- depend on the rules' version and on libidn2 and libphonenumber:
-- normalizer_version() (STABLE) names both, the merge stores it beside
-- every key it derives, and an index on a key wants a REINDEX after either
-- library is upgraded.  The type person_name is in catalog/normalize-types.sql.
-------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION customer_unify.normalize_email(address text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_normalize_email';
COMMENT ON FUNCTION customer_unify.normalize_email(text) IS
    'The match key of an e-mail address: trimmed, ASCII letters of the local part lower-cased (other characters as typed: no Unicode case folding), the domain lower-cased in its IDNA ASCII form (libidn2; non-ASCII domains only in a UTF8 database). NULL for what is not an address: no or several @, white space inside, an empty or over-long (64 bytes) local part that is not a dot-atom, a domain without a dot or with an invalid label.';

CREATE OR REPLACE FUNCTION customer_unify.normalize_email_provider(address text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_normalize_email_provider';
COMMENT ON FUNCTION customer_unify.normalize_email_provider(text) IS
    'A weaker key than normalize_email, which it starts from: what some providers deliver to one mailbox. gmail.com and googlemail.com: dots and a +tag of the local part removed, the domain gmail.com; other domains: a +tag removed. Two addresses with one provider key need not be one mailbox: match on it only where that risk is accepted.';

CREATE OR REPLACE FUNCTION customer_unify.normalize_phone(phone text, default_region text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_normalize_phone';
COMMENT ON FUNCTION customer_unify.normalize_phone(text, text) IS
    'The E.164 form (+14155550100) of a phone number, parsed by libphonenumber with default_region (ISO 3166-1 code, e.g. ''US'') for numbers in national form; an empty region accepts only the international form (+...). NULL for what does not parse or is not a possible number (IsPossibleNumber: the length fits the country''s plan). Extensions are dropped. An unknown region is an error (22023). STRICT: a NULL region gives NULL; for numbers in international form only, pass '''' or call normalize_phone(text).';

CREATE OR REPLACE FUNCTION customer_unify.normalize_phone(phone text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_normalize_phone_intl';
COMMENT ON FUNCTION customer_unify.normalize_phone(text) IS
    'normalize_phone without a default region: only numbers in international form (+...) parse; NULL for the rest.';

CREATE OR REPLACE FUNCTION customer_unify.split_name(full_name text) RETURNS customer_unify.person_name
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_split_name';
COMMENT ON FUNCTION customer_unify.split_name(text) IS
    'A full name split into first and last name, white space trimmed and collapsed: "Last, First" at the first comma; one word is a first name; otherwise the first word is the first name and the rest the last name, unless the first word is a lower-case particle (van, von, de, da, del, der, di, le, la, du, dos, bin, al), which keeps all with the last name. Empty parts are NULL.';

CREATE OR REPLACE FUNCTION customer_unify.join_name(first_name text, last_name text) RETURNS text
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_join_name';
COMMENT ON FUNCTION customer_unify.join_name(text, text) IS
    'First and last name, each trimmed, joined by one space; either may be NULL or blank; NULL when both are.';

CREATE OR REPLACE FUNCTION customer_unify.join_name(name customer_unify.person_name) RETURNS text
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_join_person_name';
COMMENT ON FUNCTION customer_unify.join_name(customer_unify.person_name) IS
    'join_name of the two fields of a person_name: join_name(split_name(x)) is x with its white space collapsed, for names without a comma.';

CREATE OR REPLACE FUNCTION customer_unify.normalizer_version(normalizer text) RETURNS text
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_normalizer_version';
COMMENT ON FUNCTION customer_unify.normalizer_version(text) IS
    'The version of a normalizer''s rules and of the library under them (e.g. ''normalize_email/1 libidn2/2.3.3''), stored beside every key derived from it: keys of different versions may differ. For normalize_email, normalize_email_provider, normalize_phone and split_name; another name is an error (22023).';
-------------------------------------------------------------------------------
-- match.sql: the matcher's primitives (src/match.c).  The merge operation's
-- match rules are passes of: block keys (SQL expressions equal, non-NULL and
-- non-blank between two records), a score over the two records and a
-- threshold; the pairs every pass accepts are edges, and clusters() makes
-- identities of them, transitively.
--
-- No SET search_path: these run no SQL, and the similarity functions are
-- called once per compared pair (a SET clause would cost a GUC save and
-- restore on every call).
-------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION customer_unify.jaro(text, text) RETURNS float8
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_jaro';
COMMENT ON FUNCTION customer_unify.jaro(text, text) IS
    'Jaro similarity (0..1) of two strings, on code points, case as given: 1 for two empty strings, 0 when one is empty.';

CREATE OR REPLACE FUNCTION customer_unify.jaro_winkler(text, text) RETURNS float8
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_jaro_winkler';
COMMENT ON FUNCTION customer_unify.jaro_winkler(text, text) IS
    'Jaro-Winkler similarity (0..1) of two strings, on code points, case as given: Jaro plus 0.1 per equal leading character (at most 4) of what is left to 1, when Jaro > 0.7.';

CREATE OR REPLACE FUNCTION customer_unify.clusters(a bigint[], b bigint[], max_size int DEFAULT NULL)
    RETURNS TABLE (node bigint, cluster bigint, size int, oversized boolean)
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_clusters';
COMMENT ON FUNCTION customer_unify.clusters(bigint[], bigint[], int) IS
    'Connected components of the edges (a[i], b[i]): each node of an edge once, the smallest node id of its component, the component''s size, and whether it is larger than max_size (NULL: never). A NULL array counts as empty.';
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
-------------------------------------------------------------------------------
-- rekey.sql: the rekey operation (1.3).  A child table whose primary key is
-- also its link to a parent (Django multi-table inheritance: users_customer
-- (user_ptr_id PK -> users_user.id)) gets its own key and a separate link,
-- in place: users_customer(id PK, user_id UNIQUE NOT NULL -> users_user.id).
-- Ids are preserved: id = user_id = the old user_ptr_id.
--
--   start     adds the key and the link (empty columns: a catalog change),
--             the C trigger that keeps the three columns one value while
--             applications of both shapes write (rekey_sync.c), the same on
--             each history table, and the old shape as a view in
--             <name>_compat; plans the unique indexes the job builds
--   backfill  fills the two columns in committed batches (UPDATE)
--   (job)     CREATE UNIQUE INDEX CONCURRENTLY on the key and the link
--   cutover   the new key is enforced: every foreign key that referenced
--             the old key gets its twin on the new key, the link its foreign
--             key to the parent, both columns a NOT NULL check; all NOT
--             VALID (catalog changes under short locks)
--   finalize  validates them (writes go on), compares under SHARE, then the
--             swap under ACCESS EXCLUSIVE: the old references and the old
--             primary key go, the key becomes the primary key (its index, no
--             scan), the link NOT NULL UNIQUE, the old key column is dropped,
--             the key gets its identity above the largest id; the view now
--             reads the link as the old key
--   rollback  before finalize: everything start and cutover added goes; the
--             old key, its primary key and its references were never
--             touched
-------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION customer_unify.rekey_sync() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_rekey_sync';
COMMENT ON FUNCTION customer_unify.rekey_sync() IS
    'BEFORE INSERT OR UPDATE row trigger of a live rekey: keeps the parent link (argument 1), the new key (2) and the link (3) one value, whichever of them a write names; on a history table (arguments 4.. : parent, its key, columns) fills the columns copied from the parent.';

-- The columns of a history table its old shape copied from the parent
-- (an MTI child's history has the parent's fields too), which the new
-- shape's history no longer writes: those of the parent that the child
-- itself does not have.
CREATE OR REPLACE FUNCTION customer_unify._rekey_parent_columns(p_history regclass, p_source regclass, p_parent regclass,
                                                                p_skip text[])
    RETURNS text[]
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(h.attname::text ORDER BY h.attnum), '{}')
      FROM pg_attribute h
     WHERE h.attrelid = p_history AND h.attnum > 0 AND NOT h.attisdropped AND h.attgenerated = ''
       AND NOT (h.attname::text = ANY (p_skip))
       AND EXISTS (SELECT 1 FROM pg_attribute p WHERE p.attrelid = p_parent AND p.attname = h.attname AND NOT p.attisdropped AND p.attnum > 0)
       AND NOT EXISTS (SELECT 1 FROM pg_attribute s WHERE s.attrelid = p_source AND s.attname = h.attname AND NOT s.attisdropped AND s.attnum > 0)
$$;

-- A new column's name: given, not null, fits NAMEDATALEN.
CREATE OR REPLACE FUNCTION customer_unify._rekey_check_name(p_what text, p_value text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_value IS NULL OR p_value = '' THEN
        RAISE EXCEPTION '% must not be empty', p_what USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF octet_length(p_value) > 63 THEN
        RAISE EXCEPTION '% "%" is longer than 63 bytes', p_what, p_value USING ERRCODE = 'name_too_long';
    END IF;
    RETURN p_value;
END
$$;

-- Validate a rekey and return its plan for the engine.
-- args: source (oid), parent_link, new_key, link_column, history (oids).
CREATE OR REPLACE FUNCTION customer_unify._rekey_validate(p_name text, p_args jsonb)
    RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t          record := customer_unify._kit_table(p_args);
    v_pk       record;
    v_fk       record;
    v_key      text;
    v_new      text;
    v_link     text;
    v_type     regtype;
    v_compat   text;
    v_hist     jsonb := '[]';
    v_refs     jsonb := '[]';
    v_kept     jsonb;
    v_h        record;
    v_hrel     regclass;
    v_hpk      record;
    v_n        int := 0;
    v_owner    oid := (SELECT c.relowner FROM pg_class c WHERE c.oid = t.source);
    v_r        record;
BEGIN
    v_compat := p_name || '_compat';
    IF octet_length(v_compat) > 63 THEN
        RAISE EXCEPTION 'migration name "%" is too long', p_name
            USING ERRCODE = 'name_too_long',
                  DETAIL = 'The compatibility schema is named <name>_compat and must fit in 63 bytes.';
    END IF;
    -- the primary key: one integer column, which is the parent link
    SELECT i.indnkeyatts AS n, a.attname::text AS col, a.atttypid::regtype AS typ, i.indexrelid
      INTO v_pk
      FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
     WHERE i.indrelid = t.source AND i.indisprimary;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% has no primary key', t.source::text
            USING ERRCODE = 'invalid_table_definition',
                  HINT = 'A rekey gives a table whose primary key is its link to a parent (user_ptr_id) its own key.';
    END IF;
    IF v_pk.n <> 1 THEN
        RAISE EXCEPTION 'the primary key of % has % columns', t.source::text, v_pk.n
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'A rekey takes a one-column primary key that is the link to the parent.';
    END IF;
    v_key := coalesce(p_args->>'parent_link', v_pk.col);
    IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = t.source AND a.attname = v_key AND a.attnum > 0 AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'column "%" of % does not exist', v_key, t.source::text USING ERRCODE = 'undefined_column';
    END IF;
    IF v_key <> v_pk.col THEN
        RAISE EXCEPTION 'column "%" is not the primary key of %', v_key, t.source::text
            USING ERRCODE = 'invalid_table_definition',
                  DETAIL = format('The primary key of %s is %I.', t.source::text, v_pk.col),
                  HINT = 'parent_link names the primary key that is also the foreign key to the parent (Django: <parent>_ptr_id).';
    END IF;
    v_type := v_pk.typ;
    IF v_type NOT IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) THEN
        RAISE EXCEPTION 'the key "%" of % is of type %', v_key, t.source::text, v_type
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'A rekey keeps smallint, integer and bigint keys (the new key gets an identity above the largest).';
    END IF;
    -- the key is a foreign key to the parent: a multi-table-inheritance child
    SELECT c.oid, c.confrelid::regclass AS parent, pa.attname::text AS parent_key, c.conname
      INTO v_fk
      FROM pg_constraint c
      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
      JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = c.confkey[1]
     WHERE c.conrelid = t.source AND c.contype = 'f' AND array_length(c.conkey, 1) = 1 AND a.attname = v_key
     ORDER BY c.conname LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not a child table: its key "%" references no parent', t.source::text, v_key
            USING ERRCODE = 'invalid_foreign_key',
                  HINT = 'A rekey is for a table whose primary key is a foreign key to its parent (Django multi-table inheritance).';
    END IF;
    IF v_fk.parent = t.source THEN
        RAISE EXCEPTION 'the key "%" of % references the table itself', v_key, t.source::text
            USING ERRCODE = 'invalid_foreign_key';
    END IF;
    -- the new columns
    v_new := customer_unify._rekey_check_name('new_key', coalesce(p_args->>'new_key', 'id'));
    v_link := p_args->>'link_column';
    IF v_link IS NULL THEN
        IF v_key !~ '_ptr_id$' THEN
            RAISE EXCEPTION 'link_column must be given: "%" is not named <parent>_ptr_id', v_key
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'link_column names the new column that links to the parent, e.g. user_id.';
        END IF;
        v_link := regexp_replace(v_key, '_ptr_id$', '_id');
    END IF;
    v_link := customer_unify._rekey_check_name('link_column', v_link);
    IF v_new = v_link OR v_new = v_key OR v_link = v_key THEN
        RAISE EXCEPTION 'the parent link, new_key and link_column must be three different names ("%", "%", "%")', v_key, v_new, v_link
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR v_r IN SELECT x FROM unnest(ARRAY[v_new, v_link]) x
                WHERE EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = t.source AND a.attname = x AND a.attnum > 0 AND NOT a.attisdropped) LOOP
        RAISE EXCEPTION 'column "%" of % already exists', v_r.x, t.source::text
            USING ERRCODE = 'duplicate_column',
                  HINT = 'new_key and link_column name columns the rekey adds.';
    END LOOP;
    FOR v_r IN SELECT x FROM unnest(ARRAY[customer_unify._b_clip_name(t.relname || '_' || v_new, '_key'),
                                          customer_unify._b_clip_name(t.relname || '_' || v_link, '_key')]) x
                WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = t.source)
                                 AND c.relname = x) LOOP
        RAISE EXCEPTION 'relation "%" already exists in schema %', v_r.x, quote_ident(t.nspname)
            USING ERRCODE = 'duplicate_table',
                  HINT = 'The rekey''s job builds its unique indexes under these names.';
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = v_compat) THEN
        RAISE EXCEPTION 'schema "%" already exists', v_compat
            USING ERRCODE = 'duplicate_schema',
                  HINT = 'The compatibility schema of a rekey is <name>_compat; choose another migration name.';
    END IF;
    IF NOT has_database_privilege(v_owner, current_database(), 'CREATE') THEN
        RAISE EXCEPTION 'role % may not create schemas in database "%"', pg_get_userbyid(v_owner), current_database()
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'start creates the compatibility schema as the owner of the table.',
                  HINT = format('GRANT CREATE ON DATABASE %I TO %I;', current_database(), pg_get_userbyid(v_owner));
    END IF;
    -- every foreign key that references the key follows it (one owner: the
    -- rekey alters them as the table's owner)
    FOR v_r IN
        SELECT c.oid, c.conrelid::regclass AS rel, cl.relkind, cl.relowner, a.attname::text AS col
          FROM pg_constraint c
          JOIN pg_class cl ON cl.oid = c.conrelid
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
         WHERE c.contype = 'f' AND c.confrelid = t.source AND c.confkey = ARRAY[(SELECT a2.attnum FROM pg_attribute a2
                                                                               WHERE a2.attrelid = t.source AND a2.attname = v_key)]
           AND c.conparentid = 0
         ORDER BY c.conrelid::regclass::text, c.conname
    LOOP
        IF v_r.relkind = 'p' THEN
            RAISE EXCEPTION 'partitioned table % references %', v_r.rel::text, t.source::text
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'A foreign key of a partitioned table cannot be added NOT VALID; re-point it by hand first.';
        END IF;
        IF v_r.relowner <> v_owner THEN
            RAISE EXCEPTION '% references % but has another owner', v_r.rel::text, t.source::text
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'The rekey re-points its foreign key as the owner of both; ALTER TABLE ... OWNER TO one role first.';
        END IF;
        v_n := v_n + 1;
        v_refs := v_refs || jsonb_build_object('tag', 'ref' || v_n, 'relid', v_r.rel::oid, 'constraint', v_r.oid,
                                               'column', v_r.col, 'fk', customer_unify._b_clip_name(
                                                   (SELECT c.conname FROM pg_constraint c WHERE c.oid = v_r.oid), '_rekey'));
    END LOOP;
    -- history tables: the old key, a one-column primary key, integer new columns if present
    v_n := 0;
    FOR v_h IN SELECT (x::oid)::regclass AS rel FROM jsonb_array_elements_text(CASE jsonb_typeof(p_args->'history') WHEN 'array' THEN p_args->'history' ELSE '[]' END) x LOOP
        v_hrel := v_h.rel;
        IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = v_hrel) THEN
            RAISE EXCEPTION 'relation with OID % does not exist', v_hrel::oid USING ERRCODE = 'undefined_table';
        END IF;
        IF v_hrel = t.source THEN
            RAISE EXCEPTION '% cannot be its own history table', t.source::text USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF (SELECT c.relkind FROM pg_class c WHERE c.oid = v_hrel) <> 'r' THEN
            RAISE EXCEPTION '% is not an ordinary table', v_hrel::text USING ERRCODE = 'wrong_object_type';
        END IF;
        IF (SELECT c.relowner FROM pg_class c WHERE c.oid = v_hrel) <> v_owner THEN
            RAISE EXCEPTION 'history table % has another owner than %', v_hrel::text, t.source::text
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'The rekey alters the history as the owner of both; ALTER TABLE ... OWNER TO one role first.';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_hrel AND a.attname = v_key AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'history table % has no column "%"', v_hrel::text, v_key
                USING ERRCODE = 'undefined_column',
                      HINT = 'A history table copies the child''s columns, its key included.';
        END IF;
        IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_hrel AND a.attname::text IN (v_key, v_new, v_link)
                      AND NOT a.attisdropped AND a.atttypid NOT IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype)) THEN
            RAISE EXCEPTION 'history table % has a column "%", "%" or "%" that is not an integer', v_hrel::text, v_key, v_new, v_link
                USING ERRCODE = 'datatype_mismatch';
        END IF;
        SELECT i.indnkeyatts AS n, a.attname::text AS col, a.atttypid::regtype AS typ INTO v_hpk
          FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indrelid = v_hrel AND i.indisprimary;
        IF NOT FOUND OR v_hpk.n <> 1 OR v_hpk.col IN (v_key, v_new, v_link) THEN
            RAISE EXCEPTION 'history table % has no one-column primary key of its own', v_hrel::text
                USING ERRCODE = 'invalid_table_definition',
                      HINT = 'The rekey fills the history in batches by its own key (django-simple-history: history_id).';
        END IF;
        v_n := v_n + 1;
        v_hist := v_hist || jsonb_build_object(
            'tag', 'history' || v_n, 'relid', v_hrel::oid, 'key', v_hpk.col,
            'add_key', NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_hrel AND a.attname = v_new AND NOT a.attisdropped),
            'add_link', NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_hrel AND a.attname = v_link AND NOT a.attisdropped),
            'parent_columns', to_jsonb(customer_unify._rekey_parent_columns(v_hrel, t.source, v_fk.parent, ARRAY[v_key, v_new, v_link])));
    END LOOP;
    IF (SELECT count(DISTINCT e->>'relid') FROM jsonb_array_elements(v_hist) e) <> jsonb_array_length(v_hist) THEN
        RAISE EXCEPTION 'a history table is named twice' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- what the DDL guard keeps while the rekey is live
    v_kept := (SELECT jsonb_agg(jsonb_build_array(t.source::oid, c)) FROM unnest(ARRAY[v_key, v_new, v_link]) c)
              || coalesce((SELECT jsonb_agg(jsonb_build_array((h->>'relid')::oid, c))
                             FROM jsonb_array_elements(v_hist) h, unnest(ARRAY[v_key, v_new, v_link]) c), '[]')
              || coalesce((SELECT jsonb_agg(jsonb_build_array((r->>'relid')::oid, r->>'column')) FROM jsonb_array_elements(v_refs) r), '[]');
    RETURN jsonb_build_object(
        'source', t.source::oid,
        'spec', jsonb_build_object(
            'source_schema', t.nspname, 'source_table', t.relname,
            'key_column', v_key, 'key_type', v_type::text, 'new_key', v_new, 'link_column', v_link,
            'parent', v_fk.parent::oid, 'parent_key', v_fk.parent_key, 'parent_fk', v_fk.oid,
            'compat_schema', v_compat,
            'key_index', customer_unify._b_clip_name(t.relname || '_' || v_new, '_key'),
            'link_index', customer_unify._b_clip_name(t.relname || '_' || v_link, '_key'),
            'link_fk', customer_unify._b_clip_name(t.relname || '_' || v_link, '_fkey'),
            'history', v_hist, 'references', v_refs,
            -- the compatibility view selects every column the table had at start
            'source_columns', (SELECT jsonb_agg(c.attname ORDER BY c.attnum) FROM customer_unify._b_columns(t.source, NULL) c),
            'kept_columns', v_kept,
            'args', p_args - 'source'),
        'relations', jsonb_build_array(jsonb_build_object('tag', 'source', 'role', 'source', 'relid', t.source::oid))
                     || coalesce((SELECT jsonb_agg(jsonb_build_object('tag', h->>'tag', 'role', 'history', 'relid', (h->>'relid')::oid))
                                    FROM jsonb_array_elements(v_hist) h), '[]')
                     || coalesce((SELECT jsonb_agg(jsonb_build_object('tag', r->>'tag', 'role', 'reference', 'relid', (r->>'relid')::oid))
                                    FROM (SELECT DISTINCT ON (r->>'relid') r FROM jsonb_array_elements(v_refs) r
                                           WHERE (r->>'relid')::oid <> t.source ORDER BY r->>'relid', r->>'tag') x), '[]'),
        'maps', '[]'::jsonb);
END
$$;

CREATE OR REPLACE FUNCTION customer_unify.rekey(
    name        text,
    source      regclass,
    parent_link text DEFAULT NULL,
    new_key     text DEFAULT 'id',
    link_column text DEFAULT NULL,
    history     regclass[] DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id   bigint;
    v_list text;
BEGIN
    IF rekey.name IS NULL OR rekey.source IS NULL THEN
        RAISE EXCEPTION 'name and source must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    v_id := customer_unify._create_migration('rekey', rekey.name,
                jsonb_build_object('source', rekey.source::oid, 'parent_link', rekey.parent_link,
                                   'new_key', rekey.new_key, 'link_column', rekey.link_column,
                                   'history', (SELECT jsonb_agg(h::oid) FROM unnest(rekey.history) h)));
    v_list := customer_unify._blocking_dependents(v_id);
    IF v_list IS NOT NULL THEN
        RAISE NOTICE 'objects use the old key column; finalize will refuse until they are changed'
            USING DETAIL = v_list,
                  HINT = format('See SELECT * FROM customer_unify.dependents(%L);', rekey.name);
    END IF;
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION customer_unify.rekey(text, regclass, text, text, text, regclass[]) IS
    'Plans giving a child table whose primary key is its link to a parent (Django multi-table inheritance: user_ptr_id) its own key new_key and a separate link_column, ids preserved, every foreign key to the old key re-pointed, history tables kept consistent. Validates everything; creates nothing.';

-- The relations of a rekey by name, from the catalog.
CREATE OR REPLACE FUNCTION customer_unify._rekey_names(m customer_unify.migration,
    OUT src text, OUT compat_view text, OUT pk_name text, OUT parent text, OUT parent_key text)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT customer_unify._b_name(m.source),
           customer_unify._qual(m.spec->>'compat_schema', (SELECT c.relname FROM pg_class c WHERE c.oid = m.source)),
           (SELECT c.conname::text FROM pg_constraint c WHERE c.conrelid = m.source AND c.contype = 'p'),
           customer_unify._b_name((m.spec->>'parent')::oid::regclass),
           (SELECT a.attname::text FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = c.confkey[1]
             WHERE c.oid = (m.spec->>'parent_fk')::oid)
$$;

-- Every statement of a rekey, per phase.
CREATE OR REPLACE FUNCTION customer_unify._rekey_steps(m customer_unify.migration)
    RETURNS TABLE (phase text, seq int, statement text, inverse text,
                   lock_mode text, lock_relation text, rows_estimate bigint, registers jsonb)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s        jsonb := m.spec;
    n        record := customer_unify._rekey_names(m);
    v_key    text := s->>'key_column';
    v_new    text := s->>'new_key';
    v_link   text := s->>'link_column';
    v_typ    text := s->>'key_type';
    v_trg    text := 'customer_unify_' || m.id || '_rekey';
    v_steps  customer_unify.step_def[];
    v_h      jsonb;
    v_r      jsonb;
    v_hname  text;
    v_rname  text;
    v_cols   text;
    v_final  text;
    v_nn_key text := customer_unify._b_clip_name(s->>'source_table' || '_' || v_new, '_not_null');
    v_nn_link text := customer_unify._b_clip_name(s->>'source_table' || '_' || v_link, '_not_null');
BEGIN
    ---------------------------------------------------------------- start
    v_steps := ARRAY[
        customer_unify._b_lock(n.src, 'SHARE ROW EXCLUSIVE'),
        -- empty columns: a catalog change, no rewrite; each plans its unique index
        customer_unify._b_step(format('ALTER TABLE %s ADD COLUMN %I %s', n.src, v_new, v_typ),
            format('ALTER TABLE %s DROP COLUMN IF EXISTS %I', n.src, v_new), 'ACCESS EXCLUSIVE', n.src,
            jsonb_build_object('job_index', jsonb_build_object('index_name', s->>'key_index', 'relation_tag', 'source',
                               'columns', jsonb_build_array(v_new), 'is_unique', true))),
        customer_unify._b_step(format('ALTER TABLE %s ADD COLUMN %I %s', n.src, v_link, v_typ),
            format('ALTER TABLE %s DROP COLUMN IF EXISTS %I', n.src, v_link), 'ACCESS EXCLUSIVE', n.src,
            jsonb_build_object('job_index', jsonb_build_object('index_name', s->>'link_index', 'relation_tag', 'source',
                               'columns', jsonb_build_array(v_link), 'is_unique', true))),
        customer_unify._b_step(format('COMMENT ON COLUMN %s.%I IS %L', n.src, v_new,
            format('customer_unify: the own key of %s (rekey %s); equal to %s until finalize', n.src, m.name, v_key))),
        customer_unify._b_step(format('COMMENT ON COLUMN %s.%I IS %L', n.src, v_link,
            format('customer_unify: the link of %s to %s (rekey %s)', n.src, n.parent, m.name)))];
    -- column privileges of the old key carry to the new columns
    v_steps := v_steps || ARRAY(
        SELECT customer_unify._b_step(g, NULL, NULL, n.src)
          FROM pg_attribute a, unnest(ARRAY[v_new, v_link]) c,
               LATERAL customer_unify._b_grants(a.attacl, n.src, c) g
         WHERE a.attrelid = m.source AND a.attname = v_key AND a.attacl IS NOT NULL);
    v_steps := v_steps || ARRAY[
        customer_unify._b_step(format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION customer_unify.rekey_sync(%L, %L, %L)',
                                      v_trg, n.src, v_key, v_new, v_link),
                               format('DROP TRIGGER IF EXISTS %I ON %s', v_trg, n.src), 'SHARE ROW EXCLUSIVE', n.src),
        customer_unify._b_step(format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', n.src, v_trg), NULL, 'SHARE ROW EXCLUSIVE', n.src)];
    FOR v_h IN SELECT e FROM jsonb_array_elements(s->'history') e ORDER BY e->>'tag' LOOP
        v_hname := customer_unify._b_name((v_h->>'relid')::oid::regclass);
        v_steps := v_steps || customer_unify._b_lock(v_hname, 'SHARE ROW EXCLUSIVE');
        IF (v_h->>'add_key')::boolean THEN
            v_steps := v_steps || customer_unify._b_step(format('ALTER TABLE %s ADD COLUMN %I %s', v_hname, v_new, v_typ),
                format('ALTER TABLE %s DROP COLUMN IF EXISTS %I', v_hname, v_new), 'ACCESS EXCLUSIVE', v_hname,
                jsonb_build_object('job_index', jsonb_build_object('index_name',
                    customer_unify._b_clip_name((SELECT c.relname FROM pg_class c WHERE c.oid = (v_h->>'relid')::oid) || '_' || v_new, '_idx'),
                    'relation_tag', v_h->>'tag', 'columns', jsonb_build_array(v_new), 'is_unique', false)));
        END IF;
        IF (v_h->>'add_link')::boolean THEN
            v_steps := v_steps || customer_unify._b_step(format('ALTER TABLE %s ADD COLUMN %I %s', v_hname, v_link, v_typ),
                format('ALTER TABLE %s DROP COLUMN IF EXISTS %I', v_hname, v_link), 'ACCESS EXCLUSIVE', v_hname,
                jsonb_build_object('job_index', jsonb_build_object('index_name',
                    customer_unify._b_clip_name((SELECT c.relname FROM pg_class c WHERE c.oid = (v_h->>'relid')::oid) || '_' || v_link, '_idx'),
                    'relation_tag', v_h->>'tag', 'columns', jsonb_build_array(v_link), 'is_unique', false)));
        END IF;
        v_steps := v_steps || ARRAY[
            customer_unify._b_step(
                format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION customer_unify.rekey_sync(%L, %L, %L%s)',
                       v_trg, v_hname, v_key, v_new, v_link,
                       CASE WHEN jsonb_array_length(v_h->'parent_columns') > 0
                            THEN format(', %L, %L, ', (s->>'parent')::oid::text, n.parent_key)
                                 || (SELECT string_agg(quote_literal(c), ', ') FROM jsonb_array_elements_text(v_h->'parent_columns') c)
                            ELSE '' END),
                format('DROP TRIGGER IF EXISTS %I ON %s', v_trg, v_hname), 'SHARE ROW EXCLUSIVE', v_hname),
            customer_unify._b_step(format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', v_hname, v_trg), NULL, 'SHARE ROW EXCLUSIVE', v_hname)];
    END LOOP;
    -- the old shape for applications not yet moved: until finalize the
    -- table itself, a simple view PostgreSQL updates natively (its writes
    -- are the table's, with its defaults, triggers, privileges, row-level
    -- security and RETURNING)
    v_cols := (SELECT string_agg(quote_ident(c), ', ' ORDER BY o) FROM jsonb_array_elements_text(s->'source_columns') WITH ORDINALITY x(c, o));
    v_steps := v_steps || ARRAY[
        customer_unify._b_step(format('CREATE SCHEMA %I', s->>'compat_schema'), format('DROP SCHEMA IF EXISTS %I', s->>'compat_schema')),
        customer_unify._b_step(format('COMMENT ON SCHEMA %I IS %L', s->>'compat_schema',
                                      format('customer_unify: the old shape of %s (key %s) for applications not yet moved (rekey %s)',
                                             n.src, v_key, m.name))),
        customer_unify._b_step(format('CREATE VIEW %s WITH (security_invoker = true) AS SELECT %s FROM ONLY %s', n.compat_view, v_cols, n.src),
            format('DROP VIEW IF EXISTS %s', n.compat_view), 'ACCESS SHARE', n.src,
            jsonb_build_object('relation', jsonb_build_object('tag', 'view', 'role', 'view',
                               'nspname', s->>'compat_schema', 'relname', s->>'source_table')))];
    v_steps := v_steps || ARRAY(SELECT customer_unify._b_schema_usage(m.source, s->>'compat_schema'));
    v_steps := v_steps || ARRAY(SELECT customer_unify._b_privileges(m.source, n.compat_view,
                                         (SELECT jsonb_agg(jsonb_build_array(c, c)) FROM jsonb_array_elements_text(s->'source_columns') c)));
    RETURN QUERY SELECT * FROM customer_unify._b_phase('start', v_steps);

    ---------------------------------------------------------------- backfill (what each batch runs, for preview)
    RETURN QUERY SELECT * FROM customer_unify._b_phase('backfill',
        ARRAY(SELECT customer_unify._b_step(p.plan->>'batch', NULL, 'ROW EXCLUSIVE', p.plan->>'source_tag')
                FROM customer_unify._rekey_copy_plan(m) p ORDER BY p.stream));
    RETURN QUERY SELECT * FROM customer_unify._b_phase('validate',
        ARRAY[customer_unify._b_step(format('SELECT %L', 'rekey copied'))]);

    ---------------------------------------------------------------- cutover
    -- the new key is enforced: twins of the references on the new key, the
    -- link's foreign key to the parent, NOT NULL checks; NOT VALID (finalize
    -- validates them while writes go on)
    v_steps := ARRAY[customer_unify._b_lock(n.src, 'SHARE ROW EXCLUSIVE')];
    v_steps := v_steps || ARRAY(
        SELECT customer_unify._b_lock(x.rel, 'SHARE ROW EXCLUSIVE')
          FROM (SELECT DISTINCT customer_unify._b_name((r->>'relid')::oid::regclass) AS rel
                  FROM jsonb_array_elements(s->'references') r WHERE (r->>'relid')::oid <> m.source) x
         ORDER BY x.rel);
    v_steps := v_steps || customer_unify._b_step(format('SELECT customer_unify._gate_verify(%s)', m.id), NULL, 'SHARE ROW EXCLUSIVE', n.src);
    FOR v_r IN SELECT e FROM jsonb_array_elements(s->'references') e ORDER BY e->>'tag' LOOP
        v_rname := customer_unify._b_name((v_r->>'relid')::oid::regclass);
        v_steps := v_steps || customer_unify._b_foreign_key(v_rname, v_r->>'fk',
            format('FOREIGN KEY (%I) REFERENCES %s (%I)%s', v_r->>'column', n.src, v_new,
                   customer_unify._b_fk_options((v_r->>'constraint')::oid)));
    END LOOP;
    v_steps := v_steps || ARRAY[
        customer_unify._b_foreign_key(n.src, s->>'link_fk',
            format('FOREIGN KEY (%I) REFERENCES %s (%I)%s', v_link, n.parent, n.parent_key,
                   customer_unify._b_fk_options((s->>'parent_fk')::oid))),
        customer_unify._b_step(format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (%I IS NOT NULL) NOT VALID', n.src, v_nn_key, v_new),
            format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', n.src, v_nn_key), 'SHARE ROW EXCLUSIVE', n.src),
        customer_unify._b_step(format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (%I IS NOT NULL) NOT VALID', n.src, v_nn_link, v_link),
            format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', n.src, v_nn_link), 'SHARE ROW EXCLUSIVE', n.src)];
    RETURN QUERY SELECT * FROM customer_unify._b_phase('cutover', v_steps);

    ---------------------------------------------------------------- finalize
    -- first the validations (SHARE UPDATE EXCLUSIVE: writes go on), then
    -- writes stop (SHARE) while the shapes are compared, then the swap
    v_steps := ARRAY(
        SELECT customer_unify._b_validate(customer_unify._b_name((r->>'relid')::oid::regclass), r->>'fk')
          FROM jsonb_array_elements(s->'references') r ORDER BY r->>'tag');
    v_steps := v_steps || ARRAY[
        customer_unify._b_validate(n.src, s->>'link_fk'),
        customer_unify._b_validate(n.src, v_nn_key),
        customer_unify._b_validate(n.src, v_nn_link),
        customer_unify._b_lock(n.src, 'SHARE')];
    v_steps := v_steps || ARRAY(
        SELECT customer_unify._b_lock(customer_unify._b_name((h->>'relid')::oid::regclass), 'SHARE')
          FROM jsonb_array_elements(s->'history') h ORDER BY h->>'tag');
    v_steps := v_steps || ARRAY[
        customer_unify._b_step(format('SELECT customer_unify._gate_dependents(%s)', m.id)),
        customer_unify._b_step(format('SELECT customer_unify._gate_verify(%s)', m.id), NULL, 'SHARE', n.src),
        customer_unify._b_lock(n.src, 'ACCESS EXCLUSIVE')];
    v_steps := v_steps || ARRAY(
        SELECT customer_unify._b_lock(x.rel, 'ACCESS EXCLUSIVE')
          FROM (SELECT DISTINCT customer_unify._b_name((r->>'relid')::oid::regclass) AS rel
                  FROM jsonb_array_elements(s->'references') r WHERE (r->>'relid')::oid <> m.source
                UNION
                SELECT customer_unify._b_name((h->>'relid')::oid::regclass)
                  FROM jsonb_array_elements(s->'history') h) x ORDER BY x.rel);
    -- the references: the old foreign key goes, its twin takes its name
    FOR v_r IN SELECT e FROM jsonb_array_elements(s->'references') e ORDER BY e->>'tag' LOOP
        v_rname := customer_unify._b_name((v_r->>'relid')::oid::regclass);
        v_steps := v_steps || ARRAY[
            customer_unify._b_step(format('ALTER TABLE %s DROP CONSTRAINT %I', v_rname,
                                          (SELECT c.conname FROM pg_constraint c WHERE c.oid = (v_r->>'constraint')::oid)),
                                   NULL, 'ACCESS EXCLUSIVE', v_rname),
            customer_unify._b_step(format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', v_rname, v_r->>'fk',
                                          (SELECT c.conname FROM pg_constraint c WHERE c.oid = (v_r->>'constraint')::oid)),
                                   NULL, 'ACCESS EXCLUSIVE', v_rname)];
    END LOOP;
    -- the key swap: NOT NULL proven by the validated checks (no scan), the
    -- primary key and the link's unique constraint on the job's indexes
    v_final := (SELECT string_agg(CASE WHEN c = v_key THEN format('%I AS %I', v_link, v_key) ELSE quote_ident(c) END, ', ' ORDER BY o)
                  FROM jsonb_array_elements_text(s->'source_columns') WITH ORDINALITY x(c, o));
    v_steps := v_steps || ARRAY[
        customer_unify._b_step(format('DROP TRIGGER %I ON %s', v_trg, n.src), NULL, 'ACCESS EXCLUSIVE', n.src),
        customer_unify._b_step(format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL, ALTER COLUMN %I SET NOT NULL', n.src, v_new, v_link),
                               NULL, 'ACCESS EXCLUSIVE', n.src),
        customer_unify._b_step(format('ALTER TABLE %s DROP CONSTRAINT %I, DROP CONSTRAINT %I', n.src, v_nn_key, v_nn_link),
                               NULL, 'ACCESS EXCLUSIVE', n.src),
        customer_unify._b_step(format('ALTER TABLE %s DROP CONSTRAINT %I, ADD CONSTRAINT %I PRIMARY KEY USING INDEX %I',
                                      n.src, n.pk_name, n.pk_name, s->>'key_index'), NULL, 'ACCESS EXCLUSIVE', n.src),
        customer_unify._b_step(format('ALTER TABLE %s ADD CONSTRAINT %I UNIQUE USING INDEX %I', n.src, s->>'link_index', s->>'link_index'),
                               NULL, 'ACCESS EXCLUSIVE', n.src),
        -- old applications read the link as the old key from now on
        customer_unify._b_step(format('CREATE OR REPLACE VIEW %s WITH (security_invoker = true) AS SELECT %s FROM ONLY %s', n.compat_view, v_final, n.src),
                               NULL, 'ACCESS EXCLUSIVE', n.compat_view),
        customer_unify._b_step(format('ALTER TABLE %s DROP COLUMN %I', n.src, v_key), NULL, 'ACCESS EXCLUSIVE', n.src),
        customer_unify._b_step(format('ALTER TABLE %s ALTER COLUMN %I ADD GENERATED BY DEFAULT AS IDENTITY', n.src, v_new),
                               NULL, 'ACCESS EXCLUSIVE', n.src),
        -- new rows get ids of their own, above every id there is
        customer_unify._b_step(format('SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence(%L, %L), '
                                      'coalesce((SELECT max(%I) FROM ONLY %s), 0) + 1, false)', n.src, v_new, v_new, n.src),
                               NULL, 'ACCESS EXCLUSIVE', n.src),
        customer_unify._b_step(format('COMMENT ON COLUMN %s.%I IS NULL', n.src, v_new)),
        customer_unify._b_step(format('COMMENT ON COLUMN %s.%I IS NULL', n.src, v_link))];
    -- history tables: the trigger and the old key go; the columns copied
    -- from the parent, which the new shape's history does not write, may be NULL
    FOR v_h IN SELECT e FROM jsonb_array_elements(s->'history') e ORDER BY e->>'tag' LOOP
        v_hname := customer_unify._b_name((v_h->>'relid')::oid::regclass);
        v_steps := v_steps || customer_unify._b_step(format('DROP TRIGGER %I ON %s', v_trg, v_hname), NULL, 'ACCESS EXCLUSIVE', v_hname);
        v_steps := v_steps || ARRAY(
            SELECT customer_unify._b_step(format('ALTER TABLE %s ALTER COLUMN %I DROP NOT NULL', v_hname, a.attname),
                                          NULL, 'ACCESS EXCLUSIVE', v_hname)
              FROM pg_attribute a
             WHERE a.attrelid = (v_h->>'relid')::oid AND a.attnotnull AND NOT a.attisdropped
               AND a.attname::text IN (SELECT jsonb_array_elements_text(v_h->'parent_columns'))
             ORDER BY a.attnum);
        v_steps := v_steps || customer_unify._b_step(format('ALTER TABLE %s DROP COLUMN %I', v_hname, v_key), NULL, 'ACCESS EXCLUSIVE', v_hname);
    END LOOP;
    RETURN QUERY SELECT * FROM customer_unify._b_phase('finalize', v_steps);
END
$$;

-- The copy streams of a rekey: the table, then each history table.  A
-- batch finds the key range of its next batch_size rows through the key's
-- index, then fills the new columns of that range with one UPDATE (an
-- index range scan; $1 the last key done, not in the first batch; $2 the
-- copy's last key; $3 the batch size; returns the range's last key and its
-- rows, as the engine's statement streams do).
CREATE OR REPLACE FUNCTION customer_unify._rekey_copy_plan(m customer_unify.migration)
    RETURNS TABLE (stream text, key_type regtype, plan jsonb)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH t AS (
        SELECT 'a_source' AS stream, 'source' AS tag, m.source AS rel, m.spec->>'key_column' AS key,
               format('%1$I = x.%3$I, %2$I = x.%3$I', m.spec->>'new_key', m.spec->>'link_column', m.spec->>'key_column') AS sets,
               format('(x.%I IS NULL OR x.%I IS NULL)', m.spec->>'new_key', m.spec->>'link_column') AS pending
        UNION ALL
        SELECT 'b_' || (h->>'tag'), h->>'tag', (h->>'relid')::oid::regclass, h->>'key',
               format('%1$I = coalesce(x.%1$I, x.%3$I), %2$I = coalesce(x.%2$I, x.%3$I)', m.spec->>'new_key', m.spec->>'link_column', m.spec->>'key_column'),
               format('x.%I IS NOT NULL AND (x.%I IS NULL OR x.%I IS NULL)', m.spec->>'key_column', m.spec->>'new_key', m.spec->>'link_column')
          FROM jsonb_array_elements(m.spec->'history') h
    )
    SELECT t.stream, a.atttypid::regtype,
           jsonb_build_object('source_tag', t.tag, 'key', t.key,
               'batch_first', format(w.sql, '', ''),
               'batch', format(w.sql, format('s.%I > $1 AND ', t.key), format('x.%I > $1 AND ', t.key)))
      FROM t
      JOIN pg_attribute a ON a.attrelid = t.rel AND a.attname = t.key,
           LATERAL (SELECT replace(replace(format(
               'WITH b AS MATERIALIZED (SELECT max(q.k) AS hi, pg_catalog.count(*) AS n FROM (SELECT s.%1$I AS k FROM ONLY %2$s s '
               'WHERE %%1$sNOT (s.%1$I > $2) ORDER BY s.%1$I LIMIT $3) q), '
               'u AS (UPDATE ONLY %2$s x SET %3$s WHERE %%2$sx.%1$I <= (SELECT b.hi FROM b) AND %4$s RETURNING 1) '
               'SELECT (SELECT b.hi FROM b), (SELECT b.n FROM b) + 0 * (SELECT pg_catalog.count(*) FROM u)',
               t.key, customer_unify._b_name(t.rel), t.sets, t.pending), '%%1$s', '%1$s'), '%%2$s', '%2$s') AS sql) w
     ORDER BY t.stream
$$;

-- verify: the three columns agree on every row (the table and its
-- histories), every reference finds its row by the new key, the triggers fire.
CREATE OR REPLACE FUNCTION customer_unify._rekey_verify(m customer_unify.migration, checksums boolean DEFAULT true)
    RETURNS TABLE (check_name text, expected text, actual text, ok boolean)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_key  text := m.spec->>'key_column';
    v_new  text := m.spec->>'new_key';
    v_link text := m.spec->>'link_column';
    v_trg  text := 'customer_unify_' || m.id || '_rekey';
    v_count bigint;
    v_rel  record;
BEGIN
    FOR v_rel IN
        SELECT m.source AS rel, 'source' AS tag
        UNION ALL
        SELECT (h->>'relid')::oid::regclass, h->>'tag' FROM jsonb_array_elements(m.spec->'history') h
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_rel.rel AND a.attname = v_key AND NOT a.attisdropped) THEN
            CONTINUE;   -- finalized: the old key is gone
        END IF;
        EXECUTE format('SELECT count(*) FROM ONLY %s x WHERE %s(x.%I IS DISTINCT FROM x.%I OR x.%I IS DISTINCT FROM x.%I)',
                       customer_unify._b_name(v_rel.rel), CASE WHEN v_rel.tag = 'source' THEN '' ELSE format('x.%I IS NOT NULL AND ', v_key) END,
                       v_new, v_key, v_link, v_key)
           INTO v_count;
        check_name := format('%s: rows whose %I or %I is not their %I', v_rel.rel::text, v_new, v_link, v_key);
        expected := '0'; actual := v_count::text; ok := v_count = 0;
        RETURN NEXT;
        check_name := format('trigger %I on %s', v_trg, v_rel.rel::text); expected := 'enabled always';
        actual := coalesce((SELECT CASE t.tgenabled WHEN 'D' THEN 'disabled' WHEN 'R' THEN 'enabled for replica only'
                                                    WHEN 'A' THEN 'enabled always' ELSE 'enabled' END
                              FROM pg_trigger t WHERE t.tgrelid = v_rel.rel AND t.tgname = v_trg), 'missing');
        ok := actual = expected;
        RETURN NEXT;
    END LOOP;
    -- references: each value names a row by the new key
    FOR v_rel IN SELECT e FROM jsonb_array_elements(m.spec->'references') e ORDER BY e->>'tag' LOOP
        EXECUTE format('SELECT count(*) FROM ONLY %s r WHERE r.%I IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ONLY %s s WHERE s.%I = r.%I)',
                       customer_unify._b_name((v_rel.e->>'relid')::oid::regclass), v_rel.e->>'column',
                       customer_unify._b_name(m.source), v_new, v_rel.e->>'column')
           INTO v_count;
        check_name := format('%s.%I: references with no row of %s by %I', ((v_rel.e->>'relid')::oid::regclass)::text,
                             v_rel.e->>'column', m.source::regclass::text, v_new);
        expected := '0'; actual := v_count::text; ok := v_count = 0;
        RETURN NEXT;
    END LOOP;
END
$$;

-- What the rekey touches and what it leaves: the references that follow
-- the new key, those to the parent that stay, and what uses the old key
-- column (finalize drops it: blocks).
CREATE OR REPLACE FUNCTION customer_unify._rekey_dependents(m customer_unify.migration)
    RETURNS TABLE (object_type text, object_name text, dependency text, blocks_finalize boolean)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'foreign key', format('%I on %s', c.conname, c.conrelid::regclass),
           format('references %s (%I): re-pointed at %I', m.source::regclass, m.spec->>'key_column', m.spec->>'new_key'), false
      FROM pg_constraint c
     WHERE c.oid IN (SELECT (r->>'constraint')::oid FROM jsonb_array_elements(m.spec->'references') r)
    UNION ALL
    SELECT 'foreign key', format('%I on %s', c.conname, c.conrelid::regclass),
           format('references the parent %s: stays on the parent', c.confrelid::regclass), false
      FROM pg_constraint c
     WHERE c.contype = 'f' AND c.confrelid = (m.spec->>'parent')::oid AND c.oid <> (m.spec->>'parent_fk')::oid
       AND c.conrelid <> m.source
    UNION ALL
    SELECT DISTINCT CASE cl.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END, cl.oid::regclass::text,
           format('uses column %I, which finalize drops', m.spec->>'key_column'), true
      FROM pg_depend d
      JOIN pg_rewrite rw ON rw.oid = d.objid AND d.classid = 'pg_rewrite'::regclass
      JOIN pg_class cl ON cl.oid = rw.ev_class
      JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
     WHERE d.refobjid = m.source AND a.attname = m.spec->>'key_column' AND cl.oid <> m.source
       AND cl.oid IS DISTINCT FROM customer_unify._relation(m.id, 'view')
$$;

CREATE OR REPLACE FUNCTION customer_unify._rekey_describe(m customer_unify.migration)
    RETURNS TABLE (target text, columns text[])
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.source::regclass::text, ARRAY[m.spec->>'new_key', m.spec->>'link_column']
$$;

-- The table's privileges carried again to the compatibility view and the
-- new columns, after the application changed them (the 'resync' phase).
CREATE OR REPLACE FUNCTION customer_unify._rekey_security_steps(m customer_unify.migration)
    RETURNS SETOF customer_unify.step_def
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_view regclass := customer_unify._relation(m.id, 'view');
BEGIN
    IF v_view IS NOT NULL THEN
        RETURN QUERY SELECT * FROM customer_unify._b_revoke_all(v_view);
        RETURN QUERY SELECT * FROM customer_unify._b_privileges(m.source, customer_unify._b_name(v_view),
                                         (SELECT jsonb_agg(jsonb_build_array(c, c)) FROM jsonb_array_elements_text(m.spec->'source_columns') c
                                           WHERE EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = m.source AND a.attname = c AND NOT a.attisdropped)));
        RETURN QUERY SELECT * FROM customer_unify._b_schema_usage(m.source, m.spec->>'compat_schema');
    END IF;
END
$$;
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
-------------------------------------------------------------------------------
-- registry.sql: the operations of this release.  Fresh install and update
-- alike: a kind a previous release registered gets its current functions.
-------------------------------------------------------------------------------
INSERT INTO customer_unify.operation (kind, validate, steps, copy_plan, verify, dependents, describe, security)
VALUES ('split',
        'customer_unify._split_validate(text, jsonb)',
        'customer_unify._split_steps(customer_unify.migration)',
        'customer_unify._split_copy_plan(customer_unify.migration)',
        'customer_unify._split_verify(customer_unify.migration, boolean)',
        'customer_unify._split_dependents(customer_unify.migration)',
        'customer_unify._split_describe(customer_unify.migration)',
        'customer_unify._split_security_steps(customer_unify.migration)'),
       ('merge',
        'customer_unify._merge_validate(text, jsonb)',
        'customer_unify._merge_steps(customer_unify.migration)',
        'customer_unify._merge_copy_plan(customer_unify.migration)',
        'customer_unify._merge_verify(customer_unify.migration, boolean)',
        'customer_unify._merge_dependents(customer_unify.migration)',
        'customer_unify._merge_describe(customer_unify.migration)',
        'customer_unify._merge_security_steps(customer_unify.migration)'),
       ('updated_at',
        'customer_unify._kit_updated_at_validate(text, jsonb)',
        'customer_unify._kit_updated_at_steps(customer_unify.migration)',
        'customer_unify._kit_copy_plan(customer_unify.migration)',
        'customer_unify._kit_updated_at_verify(customer_unify.migration, boolean)',
        'customer_unify._kit_updated_at_dependents(customer_unify.migration)',
        'customer_unify._kit_describe(customer_unify.migration)',
        'customer_unify._kit_security_steps(customer_unify.migration)'),
       ('normalize_on_write',
        'customer_unify._kit_normalize_validate(text, jsonb)',
        'customer_unify._kit_normalize_steps(customer_unify.migration)',
        'customer_unify._kit_copy_plan(customer_unify.migration)',
        'customer_unify._kit_normalize_verify(customer_unify.migration, boolean)',
        'customer_unify._kit_normalize_dependents(customer_unify.migration)',
        'customer_unify._kit_describe(customer_unify.migration)',
        'customer_unify._kit_security_steps(customer_unify.migration)'),
       ('rekey',
        'customer_unify._rekey_validate(text, jsonb)',
        'customer_unify._rekey_steps(customer_unify.migration)',
        'customer_unify._rekey_copy_plan(customer_unify.migration)',
        'customer_unify._rekey_verify(customer_unify.migration, boolean)',
        'customer_unify._rekey_dependents(customer_unify.migration)',
        'customer_unify._rekey_describe(customer_unify.migration)',
        'customer_unify._rekey_security_steps(customer_unify.migration)')
ON CONFLICT (kind) DO UPDATE SET validate = EXCLUDED.validate, steps = EXCLUDED.steps,
    copy_plan = EXCLUDED.copy_plan, verify = EXCLUDED.verify, dependents = EXCLUDED.dependents,
    describe = EXCLUDED.describe, security = EXCLUDED.security;
-------------------------------------------------------------------------------
-- guard-triggers.sql: the event triggers of the DDL guard (guard.sql), made
-- last, once the catalog is complete.
-------------------------------------------------------------------------------
CREATE EVENT TRIGGER customer_unify_guard_ddl ON ddl_command_end
    EXECUTE FUNCTION customer_unify._guard_ddl();
CREATE EVENT TRIGGER customer_unify_guard_drop ON sql_drop
    EXECUTE FUNCTION customer_unify._guard_drop();


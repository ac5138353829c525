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

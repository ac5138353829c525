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


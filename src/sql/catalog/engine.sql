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

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

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


/* customer_unify 1.0 -> 1.1
 *
 * Assembled by `make sql` from this file, src/sql/catalog/operation.sql,
 * src/sql/catalog/engine.sql, the pieces (SQL_PIECES), src/sql/once.sql and
 * src/sql/updates/1.0--1.1-post.sql; edit those, not this file.
 *
 * Live migrations, their step logs and checkpoints are carried over: see
 * the post part.  Converting a live migration replaces its triggers, which
 * takes SHARE ROW EXCLUSIVE on its tables for a moment.
 */
\echo Use "ALTER EXTENSION customer_unify UPDATE TO '1.1'" to load this file. \quit

-------------------------------------------------------------------------------
-- 1.0's internal functions; 1.1 has others (the public ones are replaced in
-- place, with the same signatures).  Nothing depends on them.
-------------------------------------------------------------------------------
DROP FUNCTION customer_unify._check_owner(customer_unify.migration);
DROP FUNCTION customer_unify._require_state(customer_unify.migration, text[], text);
DROP FUNCTION customer_unify._set_state(bigint, text);
DROP FUNCTION customer_unify._exec_step(bigint, text, int, text, text, text, text);
DROP FUNCTION customer_unify._split_validate(text, regclass, text, text[], text, text, text);
DROP FUNCTION customer_unify._split_columns(jsonb, regclass);
DROP FUNCTION customer_unify._grants(aclitem[], text, text);
DROP FUNCTION customer_unify._moved_constraints(customer_unify.migration, "char");
DROP FUNCTION customer_unify._split_steps(customer_unify.migration);
DROP FUNCTION customer_unify._split_dependents(customer_unify.migration);
DROP FUNCTION customer_unify._run_phase(customer_unify.migration, text);
DROP FUNCTION customer_unify._backfill_complete(bigint, text);
DROP FUNCTION customer_unify._split_verify(customer_unify.migration);

-------------------------------------------------------------------------------
-- The catalog: written by the engine only (1.0 let PUBLIC write it under
-- row-level security); 1.1's columns.
-------------------------------------------------------------------------------
DROP POLICY read_all ON customer_unify.migration;
DROP POLICY owner_writes ON customer_unify.migration;
DROP POLICY owner_updates ON customer_unify.migration;
DROP POLICY owner_deletes ON customer_unify.migration;
DROP POLICY read_all ON customer_unify.step_log;
DROP POLICY owner_writes ON customer_unify.step_log;
DROP POLICY read_all ON customer_unify.backfill_state;
DROP POLICY owner_writes ON customer_unify.backfill_state;
ALTER TABLE customer_unify.migration DISABLE ROW LEVEL SECURITY;
ALTER TABLE customer_unify.step_log DISABLE ROW LEVEL SECURITY;
ALTER TABLE customer_unify.backfill_state DISABLE ROW LEVEL SECURITY;
REVOKE INSERT, UPDATE, DELETE ON customer_unify.migration, customer_unify.step_log,
                                 customer_unify.backfill_state FROM PUBLIC;
REVOKE USAGE ON SEQUENCE customer_unify.migration_id_seq, customer_unify.step_log_id_seq FROM PUBLIC;

-- one live migration per table: migration_relation_one_live now
DROP INDEX customer_unify.migration_one_live_per_source;

ALTER TABLE customer_unify.step_log
    ADD COLUMN creates_tag text,
    ADD COLUMN note text;

ALTER TABLE customer_unify.backfill_state
    ADD COLUMN stream text NOT NULL DEFAULT 'main',
    ADD COLUMN key_type regtype,
    ADD COLUMN position bytea,
    ADD COLUMN end_position bytea,
    ADD COLUMN plan jsonb,
    DROP CONSTRAINT backfill_state_pkey,
    ADD CONSTRAINT backfill_state_pkey PRIMARY KEY (migration_id, stream);
COMMENT ON TABLE customer_unify.backfill_state IS
    'One row per copy stream of a migration: its plan and checkpoint. position is the last key copied in the key type''s binary form (last_key is its text, for people), committed with each batch.';


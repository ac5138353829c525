-- Rollback from every state before finalize leaves schema and data as they were.
SET client_min_messages = warning;
CREATE SCHEMA rb;
SET search_path = rb, public;
CREATE FUNCTION rb.schema_fingerprint() RETURNS text LANGUAGE sql AS $$
    SELECT md5(string_agg(x, E'\n' ORDER BY x)) FROM (
        SELECT format('%s.%s %s %s %s %s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                      a.attnotnull, pg_get_expr(d.adbin, d.adrelid), col_description(c.oid, a.attnum)) AS x
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'customer_unify', 'pg_toast')
        UNION ALL
        SELECT format('con %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid)) FROM pg_constraint
         WHERE connamespace NOT IN ('pg_catalog'::regnamespace, 'customer_unify'::regnamespace)
        UNION ALL
        SELECT format('trg %s %s', tgrelid::regclass, tgname) FROM pg_trigger WHERE NOT tgisinternal
        UNION ALL
        SELECT format('idx %s', pg_get_indexdef(indexrelid)) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
         WHERE c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'customer_unify'::regnamespace, 'pg_toast'::regnamespace)
        UNION ALL
        SELECT format('nsp %s', nspname) FROM pg_namespace
    ) s
$$;
CREATE TABLE people (id int PRIMARY KEY, email text, nick text, city text DEFAULT 'Lisbon');
INSERT INTO people SELECT g, 'p' || g || '@x', 'n' || g, CASE WHEN g % 2 = 0 THEN 'Porto' END FROM generate_series(1, 200) g;
SELECT rb.schema_fingerprint() AS schema_before \gset

CREATE PROCEDURE rb.to_state(p_name text, p_state text) LANGUAGE plpgsql AS $$
BEGIN
    PERFORM customer_unify.split(p_name, 'rb.people', 'people_extra', ARRAY['nick', 'city']);
    IF p_state = 'planned' THEN RETURN; END IF;
    PERFORM customer_unify.start(p_name);
    COMMIT;
    UPDATE rb.people SET nick = 'during-' || p_state WHERE id = 1;
    IF p_state = 'started' THEN RETURN; END IF;
    IF p_state = 'mid-backfill' THEN
        CALL customer_unify.backfill(p_name, batch_size => 50, max_batches => 2);
        RETURN;
    END IF;
    CALL customer_unify.backfill(p_name, batch_size => 50);
    IF p_state = 'backfilled' THEN RETURN; END IF;
    PERFORM * FROM customer_unify.verify(p_name);
    IF p_state = 'verified' THEN RETURN; END IF;
    PERFORM customer_unify.cutover(p_name);
    -- writes through the view land in the source too
    INSERT INTO people_rollback_cut_over_compat.people (id, email, nick) VALUES (1000, 'view@x', 'viewnick');
    UPDATE people_rollback_cut_over_compat.people SET city = 'Faro' WHERE id = 2;
END
$$;

CALL rb.to_state('people_rollback_planned', 'planned');
SELECT customer_unify.rollback('people_rollback_planned');
SELECT rb.schema_fingerprint() = :'schema_before' AS schema_restored_planned;

CALL rb.to_state('people_rollback_started', 'started');
SELECT to_regclass('rb.people_extra') IS NOT NULL AS target_exists;
SELECT customer_unify.rollback('people_rollback_started');
SELECT rb.schema_fingerprint() = :'schema_before' AS schema_restored_started;

CALL rb.to_state('people_rollback_mid', 'mid-backfill');
SELECT state, rows_done FROM customer_unify.progress WHERE name = 'people_rollback_mid';
SELECT customer_unify.rollback('people_rollback_mid');
SELECT rb.schema_fingerprint() = :'schema_before' AS schema_restored_mid_backfill;

CALL rb.to_state('people_rollback_backfilled', 'backfilled');
SELECT customer_unify.rollback('people_rollback_backfilled');
SELECT rb.schema_fingerprint() = :'schema_before' AS schema_restored_backfilled;

CALL rb.to_state('people_rollback_verified', 'verified');
SELECT state FROM customer_unify.migration WHERE name = 'people_rollback_verified';
SELECT customer_unify.rollback('people_rollback_verified');
SELECT rb.schema_fingerprint() = :'schema_before' AS schema_restored_verified;

CALL rb.to_state('people_rollback_cut_over', 'cut_over');
SELECT customer_unify.rollback('people_rollback_cut_over');
SELECT rb.schema_fingerprint() = :'schema_before' AS schema_restored_cut_over;

-- data: every write made while live (directly or through the view) is in the source
SELECT id, email, nick, city FROM people WHERE id IN (1, 2, 1000) ORDER BY id;
SELECT count(*) FROM people;
SELECT name, state FROM customer_unify.migration WHERE name LIKE 'people_rollback%' ORDER BY id;
-- every step that ran was reverted
SELECT m.name, count(*) FILTER (WHERE l.outcome = 'ok' AND l.inverse IS NOT NULL) AS unreverted
  FROM customer_unify.migration m LEFT JOIN customer_unify.step_log l ON l.migration_id = m.id
 WHERE m.name LIKE 'people_rollback%' GROUP BY m.name ORDER BY m.name;
RESET search_path;

-- Shared setup for the pg_regress tier: the extension and a helper that
-- runs a statement and reports its SQLSTATE and message (or 'ok').
CREATE EXTENSION customer_unify;
SELECT extname, extversion, nspname AS schema
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE extname = 'customer_unify';
CREATE SCHEMA regress_util;
GRANT USAGE ON SCHEMA regress_util TO PUBLIC;
CREATE FUNCTION regress_util.try(sql text) RETURNS text
    LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
-- the same, also showing DETAIL
CREATE FUNCTION regress_util.try_detail(sql text) RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE
    v_state text; v_msg text; v_detail text;
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT, v_detail = PG_EXCEPTION_DETAIL;
    RETURN v_state || ': ' || v_msg || E'\nDETAIL: ' || v_detail;
END
$$;
-- a data fingerprint of a table, order independent
CREATE FUNCTION regress_util.fingerprint(rel regclass) RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE v text;
BEGIN
    EXECUTE format('SELECT md5(string_agg(t::text, %L ORDER BY t::text)) FROM %s t', E'\n', rel) INTO v;
    RETURN v;
END
$$;

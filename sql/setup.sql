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
-- wait until cond (an expression over the job's row j in customer_unify.jobs) holds, at most 60 s;
-- a procedure that commits between looks, so that it holds no snapshot a
-- CREATE INDEX CONCURRENTLY of the job would wait for
CREATE PROCEDURE regress_util.wait_job(p_name text, p_cond text, INOUT ok boolean DEFAULT NULL)
    LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    LOOP
        EXECUTE format('SELECT %s FROM customer_unify.jobs j WHERE j.name = $1', p_cond) INTO ok USING p_name;
        ok := coalesce(ok, false);
        EXIT WHEN ok OR clock_timestamp() > t0 + interval '60 s';
        COMMIT;
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;
-- the shape of a table as the catalog has it: columns, constraints,
-- indexes, triggers and privileges (what a rollback must leave as it was)
CREATE FUNCTION regress_util.shape(rel regclass) RETURNS text
    LANGUAGE sql STABLE AS $$
    SELECT concat_ws(E'\n',
        (SELECT string_agg(format('column %s %s%s%s', a.attname, format_type(a.atttypid, a.atttypmod),
                                  CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
                                  ' default ' || pg_get_expr(d.adbin, d.adrelid)), E'\n' ORDER BY a.attnum)
           FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped),
        (SELECT string_agg(format('constraint %s %s%s', c.conname, pg_get_constraintdef(c.oid),
                                  CASE WHEN c.convalidated THEN '' ELSE ' (not validated)' END), E'\n' ORDER BY c.conname)
           FROM pg_constraint c WHERE c.conrelid = rel),
        (SELECT string_agg(pg_get_indexdef(i.indexrelid), E'\n' ORDER BY 1) FROM pg_index i WHERE i.indrelid = rel),
        (SELECT string_agg(format('trigger %s %s', t.tgname, t.tgenabled), E'\n' ORDER BY t.tgname)
           FROM pg_trigger t WHERE t.tgrelid = rel AND NOT t.tgisinternal),
        (SELECT 'acl ' || c.relacl::text FROM pg_class c WHERE c.oid = rel))
$$;

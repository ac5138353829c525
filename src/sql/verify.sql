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

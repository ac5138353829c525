-------------------------------------------------------------------------------
-- updates/1.2--1.3-post.sql: every merge 1.2 left live gets 1.3's generated
-- functions in its work schema: apply_<tag> (set-based backfill batches,
-- references found by the key's own equality), recompute and reconcile, the
-- reference triggers' functions, and the new pending table with live_<tag>,
-- drain() and repoint(), so that from now on the application's writes never
-- wait for the merge (its capture triggers call live_<tag> once it exists).
-- The frozen plan of the phases still to come is 1.2's and stays valid.
--
-- What an extension script creates becomes a member of the extension, and
-- it may not replace what is not a member: each function replaced is made a
-- member for the replacement and released after; what is new is released
-- and given to the tables' owner, whose it would have been had the merge
-- started on 1.3.  Each statement is logged in phase 'upgrade'.  A merge
-- whose objects the updating role may not change keeps 1.2's functions
-- (a WARNING says so); it still finishes on 1.3.
-------------------------------------------------------------------------------
DO $upgrade$
DECLARE
    m        customer_unify.migration;
    w        text;
    v_owner  text;
    v_src    jsonb;
    v_ref    jsonb;
    v_stmts  text[];
    v_old    regprocedure[];
    v_new    text[];
    v_f      regprocedure;
    v_seq    int;
    v_st     text;
    v_final  boolean;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    FOR m IN SELECT * FROM customer_unify.migration x
              WHERE x.kind = 'merge' AND x.state IN ('started', 'backfilled', 'verified', 'cut_over', 'finalized')
              ORDER BY x.id
    LOOP
        w := m.spec->>'work_schema';
        CONTINUE WHEN to_regnamespace(w) IS NULL;
        v_final := m.state = 'finalized';
        SELECT pg_get_userbyid(n.nspowner) INTO v_owner FROM pg_namespace n WHERE n.nspname = w;
        -- what is replaced, what is new
        v_old := ARRAY(SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                        WHERE n.nspname = w AND (p.proname LIKE 'apply\_%' OR p.proname LIKE 'ref\_%'
                                                 OR p.proname IN ('recompute', 'reconcile')));
        v_stmts := ARRAY[format('CREATE TABLE IF NOT EXISTS %I.pending (src text NOT NULL, skey text NOT NULL, '
                                'deferred_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp())', w)];
        FOR v_src IN SELECT e FROM jsonb_array_elements(m.spec->'sources') e ORDER BY e->>'tag' LOOP
            v_stmts := v_stmts || customer_unify._merge_apply_sql(m, v_src,
                v_final AND NOT (v_src->>'anchor')::boolean AND NOT (v_src->>'keep')::boolean);
        END LOOP;
        v_stmts := v_stmts || customer_unify._merge_recompute_sql(m) || customer_unify._merge_reconcile_sql(m);
        IF NOT v_final THEN
            FOR v_ref IN SELECT e FROM jsonb_array_elements(m.spec->'references') e ORDER BY (e->>'n')::int LOOP
                v_stmts := v_stmts || customer_unify._merge_ref_function_sql(m, v_ref);
            END LOOP;
        END IF;
        v_stmts := v_stmts || customer_unify._merge_live_sql(m, v_final);
        BEGIN
            FOREACH v_f IN ARRAY v_old LOOP
                EXECUTE format('ALTER EXTENSION customer_unify ADD FUNCTION %s', v_f);
            END LOOP;
            v_seq := coalesce((SELECT max(l.seq) FROM customer_unify.step_log l WHERE l.migration_id = m.id AND l.phase = 'upgrade'), 0);
            FOREACH v_st IN ARRAY v_stmts LOOP
                EXECUTE v_st;
                v_seq := v_seq + 1;
                INSERT INTO customer_unify.step_log (migration_id, phase, seq, statement, inverse, lock_mode,
                                                     lock_relation, rows, duration_ms, outcome)
                VALUES (m.id, 'upgrade', v_seq, v_st, NULL, NULL, NULL, 0, 0, 'ok');
            END LOOP;
            FOREACH v_f IN ARRAY v_old LOOP
                EXECUTE format('ALTER EXTENSION customer_unify DROP FUNCTION %s', v_f);
            END LOOP;
            -- the new ones: out of the extension, to the tables' owner
            v_new := ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                            WHERE n.nspname = w AND NOT p.oid = ANY (v_old::oid[]));
            FOREACH v_st IN ARRAY v_new LOOP
                EXECUTE format('ALTER EXTENSION customer_unify DROP FUNCTION %s', v_st);
                EXECUTE format('ALTER FUNCTION %s OWNER TO %I', v_st, v_owner);
            END LOOP;
            IF EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e'
                          AND d.objid = format('%I.pending', w)::regclass) THEN
                EXECUTE format('ALTER EXTENSION customer_unify DROP TABLE %I.pending', w);
            END IF;
            EXECUTE format('ALTER TABLE %I.pending OWNER TO %I', w, v_owner);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'merge "%" keeps the functions 1.2 generated for it: %', m.name, SQLERRM
                USING HINT = 'Update the extension as a role that may act for the owner of the merge''s tables to give it 1.3''s.';
        END;
    END LOOP;
END
$upgrade$;

-------------------------------------------------------------------------------
-- rekey.sql: the rekey operation (1.3).  A child table whose primary key is
-- also its link to a parent (Django multi-table inheritance: users_customer
-- (user_ptr_id PK -> users_user.id)) gets its own key and a separate link,
-- in place: users_customer(id PK, user_id UNIQUE NOT NULL -> users_user.id).
-- Ids are preserved: id = user_id = the old user_ptr_id.
--
--   start     adds the key and the link (empty columns: a catalog change),
--             the C trigger that keeps the three columns one value while
--             applications of both shapes write (rekey_sync.c), the same on
--             each history table, and the old shape as a view in
--             <name>_compat; plans the unique indexes the job builds
--   backfill  fills the two columns in committed batches (UPDATE)
--   (job)     CREATE UNIQUE INDEX CONCURRENTLY on the key and the link
--   cutover   the new key is enforced: every foreign key that referenced
--             the old key gets its twin on the new key, the link its foreign
--             key to the parent, both columns a NOT NULL check; all NOT
--             VALID (catalog changes under short locks)
--   finalize  validates them (writes go on), compares under SHARE, then the
--             swap under ACCESS EXCLUSIVE: the old references and the old
--             primary key go, the key becomes the primary key (its index, no
--             scan), the link NOT NULL UNIQUE, the old key column is dropped,
--             the key gets its identity above the largest id; the view now
--             reads the link as the old key
--   rollback  before finalize: everything start and cutover added goes; the
--             old key, its primary key and its references were never
--             touched
-------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION customer_unify.rekey_sync() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cu_rekey_sync';
COMMENT ON FUNCTION customer_unify.rekey_sync() IS
    'BEFORE INSERT OR UPDATE row trigger of a live rekey: keeps the parent link (argument 1), the new key (2) and the link (3) one value, whichever of them a write names; on a history table (arguments 4.. : parent, its key, columns) fills the columns copied from the parent.';

-- The columns of a history table its old shape copied from the parent
-- (an MTI child's history has the parent's fields too), which the new
-- shape's history no longer writes: those of the parent that the child
-- itself does not have.
CREATE OR REPLACE FUNCTION customer_unify._rekey_parent_columns(p_history regclass, p_source regclass, p_parent regclass,
                                                                p_skip text[])
    RETURNS text[]
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(h.attname::text ORDER BY h.attnum), '{}')
      FROM pg_attribute h
     WHERE h.attrelid = p_history AND h.attnum > 0 AND NOT h.attisdropped AND h.attgenerated = ''
       AND NOT (h.attname::text = ANY (p_skip))
       AND EXISTS (SELECT 1 FROM pg_attribute p WHERE p.attrelid = p_parent AND p.attname = h.attname AND NOT p.attisdropped AND p.attnum > 0)
       AND NOT EXISTS (SELECT 1 FROM pg_attribute s WHERE s.attrelid = p_source AND s.attname = h.attname AND NOT s.attisdropped AND s.attnum > 0)
$$;

-- A new column's name: given, not null, fits NAMEDATALEN.
CREATE OR REPLACE FUNCTION customer_unify._rekey_check_name(p_what text, p_value text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_value IS NULL OR p_value = '' THEN
        RAISE EXCEPTION '% must not be empty', p_what USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF octet_length(p_value) > 63 THEN
        RAISE EXCEPTION '% "%" is longer than 63 bytes', p_what, p_value USING ERRCODE = 'name_too_long';
    END IF;
    RETURN p_value;
END
$$;

-- Validate a rekey and return its plan for the engine.
-- args: source (oid), parent_link, new_key, link_column, history (oids).
CREATE OR REPLACE FUNCTION customer_unify._rekey_validate(p_name text, p_args jsonb)
    RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t          record := customer_unify._kit_table(p_args);
    v_pk       record;
    v_fk       record;
    v_key      text;
    v_new      text;
    v_link     text;
    v_type     regtype;
    v_compat   text;
    v_hist     jsonb := '[]';
    v_refs     jsonb := '[]';
    v_kept     jsonb;
    v_h        record;
    v_hrel     regclass;
    v_hpk      record;
    v_n        int := 0;
    v_owner    oid := (SELECT c.relowner FROM pg_class c WHERE c.oid = t.source);
    v_r        record;
BEGIN
    v_compat := p_name || '_compat';
    IF octet_length(v_compat) > 63 THEN
        RAISE EXCEPTION 'migration name "%" is too long', p_name
            USING ERRCODE = 'name_too_long',
                  DETAIL = 'The compatibility schema is named <name>_compat and must fit in 63 bytes.';
    END IF;
    -- the primary key: one integer column, which is the parent link
    SELECT i.indnkeyatts AS n, a.attname::text AS col, a.atttypid::regtype AS typ, i.indexrelid
      INTO v_pk
      FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
     WHERE i.indrelid = t.source AND i.indisprimary;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% has no primary key', t.source::text
            USING ERRCODE = 'invalid_table_definition',
                  HINT = 'A rekey gives a table whose primary key is its link to a parent (user_ptr_id) its own key.';
    END IF;
    IF v_pk.n <> 1 THEN
        RAISE EXCEPTION 'the primary key of % has % columns', t.source::text, v_pk.n
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'A rekey takes a one-column primary key that is the link to the parent.';
    END IF;
    v_key := coalesce(p_args->>'parent_link', v_pk.col);
    IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = t.source AND a.attname = v_key AND a.attnum > 0 AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'column "%" of % does not exist', v_key, t.source::text USING ERRCODE = 'undefined_column';
    END IF;
    IF v_key <> v_pk.col THEN
        RAISE EXCEPTION 'column "%" is not the primary key of %', v_key, t.source::text
            USING ERRCODE = 'invalid_table_definition',
                  DETAIL = format('The primary key of %s is %I.', t.source::text, v_pk.col),
                  HINT = 'parent_link names the primary key that is also the foreign key to the parent (Django: <parent>_ptr_id).';
    END IF;
    v_type := v_pk.typ;
    IF v_type NOT IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) THEN
        RAISE EXCEPTION 'the key "%" of % is of type %', v_key, t.source::text, v_type
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'A rekey keeps smallint, integer and bigint keys (the new key gets an identity above the largest).';
    END IF;
    -- the key is a foreign key to the parent: a multi-table-inheritance child
    SELECT c.oid, c.confrelid::regclass AS parent, pa.attname::text AS parent_key, c.conname
      INTO v_fk
      FROM pg_constraint c
      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
      JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = c.confkey[1]
     WHERE c.conrelid = t.source AND c.contype = 'f' AND array_length(c.conkey, 1) = 1 AND a.attname = v_key
     ORDER BY c.conname LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not a child table: its key "%" references no parent', t.source::text, v_key
            USING ERRCODE = 'invalid_foreign_key',
                  HINT = 'A rekey is for a table whose primary key is a foreign key to its parent (Django multi-table inheritance).';
    END IF;
    IF v_fk.parent = t.source THEN
        RAISE EXCEPTION 'the key "%" of % references the table itself', v_key, t.source::text
            USING ERRCODE = 'invalid_foreign_key';
    END IF;
    -- the new columns
    v_new := customer_unify._rekey_check_name('new_key', coalesce(p_args->>'new_key', 'id'));
    v_link := p_args->>'link_column';
    IF v_link IS NULL THEN
        IF v_key !~ '_ptr_id$' THEN
            RAISE EXCEPTION 'link_column must be given: "%" is not named <parent>_ptr_id', v_key
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'link_column names the new column that links to the parent, e.g. user_id.';
        END IF;
        v_link := regexp_replace(v_key, '_ptr_id$', '_id');
    END IF;
    v_link := customer_unify._rekey_check_name('link_column', v_link);
    IF v_new = v_link OR v_new = v_key OR v_link = v_key THEN
        RAISE EXCEPTION 'the parent link, new_key and link_column must be three different names ("%", "%", "%")', v_key, v_new, v_link
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR v_r IN SELECT x FROM unnest(ARRAY[v_new, v_link]) x
                WHERE EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = t.source AND a.attname = x AND a.attnum > 0 AND NOT a.attisdropped) LOOP
        RAISE EXCEPTION 'column "%" of % already exists', v_r.x, t.source::text
            USING ERRCODE = 'duplicate_column',
                  HINT = 'new_key and link_column name columns the rekey adds.';
    END LOOP;
    FOR v_r IN SELECT x FROM unnest(ARRAY[customer_unify._b_clip_name(t.relname || '_' || v_new, '_key'),
                                          customer_unify._b_clip_name(t.relname || '_' || v_link, '_key')]) x
                WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = t.source)
                                 AND c.relname = x) LOOP
        RAISE EXCEPTION 'relation "%" already exists in schema %', v_r.x, quote_ident(t.nspname)
            USING ERRCODE = 'duplicate_table',
                  HINT = 'The rekey''s job builds its unique indexes under these names.';
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = v_compat) THEN
        RAISE EXCEPTION 'schema "%" already exists', v_compat
            USING ERRCODE = 'duplicate_schema',
                  HINT = 'The compatibility schema of a rekey is <name>_compat; choose another migration name.';
    END IF;
    IF NOT has_database_privilege(v_owner, current_database(), 'CREATE') THEN
        RAISE EXCEPTION 'role % may not create schemas in database "%"', pg_get_userbyid(v_owner), current_database()
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'start creates the compatibility schema as the owner of the table.',
                  HINT = format('GRANT CREATE ON DATABASE %I TO %I;', current_database(), pg_get_userbyid(v_owner));
    END IF;
    -- every foreign key that references the key follows it (one owner: the
    -- rekey alters them as the table's owner)
    FOR v_r IN
        SELECT c.oid, c.conrelid::regclass AS rel, cl.relkind, cl.relowner, a.attname::text AS col
          FROM pg_constraint c
          JOIN pg_class cl ON cl.oid = c.conrelid
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
         WHERE c.contype = 'f' AND c.confrelid = t.source AND c.confkey = ARRAY[(SELECT a2.attnum FROM pg_attribute a2
                                                                               WHERE a2.attrelid = t.source AND a2.attname = v_key)]
           AND c.conparentid = 0
         ORDER BY c.conrelid::regclass::text, c.conname
    LOOP
        IF v_r.relkind = 'p' THEN
            RAISE EXCEPTION 'partitioned table % references %', v_r.rel::text, t.source::text
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'A foreign key of a partitioned table cannot be added NOT VALID; re-point it by hand first.';
        END IF;
        IF v_r.relowner <> v_owner THEN
            RAISE EXCEPTION '% references % but has another owner', v_r.rel::text, t.source::text
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'The rekey re-points its foreign key as the owner of both; ALTER TABLE ... OWNER TO one role first.';
        END IF;
        v_n := v_n + 1;
        v_refs := v_refs || jsonb_build_object('tag', 'ref' || v_n, 'relid', v_r.rel::oid, 'constraint', v_r.oid,
                                               'column', v_r.col, 'fk', customer_unify._b_clip_name(
                                                   (SELECT c.conname FROM pg_constraint c WHERE c.oid = v_r.oid), '_rekey'));
    END LOOP;
    -- history tables: the old key, a one-column primary key, integer new columns if present
    v_n := 0;
    FOR v_h IN SELECT (x::oid)::regclass AS rel FROM jsonb_array_elements_text(CASE jsonb_typeof(p_args->'history') WHEN 'array' THEN p_args->'history' ELSE '[]' END) x LOOP
        v_hrel := v_h.rel;
        IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = v_hrel) THEN
            RAISE EXCEPTION 'relation with OID % does not exist', v_hrel::oid USING ERRCODE = 'undefined_table';
        END IF;
        IF v_hrel = t.source THEN
            RAISE EXCEPTION '% cannot be its own history table', t.source::text USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF (SELECT c.relkind FROM pg_class c WHERE c.oid = v_hrel) <> 'r' THEN
            RAISE EXCEPTION '% is not an ordinary table', v_hrel::text USING ERRCODE = 'wrong_object_type';
        END IF;
        IF (SELECT c.relowner FROM pg_class c WHERE c.oid = v_hrel) <> v_owner THEN
            RAISE EXCEPTION 'history table % has another owner than %', v_hrel::text, t.source::text
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'The rekey alters the history as the owner of both; ALTER TABLE ... OWNER TO one role first.';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_hrel AND a.attname = v_key AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'history table % has no column "%"', v_hrel::text, v_key
                USING ERRCODE = 'undefined_column',
                      HINT = 'A history table copies the child''s columns, its key included.';
        END IF;
        IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_hrel AND a.attname::text IN (v_key, v_new, v_link)
                      AND NOT a.attisdropped AND a.atttypid NOT IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype)) THEN
            RAISE EXCEPTION 'history table % has a column "%", "%" or "%" that is not an integer', v_hrel::text, v_key, v_new, v_link
                USING ERRCODE = 'datatype_mismatch';
        END IF;
        SELECT i.indnkeyatts AS n, a.attname::text AS col, a.atttypid::regtype AS typ INTO v_hpk
          FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indrelid = v_hrel AND i.indisprimary;
        IF NOT FOUND OR v_hpk.n <> 1 OR v_hpk.col IN (v_key, v_new, v_link) THEN
            RAISE EXCEPTION 'history table % has no one-column primary key of its own', v_hrel::text
                USING ERRCODE = 'invalid_table_definition',
                      HINT = 'The rekey fills the history in batches by its own key (django-simple-history: history_id).';
        END IF;
        v_n := v_n + 1;
        v_hist := v_hist || jsonb_build_object(
            'tag', 'history' || v_n, 'relid', v_hrel::oid, 'key', v_hpk.col,
            'add_key', NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_hrel AND a.attname = v_new AND NOT a.attisdropped),
            'add_link', NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_hrel AND a.attname = v_link AND NOT a.attisdropped),
            'parent_columns', to_jsonb(customer_unify._rekey_parent_columns(v_hrel, t.source, v_fk.parent, ARRAY[v_key, v_new, v_link])));
    END LOOP;
    IF (SELECT count(DISTINCT e->>'relid') FROM jsonb_array_elements(v_hist) e) <> jsonb_array_length(v_hist) THEN
        RAISE EXCEPTION 'a history table is named twice' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- what the DDL guard keeps while the rekey is live
    v_kept := (SELECT jsonb_agg(jsonb_build_array(t.source::oid, c)) FROM unnest(ARRAY[v_key, v_new, v_link]) c)
              || coalesce((SELECT jsonb_agg(jsonb_build_array((h->>'relid')::oid, c))
                             FROM jsonb_array_elements(v_hist) h, unnest(ARRAY[v_key, v_new, v_link]) c), '[]')
              || coalesce((SELECT jsonb_agg(jsonb_build_array((r->>'relid')::oid, r->>'column')) FROM jsonb_array_elements(v_refs) r), '[]');
    RETURN jsonb_build_object(
        'source', t.source::oid,
        'spec', jsonb_build_object(
            'source_schema', t.nspname, 'source_table', t.relname,
            'key_column', v_key, 'key_type', v_type::text, 'new_key', v_new, 'link_column', v_link,
            'parent', v_fk.parent::oid, 'parent_key', v_fk.parent_key, 'parent_fk', v_fk.oid,
            'compat_schema', v_compat,
            'key_index', customer_unify._b_clip_name(t.relname || '_' || v_new, '_key'),
            'link_index', customer_unify._b_clip_name(t.relname || '_' || v_link, '_key'),
            'link_fk', customer_unify._b_clip_name(t.relname || '_' || v_link, '_fkey'),
            'history', v_hist, 'references', v_refs,
            -- the compatibility view selects every column the table had at start
            'source_columns', (SELECT jsonb_agg(c.attname ORDER BY c.attnum) FROM customer_unify._b_columns(t.source, NULL) c),
            'kept_columns', v_kept,
            'args', p_args - 'source'),
        'relations', jsonb_build_array(jsonb_build_object('tag', 'source', 'role', 'source', 'relid', t.source::oid))
                     || coalesce((SELECT jsonb_agg(jsonb_build_object('tag', h->>'tag', 'role', 'history', 'relid', (h->>'relid')::oid))
                                    FROM jsonb_array_elements(v_hist) h), '[]')
                     || coalesce((SELECT jsonb_agg(jsonb_build_object('tag', r->>'tag', 'role', 'reference', 'relid', (r->>'relid')::oid))
                                    FROM (SELECT DISTINCT ON (r->>'relid') r FROM jsonb_array_elements(v_refs) r
                                           WHERE (r->>'relid')::oid <> t.source ORDER BY r->>'relid', r->>'tag') x), '[]'),
        'maps', '[]'::jsonb);
END
$$;

CREATE OR REPLACE FUNCTION customer_unify.rekey(
    name        text,
    source      regclass,
    parent_link text DEFAULT NULL,
    new_key     text DEFAULT 'id',
    link_column text DEFAULT NULL,
    history     regclass[] DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id   bigint;
    v_list text;
BEGIN
    IF rekey.name IS NULL OR rekey.source IS NULL THEN
        RAISE EXCEPTION 'name and source must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    v_id := customer_unify._create_migration('rekey', rekey.name,
                jsonb_build_object('source', rekey.source::oid, 'parent_link', rekey.parent_link,
                                   'new_key', rekey.new_key, 'link_column', rekey.link_column,
                                   'history', (SELECT jsonb_agg(h::oid) FROM unnest(rekey.history) h)));
    v_list := customer_unify._blocking_dependents(v_id);
    IF v_list IS NOT NULL THEN
        RAISE NOTICE 'objects use the old key column; finalize will refuse until they are changed'
            USING DETAIL = v_list,
                  HINT = format('See SELECT * FROM customer_unify.dependents(%L);', rekey.name);
    END IF;
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION customer_unify.rekey(text, regclass, text, text, text, regclass[]) IS
    'Plans giving a child table whose primary key is its link to a parent (Django multi-table inheritance: user_ptr_id) its own key new_key and a separate link_column, ids preserved, every foreign key to the old key re-pointed, history tables kept consistent. Validates everything; creates nothing.';

-- The relations of a rekey by name, from the catalog.
CREATE OR REPLACE FUNCTION customer_unify._rekey_names(m customer_unify.migration,
    OUT src text, OUT compat_view text, OUT pk_name text, OUT parent text, OUT parent_key text)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT customer_unify._b_name(m.source),
           customer_unify._qual(m.spec->>'compat_schema', (SELECT c.relname FROM pg_class c WHERE c.oid = m.source)),
           (SELECT c.conname::text FROM pg_constraint c WHERE c.conrelid = m.source AND c.contype = 'p'),
           customer_unify._b_name((m.spec->>'parent')::oid::regclass),
           (SELECT a.attname::text FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = c.confkey[1]
             WHERE c.oid = (m.spec->>'parent_fk')::oid)
$$;

-- Every statement of a rekey, per phase.
CREATE OR REPLACE FUNCTION customer_unify._rekey_steps(m customer_unify.migration)
    RETURNS TABLE (phase text, seq int, statement text, inverse text,
                   lock_mode text, lock_relation text, rows_estimate bigint, registers jsonb)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s        jsonb := m.spec;
    n        record := customer_unify._rekey_names(m);
    v_key    text := s->>'key_column';
    v_new    text := s->>'new_key';
    v_link   text := s->>'link_column';
    v_typ    text := s->>'key_type';
    v_trg    text := 'customer_unify_' || m.id || '_rekey';
    v_steps  customer_unify.step_def[];
    v_h      jsonb;
    v_r      jsonb;
    v_hname  text;
    v_rname  text;
    v_cols   text;
    v_final  text;
    v_nn_key text := customer_unify._b_clip_name(s->>'source_table' || '_' || v_new, '_not_null');
    v_nn_link text := customer_unify._b_clip_name(s->>'source_table' || '_' || v_link, '_not_null');
BEGIN
    ---------------------------------------------------------------- start
    v_steps := ARRAY[
        customer_unify._b_lock(n.src, 'SHARE ROW EXCLUSIVE'),
        -- empty columns: a catalog change, no rewrite; each plans its unique index
        customer_unify._b_step(format('ALTER TABLE %s ADD COLUMN %I %s', n.src, v_new, v_typ),
            format('ALTER TABLE %s DROP COLUMN IF EXISTS %I', n.src, v_new), 'ACCESS EXCLUSIVE', n.src,
            jsonb_build_object('job_index', jsonb_build_object('index_name', s->>'key_index', 'relation_tag', 'source',
                               'columns', jsonb_build_array(v_new), 'is_unique', true))),
        customer_unify._b_step(format('ALTER TABLE %s ADD COLUMN %I %s', n.src, v_link, v_typ),
            format('ALTER TABLE %s DROP COLUMN IF EXISTS %I', n.src, v_link), 'ACCESS EXCLUSIVE', n.src,
            jsonb_build_object('job_index', jsonb_build_object('index_name', s->>'link_index', 'relation_tag', 'source',
                               'columns', jsonb_build_array(v_link), 'is_unique', true))),
        customer_unify._b_step(format('COMMENT ON COLUMN %s.%I IS %L', n.src, v_new,
            format('customer_unify: the own key of %s (rekey %s); equal to %s until finalize', n.src, m.name, v_key))),
        customer_unify._b_step(format('COMMENT ON COLUMN %s.%I IS %L', n.src, v_link,
            format('customer_unify: the link of %s to %s (rekey %s)', n.src, n.parent, m.name)))];
    -- column privileges of the old key carry to the new columns
    v_steps := v_steps || ARRAY(
        SELECT customer_unify._b_step(g, NULL, NULL, n.src)
          FROM pg_attribute a, unnest(ARRAY[v_new, v_link]) c,
               LATERAL customer_unify._b_grants(a.attacl, n.src, c) g
         WHERE a.attrelid = m.source AND a.attname = v_key AND a.attacl IS NOT NULL);
    v_steps := v_steps || ARRAY[
        customer_unify._b_step(format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION customer_unify.rekey_sync(%L, %L, %L)',
                                      v_trg, n.src, v_key, v_new, v_link),
                               format('DROP TRIGGER IF EXISTS %I ON %s', v_trg, n.src), 'SHARE ROW EXCLUSIVE', n.src),
        customer_unify._b_step(format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', n.src, v_trg), NULL, 'SHARE ROW EXCLUSIVE', n.src)];
    FOR v_h IN SELECT e FROM jsonb_array_elements(s->'history') e ORDER BY e->>'tag' LOOP
        v_hname := customer_unify._b_name((v_h->>'relid')::oid::regclass);
        v_steps := v_steps || customer_unify._b_lock(v_hname, 'SHARE ROW EXCLUSIVE');
        IF (v_h->>'add_key')::boolean THEN
            v_steps := v_steps || customer_unify._b_step(format('ALTER TABLE %s ADD COLUMN %I %s', v_hname, v_new, v_typ),
                format('ALTER TABLE %s DROP COLUMN IF EXISTS %I', v_hname, v_new), 'ACCESS EXCLUSIVE', v_hname,
                jsonb_build_object('job_index', jsonb_build_object('index_name',
                    customer_unify._b_clip_name((SELECT c.relname FROM pg_class c WHERE c.oid = (v_h->>'relid')::oid) || '_' || v_new, '_idx'),
                    'relation_tag', v_h->>'tag', 'columns', jsonb_build_array(v_new), 'is_unique', false)));
        END IF;
        IF (v_h->>'add_link')::boolean THEN
            v_steps := v_steps || customer_unify._b_step(format('ALTER TABLE %s ADD COLUMN %I %s', v_hname, v_link, v_typ),
                format('ALTER TABLE %s DROP COLUMN IF EXISTS %I', v_hname, v_link), 'ACCESS EXCLUSIVE', v_hname,
                jsonb_build_object('job_index', jsonb_build_object('index_name',
                    customer_unify._b_clip_name((SELECT c.relname FROM pg_class c WHERE c.oid = (v_h->>'relid')::oid) || '_' || v_link, '_idx'),
                    'relation_tag', v_h->>'tag', 'columns', jsonb_build_array(v_link), 'is_unique', false)));
        END IF;
        v_steps := v_steps || ARRAY[
            customer_unify._b_step(
                format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION customer_unify.rekey_sync(%L, %L, %L%s)',
                       v_trg, v_hname, v_key, v_new, v_link,
                       CASE WHEN jsonb_array_length(v_h->'parent_columns') > 0
                            THEN format(', %L, %L, ', (s->>'parent')::oid::text, n.parent_key)
                                 || (SELECT string_agg(quote_literal(c), ', ') FROM jsonb_array_elements_text(v_h->'parent_columns') c)
                            ELSE '' END),
                format('DROP TRIGGER IF EXISTS %I ON %s', v_trg, v_hname), 'SHARE ROW EXCLUSIVE', v_hname),
            customer_unify._b_step(format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', v_hname, v_trg), NULL, 'SHARE ROW EXCLUSIVE', v_hname)];
    END LOOP;
    -- the old shape for applications not yet moved: until finalize the
    -- table itself, a simple view PostgreSQL updates natively (its writes
    -- are the table's, with its defaults, triggers, privileges, row-level
    -- security and RETURNING)
    v_cols := (SELECT string_agg(quote_ident(c), ', ' ORDER BY o) FROM jsonb_array_elements_text(s->'source_columns') WITH ORDINALITY x(c, o));
    v_steps := v_steps || ARRAY[
        customer_unify._b_step(format('CREATE SCHEMA %I', s->>'compat_schema'), format('DROP SCHEMA IF EXISTS %I', s->>'compat_schema')),
        customer_unify._b_step(format('COMMENT ON SCHEMA %I IS %L', s->>'compat_schema',
                                      format('customer_unify: the old shape of %s (key %s) for applications not yet moved (rekey %s)',
                                             n.src, v_key, m.name))),
        customer_unify._b_step(format('CREATE VIEW %s WITH (security_invoker = true) AS SELECT %s FROM ONLY %s', n.compat_view, v_cols, n.src),
            format('DROP VIEW IF EXISTS %s', n.compat_view), 'ACCESS SHARE', n.src,
            jsonb_build_object('relation', jsonb_build_object('tag', 'view', 'role', 'view',
                               'nspname', s->>'compat_schema', 'relname', s->>'source_table')))];
    v_steps := v_steps || ARRAY(SELECT customer_unify._b_schema_usage(m.source, s->>'compat_schema'));
    v_steps := v_steps || ARRAY(SELECT customer_unify._b_privileges(m.source, n.compat_view,
                                         (SELECT jsonb_agg(jsonb_build_array(c, c)) FROM jsonb_array_elements_text(s->'source_columns') c)));
    RETURN QUERY SELECT * FROM customer_unify._b_phase('start', v_steps);

    ---------------------------------------------------------------- backfill (what each batch runs, for preview)
    RETURN QUERY SELECT * FROM customer_unify._b_phase('backfill',
        ARRAY(SELECT customer_unify._b_step(p.plan->>'batch', NULL, 'ROW EXCLUSIVE', p.plan->>'source_tag')
                FROM customer_unify._rekey_copy_plan(m) p ORDER BY p.stream));
    RETURN QUERY SELECT * FROM customer_unify._b_phase('validate',
        ARRAY[customer_unify._b_step(format('SELECT %L', 'rekey copied'))]);

    ---------------------------------------------------------------- cutover
    -- the new key is enforced: twins of the references on the new key, the
    -- link's foreign key to the parent, NOT NULL checks; NOT VALID (finalize
    -- validates them while writes go on)
    v_steps := ARRAY[customer_unify._b_lock(n.src, 'SHARE ROW EXCLUSIVE')];
    v_steps := v_steps || ARRAY(
        SELECT customer_unify._b_lock(x.rel, 'SHARE ROW EXCLUSIVE')
          FROM (SELECT DISTINCT customer_unify._b_name((r->>'relid')::oid::regclass) AS rel
                  FROM jsonb_array_elements(s->'references') r WHERE (r->>'relid')::oid <> m.source) x
         ORDER BY x.rel);
    v_steps := v_steps || customer_unify._b_step(format('SELECT customer_unify._gate_verify(%s)', m.id), NULL, 'SHARE ROW EXCLUSIVE', n.src);
    FOR v_r IN SELECT e FROM jsonb_array_elements(s->'references') e ORDER BY e->>'tag' LOOP
        v_rname := customer_unify._b_name((v_r->>'relid')::oid::regclass);
        v_steps := v_steps || customer_unify._b_foreign_key(v_rname, v_r->>'fk',
            format('FOREIGN KEY (%I) REFERENCES %s (%I)%s', v_r->>'column', n.src, v_new,
                   customer_unify._b_fk_options((v_r->>'constraint')::oid)));
    END LOOP;
    v_steps := v_steps || ARRAY[
        customer_unify._b_foreign_key(n.src, s->>'link_fk',
            format('FOREIGN KEY (%I) REFERENCES %s (%I)%s', v_link, n.parent, n.parent_key,
                   customer_unify._b_fk_options((s->>'parent_fk')::oid))),
        customer_unify._b_step(format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (%I IS NOT NULL) NOT VALID', n.src, v_nn_key, v_new),
            format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', n.src, v_nn_key), 'SHARE ROW EXCLUSIVE', n.src),
        customer_unify._b_step(format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (%I IS NOT NULL) NOT VALID', n.src, v_nn_link, v_link),
            format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', n.src, v_nn_link), 'SHARE ROW EXCLUSIVE', n.src)];
    RETURN QUERY SELECT * FROM customer_unify._b_phase('cutover', v_steps);

    ---------------------------------------------------------------- finalize
    -- first the validations (SHARE UPDATE EXCLUSIVE: writes go on), then
    -- writes stop (SHARE) while the shapes are compared, then the swap
    v_steps := ARRAY(
        SELECT customer_unify._b_validate(customer_unify._b_name((r->>'relid')::oid::regclass), r->>'fk')
          FROM jsonb_array_elements(s->'references') r ORDER BY r->>'tag');
    v_steps := v_steps || ARRAY[
        customer_unify._b_validate(n.src, s->>'link_fk'),
        customer_unify._b_validate(n.src, v_nn_key),
        customer_unify._b_validate(n.src, v_nn_link),
        customer_unify._b_lock(n.src, 'SHARE')];
    v_steps := v_steps || ARRAY(
        SELECT customer_unify._b_lock(customer_unify._b_name((h->>'relid')::oid::regclass), 'SHARE')
          FROM jsonb_array_elements(s->'history') h ORDER BY h->>'tag');
    v_steps := v_steps || ARRAY[
        customer_unify._b_step(format('SELECT customer_unify._gate_dependents(%s)', m.id)),
        customer_unify._b_step(format('SELECT customer_unify._gate_verify(%s)', m.id), NULL, 'SHARE', n.src),
        customer_unify._b_lock(n.src, 'ACCESS EXCLUSIVE')];
    v_steps := v_steps || ARRAY(
        SELECT customer_unify._b_lock(x.rel, 'ACCESS EXCLUSIVE')
          FROM (SELECT DISTINCT customer_unify._b_name((r->>'relid')::oid::regclass) AS rel
                  FROM jsonb_array_elements(s->'references') r WHERE (r->>'relid')::oid <> m.source
                UNION
                SELECT customer_unify._b_name((h->>'relid')::oid::regclass)
                  FROM jsonb_array_elements(s->'history') h) x ORDER BY x.rel);
    -- the references: the old foreign key goes, its twin takes its name
    FOR v_r IN SELECT e FROM jsonb_array_elements(s->'references') e ORDER BY e->>'tag' LOOP
        v_rname := customer_unify._b_name((v_r->>'relid')::oid::regclass);
        v_steps := v_steps || ARRAY[
            customer_unify._b_step(format('ALTER TABLE %s DROP CONSTRAINT %I', v_rname,
                                          (SELECT c.conname FROM pg_constraint c WHERE c.oid = (v_r->>'constraint')::oid)),
                                   NULL, 'ACCESS EXCLUSIVE', v_rname),
            customer_unify._b_step(format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', v_rname, v_r->>'fk',
                                          (SELECT c.conname FROM pg_constraint c WHERE c.oid = (v_r->>'constraint')::oid)),
                                   NULL, 'ACCESS EXCLUSIVE', v_rname)];
    END LOOP;
    -- the key swap: NOT NULL proven by the validated checks (no scan), the
    -- primary key and the link's unique constraint on the job's indexes
    v_final := (SELECT string_agg(CASE WHEN c = v_key THEN format('%I AS %I', v_link, v_key) ELSE quote_ident(c) END, ', ' ORDER BY o)
                  FROM jsonb_array_elements_text(s->'source_columns') WITH ORDINALITY x(c, o));
    v_steps := v_steps || ARRAY[
        customer_unify._b_step(format('DROP TRIGGER %I ON %s', v_trg, n.src), NULL, 'ACCESS EXCLUSIVE', n.src),
        customer_unify._b_step(format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL, ALTER COLUMN %I SET NOT NULL', n.src, v_new, v_link),
                               NULL, 'ACCESS EXCLUSIVE', n.src),
        customer_unify._b_step(format('ALTER TABLE %s DROP CONSTRAINT %I, DROP CONSTRAINT %I', n.src, v_nn_key, v_nn_link),
                               NULL, 'ACCESS EXCLUSIVE', n.src),
        customer_unify._b_step(format('ALTER TABLE %s DROP CONSTRAINT %I, ADD CONSTRAINT %I PRIMARY KEY USING INDEX %I',
                                      n.src, n.pk_name, n.pk_name, s->>'key_index'), NULL, 'ACCESS EXCLUSIVE', n.src),
        customer_unify._b_step(format('ALTER TABLE %s ADD CONSTRAINT %I UNIQUE USING INDEX %I', n.src, s->>'link_index', s->>'link_index'),
                               NULL, 'ACCESS EXCLUSIVE', n.src),
        -- old applications read the link as the old key from now on
        customer_unify._b_step(format('CREATE OR REPLACE VIEW %s WITH (security_invoker = true) AS SELECT %s FROM ONLY %s', n.compat_view, v_final, n.src),
                               NULL, 'ACCESS EXCLUSIVE', n.compat_view),
        customer_unify._b_step(format('ALTER TABLE %s DROP COLUMN %I', n.src, v_key), NULL, 'ACCESS EXCLUSIVE', n.src),
        customer_unify._b_step(format('ALTER TABLE %s ALTER COLUMN %I ADD GENERATED BY DEFAULT AS IDENTITY', n.src, v_new),
                               NULL, 'ACCESS EXCLUSIVE', n.src),
        -- new rows get ids of their own, above every id there is
        customer_unify._b_step(format('SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence(%L, %L), '
                                      'coalesce((SELECT max(%I) FROM ONLY %s), 0) + 1, false)', n.src, v_new, v_new, n.src),
                               NULL, 'ACCESS EXCLUSIVE', n.src),
        customer_unify._b_step(format('COMMENT ON COLUMN %s.%I IS NULL', n.src, v_new)),
        customer_unify._b_step(format('COMMENT ON COLUMN %s.%I IS NULL', n.src, v_link))];
    -- history tables: the trigger and the old key go; the columns copied
    -- from the parent, which the new shape's history does not write, may be NULL
    FOR v_h IN SELECT e FROM jsonb_array_elements(s->'history') e ORDER BY e->>'tag' LOOP
        v_hname := customer_unify._b_name((v_h->>'relid')::oid::regclass);
        v_steps := v_steps || customer_unify._b_step(format('DROP TRIGGER %I ON %s', v_trg, v_hname), NULL, 'ACCESS EXCLUSIVE', v_hname);
        v_steps := v_steps || ARRAY(
            SELECT customer_unify._b_step(format('ALTER TABLE %s ALTER COLUMN %I DROP NOT NULL', v_hname, a.attname),
                                          NULL, 'ACCESS EXCLUSIVE', v_hname)
              FROM pg_attribute a
             WHERE a.attrelid = (v_h->>'relid')::oid AND a.attnotnull AND NOT a.attisdropped
               AND a.attname::text IN (SELECT jsonb_array_elements_text(v_h->'parent_columns'))
             ORDER BY a.attnum);
        v_steps := v_steps || customer_unify._b_step(format('ALTER TABLE %s DROP COLUMN %I', v_hname, v_key), NULL, 'ACCESS EXCLUSIVE', v_hname);
    END LOOP;
    RETURN QUERY SELECT * FROM customer_unify._b_phase('finalize', v_steps);
END
$$;

-- The copy streams of a rekey: the table, then each history table.  A
-- batch finds the key range of its next batch_size rows through the key's
-- index, then fills the new columns of that range with one UPDATE (an
-- index range scan; $1 the last key done, not in the first batch; $2 the
-- copy's last key; $3 the batch size; returns the range's last key and its
-- rows, as the engine's statement streams do).
CREATE OR REPLACE FUNCTION customer_unify._rekey_copy_plan(m customer_unify.migration)
    RETURNS TABLE (stream text, key_type regtype, plan jsonb)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH t AS (
        SELECT 'a_source' AS stream, 'source' AS tag, m.source AS rel, m.spec->>'key_column' AS key,
               format('%1$I = x.%3$I, %2$I = x.%3$I', m.spec->>'new_key', m.spec->>'link_column', m.spec->>'key_column') AS sets,
               format('(x.%I IS NULL OR x.%I IS NULL)', m.spec->>'new_key', m.spec->>'link_column') AS pending
        UNION ALL
        SELECT 'b_' || (h->>'tag'), h->>'tag', (h->>'relid')::oid::regclass, h->>'key',
               format('%1$I = coalesce(x.%1$I, x.%3$I), %2$I = coalesce(x.%2$I, x.%3$I)', m.spec->>'new_key', m.spec->>'link_column', m.spec->>'key_column'),
               format('x.%I IS NOT NULL AND (x.%I IS NULL OR x.%I IS NULL)', m.spec->>'key_column', m.spec->>'new_key', m.spec->>'link_column')
          FROM jsonb_array_elements(m.spec->'history') h
    )
    SELECT t.stream, a.atttypid::regtype,
           jsonb_build_object('source_tag', t.tag, 'key', t.key,
               'batch_first', format(w.sql, '', ''),
               'batch', format(w.sql, format('s.%I > $1 AND ', t.key), format('x.%I > $1 AND ', t.key)))
      FROM t
      JOIN pg_attribute a ON a.attrelid = t.rel AND a.attname = t.key,
           LATERAL (SELECT replace(replace(format(
               'WITH b AS MATERIALIZED (SELECT max(q.k) AS hi, pg_catalog.count(*) AS n FROM (SELECT s.%1$I AS k FROM ONLY %2$s s '
               'WHERE %%1$sNOT (s.%1$I > $2) ORDER BY s.%1$I LIMIT $3) q), '
               'u AS (UPDATE ONLY %2$s x SET %3$s WHERE %%2$sx.%1$I <= (SELECT b.hi FROM b) AND %4$s RETURNING 1) '
               'SELECT (SELECT b.hi FROM b), (SELECT b.n FROM b) + 0 * (SELECT pg_catalog.count(*) FROM u)',
               t.key, customer_unify._b_name(t.rel), t.sets, t.pending), '%%1$s', '%1$s'), '%%2$s', '%2$s') AS sql) w
     ORDER BY t.stream
$$;

-- verify: the three columns agree on every row (the table and its
-- histories), every reference finds its row by the new key, the triggers fire.
CREATE OR REPLACE FUNCTION customer_unify._rekey_verify(m customer_unify.migration, checksums boolean DEFAULT true)
    RETURNS TABLE (check_name text, expected text, actual text, ok boolean)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_key  text := m.spec->>'key_column';
    v_new  text := m.spec->>'new_key';
    v_link text := m.spec->>'link_column';
    v_trg  text := 'customer_unify_' || m.id || '_rekey';
    v_count bigint;
    v_rel  record;
BEGIN
    FOR v_rel IN
        SELECT m.source AS rel, 'source' AS tag
        UNION ALL
        SELECT (h->>'relid')::oid::regclass, h->>'tag' FROM jsonb_array_elements(m.spec->'history') h
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_rel.rel AND a.attname = v_key AND NOT a.attisdropped) THEN
            CONTINUE;   -- finalized: the old key is gone
        END IF;
        EXECUTE format('SELECT count(*) FROM ONLY %s x WHERE %s(x.%I IS DISTINCT FROM x.%I OR x.%I IS DISTINCT FROM x.%I)',
                       customer_unify._b_name(v_rel.rel), CASE WHEN v_rel.tag = 'source' THEN '' ELSE format('x.%I IS NOT NULL AND ', v_key) END,
                       v_new, v_key, v_link, v_key)
           INTO v_count;
        check_name := format('%s: rows whose %I or %I is not their %I', v_rel.rel::text, v_new, v_link, v_key);
        expected := '0'; actual := v_count::text; ok := v_count = 0;
        RETURN NEXT;
        check_name := format('trigger %I on %s', v_trg, v_rel.rel::text); expected := 'enabled always';
        actual := coalesce((SELECT CASE t.tgenabled WHEN 'D' THEN 'disabled' WHEN 'R' THEN 'enabled for replica only'
                                                    WHEN 'A' THEN 'enabled always' ELSE 'enabled' END
                              FROM pg_trigger t WHERE t.tgrelid = v_rel.rel AND t.tgname = v_trg), 'missing');
        ok := actual = expected;
        RETURN NEXT;
    END LOOP;
    -- references: each value names a row by the new key
    FOR v_rel IN SELECT e FROM jsonb_array_elements(m.spec->'references') e ORDER BY e->>'tag' LOOP
        EXECUTE format('SELECT count(*) FROM ONLY %s r WHERE r.%I IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ONLY %s s WHERE s.%I = r.%I)',
                       customer_unify._b_name((v_rel.e->>'relid')::oid::regclass), v_rel.e->>'column',
                       customer_unify._b_name(m.source), v_new, v_rel.e->>'column')
           INTO v_count;
        check_name := format('%s.%I: references with no row of %s by %I', ((v_rel.e->>'relid')::oid::regclass)::text,
                             v_rel.e->>'column', m.source::regclass::text, v_new);
        expected := '0'; actual := v_count::text; ok := v_count = 0;
        RETURN NEXT;
    END LOOP;
END
$$;

-- What the rekey touches and what it leaves: the references that follow
-- the new key, those to the parent that stay, and what uses the old key
-- column (finalize drops it: blocks).
CREATE OR REPLACE FUNCTION customer_unify._rekey_dependents(m customer_unify.migration)
    RETURNS TABLE (object_type text, object_name text, dependency text, blocks_finalize boolean)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'foreign key', format('%I on %s', c.conname, c.conrelid::regclass),
           format('references %s (%I): re-pointed at %I', m.source::regclass, m.spec->>'key_column', m.spec->>'new_key'), false
      FROM pg_constraint c
     WHERE c.oid IN (SELECT (r->>'constraint')::oid FROM jsonb_array_elements(m.spec->'references') r)
    UNION ALL
    SELECT 'foreign key', format('%I on %s', c.conname, c.conrelid::regclass),
           format('references the parent %s: stays on the parent', c.confrelid::regclass), false
      FROM pg_constraint c
     WHERE c.contype = 'f' AND c.confrelid = (m.spec->>'parent')::oid AND c.oid <> (m.spec->>'parent_fk')::oid
       AND c.conrelid <> m.source
    UNION ALL
    SELECT DISTINCT CASE cl.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END, cl.oid::regclass::text,
           format('uses column %I, which finalize drops', m.spec->>'key_column'), true
      FROM pg_depend d
      JOIN pg_rewrite rw ON rw.oid = d.objid AND d.classid = 'pg_rewrite'::regclass
      JOIN pg_class cl ON cl.oid = rw.ev_class
      JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
     WHERE d.refobjid = m.source AND a.attname = m.spec->>'key_column' AND cl.oid <> m.source
       AND cl.oid IS DISTINCT FROM customer_unify._relation(m.id, 'view')
$$;

CREATE OR REPLACE FUNCTION customer_unify._rekey_describe(m customer_unify.migration)
    RETURNS TABLE (target text, columns text[])
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.source::regclass::text, ARRAY[m.spec->>'new_key', m.spec->>'link_column']
$$;

-- The table's privileges carried again to the compatibility view and the
-- new columns, after the application changed them (the 'resync' phase).
CREATE OR REPLACE FUNCTION customer_unify._rekey_security_steps(m customer_unify.migration)
    RETURNS SETOF customer_unify.step_def
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_view regclass := customer_unify._relation(m.id, 'view');
BEGIN
    IF v_view IS NOT NULL THEN
        RETURN QUERY SELECT * FROM customer_unify._b_revoke_all(v_view);
        RETURN QUERY SELECT * FROM customer_unify._b_privileges(m.source, customer_unify._b_name(v_view),
                                         (SELECT jsonb_agg(jsonb_build_array(c, c)) FROM jsonb_array_elements_text(m.spec->'source_columns') c
                                           WHERE EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = m.source AND a.attname = c AND NOT a.attisdropped)));
        RETURN QUERY SELECT * FROM customer_unify._b_schema_usage(m.source, m.spec->>'compat_schema');
    END IF;
END
$$;

-- 00_catalog.sql: the objects CREATE EXTENSION customer_unify leaves behind.
-- Contract: test/API.md "Catalog", DESIGN.md "Versioned upgrades" and "Safe SQL";
-- 1.1: the engine's catalog (operation, migration_relation, step, sync_map,
-- sync_map_column) is written only by the engine's C functions, as the
-- extension owner; PUBLIC may read it and nothing else.  The DDL guard is a
-- pair of event triggers that belong to the extension.
-- 1.2: the merge catalog (src/sql/catalog/merge.sql): id_map, the id
-- crosswalk, and match_decision, the DBA's never/always decisions; both per
-- migration (ON DELETE CASCADE), kept by pg_dump, read by all, written by
-- the engine only.
-- 1.3: background jobs (src/sql/catalog/jobs.sql): job, one row per
-- migration with a job, and job_index, the indexes jobs build concurrently,
-- written by src/jobs.c only, and the view jobs.
-- Convention in these files: every assertion is one statement starting with
-- "SELECT " at the start of a line; nothing else starts that way.
BEGIN;
SELECT plan(153);

CREATE FUNCTION pg_temp.err(sql text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$f$;

-- missing(relation, wanted columns): the wanted columns the relation lacks
CREATE FUNCTION pg_temp.missing(rel regclass, wanted name[]) RETURNS name[]
LANGUAGE sql AS $f$
    SELECT coalesce(array_agg(w ORDER BY o), '{}')
      FROM unnest(wanted) WITH ORDINALITY AS u(w, o)
     WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                        WHERE a.attrelid = rel AND a.attname = u.w
                          AND a.attnum > 0 AND NOT a.attisdropped)
$f$;

-- the C functions documented to carry no SET search_path clause
CREATE FUNCTION pg_temp.unpinned_c() RETURNS SETOF text LANGUAGE sql AS $f$
    VALUES
        -- 1.0's trigger functions and their guard, kept for objects 1.0 made
        ('customer_unify.split_sync_source()'), ('customer_unify.split_sync_target()'),
        ('customer_unify.split_sync_flush()'), ('customer_unify.compat_view_route()'),
        ('customer_unify._sync_guard_active()'),
        -- 1.1's row-level trigger functions and the guards of their WHEN clauses
        ('customer_unify.mirror_row()'), ('customer_unify.mirror_flush()'),
        -- 1.3's kit triggers: C, read no catalog, per row
        ('customer_unify.touch_updated_at()'), ('customer_unify.normalize_on_write()'),
        -- 1.3's rekey trigger: C, per row, its one statement qualified
        ('customer_unify.rekey_sync()'),
        ('customer_unify.mirror_truncate()'), ('customer_unify.compat_route()'),
        ('customer_unify.route_capture()'),
        ('customer_unify._mirror_guard(bigint)'), ('customer_unify._route_capturing()'),
        -- the engine's entry points: they set search_path for what they run
        ('customer_unify._create_migration(text,text,jsonb)'),
        ('customer_unify._run_phase(bigint,text,jsonb)'), ('customer_unify._verify(bigint)'),
        -- helpers that run no SQL
        ('customer_unify._engine_active()'), ('customer_unify._phase_option(text)'),
        ('customer_unify._copy_statement(jsonb)'), ('customer_unify._plan_cache_stats()'),
        -- 1.2's matcher primitives (called per pair: no GUC save/restore; they run no SQL)
        ('customer_unify.jaro(text,text)'), ('customer_unify.jaro_winkler(text,text)'),
        ('customer_unify.clusters(bigint[],bigint[],integer)'),
        -- 1.2's normalizers (usable in expression indexes, called per row; they
        -- run no SQL) and the survivorship aggregate's transition function
        ('customer_unify.normalize_email(text)'), ('customer_unify.normalize_email_provider(text)'),
        ('customer_unify.normalize_phone(text)'), ('customer_unify.normalize_phone(text,text)'),
        ('customer_unify.split_name(text)'), ('customer_unify.join_name(text,text)'),
        ('customer_unify.join_name(customer_unify.person_name)'), ('customer_unify.normalizer_version(text)'),
        ('customer_unify._first_sfunc(anyelement,anyelement)')
$f$;

-- ---------------------------------------------------------------- extension
SELECT has_extension('customer_unify', 'extension customer_unify is installed');
SELECT is((SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'customer_unify'),
          'customer_unify', 'extension lives in schema customer_unify');
SELECT is((SELECT extrelocatable FROM pg_extension WHERE extname = 'customer_unify'),
          false, 'extension is not relocatable');
SELECT is((SELECT e.extversion FROM pg_extension e WHERE e.extname = 'customer_unify'),
          (SELECT a.default_version FROM pg_available_extensions a WHERE a.name = 'customer_unify'),
          'installed version is the default version');
SELECT has_schema('customer_unify', 'schema customer_unify exists');

-- ---------------------------------------------------------------- catalog relations
SELECT has_table('customer_unify', 'migration', 'table customer_unify.migration exists');
SELECT has_table('customer_unify', 'step_log', 'table customer_unify.step_log exists');
SELECT has_table('customer_unify', 'backfill_state', 'table customer_unify.backfill_state exists');
SELECT has_view('customer_unify', 'progress', 'view customer_unify.progress exists');
SELECT has_table('customer_unify', 'operation', 'table customer_unify.operation (the registry of operations) exists');
SELECT has_table('customer_unify', 'migration_relation', 'table customer_unify.migration_relation exists');
SELECT has_table('customer_unify', 'step', 'table customer_unify.step (the frozen plan) exists');
SELECT has_table('customer_unify', 'sync_map', 'table customer_unify.sync_map exists');
SELECT has_table('customer_unify', 'sync_map_column', 'table customer_unify.sync_map_column exists');
SELECT has_table('customer_unify', 'id_map', 'table customer_unify.id_map (1.2: the id crosswalk) exists');
SELECT has_table('customer_unify', 'match_decision', 'table customer_unify.match_decision (1.2: match decisions) exists');
SELECT has_table('customer_unify', 'job', 'table customer_unify.job (1.3: background jobs) exists');
SELECT has_view('customer_unify', 'jobs', 'view customer_unify.jobs (1.3: background jobs) exists');
SELECT has_table('customer_unify', 'job_index', 'table customer_unify.job_index (1.3: indexes jobs build) exists');

SELECT is(pg_temp.missing('customer_unify.migration',
          '{id,name,kind,spec,state,source,owner,created_at,updated_at}'), '{}'::name[],
          'migration has all documented columns');
SELECT is(pg_temp.missing('customer_unify.step_log',
          '{id,migration_id,phase,seq,statement,inverse,lock_mode,rows,duration_ms,outcome,error,started_at,creates_tag,note}'),
          '{}'::name[], 'step_log has all documented columns, creates_tag and note included');
SELECT is(pg_temp.missing('customer_unify.backfill_state',
          '{migration_id,last_key,rows_done,rows_total,batches,started_at,updated_at,finished_at,stream,key_type,position,end_position,plan}'),
          '{}'::name[], 'backfill_state has all documented columns, the typed checkpoint included');
SELECT is(pg_temp.missing('customer_unify.progress',
          '{name,state,rows_done,rows_total,percent,rows_per_sec,eta,batches,last_key,updated_at,job_state,job_phase,throttled_ms,throttle_reason,job_sqlstate,job_error}'),
          '{}'::name[], 'progress has all documented columns, its job''s included');
SELECT is(pg_temp.missing('customer_unify.operation',
          '{kind,validate,steps,copy_plan,verify,dependents,describe,security}'),
          '{}'::name[], 'operation has a function for every role of an operation');
SELECT is(pg_temp.missing('customer_unify.migration_relation',
          '{migration_id,tag,relid,role,created,nspname,relname,live}'),
          '{}'::name[], 'migration_relation has all its columns');
SELECT is(pg_temp.missing('customer_unify.step',
          '{migration_id,phase,seq,statement,inverse,lock_mode,lock_relation,rows_estimate,registers}'),
          '{}'::name[], 'step has all its columns');
SELECT is(pg_temp.missing('customer_unify.sync_map',
          '{id,migration_id,name,from_tag,to_tag,from_key,to_key,mode}'),
          '{}'::name[], 'sync_map has all its columns');
SELECT is(pg_temp.missing('customer_unify.sync_map_column',
          '{map_id,ord,from_column,to_column}'),
          '{}'::name[], 'sync_map_column has all its columns');
SELECT is(pg_temp.missing('customer_unify.id_map',
          '{migration_id,source_tag,source,old_key,old_key_type,target_key,rule,merged_at}'),
          '{}'::name[], 'id_map has all its columns');
SELECT is(pg_temp.missing('customer_unify.match_decision',
          '{migration_id,decision,a_tag,a_key,b_tag,b_key,decided_by,decided_at}'),
          '{}'::name[], 'match_decision has all its columns');
SELECT is(pg_temp.missing('customer_unify.job',
          '{migration_id,state,request,until,batch_size,lock_timeout_ms,generation,role,pid,phase,launched_at,started_at,updated_at,finished_at,last_error,last_sqlstate,nice,chunk_ms,max_lag_bytes,window_start,window_end,throttle_query,throttled_ms,throttle_reason}'),
          '{}'::name[], 'job has all its columns');
SELECT is(pg_temp.missing('customer_unify.jobs',
          '{name,kind,migration_state,state,request,until,phase,role,pid,rows_done,rows_total,batch_size,throttled_ms,throttle_reason,last_sqlstate,last_error}'),
          '{}'::name[], 'jobs has all documented columns');
SELECT is(pg_temp.missing('customer_unify.job_index',
          '{migration_id,index_name,relation_tag,columns,is_unique,state,last_error,built_at}'),
          '{}'::name[], 'job_index has all its columns');

SELECT col_type_is('customer_unify', 'migration', 'spec', 'jsonb', 'migration.spec is jsonb');
SELECT col_type_is('customer_unify', 'migration', 'source', 'regclass', 'migration.source is regclass');
SELECT col_type_is('customer_unify', 'migration', 'owner', 'name', 'migration.owner is name');
SELECT col_is_pk('customer_unify', 'migration', 'id', 'migration.id is the primary key');
SELECT ok(EXISTS (SELECT 1 FROM pg_index i
                   WHERE i.indrelid = 'customer_unify.migration'::regclass AND i.indisunique
                     AND i.indnatts = 1
                     AND i.indkey[0] = (SELECT attnum FROM pg_attribute
                                         WHERE attrelid = 'customer_unify.migration'::regclass
                                           AND attname = 'name')),
          'migration.name is unique');
SELECT ok(EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'customer_unify.step_log'::regclass AND contype = 'f'
                     AND confrelid = 'customer_unify.migration'::regclass),
          'step_log references migration');

-- the typed checkpoint: one row per (migration, copy stream)
SELECT col_is_pk('customer_unify', 'backfill_state', ARRAY['migration_id', 'stream']::name[],
                 'backfill_state''s primary key is (migration_id, stream)');
SELECT is(ARRAY(SELECT format('%s %s', a.attname, format_type(a.atttypid, a.atttypmod))
                  FROM pg_attribute a
                 WHERE a.attrelid = 'customer_unify.backfill_state'::regclass
                   AND a.attname IN ('stream', 'key_type', 'position', 'end_position', 'plan')
                 ORDER BY a.attname),
          ARRAY['end_position bytea', 'key_type regtype', 'plan jsonb', 'position bytea', 'stream text'],
          'backfill_state keeps the key type, the positions in binary form and the copy plan');

-- the relations of each migration: one live migration per relation
SELECT col_is_pk('customer_unify', 'migration_relation', ARRAY['migration_id', 'tag']::name[],
                 'migration_relation''s primary key is (migration_id, tag)');
SELECT col_type_is('customer_unify', 'migration_relation', 'relid', 'regclass', 'migration_relation.relid is regclass');
SELECT is((SELECT format('unique=%s key=%s where=%s', i.indisunique::text,
                         (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = i.indkey[0]),
                         pg_get_expr(i.indpred, i.indrelid))
             FROM pg_index i
            WHERE i.indrelid = 'customer_unify.migration_relation'::regclass AND i.indnkeyatts = 1
              AND i.indpred IS NOT NULL),
          'unique=true key=relid where=live',
          'migration_relation has a unique index on relid WHERE live');
SELECT is_empty($$
    SELECT t.rel FROM (VALUES ('customer_unify.step_log'), ('customer_unify.backfill_state'),
                              ('customer_unify.migration_relation'), ('customer_unify.step'),
                              ('customer_unify.sync_map')) t(rel)
     WHERE NOT EXISTS (SELECT 1 FROM pg_constraint c
                        WHERE c.conrelid = t.rel::regclass AND c.contype = 'f'
                          AND c.confrelid = 'customer_unify.migration'::regclass AND c.confdeltype = 'c')
$$, 'every table of a migration''s state references migration ON DELETE CASCADE');
SELECT ok(EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'customer_unify.sync_map_column'::regclass AND contype = 'f'
                     AND confrelid = 'customer_unify.sync_map'::regclass),
          'sync_map_column references sync_map');

-- 1.2's merge catalog: exactly these columns, types, NOT NULLs and defaults, in order
SELECT is(ARRAY(SELECT concat_ws(' ', a.attname, format_type(a.atttypid, a.atttypmod),
                                 CASE WHEN a.attnotnull THEN 'not null' END, pg_get_expr(d.adbin, d.adrelid))
                  FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                 WHERE a.attrelid = 'customer_unify.id_map'::regclass AND a.attnum > 0 AND NOT a.attisdropped
                 ORDER BY a.attnum),
          ARRAY['migration_id bigint not null', 'source_tag text not null', 'source regclass not null',
                'old_key text not null', 'old_key_type regtype not null', 'target_key text not null',
                'rule text not null', 'merged_at timestamp with time zone not null now()'],
          'id_map''s columns: old key as text with its type, the target key, the rule, when');
SELECT is(ARRAY(SELECT concat_ws(' ', a.attname, format_type(a.atttypid, a.atttypmod),
                                 CASE WHEN a.attnotnull THEN 'not null' END, pg_get_expr(d.adbin, d.adrelid))
                  FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                 WHERE a.attrelid = 'customer_unify.match_decision'::regclass AND a.attnum > 0 AND NOT a.attisdropped
                 ORDER BY a.attnum),
          ARRAY['migration_id bigint not null', 'decision text not null', 'a_tag text not null',
                'a_key text not null', 'b_tag text not null', 'b_key text not null',
                'decided_by name not null CURRENT_USER', 'decided_at timestamp with time zone not null now()'],
          'match_decision''s columns: the decision, both rows by tag and key, who decided and when');
SELECT col_is_pk('customer_unify', 'id_map', ARRAY['migration_id', 'source_tag', 'old_key']::name[],
                 'id_map''s primary key is (migration_id, source_tag, old_key): one target per source row');
SELECT col_is_pk('customer_unify', 'match_decision', ARRAY['migration_id', 'a_tag', 'a_key', 'b_tag', 'b_key']::name[],
                 'match_decision''s primary key is (migration_id, a_tag, a_key, b_tag, b_key)');
SELECT has_index('customer_unify', 'id_map', 'id_map_target', ARRAY['migration_id', 'target_key']::name[],
                 'id_map is indexed by (migration_id, target_key), to resolve a target''s old keys');
SELECT col_has_check('customer_unify', 'match_decision', 'decision', 'match_decision.decision has a CHECK');
SELECT is(ARRAY(SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
                 WHERE c.conrelid = 'customer_unify.match_decision'::regclass AND c.contype = 'c'),
          ARRAY['CHECK ((decision = ANY (ARRAY[''never''::text, ''always''::text])))'],
          'the only CHECK of match_decision allows the decisions never and always');
SELECT throws_ok($$INSERT INTO customer_unify.match_decision (migration_id, decision, a_tag, a_key, b_tag, b_key)
                   VALUES (-1, 'maybe', 'a', '1', 'b', '2')$$, '23514', NULL,
                 'a decision other than never or always is refused (23514)');
SELECT fk_ok('customer_unify', 'id_map', 'migration_id', 'customer_unify', 'migration', 'id',
             'id_map.migration_id references migration (id)');
SELECT fk_ok('customer_unify', 'match_decision', 'migration_id', 'customer_unify', 'migration', 'id',
             'match_decision.migration_id references migration (id)');
SELECT is(ARRAY(SELECT c.conrelid::regclass::text || ' ' || c.confdeltype::text FROM pg_constraint c
                 WHERE c.conrelid IN ('customer_unify.id_map'::regclass, 'customer_unify.match_decision'::regclass)
                   AND c.contype = 'f' ORDER BY 1),
          ARRAY['customer_unify.id_map c', 'customer_unify.match_decision c'],
          'the id crosswalk and the decisions go with their migration (ON DELETE CASCADE), and reference nothing else');
SELECT throws_ok($$INSERT INTO customer_unify.match_decision (migration_id, decision, a_tag, a_key, b_tag, b_key)
                   VALUES (-1, 'never', 'a', '1', 'b', '2')$$, '23503', NULL,
                 'a decision about no migration is refused (23503)');
SELECT is(ARRAY(SELECT c.relname::text FROM pg_class c
                  JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                  AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
                  JOIN pg_extension x ON x.oid = d.refobjid AND x.extname = 'customer_unify'
                 WHERE c.relname IN ('id_map', 'match_decision') ORDER BY 1),
          ARRAY['id_map', 'match_decision'], 'id_map and match_decision are members of the extension');

-- the registry of operations
SELECT ok(EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'customer_unify.migration'::regclass AND contype = 'f'
                     AND confrelid = 'customer_unify.operation'::regclass),
          'migration.kind references the registry of operations');
SELECT is(ARRAY(SELECT kind FROM customer_unify.operation ORDER BY kind), ARRAY['merge', 'normalize_on_write', 'rekey', 'split', 'updated_at'],
          'the registry holds exactly the operations split, merge, rekey and the kit''s updated_at and normalize_on_write');
SELECT is((SELECT concat_ws(' ', validate, steps, copy_plan, verify, dependents, describe, security)
             FROM customer_unify.operation WHERE kind = 'rekey'),
          concat_ws(' ', 'customer_unify._rekey_validate(text,jsonb)',
                    'customer_unify._rekey_steps(customer_unify.migration)',
                    'customer_unify._rekey_copy_plan(customer_unify.migration)',
                    'customer_unify._rekey_verify(customer_unify.migration,boolean)',
                    'customer_unify._rekey_dependents(customer_unify.migration)',
                    'customer_unify._rekey_describe(customer_unify.migration)',
                    'customer_unify._rekey_security_steps(customer_unify.migration)'),
          'rekey is made of the _rekey_* functions');
SELECT is((SELECT concat_ws(' ', validate, steps, copy_plan, verify, dependents, describe, security)
             FROM customer_unify.operation WHERE kind = 'split'),
          concat_ws(' ', 'customer_unify._split_validate(text,jsonb)',
                    'customer_unify._split_steps(customer_unify.migration)',
                    'customer_unify._split_copy_plan(customer_unify.migration)',
                    'customer_unify._split_verify(customer_unify.migration,boolean)',
                    'customer_unify._split_dependents(customer_unify.migration)',
                    'customer_unify._split_describe(customer_unify.migration)',
                    'customer_unify._split_security_steps(customer_unify.migration)'),
          'split is made of the _split_* functions');
SELECT is((SELECT concat_ws(' ', validate, steps, copy_plan, verify, dependents, describe, security)
             FROM customer_unify.operation WHERE kind = 'merge'),
          concat_ws(' ', 'customer_unify._merge_validate(text,jsonb)',
                    'customer_unify._merge_steps(customer_unify.migration)',
                    'customer_unify._merge_copy_plan(customer_unify.migration)',
                    'customer_unify._merge_verify(customer_unify.migration,boolean)',
                    'customer_unify._merge_dependents(customer_unify.migration)',
                    'customer_unify._merge_describe(customer_unify.migration)',
                    'customer_unify._merge_security_steps(customer_unify.migration)'),
          'merge is made of the _merge_* functions');

-- ---------------------------------------------------------------- who may write the catalog
-- Only the engine's C functions write it, as the extension owner: PUBLIC
-- reads, nobody else holds any other privilege, and no row level security.
SELECT is_empty($$
    SELECT c.oid::regclass::text
      FROM pg_class c
     WHERE c.relnamespace = 'customer_unify'::regnamespace AND c.relkind IN ('r', 'v')
       AND NOT has_table_privilege('public', c.oid, 'SELECT')
$$, 'PUBLIC may SELECT every catalog table and view');
SELECT ok(NOT has_table_privilege('public', 'customer_unify.migration', 'INSERT'),
          'PUBLIC may not INSERT into migration');
SELECT ok(NOT has_table_privilege('public', 'customer_unify.migration', 'UPDATE'),
          'PUBLIC may not UPDATE migration');
SELECT ok(NOT has_table_privilege('public', 'customer_unify.migration', 'DELETE'),
          'PUBLIC may not DELETE from migration');
SELECT ok(NOT has_table_privilege('public', 'customer_unify.step', 'INSERT')
          AND NOT has_table_privilege('public', 'customer_unify.step_log', 'INSERT')
          AND NOT has_table_privilege('public', 'customer_unify.sync_map', 'UPDATE')
          AND NOT has_table_privilege('public', 'customer_unify.backfill_state', 'UPDATE'),
          'PUBLIC may not write the frozen plan, the step log, the sync maps or the checkpoints');
SELECT is_empty($$
    SELECT c.oid::regclass::text || ' ' || p.priv
      FROM pg_class c,
           (VALUES ('INSERT'), ('UPDATE'), ('DELETE'), ('TRUNCATE'), ('REFERENCES'), ('TRIGGER')) p(priv)
     WHERE c.relnamespace = 'customer_unify'::regnamespace AND c.relkind IN ('r', 'v')
       AND (has_table_privilege('public', c.oid, p.priv)
            OR (p.priv IN ('INSERT', 'UPDATE', 'REFERENCES') AND has_any_column_privilege('public', c.oid, p.priv)))
$$, 'PUBLIC holds no write privilege (table or column) on any catalog relation');
SELECT is_empty($$
    SELECT c.oid::regclass::text || ' ' || p.priv
      FROM pg_class c, (VALUES ('USAGE'), ('UPDATE'), ('SELECT')) p(priv)
     WHERE c.relnamespace = 'customer_unify'::regnamespace AND c.relkind = 'S'
       AND has_sequence_privilege('public', c.oid, p.priv)
$$, 'PUBLIC may not use the catalog''s sequences');
-- 1.2's merge catalog: PUBLIC reads it, writes nothing; a role without the
-- extension owner's rights can neither insert into it nor change it
SELECT ok(has_table_privilege('public', 'customer_unify.id_map', 'SELECT'), 'PUBLIC may SELECT id_map');
SELECT ok(has_table_privilege('public', 'customer_unify.match_decision', 'SELECT'), 'PUBLIC may SELECT match_decision');
SELECT is_empty($$
    SELECT p.priv FROM (VALUES ('INSERT'), ('UPDATE'), ('DELETE'), ('TRUNCATE')) p(priv)
     WHERE has_table_privilege('public', 'customer_unify.id_map', p.priv)
        OR (p.priv IN ('INSERT', 'UPDATE') AND has_any_column_privilege('public', 'customer_unify.id_map', p.priv))
$$, 'PUBLIC may not INSERT, UPDATE, DELETE or TRUNCATE id_map');
SELECT is_empty($$
    SELECT p.priv FROM (VALUES ('INSERT'), ('UPDATE'), ('DELETE'), ('TRUNCATE')) p(priv)
     WHERE has_table_privilege('public', 'customer_unify.match_decision', p.priv)
        OR (p.priv IN ('INSERT', 'UPDATE') AND has_any_column_privilege('public', 'customer_unify.match_decision', p.priv))
$$, 'PUBLIC may not INSERT, UPDATE, DELETE or TRUNCATE match_decision');
CREATE ROLE cu_pgtap_catalog_user NOLOGIN;
SET LOCAL ROLE cu_pgtap_catalog_user;
SELECT lives_ok($$SELECT count(*) FROM customer_unify.id_map, customer_unify.match_decision$$,
                'a role with no privilege of its own reads id_map and match_decision');
SELECT throws_ok($$INSERT INTO customer_unify.id_map (migration_id, source_tag, source, old_key, old_key_type, target_key, rule)
                   VALUES (-1, 'a', 'pg_class', '1', 'int4', '1', 'email')$$, '42501', NULL,
                 'that role may not INSERT into id_map (42501)');
SELECT throws_ok($$INSERT INTO customer_unify.match_decision (migration_id, decision, a_tag, a_key, b_tag, b_key)
                   VALUES (-1, 'never', 'a', '1', 'b', '2')$$, '42501', NULL,
                 'that role may not INSERT into match_decision (42501)');
SELECT throws_ok($$UPDATE customer_unify.job SET request = 'cancel'$$, '42501', NULL,
                 'that role may not UPDATE job (42501): pause and cancel go through the API');
RESET ROLE;
SELECT is_empty($$
    SELECT c.oid::regclass::text || ' ' || e.privilege_type || ' to ' || e.grantee::regrole::text
      FROM pg_class c, aclexplode(c.relacl) e
     WHERE c.relnamespace = 'customer_unify'::regnamespace AND c.relkind IN ('r', 'v', 'S')
       AND e.grantee <> c.relowner AND NOT (e.grantee = 0 AND e.privilege_type = 'SELECT')
$$, 'no role but the owner holds a privilege on the catalog beyond PUBLIC''s SELECT');
SELECT is_empty($$
    SELECT c.oid::regclass::text
      FROM pg_class c
     WHERE c.relnamespace = 'customer_unify'::regnamespace AND c.relkind IN ('r', 'v', 'S')
       AND c.relowner <> (SELECT extowner FROM pg_extension WHERE extname = 'customer_unify')
$$, 'every catalog relation belongs to the extension''s owner');
SELECT is_empty($$
    SELECT c.oid::regclass::text
      FROM pg_class c
     WHERE c.relnamespace = 'customer_unify'::regnamespace AND c.relkind = 'r'
       AND (c.relrowsecurity OR c.relforcerowsecurity
            OR EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid))
$$, 'no catalog table has row level security or policies');

-- ---------------------------------------------------------------- pg_dump registration
SELECT ok((SELECT 'customer_unify.migration'::regclass::oid = ANY (extconfig)
             FROM pg_extension WHERE extname = 'customer_unify'),
          'migration is registered with pg_extension_config_dump');
SELECT ok((SELECT 'customer_unify.step_log'::regclass::oid = ANY (extconfig)
             FROM pg_extension WHERE extname = 'customer_unify'),
          'step_log is registered with pg_extension_config_dump');
SELECT ok((SELECT 'customer_unify.backfill_state'::regclass::oid = ANY (extconfig)
             FROM pg_extension WHERE extname = 'customer_unify'),
          'backfill_state is registered with pg_extension_config_dump');
SELECT ok((SELECT 'customer_unify.migration_relation'::regclass::oid = ANY (extconfig)
             FROM pg_extension WHERE extname = 'customer_unify'),
          'migration_relation is registered with pg_extension_config_dump');
SELECT ok((SELECT 'customer_unify.step'::regclass::oid = ANY (extconfig)
             FROM pg_extension WHERE extname = 'customer_unify'),
          'step is registered with pg_extension_config_dump');
SELECT ok((SELECT 'customer_unify.sync_map'::regclass::oid = ANY (extconfig)
             FROM pg_extension WHERE extname = 'customer_unify'),
          'sync_map is registered with pg_extension_config_dump');
SELECT ok((SELECT 'customer_unify.sync_map_column'::regclass::oid = ANY (extconfig)
             FROM pg_extension WHERE extname = 'customer_unify'),
          'sync_map_column is registered with pg_extension_config_dump');
SELECT ok((SELECT 'customer_unify.id_map'::regclass::oid = ANY (extconfig)
             FROM pg_extension WHERE extname = 'customer_unify'),
          'id_map is registered with pg_extension_config_dump');
SELECT ok((SELECT 'customer_unify.match_decision'::regclass::oid = ANY (extconfig)
             FROM pg_extension WHERE extname = 'customer_unify'),
          'match_decision is registered with pg_extension_config_dump');
SELECT ok((SELECT 'customer_unify.job'::regclass::oid = ANY (extconfig)
             FROM pg_extension WHERE extname = 'customer_unify'),
          'job is registered with pg_extension_config_dump');
SELECT ok((SELECT 'customer_unify.job_index'::regclass::oid = ANY (extconfig)
             FROM pg_extension WHERE extname = 'customer_unify'),
          'job_index is registered with pg_extension_config_dump');
-- The registry's rows come from the extension script itself (a restore's
-- CREATE EXTENSION makes them), so it is the one table not dumped.
SELECT is_empty($$
    SELECT c.oid::regclass::text
      FROM pg_class c
     WHERE c.relnamespace = 'customer_unify'::regnamespace AND c.relkind IN ('r', 'S')
       AND c.oid <> 'customer_unify.operation'::regclass
       AND NOT c.oid = ANY ((SELECT extconfig FROM pg_extension WHERE extname = 'customer_unify')::oid[])
$$, 'every table and sequence in schema customer_unify but the operation registry is registered for pg_dump');
SELECT ok((SELECT NOT ('customer_unify.operation'::regclass::oid = ANY (extconfig))
             FROM pg_extension WHERE extname = 'customer_unify'),
          'the operation registry, made by the extension script, is not dumped');
SELECT is((SELECT array_agg(DISTINCT x) FROM pg_extension e, unnest(e.extcondition) x
            WHERE e.extname = 'customer_unify'),
          ARRAY['']::text[], 'every registered table is dumped whole (no filter condition)');

-- ---------------------------------------------------------------- the DDL guard
SELECT is((SELECT format('%s on %s calls %s', evtname, evtevent, evtfoid::regproc)
             FROM pg_event_trigger WHERE evtname = 'customer_unify_guard_ddl'),
          'customer_unify_guard_ddl on ddl_command_end calls customer_unify._guard_ddl',
          'event trigger customer_unify_guard_ddl runs customer_unify._guard_ddl() at ddl_command_end');
SELECT is((SELECT format('%s on %s calls %s', evtname, evtevent, evtfoid::regproc)
             FROM pg_event_trigger WHERE evtname = 'customer_unify_guard_drop'),
          'customer_unify_guard_drop on sql_drop calls customer_unify._guard_drop',
          'event trigger customer_unify_guard_drop runs customer_unify._guard_drop() at sql_drop');
SELECT is(ARRAY(SELECT evtenabled::text FROM pg_event_trigger
                 WHERE evtname IN ('customer_unify_guard_ddl', 'customer_unify_guard_drop') ORDER BY evtname),
          ARRAY['O', 'O'], 'both guard event triggers are enabled');
SELECT is(ARRAY(SELECT e.evtname::text FROM pg_event_trigger e
                  JOIN pg_depend d ON d.classid = 'pg_event_trigger'::regclass AND d.objid = e.oid
                                  AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
                  JOIN pg_extension x ON x.oid = d.refobjid AND x.extname = 'customer_unify'
                 ORDER BY 1),
          ARRAY['customer_unify_guard_ddl', 'customer_unify_guard_drop'],
          'both guard event triggers are members of the extension');

-- ---------------------------------------------------------------- functions and procedures
SELECT has_function('customer_unify', 'split', 'function split exists');
SELECT function_returns('customer_unify', 'split', 'bigint', 'split returns bigint');
SELECT has_function('customer_unify', 'preview', 'function preview exists');
SELECT has_function('customer_unify', 'start', 'function start exists');
SELECT has_function('customer_unify', 'verify', 'function verify exists');
SELECT has_function('customer_unify', 'cutover', 'function cutover exists');
SELECT has_function('customer_unify', 'finalize', 'function finalize exists');
SELECT has_function('customer_unify', 'rollback', 'function rollback exists');
SELECT has_function('customer_unify', 'status', 'function status exists');
SELECT has_function('customer_unify', 'dependents', 'function dependents exists');
SELECT is_procedure('customer_unify', 'backfill', 'backfill is a procedure');
SELECT function_lang_is('customer_unify', 'backfill', 'c', 'backfill is written in C');
SELECT is_procedure('customer_unify', 'run', 'run is a procedure');
SELECT function_returns('customer_unify', 'split_sync_source', '{}'::name[], 'trigger',
                        'split_sync_source() returns trigger');
SELECT function_lang_is('customer_unify', 'split_sync_source', '{}'::name[], 'c',
                        'split_sync_source() is written in C');
SELECT function_returns('customer_unify', 'split_sync_target', '{}'::name[], 'trigger',
                        'split_sync_target() returns trigger');
SELECT function_lang_is('customer_unify', 'split_sync_target', '{}'::name[], 'c',
                        'split_sync_target() is written in C');
SELECT function_returns('customer_unify', 'compat_view_route', '{}'::name[], 'trigger',
                        'compat_view_route() returns trigger');
SELECT function_lang_is('customer_unify', 'compat_view_route', '{}'::name[], 'c',
                        'compat_view_route() is written in C');
SELECT function_returns('customer_unify', 'split_sync_flush', '{}'::name[], 'trigger',
                        'split_sync_flush() returns trigger');
SELECT function_lang_is('customer_unify', 'split_sync_flush', '{}'::name[], 'c',
                        'split_sync_flush() is written in C');
SELECT has_function('customer_unify', '_sync_guard_active', '{}'::name[],
                    'the 1.0 guard _sync_guard_active() is kept for triggers 1.0 made');
-- 1.1's map-driven trigger functions (one argument: a customer_unify.sync_map id)
SELECT function_returns('customer_unify', 'mirror_row', '{}'::name[], 'trigger', 'mirror_row() returns trigger');
SELECT function_lang_is('customer_unify', 'mirror_row', '{}'::name[], 'c', 'mirror_row() is written in C');
SELECT function_returns('customer_unify', 'mirror_flush', '{}'::name[], 'trigger', 'mirror_flush() returns trigger');
SELECT function_lang_is('customer_unify', 'mirror_flush', '{}'::name[], 'c', 'mirror_flush() is written in C');
SELECT function_returns('customer_unify', 'mirror_truncate', '{}'::name[], 'trigger', 'mirror_truncate() returns trigger');
SELECT function_lang_is('customer_unify', 'mirror_truncate', '{}'::name[], 'c', 'mirror_truncate() is written in C');
SELECT function_returns('customer_unify', 'compat_route', '{}'::name[], 'trigger', 'compat_route() returns trigger');
SELECT function_lang_is('customer_unify', 'compat_route', '{}'::name[], 'c', 'compat_route() is written in C');
SELECT function_returns('customer_unify', 'route_capture', '{}'::name[], 'trigger', 'route_capture() returns trigger');
SELECT function_lang_is('customer_unify', 'route_capture', '{}'::name[], 'c', 'route_capture() is written in C');
SELECT function_returns('customer_unify', '_mirror_guard', ARRAY['bigint']::name[], 'boolean',
                        '_mirror_guard(bigint), the sync triggers'' WHEN guard, returns boolean');
SELECT function_lang_is('customer_unify', '_mirror_guard', ARRAY['bigint']::name[], 'c',
                        '_mirror_guard(bigint) is written in C');

-- search_path (test/API.md "search_path", src/sql/engine.sql): every SQL and
-- PL/pgSQL function pins search_path = pg_catalog, pg_temp.  The exceptions,
-- all C, are listed by pg_temp.unpinned_c(): the row-level trigger functions
-- and the guards their WHEN clauses call (no SET clause: a GUC save/restore
-- per row; their statements are schema-qualified), the engine's entry points,
-- which pin search_path themselves for the statements they run, and helpers
-- that run no SQL; plus the COMMITting procedures backfill and run
-- (PostgreSQL forbids transaction control under a SET clause).
SELECT is_empty($$
    SELECT p.oid::regprocedure::text
      FROM pg_proc p
     WHERE p.pronamespace = 'customer_unify'::regnamespace
       AND p.prokind <> 'a'
       AND NOT (p.prokind = 'f' AND p.oid::regprocedure::text IN (SELECT pg_temp.unpinned_c()))
       AND NOT (p.prokind = 'p' AND p.proname IN ('backfill', 'run'))
       AND NOT EXISTS (SELECT 1 FROM unnest(coalesce(p.proconfig, '{}')) AS c(setting)
                        WHERE c.setting LIKE 'search\_path=%')
$$, 'every function and procedure in schema customer_unify pins search_path, except the documented ones');
SELECT is_empty($$
    SELECT p.oid::regprocedure::text || ' ' || c.setting
      FROM pg_proc p, unnest(p.proconfig) AS c(setting)
     WHERE p.pronamespace = 'customer_unify'::regnamespace
       AND c.setting LIKE 'search\_path=%'
       AND c.setting <> 'search_path=pg_catalog, pg_temp'
$$, 'the pinned search_path is exactly pg_catalog, pg_temp');
SELECT is_empty($$
    SELECT u.f || ' ' || coalesce(l.lanname, 'missing')
      FROM pg_temp.unpinned_c() u(f)
      LEFT JOIN pg_proc p ON p.oid = to_regprocedure(u.f)
      LEFT JOIN pg_language l ON l.oid = p.prolang
     WHERE l.lanname IS DISTINCT FROM 'c'
$$, 'the functions exempt from pinning all exist and are all C functions');
SELECT is(ARRAY(SELECT p.proname::text FROM pg_proc p
                 WHERE p.pronamespace = 'customer_unify'::regnamespace AND p.prokind = 'p'
                   AND p.proconfig IS NULL ORDER BY 1),
          ARRAY['backfill', 'run'], 'the only procedures without a SET clause are backfill and run');
-- API.md documents no SECURITY DEFINER function
SELECT is_empty($$
    SELECT p.oid::regprocedure::text
      FROM pg_proc p
     WHERE p.pronamespace = 'customer_unify'::regnamespace AND p.prosecdef
$$, 'no function in schema customer_unify is SECURITY DEFINER');

-- ---------------------------------------------------------------- empty state
SELECT is_empty('SELECT * FROM customer_unify.progress', 'progress is empty before any migration');

-- ---------------------------------------------------------------- unknown migration: 42704
SELECT throws_ok($$SELECT customer_unify.start('no_such_migration')$$, '42704', NULL,
                 'start(unknown) raises 42704');
SELECT throws_ok($$SELECT * FROM customer_unify.verify('no_such_migration')$$, '42704', NULL,
                 'verify(unknown) raises 42704');
SELECT throws_ok($$SELECT customer_unify.cutover('no_such_migration')$$, '42704', NULL,
                 'cutover(unknown) raises 42704');
SELECT throws_ok($$SELECT customer_unify.finalize('no_such_migration')$$, '42704', NULL,
                 'finalize(unknown) raises 42704');
SELECT throws_ok($$SELECT customer_unify.rollback('no_such_migration')$$, '42704', NULL,
                 'rollback(unknown) raises 42704');
SELECT throws_ok($$SELECT * FROM customer_unify.status('no_such_migration')$$, '42704', NULL,
                 'status(unknown) raises 42704');
SELECT throws_ok($$SELECT * FROM customer_unify.preview('no_such_migration')$$, '42704', NULL,
                 'preview(unknown) raises 42704');
SELECT throws_ok($$SELECT * FROM customer_unify.dependents('no_such_migration')$$, '42704', NULL,
                 'dependents(unknown) raises 42704');
SELECT throws_ok($$SELECT customer_unify.launch('no_such_migration')$$, '42704', NULL,
                 'launch(unknown) raises 42704');
SELECT throws_ok($$SELECT customer_unify.pause('no_such_migration')$$, '42704', NULL,
                 'pause(unknown) raises 42704');
SELECT throws_ok($$SELECT customer_unify.cancel('no_such_migration')$$, '42704', NULL,
                 'cancel(unknown) raises 42704');
SELECT throws_ok($$SELECT customer_unify.add_index('no_such_migration', ARRAY['x'])$$, '42704', NULL,
                 'add_index(unknown) raises 42704');
SELECT matches(pg_temp.err($$SELECT customer_unify.start('no_such_migration')$$),
               '^42704: .*no_such_migration', 'the 42704 message names the migration');

SELECT * FROM finish();
ROLLBACK;

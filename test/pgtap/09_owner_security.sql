-- 09_owner_security.sql: a split of a table that belongs to another role,
-- run by a superuser, with table and column privileges and row level
-- security (ENABLE and FORCE, and no policy for the owner itself).
-- Contract (1.1): the phases' statements run as the source table's owner, so
-- the target, the compat schema, view and row function belong to it; the
-- target gets the source's table privileges, the moved columns' privileges
-- and the key's privileges on the link column, and the source's row level
-- security with each policy copied, its expressions evaluated on the source
-- row (EXISTS over the source row, aliased by the source's name) and a comment 'customer_unify: copy of
-- policy ...'; the view gets the source's table and column privileges and
-- every grantee USAGE on the compat schema; nobody but the engine writes the
-- catalog, the table's owner included.
-- cutover needs a finished backfill and CALL backfill COMMITs: the setup up to
-- 'backfilled' runs first in autocommit mode (fresh database per file, see
-- test/pgtap/run).  The assertions run in one transaction that is rolled back;
-- the objects and roles are dropped at the end.
-- a failing setup step must not hide the assertions: they report it
\set ON_ERROR_STOP 0
SET client_min_messages = warning;
CREATE ROLE cu_pgtap_app NOLOGIN;       -- owns the table
CREATE ROLE cu_pgtap_clerk NOLOGIN;     -- table privileges, under the policies
CREATE ROLE cu_pgtap_auditor NOLOGIN;   -- column privileges only
CREATE ROLE cu_pgtap_outsider NOLOGIN;  -- no privileges
GRANT CREATE ON SCHEMA public TO cu_pgtap_app;
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO cu_pgtap_app', current_database()); END $$;
CREATE TABLE public.notes (
    id      integer PRIMARY KEY,
    author  name NOT NULL DEFAULT current_user,
    title   text NOT NULL,
    body    text,
    secret  text
);
ALTER TABLE public.notes OWNER TO cu_pgtap_app;
GRANT SELECT, INSERT, UPDATE ON public.notes TO cu_pgtap_clerk;
GRANT SELECT (id, title, body), UPDATE (body) ON public.notes TO cu_pgtap_auditor;
ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notes FORCE ROW LEVEL SECURITY;
CREATE POLICY notes_read ON public.notes FOR SELECT TO cu_pgtap_clerk USING (author = current_user);
CREATE POLICY notes_write ON public.notes FOR INSERT TO cu_pgtap_clerk WITH CHECK (author = current_user AND title <> '');
CREATE POLICY notes_change ON public.notes FOR UPDATE TO cu_pgtap_clerk USING (author = current_user);
INSERT INTO public.notes (id, author, title, body, secret)
VALUES (1, 'cu_pgtap_clerk', 'mine', 'body 1', 'secret 1'),
       (2, 'someone_else', 'theirs', 'body 2', 'secret 2'),
       (3, 'cu_pgtap_clerk', 'mine too', 'body 3', 'secret 3');
DO $$
BEGIN
    PERFORM customer_unify.split('notes_split', 'public.notes'::regclass, 'note_bodies', ARRAY['body', 'secret']);
    PERFORM customer_unify.start('notes_split');
END $$;
-- written after start: reaches the target through the sync trigger
INSERT INTO public.notes (id, author, title, body, secret) VALUES (5, 'someone_else', 'later', 'body 5', 'secret 5');
CALL customer_unify.backfill('notes_split');
RESET client_min_messages;

\set ON_ERROR_STOP 1
BEGIN;
SELECT plan(48);

-- run sql and undo it whatever happens; its SQLSTATE, or 'no error'
CREATE FUNCTION pg_temp.sqlstate_undone(sql text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE st text;
BEGIN
    BEGIN
        EXECUTE sql;
        RAISE EXCEPTION 'cu_pgtap: no error, undone' USING ERRCODE = 'P0099';
    EXCEPTION WHEN OTHERS THEN
        st := SQLSTATE;
    END;
    RETURN CASE st WHEN 'P0099' THEN 'no error' ELSE st END;
END
$f$;

-- the rows a role sees: the first column of a query run as that role, in order
CREATE FUNCTION pg_temp.seen_by(role name, sql text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE res text;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', role);
    EXECUTE format('SELECT string_agg(x::text, %L ORDER BY x) FROM (%s) q(x)', ',', sql) INTO res;
    RESET ROLE;
    RETURN coalesce(res, '');
EXCEPTION WHEN OTHERS THEN
    RESET ROLE;
    RETURN 'ERROR ' || SQLSTATE;
END
$f$;

-- the number of rows a statement run as a role changes
CREATE FUNCTION pg_temp.changed_by(role name, sql text) RETURNS bigint LANGUAGE plpgsql AS $f$
DECLARE n bigint;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', role);
    EXECUTE sql;
    GET DIAGNOSTICS n = ROW_COUNT;
    RESET ROLE;
    RETURN n;
END
$f$;

-- the policies of a relation as 'name command permissive roles'
CREATE FUNCTION pg_temp.policy_shapes(rel regclass) RETURNS SETOF text LANGUAGE sql AS $f$
    SELECT format('%s %s %s %s', p.polname, p.polcmd, p.polpermissive::text,
                  (SELECT string_agg(r::regrole::text, ',' ORDER BY r) FROM unnest(p.polroles) r))
      FROM pg_policy p WHERE p.polrelid = rel
$f$;

SELECT is((SELECT state FROM customer_unify.migration WHERE name = 'notes_split'), 'backfilled',
          'setup: a superuser split, started and backfilled a table of cu_pgtap_app under FORCE ROW LEVEL SECURITY');
SELECT is((SELECT count(*) FROM public.note_bodies), 4::bigint,
          'the copy and the sync trigger saw every row, though no policy lets the owner see any');
SELECT is((SELECT owner FROM customer_unify.migration WHERE name = 'notes_split'), current_user::name,
          'the migration belongs to the role that planned it');

-- ---------------------------------------------------------------- the target: the owner's, with the source's security
SELECT table_owner_is('public', 'note_bodies', 'cu_pgtap_app',
                      'the target belongs to the source''s owner, though a superuser ran start');
SELECT table_privs_are('public', 'note_bodies', 'cu_pgtap_clerk', ARRAY['SELECT', 'INSERT', 'UPDATE'],
                       'the source''s table privileges are copied to the target');
SELECT table_privs_are('public', 'note_bodies', 'cu_pgtap_auditor', '{}'::text[],
                       'no table privilege is invented for a role with column privileges');
SELECT table_privs_are('public', 'note_bodies', 'cu_pgtap_outsider', '{}'::text[],
                       'a role without privileges on the source has none on the target');
SELECT column_privs_are('public', 'note_bodies', 'body', 'cu_pgtap_auditor', ARRAY['SELECT', 'UPDATE'],
                        'a moved column''s privileges are copied');
SELECT column_privs_are('public', 'note_bodies', 'secret', 'cu_pgtap_auditor', '{}'::text[],
                        'no privilege is invented on a moved column the role could not use');
SELECT column_privs_are('public', 'note_bodies', 'notes_id', 'cu_pgtap_auditor', ARRAY['SELECT'],
                        'the key''s column privileges are copied to the link column');
SELECT is((SELECT format('enable=%s force=%s', relrowsecurity::text, relforcerowsecurity::text)
             FROM pg_class WHERE oid = 'public.note_bodies'::regclass),
          'enable=true force=true', 'the target gets the source''s ENABLE and FORCE ROW LEVEL SECURITY');
SELECT policies_are('public', 'note_bodies', ARRAY['notes_change', 'notes_read', 'notes_write'],
                    'every policy of the source is copied to the target under its name');
SELECT set_eq($$SELECT pg_temp.policy_shapes('public.note_bodies')$$,
              $$SELECT pg_temp.policy_shapes('public.notes')$$,
              'each copy has the command, kind and roles of its source policy');
SELECT is_empty($$SELECT polname || ' ' || e.kind FROM pg_policy,
                          LATERAL (VALUES ('USING', pg_get_expr(polqual, polrelid)),
                                          ('WITH CHECK', pg_get_expr(polwithcheck, polrelid))) e(kind, expr)
                   WHERE polrelid = 'public.note_bodies'::regclass AND e.expr IS NOT NULL
                     AND e.expr !~ '^\(EXISTS \( SELECT 1\s+FROM ONLY (public\.)?notes notes\s+WHERE \(\(notes\.id = note_bodies\.notes_id\) AND '
                   UNION ALL
                   SELECT 'no expression was copied'
                    WHERE NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = 'public.note_bodies'::regclass
                                         AND polqual IS NOT NULL)$$,
                'each copy evaluates its expressions on the source row (EXISTS over it, by the link)');
SELECT is((SELECT pg_get_expr(polwithcheck, polrelid) ~ 'notes\.author = CURRENT_USER\) AND \(notes\.title <> '
             FROM pg_policy WHERE polrelid = 'public.note_bodies'::regclass AND polname = 'notes_write'),
          true, 'a WITH CHECK expression is copied with its columns read from the source row');
SELECT is_empty($$SELECT p.polname FROM pg_policy p
                   WHERE p.polrelid = 'public.note_bodies'::regclass
                     AND obj_description(p.oid, 'pg_policy') NOT LIKE
                         format('customer_unify: copy of policy %s on public.notes%%', p.polname)$$,
                'each copy carries the comment customer_unify: copy of policy <name> on <source>');
SELECT is(pg_temp.seen_by('cu_pgtap_clerk', 'SELECT notes_id FROM public.note_bodies'), '1,3',
          'through the copied policies a role sees the target rows whose source rows it may see');
SELECT is(pg_temp.seen_by('cu_pgtap_outsider', 'SELECT notes_id FROM public.note_bodies'), 'ERROR 42501',
          'a role without privileges cannot read the target');

-- ---------------------------------------------------------------- writes of a role with privileges
SELECT is(pg_temp.changed_by('cu_pgtap_clerk',
              $$INSERT INTO public.notes (id, author, title, body, secret) VALUES (4, 'cu_pgtap_clerk', 'new', 'body 4', 'secret 4')$$),
          1::bigint, 'the clerk inserts a row of its own into the source');
SELECT is(pg_temp.seen_by('cu_pgtap_clerk', 'SELECT notes_id || ''='' || body FROM public.note_bodies'),
          '1=body 1,3=body 3,4=body 4', 'the clerk''s row is mirrored to the target (written as the owner)');
SELECT is(pg_temp.changed_by('cu_pgtap_clerk', $$UPDATE public.note_bodies SET body = 'body 1 edited' WHERE notes_id IN (1, 2)$$),
          1::bigint, 'the clerk updates through the target only the rows the copied policies show it');
SELECT is((SELECT string_agg(format('%s=%s', id, body), ',' ORDER BY id) FROM public.notes WHERE id IN (1, 2)),
          '1=body 1 edited,2=body 2', 'the clerk''s update of the target is mirrored back to the source');

-- ---------------------------------------------------------------- nobody writes the catalog, the owner neither
SET LOCAL ROLE cu_pgtap_app;
SELECT is(pg_temp.sqlstate_undone($$UPDATE customer_unify.migration SET state = 'verified' WHERE name = 'notes_split'$$),
          '42501', 'the owner of the tables may not UPDATE the migration directly');
SELECT is(pg_temp.sqlstate_undone($$DELETE FROM customer_unify.step_log$$),
          '42501', 'the owner of the tables may not DELETE from the step log');
SELECT is(pg_temp.sqlstate_undone($$UPDATE customer_unify.backfill_state SET rows_done = 0$$),
          '42501', 'the owner of the tables may not rewrite the checkpoint');
RESET ROLE;
SET LOCAL ROLE cu_pgtap_clerk;
SELECT is(pg_temp.sqlstate_undone($$SELECT customer_unify.cutover('notes_split')$$), '42501',
          'a role that neither planned the migration nor owns its tables cannot cut it over');
RESET ROLE;

-- ---------------------------------------------------------------- cutover: the owner's schema and view
SELECT lives_ok($$SELECT customer_unify.cutover('notes_split')$$, 'cutover() by the superuser');
SELECT schema_owner_is('notes_split_compat', 'cu_pgtap_app', 'the compat schema belongs to the source''s owner');
SELECT view_owner_is('notes_split_compat', 'notes', 'cu_pgtap_app', 'the compat view belongs to the source''s owner');
SELECT table_privs_are('notes_split_compat', 'notes', 'cu_pgtap_clerk', ARRAY['SELECT', 'INSERT', 'UPDATE'],
                       'the view gets the source''s table privileges');
SELECT table_privs_are('notes_split_compat', 'notes', 'cu_pgtap_outsider', '{}'::text[],
                       'the view grants nothing to a role without privileges on the source');
SELECT column_privs_are('notes_split_compat', 'notes', 'body', 'cu_pgtap_auditor', ARRAY['SELECT', 'UPDATE'],
                        'the view gets the source''s column privileges (body)');
SELECT column_privs_are('notes_split_compat', 'notes', 'id', 'cu_pgtap_auditor', ARRAY['SELECT'],
                        'the view gets the source''s column privileges (id)');
SELECT schema_privs_are('notes_split_compat', 'cu_pgtap_clerk', ARRAY['USAGE'],
                        'a grantee of table privileges gets USAGE on the compat schema');
SELECT schema_privs_are('notes_split_compat', 'cu_pgtap_auditor', ARRAY['USAGE'],
                        'a grantee of column privileges gets USAGE on the compat schema');
SELECT schema_privs_are('notes_split_compat', 'cu_pgtap_outsider', '{}'::text[],
                        'a role without privileges on the source gets no USAGE on the compat schema');
SELECT is(pg_temp.seen_by('cu_pgtap_clerk', 'SELECT id || ''='' || body FROM notes_split_compat.notes'),
          '1=body 1 edited,3=body 3,4=body 4',
          'through the view (security_invoker) the clerk sees the rows the source''s policies show it');
SELECT is(pg_temp.changed_by('cu_pgtap_clerk', $$UPDATE notes_split_compat.notes SET body = 'via view' WHERE id IN (3, 5)$$),
          1::bigint, 'the clerk updates through the view only the rows the policies show it');

-- ---------------------------------------------------------------- finalize: the owner's row function
SELECT lives_ok($$SELECT customer_unify.finalize('notes_split')$$, 'finalize() by the superuser');
SELECT function_owner_is('notes_split_compat', 'notes_moved', ARRAY['integer'], 'cu_pgtap_app',
                         'the view''s row function belongs to the source''s owner');
SELECT view_owner_is('notes_split_compat', 'notes', 'cu_pgtap_app', 'the replaced view still belongs to the source''s owner');
SELECT table_privs_are('notes_split_compat', 'notes', 'cu_pgtap_clerk', ARRAY['SELECT', 'INSERT', 'UPDATE'],
                       'the replaced view keeps its table privileges');
SELECT column_privs_are('notes_split_compat', 'notes', 'body', 'cu_pgtap_auditor', ARRAY['SELECT', 'UPDATE'],
                        'the replaced view keeps its column privileges');
SELECT is(pg_temp.seen_by('cu_pgtap_clerk', 'SELECT id || ''='' || body FROM notes_split_compat.notes'),
          '1=body 1 edited,3=via view,4=body 4',
          'after finalize the clerk reads through the view exactly what the policies show it');
SELECT is(pg_temp.seen_by('cu_pgtap_clerk', 'SELECT notes_id FROM public.note_bodies'), '1,3,4',
          'after finalize the copied policies still guard the target');
SELECT is(pg_temp.seen_by('cu_pgtap_outsider', 'SELECT id FROM notes_split_compat.notes'), 'ERROR 42501',
          'a role without privileges cannot read the view after finalize');

-- ---------------------------------------------------------------- a policy that names its table
-- Policies often name their table inside a subquery (docs.id); the copy must
-- still refer to the source row.
CREATE TABLE public.doc_readers (doc_id integer, reader name);
CREATE TABLE public.docs (id integer PRIMARY KEY, title text, body text);
ALTER TABLE public.docs ENABLE ROW LEVEL SECURITY;
CREATE POLICY docs_shared ON public.docs FOR SELECT
    USING (EXISTS (SELECT 1 FROM public.doc_readers r WHERE r.doc_id = docs.id AND r.reader = current_user));
SELECT lives_ok($$SELECT customer_unify.split('docs_split', 'public.docs'::regclass, 'doc_bodies', ARRAY['body'])$$,
                'split of a table whose policy names the table in a subquery');
SELECT lives_ok($$SELECT customer_unify.start('docs_split')$$,
                'start() copies a policy that names its table in a subquery');

SELECT * FROM finish();
ROLLBACK;

-- ---------------------------------------------------------------- cleanup
-- The DDL guard refuses dropping a live migration's objects: drop the
-- extension first (its triggers and event triggers go with it).
SET client_min_messages = warning;
DROP EXTENSION customer_unify CASCADE;
DROP SCHEMA IF EXISTS notes_split_compat CASCADE;
DROP TABLE IF EXISTS public.note_bodies, public.notes CASCADE;
DROP OWNED BY cu_pgtap_app, cu_pgtap_clerk, cu_pgtap_auditor, cu_pgtap_outsider;
DROP ROLE IF EXISTS cu_pgtap_app, cu_pgtap_clerk, cu_pgtap_auditor, cu_pgtap_outsider;

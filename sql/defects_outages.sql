-- start() only adds things: the application's own reads and writes keep
-- working, with the privileges and row-level security the old table had
-- (1.1).  Each block reproduces a way 1.0 broke them.
SET client_min_messages = warning;
CREATE SCHEMA do_app;
CREATE ROLE do_owner;
CREATE ROLE do_reader;
CREATE ROLE do_colreader;
CREATE ROLE do_partial;
CREATE ROLE do_inserter;
CREATE ROLE do_writer;
GRANT USAGE, CREATE ON SCHEMA do_app TO do_owner;
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO do_owner', current_database()); END $$;
GRANT USAGE ON SCHEMA do_app TO do_reader, do_colreader, do_partial, do_inserter, do_writer;
SET ROLE do_owner;
CREATE TABLE do_app.members (id serial PRIMARY KEY, email text NOT NULL, nick text, bio text);
INSERT INTO do_app.members (email, nick, bio) SELECT 'u' || g, 'n' || g, 'b' || g FROM generate_series(1, 20) g;
GRANT SELECT ON do_app.members TO do_reader;
GRANT SELECT (id, email, nick, bio) ON do_app.members TO do_colreader;
GRANT SELECT (id, email) ON do_app.members TO do_partial;
GRANT INSERT (email) ON do_app.members TO do_inserter;
GRANT USAGE ON SEQUENCE do_app.members_id_seq TO do_inserter;
GRANT SELECT, INSERT, UPDATE, DELETE ON do_app.members TO do_writer;
GRANT USAGE ON SEQUENCE do_app.members_id_seq TO do_writer;
RESET ROLE;

-------------------------------------------------------------------------------
-- 11. A superuser starts the split of a table an application role owns: the
--     new objects belong to that role, its grantees reach them, column
--     privileges follow (1.0: superuser-owned target, no USAGE on the compat
--     schema, INSERT(email) roles locked out).
-------------------------------------------------------------------------------
SET client_min_messages = notice;
SELECT customer_unify.split('do11', 'do_app.members', 'user_bits', ARRAY['nick', 'bio'], 'user_id') > 0 AS planned;
SET client_min_messages = warning;
SELECT customer_unify.start('do11');
SELECT relname, pg_get_userbyid(relowner) AS owner FROM pg_class WHERE oid = 'do_app.user_bits'::regclass;
SELECT grantee, privilege_type FROM information_schema.role_table_grants
 WHERE table_schema = 'do_app' AND table_name = 'user_bits' AND grantee LIKE 'do\_%' ORDER BY 1, 2;
SELECT grantee, column_name, privilege_type FROM information_schema.column_privileges
 WHERE table_schema = 'do_app' AND table_name = 'user_bits' AND grantee IN ('do_colreader', 'do_partial', 'do_inserter')
 ORDER BY 1, 2, 3;
-- the owner and the grantees write and read as before
SET ROLE do_owner;
INSERT INTO do_app.members (email, nick) VALUES ('owner', 'o');
UPDATE do_app.user_bits SET bio = 'written by the owner' WHERE user_id = 1;
RESET ROLE;
SET ROLE do_inserter;
INSERT INTO do_app.members (email) VALUES ('column privilege only');
INSERT INTO do_app.members (email) SELECT 'bulk ' || g FROM generate_series(1, 3) g;
RESET ROLE;
SET ROLE do_writer;
UPDATE do_app.members SET nick = 'by writer' WHERE id = 2;
DELETE FROM do_app.members WHERE id = 3;
RESET ROLE;
SET ROLE do_reader;
SELECT count(*) AS reader_sees_target FROM do_app.user_bits;
RESET ROLE;
CALL customer_unify.backfill('do11');
SELECT customer_unify.cutover('do11');
SELECT n.nspname, pg_get_userbyid(n.nspowner) AS owner,
       has_schema_privilege('do_reader', n.oid, 'USAGE') AS reader_usage,
       has_schema_privilege('do_inserter', n.oid, 'USAGE') AS inserter_usage
  FROM pg_namespace n WHERE n.nspname = 'do11_compat';
SELECT pg_get_userbyid(relowner) AS view_owner FROM pg_class WHERE oid = 'do11_compat.members'::regclass;
-- through the compatibility view, by search_path, as old applications do
SET ROLE do_reader;
SET search_path = do11_compat, do_app;
SELECT id, email, nick, bio FROM members WHERE id IN (1, 2) ORDER BY id;
RESET ROLE;
SET ROLE do_colreader;
SELECT id, email, nick FROM members WHERE id = 1;
RESET ROLE;
SET ROLE do_inserter;
INSERT INTO members (email) VALUES ('through the view');
RESET ROLE;
SET ROLE do_writer;
INSERT INTO members (email, nick) VALUES ('writer via view', 'w') RETURNING email, nick;
UPDATE members SET bio = 'via view' WHERE email = 'writer via view' RETURNING email, nick, bio;
RESET ROLE;
SET ROLE do_partial;
SELECT regress_util.try('SELECT id, email FROM members') AS partial_reader_through_view;
SELECT count(*) AS partial_reader_on_the_table FROM do_app.members;
RESET ROLE;
RESET search_path;
SELECT u.email, b.nick, b.bio FROM do_app.members u JOIN do_app.user_bits b ON b.user_id = u.id
 WHERE email IN ('through the view', 'column privilege only', 'writer via view') ORDER BY email;
SELECT check_name FROM customer_unify.verify('do11') WHERE NOT ok;
SELECT customer_unify.finalize('do11');
SET ROLE do_inserter;
INSERT INTO do11_compat.members (email) VALUES ('after finalize');
RESET ROLE;
SELECT email, nick FROM do11_compat.members WHERE email = 'after finalize';
-- a target schema the grantees cannot use is refused at plan time
CREATE TABLE do_app.other (id int PRIMARY KEY, v text);
GRANT SELECT ON do_app.other TO do_reader;
CREATE SCHEMA do_private;
SELECT regress_util.try_detail($$SELECT customer_unify.split('do11b', 'do_app.other', 'other_v', ARRAY['v'], target_schema => 'do_private')$$);

-------------------------------------------------------------------------------
-- 12. Schema changes of the application while the migration is live are
--     refused with 55006 (1.0 let them break every write or stop the sync),
--     or followed: TRUNCATE of the source empties the target too.
-------------------------------------------------------------------------------
CREATE SCHEMA do12;
CREATE TABLE do12.members (id int PRIMARY KEY, email text, nick text, bio text);
INSERT INTO do12.members SELECT g, 'e' || g, 'n' || g, 'b' || g FROM generate_series(1, 10) g;
SELECT customer_unify.split('do12', 'do12.members', 'user_bits', ARRAY['nick', 'bio'], 'user_id') > 0 AS planned;
SELECT customer_unify.start('do12');
SELECT regexp_replace(x.r, 'customer_unify_\d+_', 'customer_unify_<id>_') AS refused
  FROM (VALUES (1, regress_util.try('ALTER TABLE do12.members RENAME COLUMN nick TO nickname')),
               (2, regress_util.try('ALTER TABLE do12.user_bits RENAME COLUMN nick TO nickname')),
               (3, regress_util.try('ALTER TABLE do12.members DROP COLUMN bio CASCADE')),
               (4, regress_util.try('ALTER TABLE do12.members ALTER COLUMN nick TYPE varchar(3)')),
               (5, regress_util.try('DROP TABLE do12.user_bits')),
               (6, regress_util.try('ALTER TABLE do12.members RENAME TO people')),
               (7, regress_util.try('ALTER TABLE do12.members SET SCHEMA public')),
               (8, regress_util.try('ALTER SCHEMA do12 RENAME TO do12_renamed')),
               (9, regress_util.try('ALTER TABLE do12.user_bits OWNER TO do_owner')),
               (10, regress_util.try('ALTER TABLE do12.user_bits DROP CONSTRAINT user_bits_pkey')),
               (11, regress_util.try((SELECT format('DROP TRIGGER %I ON do12.members', 'customer_unify_' || id || '_sync')
                                        FROM customer_unify.migration WHERE name = 'do12'))),
               (12, regress_util.try('TRUNCATE do12.user_bits'))) x(n, r)
 ORDER BY x.n;
-- what does not break the migration goes through
ALTER TABLE do12.members ADD COLUMN added_later text;
CREATE INDEX ON do12.user_bits (nick);
COMMENT ON TABLE do12.members IS 'still allowed';
-- TRUNCATE of the source before the link foreign key exists: the target follows
TRUNCATE do12.members;
SELECT (SELECT count(*) FROM do12.members) AS source_rows, (SELECT count(*) FROM do12.user_bits) AS target_rows;
INSERT INTO do12.members (id, email, nick) SELECT g, 'again' || g, 'n' || g FROM generate_series(1, 5) g;
SELECT count(*) AS target_rows FROM do12.user_bits;
CALL customer_unify.backfill('do12');
-- after it: TRUNCATE needs CASCADE (PostgreSQL's rule) and empties both
SELECT regress_util.try('TRUNCATE do12.members') AS without_cascade;
TRUNCATE do12.members CASCADE;
SELECT (SELECT count(*) FROM do12.members) AS source_rows, (SELECT count(*) FROM do12.user_bits) AS target_rows;
SELECT count(*) AS failing FROM customer_unify.verify('do12') WHERE NOT ok;
SELECT customer_unify.cutover('do12');
SELECT regress_util.try('DROP VIEW do12_compat.members') AS drop_view,
       regress_util.try('DROP SCHEMA do12_compat CASCADE') AS drop_schema;
SELECT regress_util.try($$SELECT customer_unify.rollback('do12_missing')$$) AS unknown;
SELECT customer_unify.rollback('do12');
-- once rolled back, the tables are the application's again
ALTER TABLE do12.members RENAME COLUMN nick TO nickname;

-------------------------------------------------------------------------------
-- 13. FOR UPDATE through the view (Django's select_for_update) works before
--     and after finalize (1.0's outer join refused it); the source's
--     row-level security is on the target, so tenants do not read each
--     other's moved columns, and after finalize an UPDATE policy still holds
--     through the view; privileges and policies changed while live follow.
-------------------------------------------------------------------------------
CREATE SCHEMA do13;
CREATE ROLE do_tenant_a;
CREATE ROLE do_tenant_b;
GRANT USAGE ON SCHEMA do13 TO do_tenant_a, do_tenant_b;
CREATE TABLE do13.members (id int PRIMARY KEY, tenant text NOT NULL, email text, nick text, secret text);
INSERT INTO do13.members VALUES (1, 'do_tenant_a', 'a1', 'na1', 'sa1'), (2, 'do_tenant_a', 'a2', 'na2', 'sa2'),
                              (3, 'do_tenant_b', 'b3', 'nb3', 'sb3');
GRANT SELECT, INSERT, UPDATE, DELETE ON do13.members TO do_tenant_a, do_tenant_b;
ALTER TABLE do13.members ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON do13.members FOR SELECT USING (tenant = current_user);
CREATE POLICY own_writes ON do13.members FOR UPDATE USING (tenant = current_user) WITH CHECK (tenant = current_user);
CREATE POLICY own_inserts ON do13.members FOR INSERT WITH CHECK (tenant = current_user);
CREATE POLICY own_deletes ON do13.members FOR DELETE USING (tenant = current_user);
SELECT customer_unify.split('do13', 'do13.members', 'user_secrets', ARRAY['nick', 'secret'], 'user_id') > 0 AS planned;
SELECT customer_unify.start('do13');
CALL customer_unify.backfill('do13');
SELECT polname, polcmd, obj_description(oid, 'pg_policy') LIKE 'customer_unify: copy of policy%' AS is_copy
  FROM pg_policy WHERE polrelid = 'do13.user_secrets'::regclass ORDER BY polname;
SELECT relrowsecurity FROM pg_class WHERE oid = 'do13.user_secrets'::regclass;
SET ROLE do_tenant_b;
SELECT user_id, secret FROM do13.user_secrets ORDER BY 1;
UPDATE do13.user_secrets SET secret = 'b was here' WHERE user_id = 1;
RESET ROLE;
SELECT secret FROM do13.members WHERE id = 1;
SELECT customer_unify.cutover('do13');
SET ROLE do_tenant_a;
SELECT id, nick FROM do13_compat.members ORDER BY id FOR UPDATE;
RESET ROLE;
-- a GRANT while live reaches the target and the view; a REVOKE too
CREATE ROLE do_auditor;
GRANT USAGE ON SCHEMA do13 TO do_auditor;
GRANT SELECT ON do13.members TO do_auditor;
SELECT has_table_privilege('do_auditor', 'do13.user_secrets', 'SELECT') AS target_granted,
       has_table_privilege('do_auditor', 'do13_compat.members', 'SELECT') AS view_granted;
REVOKE SELECT ON do13.members FROM do_auditor;
SELECT has_table_privilege('do_auditor', 'do13.user_secrets', 'SELECT') AS target_still_granted,
       has_table_privilege('do_auditor', 'do13_compat.members', 'SELECT') AS view_still_granted;
-- a policy added while live reaches the target
CREATE POLICY auditors_see_a ON do13.members FOR SELECT TO do_tenant_b USING (tenant = 'do_tenant_a' AND id = 2);
SET ROLE do_tenant_b;
SELECT user_id, secret FROM do13.user_secrets ORDER BY 1;
RESET ROLE;
DROP POLICY auditors_see_a ON do13.members;
SELECT count(*) AS resync_steps FROM customer_unify.step_log l JOIN customer_unify.migration m ON m.id = l.migration_id
 WHERE m.name = 'do13' AND l.phase = 'resync';
SELECT customer_unify.finalize('do13');
SET ROLE do_tenant_a;
SELECT id, nick, secret FROM do13_compat.members ORDER BY id FOR UPDATE;
SELECT id, nick FROM do13_compat.members WHERE nick = 'na2' FOR NO KEY UPDATE;
UPDATE do13_compat.members SET secret = 'a updates own' WHERE id = 2 RETURNING id, secret;
RESET ROLE;
SET ROLE do_tenant_b;
-- the UPDATE policy of the old table holds for the moved columns too
UPDATE do13_compat.members SET secret = 'b was here' WHERE id = 2;
UPDATE do13.user_secrets SET secret = 'b was here' WHERE user_id = 2;
SELECT id, secret FROM do13_compat.members ORDER BY id;
RESET ROLE;
SELECT id, secret FROM do13_compat.members ORDER BY id;
-- a policy that names its own table (the usual form inside a subquery)
CREATE TABLE do13.readers (doc_id int, reader name);
CREATE TABLE do13.docs (id int PRIMARY KEY, title text, body text);
INSERT INTO do13.docs VALUES (1, 'public', 'b1'), (2, 'shared with a', 'b2');
INSERT INTO do13.readers VALUES (2, 'do_tenant_a');
GRANT SELECT ON do13.docs, do13.readers TO do_tenant_a, do_tenant_b;
ALTER TABLE do13.docs ENABLE ROW LEVEL SECURITY;
CREATE POLICY docs_shared ON do13.docs FOR SELECT
    USING (docs.id = 1 OR EXISTS (SELECT 1 FROM do13.readers r WHERE r.doc_id = docs.id AND r.reader = current_user));
SELECT customer_unify.split('do13d', 'do13.docs', 'doc_bodies', ARRAY['body'], 'doc_id') > 0 AS planned;
SELECT customer_unify.start('do13d');
CALL customer_unify.backfill('do13d');
SET ROLE do_tenant_a;
SELECT doc_id, body FROM do13.doc_bodies ORDER BY 1;
RESET ROLE;
SET ROLE do_tenant_b;
SELECT doc_id, body FROM do13.doc_bodies ORDER BY 1;
RESET ROLE;
SELECT customer_unify.rollback('do13d');
-- An identity key through the view, before and after finalize, as on the
-- table: a role with no rights on the identity's sequence inserts without
-- naming the key and gets a generated one; GENERATED ALWAYS refuses a value.
CREATE SCHEMA doid;
CREATE TABLE doid.users (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text, phone text);
GRANT USAGE ON SCHEMA doid TO do_writer;
GRANT SELECT, INSERT, UPDATE ON doid.users TO do_writer;
INSERT INTO doid.users (email, phone) VALUES ('a', '1');
SELECT customer_unify.split('doid', 'doid.users', 'phones', ARRAY['phone'], 'user_id') > 0 AS planned;
SELECT customer_unify.start('doid');
CALL customer_unify.backfill('doid');
SELECT customer_unify.cutover('doid');
SET ROLE do_writer;
INSERT INTO doid_compat.users (email, phone) VALUES ('b', '2') RETURNING id, email, phone;
SELECT regress_util.try($$INSERT INTO doid_compat.users (id, email) VALUES (42, 'c')$$) AS always_refused_live;
RESET ROLE;
SELECT customer_unify.finalize('doid');
SET ROLE do_writer;
INSERT INTO doid_compat.users (email, phone) VALUES ('d', '4') RETURNING id, email, phone;
SELECT regress_util.try($$INSERT INTO doid_compat.users (id, email) VALUES (42, 'e')$$) AS always_refused_final;
SELECT regress_util.try($$UPDATE doid_compat.users SET id = 43 WHERE email = 'a'$$) AS update_refused_final;
RESET ROLE;
SELECT u.id, u.email, p.phone FROM doid.users u LEFT JOIN doid.phones p ON p.user_id = u.id ORDER BY u.id;
-- The guard also keeps what the frozen plan names: every column of the
-- source at start (the compatibility view selects them by name), the
-- source's primary key, no rules on the tables, and the view's columns.
CREATE SCHEMA dog;
CREATE TABLE dog.users (id int PRIMARY KEY, email text, phone text);
INSERT INTO dog.users VALUES (1, 'a', '1');
SELECT customer_unify.split('dog', 'dog.users', 'phones', ARRAY['phone'], 'user_id') > 0 AS planned;
SELECT customer_unify.start('dog');
SELECT regress_util.try($$ALTER TABLE dog.users RENAME COLUMN email TO email_old$$) AS rename_kept;
SELECT regress_util.try($$ALTER TABLE dog.users DROP COLUMN email$$) AS drop_kept;
SELECT regress_util.try($$ALTER TABLE dog.users DROP CONSTRAINT users_pkey CASCADE$$) AS drop_pkey;
SELECT regress_util.try($$CREATE RULE nothing AS ON INSERT TO dog.phones DO INSTEAD NOTHING$$) AS rule_on_target;
SELECT regress_util.try($$CREATE RULE nothing AS ON UPDATE TO dog.users DO ALSO NOTIFY x$$) AS rule_on_source;
ALTER TABLE dog.users ADD COLUMN created date;           -- adding a column goes through
CALL customer_unify.backfill('dog');
SELECT customer_unify.cutover('dog');
SELECT regress_util.try($$ALTER VIEW dog_compat.users RENAME COLUMN email TO mail$$) AS rename_view_column;
SELECT regress_util.try($$CREATE OR REPLACE VIEW dog_compat.users AS SELECT id, email, phone, 1 AS extra FROM ONLY dog.users$$) AS replace_view;
SELECT customer_unify.finalize('dog');
SELECT * FROM dog_compat.users;
-- A restore (pg_restore and pg_dump scripts run with check_function_bodies
-- off) rebuilds a live migration one object at a time: the guard stands aside.
CREATE TABLE dog.r (id int PRIMARY KEY, nick text);
SELECT customer_unify.split('dogr', 'dog.r', 'r_bits', ARRAY['nick'], 'r_id') > 0 AS planned;
SELECT customer_unify.start('dogr');
BEGIN;
SET LOCAL check_function_bodies = off;
ALTER TABLE dog.r RENAME COLUMN nick TO nick2;
ALTER TABLE dog.r RENAME COLUMN nick2 TO nick;
COMMIT;
SELECT regress_util.try($$ALTER TABLE dog.r RENAME COLUMN nick TO nick2$$) AS guarded_again;
SELECT customer_unify.rollback('dogr');
-- After finalize, an UPDATE through the view of a source row that has no
-- target row yet (a service inserted into the source directly) obeys the
-- source's UPDATE policy, as on the old table: refused, nothing is created.
CREATE ROLE do_alice;
CREATE TABLE dog.owned (id int PRIMARY KEY, owner_name text NOT NULL, phone text);
ALTER TABLE dog.owned ENABLE ROW LEVEL SECURITY;
CREATE POLICY sel ON dog.owned FOR SELECT USING (true);
CREATE POLICY upd ON dog.owned FOR UPDATE USING (owner_name = current_user);
GRANT USAGE ON SCHEMA dog TO do_alice;
GRANT SELECT, UPDATE ON dog.owned TO do_alice;
INSERT INTO dog.owned VALUES (1, 'bob', '111'), (3, 'do_alice', '333');
SELECT customer_unify.split('dogo', 'dog.owned', 'owned_phones', ARRAY['phone'], 'owned_id') > 0 AS planned;
CALL customer_unify.run('dogo', finalize => true);
INSERT INTO dog.owned VALUES (2, 'bob'), (4, 'do_alice');   -- straight into the source: no target rows
SET ROLE do_alice;
UPDATE dogo_compat.owned SET phone = 'evil' WHERE id = 1;
UPDATE dogo_compat.owned SET phone = 'evil' WHERE id = 2;
UPDATE dogo_compat.owned SET phone = 'mine' WHERE id = 4 RETURNING id, owner_name, phone;
RESET ROLE;
SELECT id, owner_name, phone FROM dogo_compat.owned ORDER BY id;
SELECT owned_id, phone FROM dog.owned_phones ORDER BY 1;

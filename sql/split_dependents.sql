-- Objects that depend on the moved columns are found at plan time and
-- listed; finalize refuses while any would break, naming them.
SET client_min_messages = warning;
CREATE SCHEMA dep;
SET search_path = dep, public;
CREATE TABLE users (id int PRIMARY KEY, email text, phone text UNIQUE, city text, score int);
CREATE INDEX users_email_city ON users (email, city);
CREATE INDEX users_city ON users (city) WHERE city <> '';
INSERT INTO users SELECT g, 'e' || g, 'p' || g, 'c' || g, g FROM generate_series(1, 30) g;
CREATE VIEW city_report AS SELECT city, count(*) FROM users GROUP BY city;
CREATE FUNCTION user_city(p_id int) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RETURN (SELECT city FROM dep.users WHERE id = p_id); END $$;
CREATE FUNCTION audit_score() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.score := NEW.score; RETURN NEW; END $$;
CREATE TRIGGER users_score BEFORE UPDATE OF score ON users FOR EACH ROW EXECUTE FUNCTION audit_score();
CREATE TABLE sms (id int PRIMARY KEY, to_phone text REFERENCES users (phone));

SET client_min_messages = notice;
SELECT customer_unify.split('dep_split', 'dep.users', 'user_details', ARRAY['phone', 'city', 'score']) > 0 AS planned;
SET client_min_messages = warning;
SELECT object_type, object_name, dependency, blocks_finalize FROM customer_unify.dependents('dep_split');
CALL customer_unify.run('dep_split', batch_size => 10);
-- the unique constraint on phone and the partial index on city were re-created on the target
SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'dep.user_details'::regclass ORDER BY 1;
SELECT regress_util.try_detail($$SELECT customer_unify.finalize('dep_split')$$);
-- fix them one by one
DROP VIEW city_report;
DROP TRIGGER users_score ON users;
ALTER TABLE sms DROP CONSTRAINT sms_to_phone_fkey;
DROP INDEX users_email_city;
SELECT regress_util.try_detail($$SELECT customer_unify.finalize('dep_split')$$);
-- the remaining text match can be overridden by name
SELECT customer_unify.finalize('dep_split', ignore_text_matches => true);
SELECT attname FROM pg_attribute WHERE attrelid = 'dep.users'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;
RESET search_path;

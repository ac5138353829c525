-- The sync triggers (src/sync_trigger.c): bulk statements are mirrored as one run per statement,
-- savepoints that roll back take their rows out of the run, a row written
-- twice in one transaction by nested statements keeps its last value, key
-- changes are mirrored in order, and a run that could not be written fails
-- the transaction instead of being lost.
SET client_min_messages = warning;
CREATE SCHEMA sync;
SET search_path = sync, public;
CREATE TABLE users (id int PRIMARY KEY, email text, nick text, bio text, tags text[], score numeric);
INSERT INTO users SELECT g, 'e' || g, 'n' || g, repeat('b', g % 5), ARRAY['t' || g], g / 3.0 FROM generate_series(1, 100) g;
SELECT customer_unify.split('sync_split', 'sync.users', 'user_bits', ARRAY['nick', 'bio', 'tags', 'score'], link_column => 'user_id') > 0 AS planned;
SELECT customer_unify.start('sync_split');
CALL customer_unify.backfill('sync_split', batch_size => 40);
CREATE FUNCTION sync.diff() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM sync.users u FULL JOIN sync.user_bits b ON b.user_id = u.id
     WHERE u.id IS NULL OR b.user_id IS NULL
        OR (u.nick, u.bio, u.tags, u.score) IS DISTINCT FROM (b.nick, b.bio, b.tags, b.score)
$$;
SELECT sync.diff() AS differences;

-- bulk statements, far more rows than one run holds
INSERT INTO users SELECT g, 'e' || g, 'n' || g, NULL, NULL, NULL FROM generate_series(101, 25000) g;
UPDATE users SET nick = upper(nick), tags = tags || 'x'::text WHERE id % 2 = 0;
UPDATE users SET email = email || '!' WHERE id % 3 = 0;     -- kept column only: nothing to mirror
DELETE FROM users WHERE id % 7 = 0;
SELECT sync.diff() AS differences, (SELECT count(*) FROM user_bits) AS target_rows;

-- a statement mixing kinds through a writable CTE
WITH d AS (DELETE FROM users WHERE id BETWEEN 200 AND 210 RETURNING id)
INSERT INTO users SELECT id + 100000, 'moved', 'm', NULL, NULL, 1 FROM d;
SELECT sync.diff() AS differences;

-- savepoints: the rolled-back part leaves no trace in the target
BEGIN;
UPDATE users SET bio = 'kept' WHERE id = 1;
SAVEPOINT a;
UPDATE users SET bio = 'discarded' WHERE id = 2;
INSERT INTO users VALUES (900001, 'x', 'discarded', NULL, NULL, NULL);
ROLLBACK TO SAVEPOINT a;
UPDATE users SET bio = 'after savepoint' WHERE id = 3;
COMMIT;
SELECT user_id, bio FROM user_bits WHERE user_id IN (1, 2, 3, 900001) ORDER BY user_id;
SELECT sync.diff() AS differences;

-- an error inside a plpgsql exception block (a subtransaction) in the middle of a run
DO $$
BEGIN
    UPDATE sync.users SET score = 1 WHERE id <= 10;
    BEGIN
        UPDATE sync.users SET score = 2 WHERE id <= 20;
        RAISE EXCEPTION 'boom';
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
END
$$;
SELECT score, count(*) FROM user_bits WHERE user_id <= 20 GROUP BY score ORDER BY score;
SELECT sync.diff() AS differences;

-- nested statements writing the same row: the last value wins
CREATE FUNCTION sync.touch_again() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.nick LIKE 'nested%' AND NEW.nick NOT LIKE '%again' THEN
        UPDATE sync.users SET nick = NEW.nick || ' again' WHERE id = NEW.id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER a_touch_again AFTER UPDATE ON users FOR EACH ROW EXECUTE FUNCTION sync.touch_again();
UPDATE users SET nick = 'nested' WHERE id IN (4, 5);
-- a single-row statement too (its mirror uses the row's values unless a later write made them stale)
UPDATE users SET nick = 'nested single' WHERE id = 6;
SELECT id, nick FROM users WHERE id IN (4, 5, 6) ORDER BY id;
SELECT user_id, nick FROM user_bits WHERE user_id IN (4, 5, 6) ORDER BY user_id;
DROP TRIGGER a_touch_again ON users;

-- key changes are mirrored in order
UPDATE users SET id = id + 500000 WHERE id IN (8, 9);
UPDATE users SET nick = 'rekeyed' WHERE id = 500008;
SELECT user_id, nick FROM user_bits WHERE user_id IN (8, 9, 500008, 500009) ORDER BY user_id;
SELECT sync.diff() AS differences;

-- disabling a sync trigger while the migration is live is refused (55006)
SELECT regexp_replace(x.r, 'customer_unify_\d+_', 'customer_unify_<id>_') AS refused
  FROM customer_unify.migration m,
       LATERAL (VALUES (1, regress_util.try(format('ALTER TABLE sync.users DISABLE TRIGGER %I', 'customer_unify_' || m.id || '_flush'))),
                       (2, regress_util.try(format('ALTER TABLE sync.users DISABLE TRIGGER %I', 'customer_unify_' || m.id || '_sync'))),
                       (3, regress_util.try('ALTER TABLE sync.users DISABLE TRIGGER ALL')),
                       (4, regress_util.try(format('ALTER TABLE sync.users ENABLE REPLICA TRIGGER %I', 'customer_unify_' || m.id || '_sync')))) x(n, r)
 WHERE m.name = 'sync_split' ORDER BY x.n;
-- a superuser who switches the guard off and the statement-level trigger
-- with it: the transaction fails at commit, nothing is lost
ALTER EVENT TRIGGER customer_unify_guard_ddl DISABLE;
SELECT format('ALTER TABLE sync.users DISABLE TRIGGER %I', 'customer_unify_' || m.id || '_flush') AS disable_flush,
       format('ALTER TABLE sync.users ENABLE ALWAYS TRIGGER %I', 'customer_unify_' || m.id || '_flush') AS enable_flush
  FROM customer_unify.migration m WHERE m.name = 'sync_split' \gset
:disable_flush;
SELECT regress_util.try($$UPDATE sync.users SET nick = 'lost?' WHERE id = 10$$) AS inside_a_statement;
BEGIN;
UPDATE users SET nick = 'lost?' WHERE id = 10;
COMMIT;
:enable_flush;
ALTER EVENT TRIGGER customer_unify_guard_ddl ENABLE;
SELECT id, nick FROM users WHERE id = 10;
SELECT sync.diff() AS differences;

-- session_replication_role = replica (a restore, a logical replica's apply):
-- the sync triggers fire anyway (ENABLE ALWAYS) and, with no foreign-key
-- cascades in that mode, the mirror does the deletes and key changes itself
SET session_replication_role = replica;
UPDATE users SET nick = 'replica' WHERE id = 11;
UPDATE user_bits SET bio = 'replica target' WHERE user_id = 12;
INSERT INTO users VALUES (800001, 'r', 'replica insert', NULL, NULL, NULL);
SELECT count(*) AS present_before FROM user_bits WHERE user_id IN (16, 15);
DELETE FROM users WHERE id = 16;
UPDATE users SET id = 800015 WHERE id = 15;
RESET session_replication_role;
SELECT sync.diff() AS differences, (SELECT count(*) FROM user_bits WHERE user_id IN (16, 15)) AS gone,
       (SELECT nick FROM user_bits WHERE user_id = 800015) AS rekeyed,
       (SELECT bio FROM users WHERE id = 12) AS from_target;

-- verify agrees
SELECT check_name, ok FROM customer_unify.verify('sync_split') WHERE NOT ok;
SELECT customer_unify.rollback('sync_split');
RESET search_path;

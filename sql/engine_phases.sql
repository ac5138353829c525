-- Phases under concurrency (1.1), with a second session through dblink:
-- one phase of a migration at a time (55006 at once, not an error inside
-- CREATE TABLE), one backfill at a time, and a phase that cannot get its
-- locks gives up after its retries with nothing held and nothing changed,
-- and resumes where it stopped.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS dblink;
CREATE SCHEMA ep;
CREATE TABLE ep.members (id int PRIMARY KEY, email text, nick text);
INSERT INTO ep.members SELECT g, 'e' || g, 'n' || g FROM generate_series(1, 3000) g;
SELECT customer_unify.split('ep', 'ep.members', 'user_bits', ARRAY['nick'], 'user_id') > 0 AS planned;
SELECT dblink_connect('other', format('dbname=%s port=%s host=%s', current_database(), current_setting('port'),
                                      split_part(current_setting('unix_socket_directories'), ',', 1))) AS connected;
SELECT dblink_exec('other', 'SET client_min_messages = warning');

-- 16a. two sessions start the same migration: the second is refused at once
SELECT dblink_exec('other', 'BEGIN');
SELECT * FROM dblink('other', $$SELECT customer_unify.start('ep')$$) AS t(state text);
SELECT regress_util.try($$SELECT customer_unify.start('ep')$$) AS second_start;
SELECT dblink_exec('other', 'COMMIT');
SELECT state FROM customer_unify.migration WHERE name = 'ep';
SELECT count(*) AS start_logged_once FROM customer_unify.step_log l JOIN customer_unify.migration m ON m.id = l.migration_id
 WHERE m.name = 'ep' AND l.phase = 'start' AND l.seq = 1;
SELECT regress_util.try($$SELECT customer_unify.start('ep')$$) AS start_again;

-- 16b. two backfills of the same migration: the second is refused while the first runs
SELECT dblink_send_query('other', $$CALL customer_unify.backfill('ep', batch_size => 100, sleep_ms => 100)$$) AS sent;
SELECT pg_sleep(0.3);
SELECT regress_util.try($$CALL customer_unify.backfill('ep', batch_size => 100)$$) AS inside_a_function;
\set VERBOSITY terse
CALL customer_unify.backfill('ep', batch_size => 100);
\set VERBOSITY default
SELECT * FROM dblink_get_result('other') AS t(r text);
SELECT * FROM dblink_get_result('other') AS t(r text);
SELECT state, (SELECT rows_done FROM customer_unify.backfill_state b WHERE b.migration_id = m.id) AS rows_done
  FROM customer_unify.migration m WHERE m.name = 'ep';
SELECT count(*) AS failing FROM customer_unify.verify('ep') WHERE NOT ok;
SELECT customer_unify.rollback('ep');

-- 15. the end of the backfill cannot get its lock: after its retries it
--     gives up with 55P03; nothing is held meanwhile, the copy and its
--     checkpoint stay, and the next call only ends the backfill
SELECT customer_unify.split('ep2', 'ep.members', 'user_bits2', ARRAY['nick'], 'user_id') > 0 AS planned;
SELECT customer_unify.start('ep2');
SELECT dblink_exec('other', 'BEGIN');
SELECT dblink_exec('other', 'LOCK TABLE ep.user_bits2 IN SHARE UPDATE EXCLUSIVE MODE');
SET customer_unify.lock_timeout_ms = 50;
SET customer_unify.lock_retries = 2;
\set VERBOSITY terse
CALL customer_unify.backfill('ep2', batch_size => 1000);
\set VERBOSITY default
SELECT state, (SELECT count(*) FROM ep.user_bits2) AS copied,
       (SELECT finished_at IS NOT NULL FROM customer_unify.backfill_state b WHERE b.migration_id = m.id) AS copy_finished,
       (SELECT string_agg(DISTINCT l.phase, ', ') FROM customer_unify.step_log l WHERE l.migration_id = m.id) AS phases_logged
  FROM customer_unify.migration m WHERE m.name = 'ep2';
SELECT dblink_exec('other', 'COMMIT');
CALL customer_unify.backfill('ep2', batch_size => 1000);
SELECT state FROM customer_unify.migration WHERE name = 'ep2';
SELECT phase, count(*) FROM customer_unify.step_log l JOIN customer_unify.migration m ON m.id = l.migration_id
 WHERE m.name = 'ep2' GROUP BY phase ORDER BY min(l.id);
SELECT customer_unify.cutover('ep2');

-- finalize while a reader of the target holds it: refused after the retries,
-- nothing dropped, the migration still cut over; then it goes through
SELECT dblink_exec('other', 'BEGIN');
SELECT * FROM dblink('other', 'SELECT count(*) FROM ep.user_bits2') AS t(n bigint);
\set VERBOSITY terse
SELECT customer_unify.finalize('ep2');
\set VERBOSITY default
SELECT state, (SELECT count(*) FROM pg_attribute WHERE attrelid = 'ep.members'::regclass AND attname = 'nick') AS nick_still_there
  FROM customer_unify.migration WHERE name = 'ep2';
-- every attempt ran the phase from its first step and left no lock behind
SELECT count(*) AS locks_held_by_us FROM pg_locks
 WHERE pid = pg_backend_pid() AND relation IN ('ep.members'::regclass, 'ep.user_bits2'::regclass);
SELECT dblink_exec('other', 'COMMIT');
RESET customer_unify.lock_timeout_ms;
RESET customer_unify.lock_retries;
SELECT customer_unify.finalize('ep2');
SELECT dblink_disconnect('other');

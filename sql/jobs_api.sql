-- Background jobs (1.3): launch / pause / resume / cancel / set_throttle and
-- their errors with SQLSTATEs.  The worker runs as the migration's owner; a
-- test waits for a job state by polling customer_unify.jobs with a timeout
-- (never by sleeping a fixed time and asserting).
SET client_min_messages = warning;
CREATE ROLE regress_job_owner LOGIN;
CREATE ROLE regress_job_other LOGIN;
CREATE ROLE regress_job_nologin NOLOGIN;
DO $$ BEGIN
    EXECUTE format('GRANT CREATE ON DATABASE %I TO regress_job_owner, regress_job_nologin', current_database());
END $$;
CREATE SCHEMA jb AUTHORIZATION regress_job_owner;
GRANT USAGE ON SCHEMA jb TO regress_job_nologin, regress_job_other;
GRANT CREATE ON SCHEMA jb TO regress_job_nologin;

SET ROLE regress_job_owner;
CREATE TABLE jb.people (id bigint PRIMARY KEY, email text NOT NULL, nick text);
INSERT INTO jb.people SELECT g, 'p' || g || '@example.com', 'nick' || g FROM generate_series(1, 5000) g;
CREATE TABLE jb.hold (flag boolean NOT NULL);
INSERT INTO jb.hold VALUES (true);
SELECT customer_unify.split('jm', 'jb.people', 'people_bits', ARRAY['nick'], 'person_id') > 0 AS planned;
RESET ROLE;

-- 1. unknown migration, bad arguments
SELECT regress_util.try($$SELECT customer_unify.launch('no_such')$$) AS launch_unknown;
SELECT regress_util.try($$SELECT customer_unify.pause('no_such')$$) AS pause_unknown;
SELECT regress_util.try($$SELECT customer_unify.resume('no_such')$$) AS resume_unknown;
SELECT regress_util.try($$SELECT customer_unify.cancel('no_such')$$) AS cancel_unknown;
SELECT regress_util.try($$SELECT customer_unify.set_throttle('no_such', nice => 1)$$) AS throttle_unknown;
SELECT regress_util.try($$SELECT customer_unify.launch(NULL)$$) AS launch_null;
SELECT regress_util.try($$SELECT customer_unify.launch('jm', until => 'planned')$$) AS until_planned;
SELECT regress_util.try($$SELECT customer_unify.launch('jm', until => 'done')$$) AS until_unknown;
SELECT regress_util.try($$SELECT customer_unify.launch('jm', batch_size => 0)$$) AS batch_zero;
SELECT regress_util.try($$SELECT customer_unify.set_throttle('jm', nice => -1)$$) AS nice_negative;
SELECT regress_util.try($$SELECT customer_unify.set_throttle('jm', nice => 'Infinity')$$) AS nice_infinite;
SELECT regress_util.try($$SELECT customer_unify.set_throttle('jm', nice => 'NaN')$$) AS nice_nan;
SELECT regress_util.try($$SELECT customer_unify.set_throttle('jm', chunk_ms => 0)$$) AS chunk_zero;
SELECT regress_util.try($$SELECT customer_unify.set_throttle('jm', max_lag_bytes => 0)$$) AS lag_zero;
SELECT regress_util.try($$SELECT customer_unify.set_throttle('jm', max_lock_waits => -1)$$) AS lock_waits_negative;
SELECT regress_util.try($$SELECT customer_unify.set_throttle('jm', max_wal_bytes_per_sec => 0)$$) AS wal_rate_zero;
-- the worker reads pg_stat_replication as the owner, who needs pg_read_all_stats for it
SELECT regress_util.try($$SELECT customer_unify.set_throttle('jm', max_lag_bytes => 1000000)$$) AS lag_without_stats;
SELECT regress_util.try($$SELECT customer_unify.set_throttle('jm', window_start => '22:00')$$) AS half_window;
SELECT regress_util.try($$SELECT customer_unify.set_throttle('jm', throttle_query => 'SELECT 1')$$) AS query_not_boolean;
SELECT regress_util.try($$SELECT customer_unify.set_throttle('jm', throttle_query => 'SELECT true FROM generate_series(1, 2)')$$) AS query_two_rows;

-- 2. nothing to pause, resume or cancel before a launch
SELECT regress_util.try_detail($$SELECT customer_unify.pause('jm')$$) AS pause_not_launched;
SELECT regress_util.try($$SELECT customer_unify.resume('jm')$$) AS resume_not_launched;
SELECT regress_util.try($$SELECT customer_unify.cancel('jm')$$) AS cancel_not_launched;

-- 3. a role that does not own the migration controls nothing (42501)
SET ROLE regress_job_other;
SELECT regress_util.try($$SELECT customer_unify.launch('jm')$$) AS other_launch;
SELECT regress_util.try($$SELECT customer_unify.pause('jm')$$) AS other_pause;
SELECT regress_util.try($$SELECT customer_unify.resume('jm')$$) AS other_resume;
SELECT regress_util.try($$SELECT customer_unify.cancel('jm')$$) AS other_cancel;
SELECT regress_util.try($$SELECT customer_unify.set_throttle('jm', nice => 1)$$) AS other_throttle;
SELECT regress_util.try($$SELECT customer_unify.add_index('jm', ARRAY['nick'])$$) AS other_add_index;
-- and may not write the catalog behind the API
SELECT regress_util.try($$UPDATE customer_unify.job SET request = 'cancel'$$) AS other_writes_job;
SELECT regress_util.try($$INSERT INTO customer_unify.job (migration_id) VALUES (1)$$) AS other_inserts_job;
RESET ROLE;

-- 4. a job held by the DBA's query (before its first phase, start): running, refuses a second launch, pauses while held
SET ROLE regress_job_owner;
SELECT customer_unify.set_throttle('jm', throttle_query => 'SELECT flag FROM jb.hold');
SELECT state, until, throttle_reason FROM customer_unify.jobs WHERE name = 'jm';
SELECT customer_unify.launch('jm', batch_size => 500);
CALL regress_util.wait_job('jm', 'j.throttle_reason IS NOT NULL');
SELECT throttle_reason FROM customer_unify.jobs WHERE name = 'jm';
SELECT state, migration_state, phase, role, pid > 0 AS has_pid, rows_done > 0 AS some_rows, rows_done < 5000 AS not_all
  FROM customer_unify.jobs WHERE name = 'jm';
SELECT application_name, backend_type, usename FROM pg_stat_activity
 WHERE pid = (SELECT pid FROM customer_unify.jobs WHERE name = 'jm');
SELECT regress_util.try_detail($$SELECT customer_unify.launch('jm')$$) AS launch_running;
SELECT regress_util.try($$SELECT customer_unify.resume('jm')$$) AS resume_running;
-- phases run by hand while the job's worker is at work are refused (55006)
SELECT regress_util.try_detail($$SELECT customer_unify.rollback('jm')$$) AS rollback_running;
SELECT customer_unify.pause('jm');
SELECT regress_util.try($$SELECT customer_unify.pause('jm')$$) AS pause_twice;
CALL regress_util.wait_job('jm', $$j.state = 'paused'$$);
SELECT regress_util.try($$SELECT customer_unify.pause('jm')$$) AS pause_paused;
SELECT regress_util.try($$SELECT customer_unify.launch('jm')$$) AS launch_paused;
SELECT state, request, phase, pid IS NULL AS no_pid FROM customer_unify.jobs WHERE name = 'jm';

-- 5. a paused job is cancelled at once; a cancelled one cannot be resumed
SELECT customer_unify.cancel('jm');
SELECT state, finished_at IS NOT NULL AS finished FROM customer_unify.jobs WHERE name = 'jm';
SELECT regress_util.try($$SELECT customer_unify.resume('jm')$$) AS resume_cancelled;
SELECT regress_util.try($$SELECT customer_unify.cancel('jm')$$) AS cancel_cancelled;

-- 6. a hold query that fails at run time fails the job, with its SQLSTATE
SELECT customer_unify.launch('jm', batch_size => 500);
CALL regress_util.wait_job('jm', 'j.throttle_reason IS NOT NULL');
SELECT throttle_reason FROM customer_unify.jobs WHERE name = 'jm';
DROP TABLE jb.hold;
CALL regress_util.wait_job('jm', $$j.state = 'failed'$$);
SELECT state, migration_state, last_sqlstate, last_error FROM customer_unify.jobs WHERE name = 'jm';
-- progress and status() show the job and its error
SELECT state, job_state, job_sqlstate, job_error FROM customer_unify.progress WHERE name = 'jm';
SELECT state, job_state, job_error FROM customer_unify.status('jm');

-- 7. other throttles (the hold query off), resume the failed job: it runs to until (backfilled) and stops there
SELECT customer_unify.set_throttle('jm', nice => 0.5, chunk_ms => 100);
SELECT customer_unify.resume('jm');
CALL regress_util.wait_job('jm', $$j.state IN ('finished', 'failed')$$);
SELECT state, migration_state, until, rows_done, last_error FROM customer_unify.jobs WHERE name = 'jm';
SELECT state, rows_done, job_state, job_phase, throttled_ms > 0 AS throttled, job_error FROM customer_unify.progress WHERE name = 'jm';
SELECT state, rows_done, job_state, job_error FROM customer_unify.status('jm');
SELECT count(*) FILTER (WHERE NOT ok) AS failing FROM customer_unify.verify('jm');
SELECT (SELECT count(*) FROM jb.people_bits) AS copied, (SELECT count(DISTINCT person_id) FROM jb.people_bits) AS distinct_keys;
SELECT regress_util.try($$SELECT customer_unify.launch('jm', until => 'backfilled')$$) AS launch_nothing_to_do;

-- 8. indexes the job builds concurrently once the copy is in; a failed build leaves no invalid index
SELECT regress_util.try($$SELECT customer_unify.add_index('jm', ARRAY['no_such'])$$) AS unknown_column;
SELECT regress_util.try($$SELECT customer_unify.add_index('jm', '{}')$$) AS no_columns;
SELECT regress_util.try($$SELECT customer_unify.add_index('jm', ARRAY['nick'], relation_tag => 'source')$$) AS not_created;
SELECT regress_util.try($$SELECT customer_unify.add_index('jm', ARRAY['nick'], index_name => 'people_bits')$$) AS name_taken;
SELECT customer_unify.add_index('jm', ARRAY['nick'], is_unique => true);
SELECT customer_unify.add_index('jm', ARRAY['nick', 'person_id'], index_name => 'bits by "nick"');
-- two people with the same nick: the unique build fails
UPDATE jb.people SET nick = 'same' WHERE id IN (1, 2);
SELECT customer_unify.launch('jm', until => 'cut_over');
CALL regress_util.wait_job('jm', $$j.state IN ('finished', 'failed')$$);
SELECT state, migration_state, last_sqlstate, last_error FROM customer_unify.jobs WHERE name = 'jm';
SELECT x.index_name, x.state, x.last_error IS NOT NULL AS has_error FROM customer_unify.job_index x ORDER BY 1;
SELECT c.relname, i.indisvalid, i.indisunique FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid = 'jb.people_bits'::regclass ORDER BY 1;
-- fixed: resume builds it and goes on to cut over
UPDATE jb.people SET nick = 'nick' || id WHERE id IN (1, 2);
SELECT customer_unify.resume('jm');
CALL regress_util.wait_job('jm', $$j.state IN ('finished', 'failed')$$);
SELECT x.index_name, x.state, x.built_at IS NOT NULL AS built FROM customer_unify.job_index x ORDER BY 1;
SELECT c.relname, i.indisvalid, i.indisunique, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid = 'jb.people_bits'::regclass ORDER BY 1;
SELECT state, migration_state, last_error FROM customer_unify.jobs WHERE name = 'jm';
SELECT customer_unify.rollback('jm');
SELECT regress_util.try($$SELECT customer_unify.launch('jm', until => 'finalized')$$) AS launch_rolled_back;
RESET ROLE;

-- 8b. outside its time window a job holds; a running job is cancelled between two holds
SELECT customer_unify.split('jw', 'jb.people', 'people_bits2', ARRAY['nick'], 'person_id') > 0 AS planned;
SELECT customer_unify.set_throttle('jw', window_start => (now() + interval '6 hours')::time,
                                   window_end => (now() + interval '6 hours 1 minute')::time);
SELECT customer_unify.launch('jw', batch_size => 1000);
CALL regress_util.wait_job('jw', 'j.throttle_reason IS NOT NULL');
SELECT throttle_reason FROM customer_unify.jobs WHERE name = 'jw';
SELECT customer_unify.cancel('jw');
SELECT regress_util.try($$SELECT customer_unify.pause('jw')$$) AS pause_cancelling;
CALL regress_util.wait_job('jw', $$j.state = 'cancelled'$$);
SELECT state, migration_state, request, pid IS NULL AS no_pid, throttled_ms > 0 AS throttled FROM customer_unify.jobs WHERE name = 'jw';
SELECT customer_unify.rollback('jw');

-- 8c. lock waits on the migration's tables hold the job: a row of the source
-- locked by one session, two writers queued behind it (the second waits on
-- the row's tuple lock, which names the table)
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT customer_unify.split('jl', 'jb.people', 'people_bits3', ARRAY['nick'], 'person_id') > 0 AS planned;
SELECT customer_unify.set_throttle('jl', max_lock_waits => 0);
-- started first: start itself needs a lock the queued writers hold
SELECT customer_unify.start('jl');
CREATE FUNCTION pg_temp.here() RETURNS text LANGUAGE sql AS $$
    SELECT format('dbname=%s host=%s port=%s', current_database(),
                  split_part(current_setting('unix_socket_directories'), ',', 1), current_setting('port'))
$$;
SELECT dblink_connect('locker', pg_temp.here()) AS locker, dblink_connect('writer1', pg_temp.here()) AS writer1,
       dblink_connect('writer2', pg_temp.here()) AS writer2;
SELECT dblink_exec('locker', 'BEGIN') AS began;
SELECT x FROM dblink('locker', 'SELECT id FROM jb.people WHERE id = 7 FOR UPDATE') AS t(x bigint);
SELECT dblink_send_query('writer1', $$UPDATE jb.people SET nick = 'w1' WHERE id = 7$$) AS sent1;
SELECT dblink_send_query('writer2', $$UPDATE jb.people SET nick = 'w2' WHERE id = 7$$) AS sent2;
SELECT customer_unify.launch('jl', batch_size => 1000);
CALL regress_util.wait_job('jl', $$j.throttle_reason LIKE '%max_lock_waits'$$);
SELECT state, throttle_reason, rows_done < 5000 AS held FROM customer_unify.jobs WHERE name = 'jl';
-- the locker ends: the writers go through, the job goes on and finishes
SELECT dblink_exec('locker', 'COMMIT') AS committed;
SELECT * FROM dblink_get_result('writer1') AS t(r text);
SELECT * FROM dblink_get_result('writer2') AS t(r text);
CALL regress_util.wait_job('jl', $$j.state IN ('finished', 'failed')$$);
-- (the row the writers changed may have been mirrored before the copy reached it)
SELECT state, migration_state, rows_done BETWEEN 4999 AND 5000 AS copied, throttled_ms > 0 AS throttled, last_error FROM customer_unify.jobs WHERE name = 'jl';
-- the writers' last value is in both tables (which writer went last is not fixed)
SELECT b.nick IN ('w1', 'w2') AS written, b.nick = p.nick AS mirrored
  FROM jb.people_bits3 b JOIN jb.people p ON p.id = b.person_id WHERE b.person_id = 7;
SELECT count(*) FILTER (WHERE NOT ok) AS failing FROM customer_unify.verify('jl');
SELECT dblink_disconnect('locker'), dblink_disconnect('writer1'), dblink_disconnect('writer2');
SELECT customer_unify.rollback('jl');
UPDATE jb.people SET nick = 'nick7' WHERE id = 7;

-- 8d. a WAL rate cap sleeps after each batch (1 byte/s: the job sleeps at
-- once), and a pause ends the sleep without waiting it out
SELECT customer_unify.split('jr', 'jb.people', 'people_bits4', ARRAY['nick'], 'person_id') > 0 AS planned;
SELECT customer_unify.set_throttle('jr', max_wal_bytes_per_sec => 1);
SELECT customer_unify.launch('jr', batch_size => 1000);
CALL regress_util.wait_job('jr', $$j.throttle_reason = 'max_wal_bytes_per_sec'$$);
SELECT state, throttle_reason, rows_done < 5000 AS sleeping FROM customer_unify.jobs WHERE name = 'jr';
SELECT customer_unify.pause('jr');
CALL regress_util.wait_job('jr', $$j.state = 'paused'$$);
SELECT state, rows_done < 5000 AS stopped_early FROM customer_unify.jobs WHERE name = 'jr';
-- the cap off, resume: it finishes
SELECT customer_unify.set_throttle('jr');
SELECT customer_unify.resume('jr');
CALL regress_util.wait_job('jr', $$j.state IN ('finished', 'failed')$$);
SELECT state, migration_state, rows_done, last_error FROM customer_unify.jobs WHERE name = 'jr';
SELECT customer_unify.rollback('jr');

-- 8e. a split's own key built after the copy: start makes the target
-- without its primary key, verify fails until the job built it, and the job
-- builds it concurrently and attaches it (ADD PRIMARY KEY USING INDEX)
SELECT regress_util.try($$SELECT customer_unify.split('jk', 'jb.people', 'people_bits5', ARRAY['nick'], 'person_id',
                                                     key_index => 'later')$$) AS key_index_unknown;
SELECT regress_util.try_detail($$SELECT customer_unify.split('jk', 'jb.people', 'people_bits5', ARRAY['nick'], 'person_id',
                                                            key_index => 'after_copy')$$) AS after_copy_without_key;
SELECT customer_unify.split('jk', 'jb.people', 'people_bits5', ARRAY['nick'], 'person_id',
                            target_key => 'id', key_index => 'after_copy') > 0 AS planned;
-- under a publication the application's writes go on while the new table has no primary key
SET client_min_messages = error;
CREATE PUBLICATION jk_pub FOR ALL TABLES;
SET client_min_messages = warning;
SELECT customer_unify.start('jk');
SELECT c.relreplident, i.indexrelid::regclass AS identity_index FROM pg_class c
  LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisreplident WHERE c.oid = 'jb.people_bits5'::regclass;
SELECT regress_util.try($$UPDATE jb.people SET nick = 'n1' WHERE id = 1$$) AS update_under_publication;
SELECT regress_util.try($$DELETE FROM jb.people WHERE id = 5000$$) AS delete_under_publication;
INSERT INTO jb.people VALUES (5000, 'p5000@example.com', 'nick5000');
UPDATE jb.people SET nick = 'nick1' WHERE id = 1;
SELECT (SELECT count(*) FROM pg_constraint c WHERE c.conrelid = 'jb.people_bits5'::regclass AND c.contype = 'p') AS primary_keys,
       (SELECT attnotnull FROM pg_attribute WHERE attrelid = 'jb.people_bits5'::regclass AND attname = 'id') AS id_not_null;
SELECT x.index_name, x.relation_tag, x.columns, x.is_unique, x.as_constraint, x.state
  FROM customer_unify.job_index x JOIN customer_unify.migration m ON m.id = x.migration_id WHERE m.name = 'jk';
-- add_index refuses what cannot be attached
SELECT regress_util.try($$SELECT customer_unify.add_index('jk', ARRAY['nick'], true, as_constraint => 'foreign key')$$) AS constraint_unknown;
SELECT regress_util.try($$SELECT customer_unify.add_index('jk', ARRAY['nick'], false, as_constraint => 'unique')$$) AS constraint_not_unique;
SELECT regress_util.try_detail($$SELECT customer_unify.add_index('jk', ARRAY['nick'], true, as_constraint => 'primary key')$$) AS nullable_primary_key;
SELECT regress_util.try($$SELECT customer_unify.add_index('jk', ARRAY['person_id'], true, as_constraint => 'primary key')$$) AS second_planned_primary_key;
-- in the foreground, the copy runs; verify refuses until the job built the key
CALL customer_unify.backfill('jk', batch_size => 2000);
SELECT check_name, expected, actual, ok FROM customer_unify.verify('jk') WHERE check_name LIKE 'index %';
SELECT state FROM customer_unify.migration WHERE name = 'jk';
-- cutover refuses while the key is missing, skip_verify or not
SELECT regress_util.try_detail($$SELECT customer_unify.cutover('jk', skip_verify => true)$$) AS cutover_without_key;
-- a mirrored insert during the copy got its own key from the identity
INSERT INTO jb.people VALUES (6001, 'p6001@example.com', 'late');
-- the migration is backfilled already: launch (until backfilled) only builds the key
SELECT customer_unify.launch('jk');
-- a job nobody throttled runs with the default throttle: batches of about 20 ms, a sleep of half a batch after each
SELECT nice, chunk_ms, max_lag_bytes, max_lock_waits FROM customer_unify.job j
  JOIN customer_unify.migration m ON m.id = j.migration_id WHERE m.name = 'jk';
CALL regress_util.wait_job('jk', $$j.state IN ('finished', 'failed')$$);
SELECT state, migration_state, last_error FROM customer_unify.jobs WHERE name = 'jk';
SELECT relreplident FROM pg_class WHERE oid = 'jb.people_bits5'::regclass;
DROP PUBLICATION jk_pub;
SELECT c.conname, c.contype, i.indisvalid, i.indisprimary, pg_get_indexdef(i.indexrelid)
  FROM pg_constraint c JOIN pg_index i ON i.indexrelid = c.conindid
 WHERE c.conrelid = 'jb.people_bits5'::regclass AND c.contype = 'p';
SELECT x.state, x.built_at IS NOT NULL AS built FROM customer_unify.job_index x JOIN customer_unify.migration m ON m.id = x.migration_id WHERE m.name = 'jk';
SELECT check_name, ok FROM customer_unify.verify('jk') WHERE check_name LIKE 'index %' OR NOT ok;
SELECT count(*) AS rows, count(DISTINCT id) AS own_keys FROM jb.people_bits5;
-- a second primary key is refused
SELECT regress_util.try_detail($$SELECT customer_unify.add_index('jk', ARRAY['person_id'], true, as_constraint => 'primary key')$$) AS second_primary_key;
SELECT customer_unify.rollback('jk');
-- rollback dropped the table, and forgot the index its job was to build
SELECT count(*) AS planned_indexes FROM customer_unify.job_index x JOIN customer_unify.migration m ON m.id = x.migration_id WHERE m.name = 'jk';
DELETE FROM jb.people WHERE id = 6001;

-- 8f. a primary key the DBA made by hand serves the planned one; verify looks
-- at the table, not only at the plan
SELECT customer_unify.split('jk2', 'jb.people', 'people_bits6', ARRAY['nick'], 'person_id',
                            target_key => 'id', key_index => 'after_copy') > 0 AS planned;
SELECT customer_unify.start('jk2');
CALL customer_unify.backfill('jk2', batch_size => 2500);
ALTER TABLE jb.people_bits6 ADD CONSTRAINT bits6_by_hand PRIMARY KEY (id);
SELECT customer_unify.launch('jk2');
CALL regress_util.wait_job('jk2', $$j.state IN ('finished', 'failed')$$);
SELECT state, migration_state, last_error FROM customer_unify.jobs WHERE name = 'jk2';
SELECT check_name, actual, ok FROM customer_unify.verify('jk2') WHERE check_name LIKE 'index %';
SELECT count(*) AS indexes_on_id FROM pg_index i WHERE i.indrelid = 'jb.people_bits6'::regclass AND i.indkey[0] =
       (SELECT attnum FROM pg_attribute WHERE attrelid = 'jb.people_bits6'::regclass AND attname = 'id');
ALTER TABLE jb.people_bits6 DROP CONSTRAINT bits6_by_hand;
SELECT check_name, actual, ok FROM customer_unify.verify('jk2') WHERE check_name LIKE 'index %';
SELECT regress_util.try($$SELECT customer_unify.cutover('jk2')$$) AS cutover_after_drop;
-- an index of the planned name that is not the planned one is refused, not taken for it
SELECT customer_unify.rollback('jk2');
SELECT customer_unify.split('jk3', 'jb.people', 'people_bits7', ARRAY['nick'], 'person_id',
                            target_key => 'id', key_index => 'after_copy') > 0 AS planned;
SELECT customer_unify.start('jk3');
CALL customer_unify.backfill('jk3', batch_size => 2500);
CREATE INDEX people_bits7_pkey ON jb.people_bits7 (nick);
SELECT customer_unify.launch('jk3');
CALL regress_util.wait_job('jk3', $$j.state IN ('finished', 'failed')$$);
SELECT state, last_sqlstate, last_error FROM customer_unify.jobs WHERE name = 'jk3';
DROP INDEX jb.people_bits7_pkey;
SELECT customer_unify.resume('jk3');
CALL regress_util.wait_job('jk3', $$j.state IN ('finished', 'failed')$$);
SELECT state, last_error FROM customer_unify.jobs WHERE name = 'jk3';
SELECT check_name, actual, ok FROM customer_unify.verify('jk3') WHERE check_name LIKE 'index %';
SELECT customer_unify.rollback('jk3');
-- a pause reaches a job whose index build waits for an old transaction:
-- the build is cancelled, its INVALID index dropped, the job paused; resume builds it
SELECT customer_unify.split('jc', 'jb.people', 'people_bits9', ARRAY['nick'], 'person_id',
                            target_key => 'id', key_index => 'after_copy') > 0 AS planned;
SELECT customer_unify.start('jc');
CALL customer_unify.backfill('jc', batch_size => 2500);
SELECT dblink_connect('snap', pg_temp.here()) AS snap;
SELECT dblink_exec('snap', 'BEGIN ISOLATION LEVEL REPEATABLE READ') AS began;
SELECT x FROM dblink('snap', 'SELECT count(*) FROM jb.people') AS t(x bigint);
SELECT customer_unify.launch('jc');
CALL regress_util.wait_job('jc', $$j.phase LIKE 'index %'$$);
SELECT pg_sleep(0.5);
SELECT customer_unify.pause('jc');
CALL regress_util.wait_job('jc', $$j.state IN ('paused', 'failed', 'finished')$$);
SELECT state, last_sqlstate, pid IS NULL AS no_pid FROM customer_unify.jobs WHERE name = 'jc';
SELECT count(*) AS invalid_indexes FROM pg_index i WHERE i.indrelid = 'jb.people_bits9'::regclass AND NOT i.indisvalid;
SELECT dblink_exec('snap', 'COMMIT') AS committed;
SELECT dblink_disconnect('snap');
SELECT customer_unify.resume('jc');
CALL regress_util.wait_job('jc', $$j.state IN ('finished', 'failed')$$);
SELECT state, last_error FROM customer_unify.jobs WHERE name = 'jc';
SELECT check_name, actual, ok FROM customer_unify.verify('jc') WHERE check_name LIKE 'index %';
SELECT customer_unify.rollback('jc');

-- the job builds and attaches as the tables' owner: a planner that is a
-- NOINHERIT member of that owner gets the key too
CREATE ROLE regress_job_planner LOGIN NOINHERIT IN ROLE regress_job_owner;
GRANT USAGE ON SCHEMA jb TO regress_job_planner;
SET ROLE regress_job_planner;
SELECT customer_unify.split('jk4', 'jb.people', 'people_bits8', ARRAY['nick'], 'person_id',
                            target_key => 'id', key_index => 'after_copy') > 0 AS planned;
SELECT customer_unify.launch('jk4');
RESET ROLE;
CALL regress_util.wait_job('jk4', $$j.state IN ('finished', 'failed')$$);
SELECT state, migration_state, role, last_error FROM customer_unify.jobs WHERE name = 'jk4';
SELECT check_name, actual, ok FROM customer_unify.verify('jk4') WHERE check_name LIKE 'index %';
SELECT customer_unify.rollback('jk4');
REVOKE USAGE ON SCHEMA jb FROM regress_job_planner;
DROP ROLE regress_job_planner;

-- 9. the worker logs in as the owner: an owner without LOGIN is refused at launch
SET ROLE regress_job_nologin;
CREATE TABLE jb.nl (id int PRIMARY KEY, nick text);
SELECT customer_unify.split('jnl', 'jb.nl', 'nl_bits', ARRAY['nick'], 'nl_id') > 0 AS planned;
SELECT regress_util.try($$SELECT customer_unify.launch('jnl')$$) AS launch_nologin;
SELECT customer_unify.rollback('jnl');
RESET ROLE;

-- 10. the catalog: registered for pg_dump, written only through the API
SELECT c.relname, has_table_privilege('public', c.oid, 'SELECT') AS public_reads,
       has_table_privilege('public', c.oid, 'INSERT') OR has_table_privilege('public', c.oid, 'UPDATE')
       OR has_table_privilege('public', c.oid, 'DELETE') AS public_writes,
       c.oid = ANY (e.extconfig) AS dumped
  FROM pg_class c, pg_extension e
 WHERE e.extname = 'customer_unify' AND c.oid IN ('customer_unify.job'::regclass, 'customer_unify.jobs'::regclass)
 ORDER BY 1;
SELECT p.oid::regprocedure AS function, p.proconfig
  FROM pg_proc p WHERE p.pronamespace = 'customer_unify'::regnamespace
   AND p.proname IN ('launch', 'pause', 'resume', 'cancel', 'set_throttle', '_job_alive')
 ORDER BY p.proname;

DROP SCHEMA jb CASCADE;
DROP PROCEDURE regress_util.wait_job(text, text, boolean);
DO $$ BEGIN
    EXECUTE format('REVOKE CREATE ON DATABASE %I FROM regress_job_owner, regress_job_nologin', current_database());
END $$;
DROP ROLE regress_job_owner, regress_job_other, regress_job_nologin;

-- The engine's caches and memory (1.1): the sync triggers' plans survive
-- invalidations of unrelated relations; repeated CALL backfill does not
-- keep plans or per-batch strings (1.0 kept 11 plans per call).
SET client_min_messages = warning;
CREATE SCHEMA ec;
CREATE TABLE ec.users (id int PRIMARY KEY, email text, nick text);
INSERT INTO ec.users SELECT g, 'e' || g, 'n' || g FROM generate_series(1, 20000) g;
CREATE TABLE ec.unrelated (id int);
SELECT customer_unify.split('ec', 'ec.users', 'user_bits', ARRAY['nick'], 'user_id') > 0 AS planned;
SELECT customer_unify.start('ec');

-- 17a. plans are built once per trigger and kept across unrelated DDL and ANALYZE
UPDATE ec.users SET nick = 'warm' WHERE id = 1;
SELECT builds AS builds_warm FROM customer_unify._plan_cache_stats() \gset
UPDATE ec.users SET nick = 'again' WHERE id = 2;
ANALYZE ec.unrelated;
CREATE TABLE ec.more (id int);
ALTER TABLE ec.unrelated ADD COLUMN v text;
UPDATE ec.users SET nick = 'after unrelated changes' WHERE id = 3;
SELECT builds - :builds_warm AS rebuilt_after_unrelated FROM customer_unify._plan_cache_stats();
-- a change of a table the plans use rebuilds them
ALTER TABLE ec.users ADD COLUMN added text;
UPDATE ec.users SET nick = 'after a change of users' WHERE id = 4;
SELECT builds - :builds_warm > 0 AS rebuilt_after_own_change FROM customer_unify._plan_cache_stats();
SELECT nick FROM ec.user_bits WHERE user_id = 4;

-- 17b. repeated calls of the backfill leave no memory behind in the session
CALL customer_unify.backfill('ec', batch_size => 50, max_batches => 1);
SELECT sum(total_bytes) AS before_bytes, count(*) FILTER (WHERE name = 'CachedPlanSource') AS before_plans
  FROM pg_backend_memory_contexts \gset
CALL customer_unify.backfill('ec', batch_size => 50, max_batches => 1);
CALL customer_unify.backfill('ec', batch_size => 50, max_batches => 1);
CALL customer_unify.backfill('ec', batch_size => 50, max_batches => 1);
CALL customer_unify.backfill('ec', batch_size => 50, max_batches => 1);
CALL customer_unify.backfill('ec', batch_size => 50, max_batches => 1);
CALL customer_unify.backfill('ec', batch_size => 50, max_batches => 1);
CALL customer_unify.backfill('ec', batch_size => 50, max_batches => 1);
CALL customer_unify.backfill('ec', batch_size => 50, max_batches => 1);
CALL customer_unify.backfill('ec', batch_size => 50, max_batches => 1);
CALL customer_unify.backfill('ec', batch_size => 50, max_batches => 1);
CALL customer_unify.backfill('ec', batch_size => 50, max_batches => 1);
CALL customer_unify.backfill('ec', batch_size => 50, max_batches => 1);
CALL customer_unify.backfill('ec', batch_size => 50, max_batches => 1);
CALL customer_unify.backfill('ec', batch_size => 50, max_batches => 1);
CALL customer_unify.backfill('ec', batch_size => 50, max_batches => 1);
CALL customer_unify.backfill('ec', batch_size => 50, max_batches => 1);
CALL customer_unify.backfill('ec', batch_size => 50, max_batches => 1);
CALL customer_unify.backfill('ec', batch_size => 50, max_batches => 1);
CALL customer_unify.backfill('ec', batch_size => 50, max_batches => 1);
CALL customer_unify.backfill('ec', batch_size => 50, max_batches => 1);
-- twenty calls: 1.0 kept 11 prepared plans per call in CacheMemoryContext
SELECT sum(total_bytes) - :before_bytes < 256 * 1024 AS no_growth,
       count(*) FILTER (WHERE name = 'CachedPlanSource') - :before_plans < 5 AS no_plans_kept
  FROM pg_backend_memory_contexts;
-- one long call copies thousands of batches in flat memory
CALL customer_unify.backfill('ec', batch_size => 5);
SELECT sum(total_bytes) - :before_bytes < 1024 * 1024 AS flat_after_4000_batches FROM pg_backend_memory_contexts;
SELECT state FROM customer_unify.migration WHERE name = 'ec';
SELECT count(*) AS failing FROM customer_unify.verify('ec') WHERE NOT ok;
SELECT customer_unify.rollback('ec');

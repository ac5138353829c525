#!/usr/bin/env bash
# test/bench/merge.sh - the merge against the best hand-written offline SQL,
# measured in one run on one server (issue 7's speed figure).
#
#   PGHOST=/tmp PGPORT=5432 PGUSER=postgres bash test/bench/merge.sh [N ...]
#
# For each N (default 20000 80000): core.customers N rows (uuid keys, the
# surviving table), a legacy table of N rows (integer keys; 30% of them people
# core has too, emails in other case and with spaces), an AI table of N/2 rows
# (varchar(36) keys; 10% of everyone in all three), and 2N legacy orders.
#   offline: one INSERT ... SELECT DISTINCT ON (normalized email) into a copy
#            of the target plus one UPDATE ... FROM per reference, the job done
#            by hand with the application stopped;
#   online:  customer_unify.merge + start + backfill to the backfilled state
#            (matching, crosswalk, merged rows, references re-pointed), while
#            nothing else runs.
# Prints seconds and rows/s of each and the ratio online/offline (throughput).
# Creates and drops the database cu_bench_merge.  Asserts nothing.
set -u -o pipefail
SIZES=("$@"); [ ${#SIZES[@]} -gt 0 ] || SIZES=(20000 80000)
P="psql -X -q -v ON_ERROR_STOP=1 -d cu_bench_merge"
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS cu_bench_merge" -c "CREATE DATABASE cu_bench_merge" >/dev/null
$P -c "CREATE EXTENSION customer_unify" >/dev/null
now() { date +%s.%N; }
printf '%-8s %-10s %10s %12s %10s %12s %8s\n' N rows offline_s offline_rows/s online_s online_rows/s ratio
for n in "${SIZES[@]}"; do
    $P <<SQL >/dev/null
DROP SCHEMA IF EXISTS bc, bl, mb_merge, mb_compat, mb_archive CASCADE;
CREATE SCHEMA bc; CREATE SCHEMA bl;
SET jit = off;
CREATE TABLE bc.customers (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), first_name text, last_name text, email text, phone text);
CREATE TABLE bl.customers (id int PRIMARY KEY, first_name text, last_name text, email text, phone text);
CREATE TABLE bl.ai (id varchar(36) PRIMARY KEY, email text, name text);
CREATE TABLE bl.orders (id bigint PRIMARY KEY, customer_id int REFERENCES bl.customers, total numeric);
CREATE INDEX ON bl.orders (customer_id);
INSERT INTO bc.customers (first_name, last_name, email, phone)
SELECT 'F'||g, 'L'||g, 'p'||g||'@x.com', '+1415'||lpad(g::text, 7, '0') FROM generate_series(1, $n) g;
INSERT INTO bl.customers SELECT g - ($n * 7 / 10), 'F'||g, 'L'||g, CASE WHEN g % 2 = 0 THEN upper('p'||g||'@x.com') ELSE ' p'||g||'@X.com ' END, NULL
  FROM generate_series($n * 7 / 10 + 1, $n * 17 / 10) g;
INSERT INTO bl.ai SELECT 'a'||g, 'p'||g||'@X.COM', 'F'||g||' L'||g FROM generate_series($n * 16 / 10 + 1, $n * 21 / 10) g;
INSERT INTO bl.orders SELECT g, 1 + g % $n, g % 97 FROM generate_series(1, 2 * $n) g;
CREATE TABLE bc.customers_offline (LIKE bc.customers INCLUDING ALL);
INSERT INTO bc.customers_offline SELECT * FROM bc.customers;
ANALYZE;
SQL
    rows=$(( n + n + n / 2 ))
    t0=$(now)
    $P <<SQL >/dev/null
SET jit = off;
BEGIN;
CREATE TEMP TABLE person AS
SELECT DISTINCT ON (k) k, src, id, first_name, last_name
  FROM (SELECT lower(btrim(email)) AS k, 0 AS src, id::text AS id, first_name, last_name FROM bc.customers
        UNION ALL SELECT lower(btrim(email)), 1, id::text, first_name, last_name FROM bl.customers
        UNION ALL SELECT lower(email), 2, id, split_part(name, ' ', 1), split_part(name, ' ', 2) FROM bl.ai) x
 ORDER BY k, src, id;
INSERT INTO bc.customers_offline (first_name, last_name, email)
SELECT first_name, last_name, k FROM person WHERE src > 0;
ALTER TABLE bl.orders ADD COLUMN customer_uuid uuid;
UPDATE bl.orders o SET customer_uuid = t.id FROM bl.customers c, bc.customers_offline t
 WHERE c.id = o.customer_id AND lower(btrim(t.email)) = lower(btrim(c.email));
ROLLBACK;
SQL
    t1=$(now)
    $P <<SQL >/dev/null
SELECT customer_unify.merge('mb', '{"target": {"table": "bc.customers"},
  "sources": [{"table": "bl.customers", "tag": "legacy", "columns": {"first_name": "first_name", "last_name": "last_name", "email": "lower(btrim(email))"}},
              {"table": "bl.ai", "tag": "ai", "columns": {"first_name": "split_part(name, '' '', 1)", "last_name": "split_part(name, '' '', 2)", "email": "lower(email)"}}],
  "match": [{"rule": "email", "key": "lower(btrim(email))"}]}'::jsonb);
SELECT customer_unify.start('mb');
CALL customer_unify.backfill('mb', batch_size => 10000);
SQL
    t2=$(now)
    state=$($P -Atc "SELECT state FROM customer_unify.migration WHERE name = 'mb'")
    $P -c "SELECT customer_unify.rollback('mb')" -c "DELETE FROM customer_unify.step_log" >/dev/null 2>&1
    $P -c "DELETE FROM customer_unify.migration WHERE name = 'mb'" >/dev/null 2>&1 || true
    awk -v n="$n" -v r="$rows" -v a="$t0" -v b="$t1" -v c="$t2" -v st="$state" 'BEGIN {
        off = b - a; on = c - b;
        printf "%-8d %-10d %10.2f %12.0f %10.2f %12.0f %8.3f  (%s)\n", n, r, off, r / off, on, r / on, off / on, st }'
done
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS cu_bench_merge" >/dev/null

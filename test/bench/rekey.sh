#!/usr/bin/env bash
# test/bench/rekey.sh - the rekey (issue 8's speed figure) against seed
# 000's offline copy-and-swap, measured in one run on one server.
#
#   PGHOST=/tmp PGPORT=5432 PGUSER=postgres bash test/bench/rekey.sh [CHILDREN [ORDERS_PER_CHILD]]
#
# users_user, users_customer (CHILDREN rows, default 1000000; user_ptr_id PK
# -> users_user) and shop_order (ORDERS_PER_CHILD per child, default 2, FK ->
# users_customer.user_ptr_id). Two copies of that data in two databases:
#   offline  the seed's script: CREATE TABLE new; INSERT ... SELECT; drop
#            the old foreign key; DROP TABLE old; RENAME; primary key, unique
#            link, foreign keys re-created (every statement with the
#            application stopped)
#   rekey    customer_unify.rekey: start, backfill, launch (the unique
#            indexes, CREATE INDEX CONCURRENTLY; verify), cutover, finalize,
#            with a writer inserting and updating customers the whole time
# Prints both end-to-end times, the rekey's throughput as a ratio of the
# offline one (bar >= 0.6x), the rows the writer wrote during the rekey,
# and the longest step the rekey ran under ACCESS EXCLUSIVE on the child
# and on the referencing table (bar < 100 ms; from its step log). Asserts
# nothing. Creates and drops the databases cu_bench_rekey_off and cu_bench_rekey_on.
set -u -o pipefail
N=${1:-1000000}; K=${2:-2}
now_ms() { date +%s%3N; }
mk() { # db
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
    psql -X -q -v ON_ERROR_STOP=1 -d "$1" <<SQL >/dev/null
SET client_min_messages = warning;
CREATE EXTENSION customer_unify;
CREATE TABLE users_user (id bigserial PRIMARY KEY, username text NOT NULL UNIQUE);
CREATE TABLE users_customer (user_ptr_id bigint PRIMARY KEY REFERENCES users_user (id) DEFERRABLE INITIALLY DEFERRED,
                             phone_number varchar(128), full_name varchar(255) NOT NULL DEFAULT '', is_verified boolean NOT NULL DEFAULT false);
CREATE TABLE shop_order (id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES users_customer (user_ptr_id) DEFERRABLE INITIALLY DEFERRED,
                         total numeric NOT NULL);
CREATE INDEX ON shop_order (customer_id);
INSERT INTO users_user (username) SELECT 'u' || g FROM generate_series(1, $N + 100000) g;
INSERT INTO users_customer SELECT g, '+1415' || lpad(g::text, 7, '0'), 'Name ' || g, g % 2 = 0 FROM generate_series(1, $N) g;
INSERT INTO shop_order (customer_id, total) SELECT c, k FROM generate_series(1, $N) c, generate_series(1, $K) k;
VACUUM ANALYZE;
CHECKPOINT;
SQL
}
mk cu_bench_rekey_off
mk cu_bench_rekey_on

# ---------------------------------------------------------------- offline
t0=$(now_ms)
psql -X -q -v ON_ERROR_STOP=1 -d cu_bench_rekey_off <<'SQL' >/dev/null
BEGIN;
CREATE TABLE users_customer_new (id bigint NOT NULL, user_id bigint NOT NULL, phone_number varchar(128),
                                 full_name varchar(255) NOT NULL DEFAULT '', is_verified boolean NOT NULL DEFAULT false);
INSERT INTO users_customer_new SELECT user_ptr_id, user_ptr_id, phone_number, full_name, is_verified FROM users_customer;
ALTER TABLE shop_order DROP CONSTRAINT shop_order_customer_id_fkey;
DROP TABLE users_customer;
ALTER TABLE users_customer_new RENAME TO users_customer;
ALTER TABLE users_customer ADD PRIMARY KEY (id), ADD UNIQUE (user_id),
      ADD FOREIGN KEY (user_id) REFERENCES users_user (id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE shop_order ADD FOREIGN KEY (customer_id) REFERENCES users_customer (id) DEFERRABLE INITIALLY DEFERRED;
COMMIT;
SQL
t_off=$(( $(now_ms) - t0 ))

# ---------------------------------------------------------------- online, with a writer
P="psql -X -q -At -v ON_ERROR_STOP=1 -d cu_bench_rekey_on"
stop=$(mktemp); rm -f "$stop"
writes=$(mktemp)
(
    i=0
    while [ ! -e "$stop" ]; do
        i=$((i + 1))
        u=$((N + i))
        psql -X -q -d cu_bench_rekey_on -c "INSERT INTO users_customer (user_ptr_id, full_name) VALUES ($u, 'w')" \
             -c "UPDATE users_customer SET full_name = 'w$i' WHERE user_ptr_id = $(( (i * 7919) % N + 1 ))" >/dev/null 2>&1 && echo ok >> "$writes"
    done
) &
writer=$!
t0=$(now_ms)
$P -c "SELECT customer_unify.rekey('rk', 'users_customer')" -c "SELECT customer_unify.start('rk')" >/dev/null
$P -c "SET client_min_messages = warning" -c "CALL customer_unify.backfill('rk', batch_size => 10000)" >/dev/null
$P -c "SELECT customer_unify.launch('rk', until => 'verified', batch_size => 10000)" >/dev/null
until [ "$($P -c "SELECT state IN ('finished', 'failed') FROM customer_unify.jobs WHERE name = 'rk'")" = t ]; do sleep 0.2; done
$P -c "SELECT customer_unify.cutover('rk')" -c "SELECT customer_unify.finalize('rk')" >/dev/null
t_on=$(( $(now_ms) - t0 ))
touch "$stop"; wait "$writer" 2>/dev/null
nw=$(wc -l < "$writes"); rm -f "$writes" "$stop"
state=$($P -c "SELECT state FROM customer_unify.migration WHERE name = 'rk'")
ax=$($P -c "SELECT coalesce(round(max(l.duration_ms)::numeric, 1), 0) FROM customer_unify.step_log l JOIN customer_unify.migration m ON m.id = l.migration_id
            WHERE m.name = 'rk' AND l.lock_mode = 'ACCESS EXCLUSIVE' AND l.statement NOT LIKE 'LOCK TABLE%'")
axlock=$($P -c "SELECT coalesce(round(sum(l.duration_ms)::numeric, 1), 0) FROM customer_unify.step_log l JOIN customer_unify.migration m ON m.id = l.migration_id
            WHERE m.name = 'rk' AND l.phase = 'finalize' AND l.seq >= (SELECT min(x.seq) FROM customer_unify.step_log x WHERE x.migration_id = m.id
                  AND x.phase = 'finalize' AND x.statement LIKE 'LOCK TABLE ONLY % IN ACCESS EXCLUSIVE MODE' AND x.outcome = 'ok')
              AND l.outcome = 'ok'")
phases=$($P -c "SELECT string_agg(x.phase || ' ' || x.ms || ' ms', ', ' ORDER BY x.first) FROM (
            SELECT l.phase, round(sum(l.duration_ms)) AS ms, min(l.id) AS first FROM customer_unify.step_log l
              JOIN customer_unify.migration m ON m.id = l.migration_id WHERE m.name = 'rk' AND l.outcome = 'ok' GROUP BY l.phase
            UNION ALL
            SELECT 'backfill (copy)', round(extract(epoch FROM max(b.finished_at) - min(b.started_at)) * 1000), 0
              FROM customer_unify.backfill_state b JOIN customer_unify.migration m ON m.id = b.migration_id WHERE m.name = 'rk'
            UNION ALL
            SELECT 'job (indexes, verify)', round(extract(epoch FROM j.finished_at - j.started_at) * 1000), 1
              FROM customer_unify.jobs j WHERE j.name = 'rk') x")
awk -v n="$N" -v k="$K" -v off="$t_off" -v on="$t_on" -v nw="$nw" -v st="$state" -v ax="$ax" -v axl="$axlock" -v ph="$phases" 'BEGIN {
    printf "rekey of %d children with %d referencing rows\n", n, n * k
    printf "%-44s %10d ms\n", "offline copy-and-swap (application stopped)", off
    printf "%-44s %10d ms  (state %s; %d writer transactions meanwhile)\n", "customer_unify.rekey end to end, online", on, st, nw
    printf "rekey throughput / offline: %.2fx (bar >= 0.6x)\n", off / on
    printf "where the time goes: %s\n", ph
    printf "longest step under ACCESS EXCLUSIVE: %.1f ms; finalize holds it for %.1f ms of steps (bar < 100 ms)\n", ax, axl
}'
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS cu_bench_rekey_off" -c "DROP DATABASE IF EXISTS cu_bench_rekey_on" >/dev/null

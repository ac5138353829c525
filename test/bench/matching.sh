#!/usr/bin/env bash
# test/bench/matching.sh - the matcher primitives' speed (src/match.c).
#
#   PGHOST=/tmp PGPORT=5432 PGUSER=postgres bash test/bench/matching.sh [--quick]
#
# Needs a running PostgreSQL 15 server with customer_unify installed (make
# install) and a role that may create a database; pg_trgm is used when the
# server has it.  Creates the database cu_bench_matching (or $BENCH_DB),
# measures, drops it.  A measurement, not a test: it asserts nothing, and
# prints the bars beside the figures.
#
#  1. customer_unify.clusters() on 1M and 4M random edges over as many node
#     ids (a giant component, as a union-find's worst), best of 3: seconds,
#     and (t4M / t1M) / 4, which is about 1 when the cost grows as n (log n
#     or less) and about 4 or more when it grows as n^2;
#  2. Jaro-Winkler rows per second on pairs of name-like strings (6 to 14
#     characters, the second a typo'd copy of the first), best of 3: the C
#     function, the same definition in PL/pgSQL (below), pg_trgm's
#     similarity(), and a scan that computes nothing, for scale.  Bar: C at
#     least 5 times PL/pgSQL.  The PL/pgSQL function's results are compared
#     with the C function's on every row it scores.
#
# The session runs with max_parallel_workers_per_gather = 0 and jit = off
# (one core, no compilation: the functions are compared, not the planner),
# work_mem = 256MB (clusters' result stays in memory).
set -euo pipefail

QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
DB=${BENCH_DB:-cu_bench_matching}
if [ $QUICK = 1 ]; then
    E1=100000; E4=400000; JW_ROWS=100000; PL_ROWS=10000
else
    E1=1000000; E4=4000000; JW_ROWS=1000000; PL_ROWS=50000
fi

psql_admin() { psql -X -q -v ON_ERROR_STOP=1 -d postgres "$@"; }
psql_db() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

psql_admin -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
trap 'psql_admin -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true' EXIT

psql_db <<'SQL'
CREATE EXTENSION customer_unify;
DO $$ BEGIN CREATE EXTENSION pg_trgm; EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'pg_trgm not available: %', SQLERRM; END $$;

-- best of reps wall-clock seconds of a statement
CREATE FUNCTION bench(sql text, reps int DEFAULT 3) RETURNS float8 LANGUAGE plpgsql AS $f$
DECLARE t0 timestamptz; best float8; d float8;
BEGIN
    FOR i IN 1..reps LOOP
        t0 := clock_timestamp();
        EXECUTE sql;
        d := extract(epoch FROM clock_timestamp() - t0);
        IF best IS NULL OR d < best THEN best := d; END IF;
    END LOOP;
    RETURN best;
END $f$;

-- Jaro-Winkler in PL/pgSQL, the definition of customer_unify.jaro_winkler:
-- code points, window floor(max(len)/2) - 1, t = half the out-of-order
-- matches (integer division), prefix of at most 4, boost when jaro > 0.7.
CREATE FUNCTION plpgsql_jaro_winkler(s1 text, s2 text) RETURNS float8
    LANGUAGE plpgsql IMMUTABLE STRICT AS $f$
DECLARE
    a text[] := string_to_array(s1, NULL);
    b text[] := string_to_array(s2, NULL);
    l1 int := coalesce(array_length(a, 1), 0);
    l2 int := coalesce(array_length(b, 1), 0);
    w int; fa bool[]; fb bool[];
    m int := 0; half int := 0; k int := 1; p int := 0;
    jaro float8;
BEGIN
    IF l1 = 0 AND l2 = 0 THEN RETURN 1; END IF;
    IF l1 = 0 OR l2 = 0 THEN RETURN 0; END IF;
    w := greatest(greatest(l1, l2) / 2 - 1, 0);
    fa := array_fill(false, ARRAY[l1]);
    fb := array_fill(false, ARRAY[l2]);
    FOR i IN 1..l1 LOOP
        FOR j IN greatest(1, i - w)..least(l2, i + w) LOOP
            IF NOT fb[j] AND a[i] = b[j] THEN
                fa[i] := true; fb[j] := true; m := m + 1;
                EXIT;
            END IF;
        END LOOP;
    END LOOP;
    IF m = 0 THEN RETURN 0; END IF;
    FOR i IN 1..l1 LOOP
        IF fa[i] THEN
            WHILE NOT fb[k] LOOP k := k + 1; END LOOP;
            IF a[i] <> b[k] THEN half := half + 1; END IF;
            k := k + 1;
        END IF;
    END LOOP;
    jaro := (m::float8 / l1 + m::float8 / l2 + (m - half / 2)::float8 / m) / 3;
    IF jaro > 0.7 THEN
        WHILE p < least(4, l1, l2) AND a[p + 1] = b[p + 1] LOOP p := p + 1; END LOOP;
        jaro := jaro + p * 0.1 * (1 - jaro);
    END IF;
    RETURN jaro;
END $f$;
SQL

echo "customer_unify matching benchmark  $(date -u +%Y-%m-%dT%H:%M:%SZ)  $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
psql_db -At -c "SELECT 'server: ' || version()"
echo

# ---------------------------------------------------------------- clusters
psql_db -v e1=$E1 -v e4=$E4 <<'SQL'
SET max_parallel_workers_per_gather = 0; SET jit = off; SET work_mem = '256MB';
-- n edges (x, y), x and y pseudo-random node ids in 1..n
CREATE TABLE edges (n int PRIMARY KEY, a bigint[], b bigint[]);
INSERT INTO edges
SELECT n, array_agg(1 + (abs(hashint8(i)) % n)), array_agg(1 + (abs(hashint8(i + 1000000000)) % n))
  FROM (VALUES (:e1), (:e4)) v(n), generate_series(1, n) i GROUP BY n;
CREATE TABLE cluster_result AS
SELECT e.n AS edges, s.nodes, s.clusters, s.largest,
       bench(format('SELECT count(*) FROM edges e, customer_unify.clusters(e.a, e.b) WHERE e.n = %s', e.n)) AS seconds
  FROM edges e,
       LATERAL (SELECT count(*) AS nodes, count(DISTINCT cluster) AS clusters, max(size) AS largest
                  FROM customer_unify.clusters(e.a, e.b)) s;
\pset footer off
\echo '1. clusters(): random edges over as many node ids, best of 3 (array detoast + union-find + result tuplestore)'
SELECT edges, nodes, clusters, largest, round(seconds::numeric, 3) AS seconds,
       round((edges / seconds)::numeric) AS edges_per_s
  FROM cluster_result ORDER BY edges;
SELECT round(((SELECT seconds FROM cluster_result WHERE edges = :e4)
              / (SELECT seconds FROM cluster_result WHERE edges = :e1) / (:e4 / :e1))::numeric, 2)
           AS "(t_big / t_small) / (big / small)",
       'about 1: linear; n log n or better when close to 1' AS reading;
SQL

# ---------------------------------------------------------- Jaro-Winkler
psql_db -v rows=$JW_ROWS -v pl_rows=$PL_ROWS <<'SQL'
SET max_parallel_workers_per_gather = 0; SET jit = off;
-- name-like pairs: a of 6..14 letters; b = a with two neighbours swapped
-- and one letter replaced (positions pseudo-random)
CREATE TABLE pairs AS
SELECT i, a, overlay(overlay(a PLACING substr(a, p + 1, 1) || substr(a, p, 1) FROM p FOR 2)
                     PLACING chr(97 + (abs(hashint4(i + 7)) % 26)) FROM q FOR 1) AS b
  FROM (SELECT i, a, 1 + abs(hashint4(i + 1)) % (length(a) - 1) AS p, 1 + abs(hashint4(i + 2)) % length(a) AS q
          FROM (SELECT i, translate(substr(md5(i::text) || md5((i + 1)::text), 1, 6 + abs(hashint4(i)) % 9),
                                    '0123456789', 'aeiouyrstn') AS a
                  FROM generate_series(1, :rows) i) s) t;
ANALYZE pairs;
CREATE TABLE jw_result (what text, rows bigint, seconds float8);
INSERT INTO jw_result SELECT 'scan only (sum of lengths)', :rows,
    bench(format('SELECT sum(length(a) + length(b)) FROM pairs WHERE i <= %s', :rows));
INSERT INTO jw_result SELECT 'C customer_unify.jaro_winkler', :rows,
    bench(format('SELECT sum(customer_unify.jaro_winkler(a, b)) FROM pairs WHERE i <= %s', :rows));
INSERT INTO jw_result SELECT 'PL/pgSQL jaro_winkler', :pl_rows,
    bench(format('SELECT sum(plpgsql_jaro_winkler(a, b)) FROM pairs WHERE i <= %s', :pl_rows));
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        INSERT INTO jw_result SELECT 'pg_trgm similarity', count(*),
            bench('SELECT sum(similarity(a, b)) FROM pairs') FROM pairs;
    END IF;
END $$;
\pset footer off
\echo
\echo '2. Jaro-Winkler on name-like pairs, best of 3, one core'
SELECT what, rows, round(seconds::numeric, 3) AS seconds, round((rows / seconds)::numeric) AS rows_per_s
  FROM jw_result ORDER BY rows / seconds DESC;
SELECT round(((SELECT rows / seconds FROM jw_result WHERE what LIKE 'C %')
              / (SELECT rows / seconds FROM jw_result WHERE what LIKE 'PL/pgSQL%'))::numeric, 1) AS "C / PL/pgSQL",
       ((SELECT rows / seconds FROM jw_result WHERE what LIKE 'C %')
              >= 5 * (SELECT rows / seconds FROM jw_result WHERE what LIKE 'PL/pgSQL%')) AS "bar C >= 5x",
       round(((SELECT rows / seconds FROM jw_result WHERE what LIKE 'C %')
              / (SELECT rows / seconds FROM jw_result WHERE what LIKE 'pg_trgm%'))::numeric, 1) AS "C / pg_trgm";
SELECT count(*) AS pairs_compared,
       count(*) FILTER (WHERE abs(customer_unify.jaro_winkler(a, b) - plpgsql_jaro_winkler(a, b)) > 1e-12) AS plpgsql_disagrees,
       round(avg(customer_unify.jaro_winkler(a, b))::numeric, 4) AS mean_jw
  FROM pairs WHERE i <= :pl_rows;
SQL

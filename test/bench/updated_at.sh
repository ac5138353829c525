#!/usr/bin/env bash
# test/bench/updated_at.sh - the table kit's updated_at trigger (C) against no
# trigger, contrib's moddatetime (C, always overwrites) and the usual
# PL/pgSQL trigger (NEW.updated_at := now()), measured in one run on one
# server (issue 10's first speed figure).
#
#   PGHOST=/tmp PGPORT=5432 PGUSER=postgres bash test/bench/updated_at.sh [ROWS [REPS]]
#
# A customers table of ROWS rows (default 200000; 8 columns). Each variant
# runs REPS times (default 3; best kept) an UPDATE of one column of every
# row, in one transaction, then a VACUUM. Prints ms per variant, the
# overhead over no trigger, and the C trigger's overhead as a share of
# PL/pgSQL's (bar <= 0.5). Creates and drops the database
# cu_bench_updated_at. Asserts nothing.
set -u -o pipefail
ROWS=${1:-200000}; REPS=${2:-3}
P="psql -X -q -At -v ON_ERROR_STOP=1 -d cu_bench_updated_at"
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS cu_bench_updated_at" -c "CREATE DATABASE cu_bench_updated_at" >/dev/null
$P -c "CREATE EXTENSION customer_unify" -c "CREATE EXTENSION moddatetime" >/dev/null
$P <<SQL >/dev/null
SET client_min_messages = warning;
CREATE TABLE public.customers (id bigint PRIMARY KEY, name text, email text, phone text, city text,
                               score int NOT NULL DEFAULT 0, created_at timestamptz NOT NULL DEFAULT now(),
                               updated_at timestamptz NOT NULL DEFAULT now());
INSERT INTO public.customers (id, name, email, phone, city)
SELECT g, 'Name ' || g, 'user' || g || '@example.com', '+1415' || lpad(g::text, 7, '0'), 'City ' || (g % 100)
  FROM generate_series(1, $ROWS) g;
CREATE FUNCTION public.plpgsql_touch() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN NEW.updated_at := now(); RETURN NEW; END \$\$;
VACUUM ANALYZE public.customers;
SQL
best() { # label: runs the UPDATE REPS times, prints the best ms
    local b="" ms i
    for i in $(seq "$REPS"); do
        ms=$($P -c "\\timing on" -c "UPDATE public.customers SET score = score + 1" 2>&1 | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
        $P -c "VACUUM public.customers" >/dev/null
        if [ -z "$b" ] || awk -v a="$ms" -v b="$b" 'BEGIN{exit !(a < b)}'; then b=$ms; fi
    done
    echo "$b"
}
none=$(best)
$P -c "CREATE TRIGGER t BEFORE UPDATE ON public.customers FOR EACH ROW EXECUTE FUNCTION moddatetime(updated_at)" >/dev/null
moddt=$(best); $P -c "DROP TRIGGER t ON public.customers" >/dev/null
$P -c "CREATE TRIGGER t BEFORE UPDATE ON public.customers FOR EACH ROW EXECUTE FUNCTION public.plpgsql_touch()" >/dev/null
plpg=$(best); $P -c "DROP TRIGGER t ON public.customers" >/dev/null
$P -c "SELECT customer_unify.updated_at('bench_touch', 'public.customers', created_column => 'created_at')" \
   -c "SELECT customer_unify.start('bench_touch')" >/dev/null
kit=$(best)
$P -c "SELECT customer_unify.rollback('bench_touch')" >/dev/null
awk -v n="$ROWS" -v none="$none" -v m="$moddt" -v p="$plpg" -v k="$kit" 'BEGIN {
    printf "%-34s %10s %12s\n", "UPDATE of " n " rows", "ms", "overhead_ms"
    printf "%-34s %10.1f %12s\n", "no trigger", none, "-"
    printf "%-34s %10.1f %12.1f\n", "contrib moddatetime (C)", m, m - none
    printf "%-34s %10.1f %12.1f\n", "PL/pgSQL NEW.updated_at := now()", p, p - none
    printf "%-34s %10.1f %12.1f\n", "customer_unify updated_at (C)", k, k - none
    if (p - none > 0) printf "kit overhead / PL/pgSQL overhead: %.3f (bar <= 0.5); kit / moddatetime overhead: %.3f\n", (k - none) / (p - none), (m - none > 0 ? (k - none) / (m - none) : 0)
}'
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS cu_bench_updated_at" >/dev/null

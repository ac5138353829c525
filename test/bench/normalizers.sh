#!/usr/bin/env bash
# test/bench/normalizers.sh - throughput of the C normalizers (src/normalize.c,
# src/phone.cpp) against the same rules in PL/pgSQL and against lower(btrim(x)).
#
#   PGHOST=/tmp PGPORT=5432 bash test/bench/normalizers.sh [--rows N] [--reps N] [--keep]
#
# Needs a running server (PGHOST, PGPORT, PGUSER as for psql; a role that may
# CREATE DATABASE) where the extension is installed (make install).  Creates
# its own UTF8 database (cu_bench_normalizers), generates N rows (default
# 1,000,000) of e-mail addresses, phone numbers and names, and times
#   SELECT count(f(x)) FROM data
# for each function in three forms, best of --reps runs (default 3), one
# backend, no JIT, no parallel workers:
#   C         customer_unify.normalize_email / normalize_phone(x, 'US') / split_name
#   PL/pgSQL  the same rule written in PL/pgSQL below (approximations where a
#             library does the work: no IDNA for e-mail domains, a digits-only
#             and country-prefix rule instead of libphonenumber)
#   builtin   lower(btrim(x)), the cheapest thing one could index instead
# and prints rows/s and the ratio C / PL/pgSQL (the bar: C >= 5x faster).
# It measures; it asserts nothing, and exits 0 whenever it could run.
set -u -o pipefail
exec </dev/null

ROWS=1000000
REPS=3
KEEP=0
while [ $# -gt 0 ]; do
    case $1 in
        --rows) ROWS=$2; shift 2 ;;
        --reps) REPS=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done
case $ROWS$REPS in *[!0-9]*) echo "--rows and --reps take positive integers" >&2; exit 2 ;; esac

PSQL=${PSQL:-psql}
command -v "$PSQL" >/dev/null 2>&1 || PSQL=/usr/lib/postgresql/15/bin/psql
DB=cu_bench_normalizers
q() { "$PSQL" -X -q -v ON_ERROR_STOP=1 "$@"; }

q -d "${PGDATABASE:-postgres}" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB" \
  -c "CREATE DATABASE $DB TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'" || exit 1
cleanup() {
    [ "$KEEP" = 1 ] || q -d "${PGDATABASE:-postgres}" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
}
trap cleanup EXIT

echo "==> $ROWS rows, best of $REPS runs, server $(q -d $DB -Atc 'SHOW server_version') on ${PGHOST:-local}:${PGPORT:-5432}"
q -d "$DB" -v rows="$ROWS" <<'SQL' || exit 1
SET client_min_messages = warning;
CREATE EXTENSION customer_unify;
CREATE SCHEMA bench;

-- the data: a mix of what customer tables hold, valid and not
CREATE UNLOGGED TABLE bench.data AS
SELECT g AS id,
       CASE g % 20
           WHEN 0 THEN format(' User%s@Example.COM ', g)
           WHEN 1 THEN format('müller%s@Bücher.de', g)                 -- IDN domain
           WHEN 2 THEN format('not an address %s', g)
           WHEN 3 THEN format('first.last+%s@GMail.com', g)
           ELSE format('%s.%s%s@%s', (ARRAY['John','Mary','Ana','Zoë'])[1 + g % 4],
                       (ARRAY['Smith','Doe','Pérez','OBrien'])[1 + g % 3], g,
                       (ARRAY['example.com','mail.example.org','corp.example.co.uk'])[1 + g % 3])
       END AS email,
       CASE g % 10
           WHEN 0 THEN format('+1 %s 555 %s', 200 + g % 700, lpad((g % 10000)::text, 4, '0'))
           WHEN 1 THEN format('+44 20 7946 %s', lpad((g % 10000)::text, 4, '0'))
           WHEN 2 THEN format('%s.555.%s', 200 + g % 700, lpad((g % 10000)::text, 4, '0'))
           WHEN 3 THEN 'call me'
           WHEN 4 THEN format('1-%s-555-%s ext. 12', 200 + g % 700, lpad((g % 10000)::text, 4, '0'))
           ELSE format('(%s) 555-%s', 200 + g % 700, lpad((g % 10000)::text, 4, '0'))
       END AS phone,
       CASE g % 8
           WHEN 0 THEN format('Ludwig%s van Beethoven', g)
           WHEN 1 THEN format('Pérez%s, José María', g)
           WHEN 2 THEN format('  Zoë   O''Brien%s ', g)
           WHEN 3 THEN format('Cher%s', g)
           ELSE format('%s %s%s', (ARRAY['James','Mary','Robert','Linda'])[1 + g % 4],
                       (ARRAY['Smith','Johnson','Williams','Brown'])[1 + g % 3], g)
       END AS full_name
  FROM generate_series(1, :rows) g;
VACUUM ANALYZE bench.data;

-- normalize_email's rule in PL/pgSQL (ASCII domains only: no IDNA here)
CREATE FUNCTION bench.plpgsql_normalize_email(x text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    s text := regexp_replace(x, '^\s+|\s+$', '', 'g');
    v_at int;
    v_local text;
    v_domain text;
BEGIN
    IF s = '' OR s ~ '\s' OR length(s) - length(replace(s, '@', '')) <> 1 THEN
        RETURN NULL;
    END IF;
    v_at := strpos(s, '@');
    v_local := substr(s, 1, v_at - 1);
    v_domain := translate(substr(s, v_at + 1), 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz');
    IF v_local = '' OR octet_length(v_local) > 64
       OR v_local !~ '^[-A-Za-z0-9!#$%&''*+/=?^_`{|}~\u0080-\U0010ffff]+(\.[-A-Za-z0-9!#$%&''*+/=?^_`{|}~\u0080-\U0010ffff]+)*$' THEN
        RETURN NULL;
    END IF;
    IF octet_length(v_domain) > 253
       OR v_domain !~ '^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'
       OR v_domain ~ '\.[0-9]+$' THEN
        RETURN NULL;
    END IF;
    RETURN translate(v_local, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') || '@' || v_domain;
END
$$;

-- normalize_phone approximated: extension dropped, digits only, the
-- default region's country code (or the one after + / 00), a trunk 0 dropped
CREATE FUNCTION bench.plpgsql_normalize_phone(x text, region text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    s text := regexp_replace(btrim(x), '\s*(ext\.?|x|#)\s*[0-9]+$', '', 'i');
    d text := regexp_replace(s, '[^0-9]', '', 'g');
    cc text := CASE upper(region) WHEN 'US' THEN '1' WHEN 'CA' THEN '1' WHEN 'GB' THEN '44'
                                  WHEN 'DE' THEN '49' WHEN 'AU' THEN '61' WHEN 'FR' THEN '33' END;
BEGIN
    IF cc IS NULL THEN
        RAISE EXCEPTION 'invalid default region "%"', region USING ERRCODE = '22023';
    END IF;
    IF d = '' THEN
        RETURN NULL;
    ELSIF left(s, 1) = '+' THEN
        NULL;                                   -- international form: digits as they are
    ELSIF left(d, 2) = '00' THEN
        d := substr(d, 3);
    ELSIF cc = '1' THEN
        IF length(d) = 11 AND left(d, 1) = '1' THEN NULL; ELSE d := '1' || d; END IF;
    ELSIF left(d, 1) = '0' THEN
        d := cc || substr(d, 2);
    ELSE
        d := cc || d;
    END IF;
    IF length(d) < 8 OR length(d) > 15 OR (left(d, 1) = '1' AND length(d) <> 11) THEN
        RETURN NULL;
    END IF;
    RETURN '+' || d;
END
$$;

-- split_name's rule in PL/pgSQL
CREATE FUNCTION bench.plpgsql_split_name(x text) RETURNS customer_unify.person_name
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    s text := regexp_replace(regexp_replace(x, '^\s+|\s+$', '', 'g'), '\s+', ' ', 'g');
    c int := strpos(s, ',');
    w text[];
    r customer_unify.person_name;
BEGIN
    IF s = '' THEN
        RETURN r;
    END IF;
    IF c > 0 THEN
        r.last_name := nullif(btrim(substr(s, 1, c - 1)), '');
        r.first_name := nullif(btrim(substr(s, c + 1)), '');
        RETURN r;
    END IF;
    w := string_to_array(s, ' ');
    IF cardinality(w) = 1 THEN
        r.first_name := s;
    ELSIF w[1] = ANY (ARRAY['van', 'von', 'de', 'da', 'del', 'der', 'di', 'le', 'la', 'du', 'dos', 'bin', 'al']) THEN
        r.last_name := s;
    ELSE
        r.first_name := w[1];
        r.last_name := array_to_string(w[2:], ' ');
    END IF;
    RETURN r;
END
$$;

-- milliseconds of one statement
CREATE FUNCTION bench.time_ms(sql text) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    EXECUTE sql;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END
$$;
CREATE TABLE bench.result (fn text, variant text, ord int, ms double precision);
SQL

# agreement first: how often the PL/pgSQL rule gives the C key (not a test;
# it says how close the approximations are)
q -d "$DB" <<'SQL'
\echo ==> agreement of the PL/pgSQL rules with the C functions (share of rows with the same key)
SELECT round(avg((customer_unify.normalize_email(email) IS NOT DISTINCT FROM bench.plpgsql_normalize_email(email))::int) * 100, 1) AS email_pct,
       round(avg((customer_unify.normalize_phone(phone, 'US') IS NOT DISTINCT FROM bench.plpgsql_normalize_phone(phone, 'US'))::int) * 100, 1) AS phone_pct,
       round(avg((customer_unify.split_name(full_name) IS NOT DISTINCT FROM bench.plpgsql_split_name(full_name))::int) * 100, 1) AS split_name_pct
  FROM bench.data WHERE id % 100 = 0;
SQL

q -d "$DB" -v reps="$REPS" <<'SQL' || exit 1
SET jit = off;
SET max_parallel_workers_per_gather = 0;
SELECT count(*) FROM bench.data;     -- warm the cache
INSERT INTO bench.result
SELECT c.fn, c.variant, c.ord, min(bench.time_ms(c.sql))
  FROM (VALUES
        ('scan',            'count(x)',     0, 'SELECT count(email) FROM bench.data'),
        ('normalize_email', 'C',            1, 'SELECT count(customer_unify.normalize_email(email)) FROM bench.data'),
        ('normalize_email', 'PL/pgSQL',     2, 'SELECT count(bench.plpgsql_normalize_email(email)) FROM bench.data'),
        ('normalize_email', 'lower(btrim)', 3, 'SELECT count(lower(btrim(email))) FROM bench.data'),
        ('normalize_phone', 'C',            1, 'SELECT count(customer_unify.normalize_phone(phone, ''US'')) FROM bench.data'),
        ('normalize_phone', 'PL/pgSQL',     2, 'SELECT count(bench.plpgsql_normalize_phone(phone, ''US'')) FROM bench.data'),
        ('normalize_phone', 'lower(btrim)', 3, 'SELECT count(lower(btrim(phone))) FROM bench.data'),
        ('split_name',      'C',            1, 'SELECT count(customer_unify.split_name(full_name)) FROM bench.data'),
        ('split_name',      'PL/pgSQL',     2, 'SELECT count(bench.plpgsql_split_name(full_name)) FROM bench.data'),
        ('split_name',      'lower(btrim)', 3, 'SELECT count(lower(btrim(full_name))) FROM bench.data')
       ) c(fn, variant, ord, sql),
       generate_series(1, :reps) rep
 GROUP BY c.fn, c.variant, c.ord;

\echo ==> rows/s (best of the runs; each includes the same scan of the table, shown as 'scan')
SELECT r.fn AS function, r.variant, round(r.ms)::bigint AS ms,
       round(n.rows / (r.ms / 1000))::bigint AS rows_per_s
  FROM bench.result r, (SELECT count(*) AS rows FROM bench.data) n
 ORDER BY r.fn = 'scan' DESC, r.fn, r.ord;

\echo ==> C against PL/pgSQL and against lower(btrim(x)) (time ratios; bar: C >= 5x faster than PL/pgSQL)
SELECT c.fn AS function,
       round((p.ms / c.ms)::numeric, 1) AS plpgsql_over_c,
       round(((p.ms - s.ms) / nullif(c.ms - s.ms, 0))::numeric, 1) AS without_scan,
       round((c.ms / b.ms)::numeric, 1) AS c_over_lower_btrim,
       CASE WHEN p.ms >= 5 * c.ms THEN 'PASS' ELSE 'MISS' END AS bar_5x
  FROM bench.result c
  JOIN bench.result p ON p.fn = c.fn AND p.variant = 'PL/pgSQL'
  JOIN bench.result b ON b.fn = c.fn AND b.variant = 'lower(btrim)'
  CROSS JOIN (SELECT ms FROM bench.result WHERE fn = 'scan') s
 WHERE c.variant = 'C'
 ORDER BY c.fn;
SQL
exit 0

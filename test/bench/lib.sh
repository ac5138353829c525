# test/bench/lib.sh - helpers for the customer_unify benchmark (sourced by test/bench/run).
#
# Nothing in here asserts anything: the benchmark measures and reports.
# Conventions:
#   - every timed statement goes through psql with \timing, so connection set-up
#     is never part of a figure;
#   - every result row goes through `result`, which appends to $CSV;
#   - a figure that cannot be measured (extension missing, an error) records
#     "n/a" with the reason instead of aborting the run.

PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
PSQL="$PG_BINDIR/psql"
PGBENCH="$PG_BINDIR/pgbench"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

now() { printf '%s\n' "$EPOCHREALTIME"; }

# calc EXPR -> number (awk arithmetic; empty when the expression is undefined)
calc() { awk "BEGIN{ v = ($1); printf \"%.6f\n\", v }" 2>/dev/null; }
# fmt VALUE DECIMALS
fmt() { [ -z "$1" ] && { echo "n/a"; return; }; awk -v v="$1" -v d="$2" 'BEGIN{ printf "%.*f\n", d, v }'; }
# safe division: div A B -> A/B or empty
div() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "" || b == "" || b + 0 == 0) print ""; else printf "%.6f\n", a / b }'; }
# min over arguments (ignores empties)
minv() { printf '%s\n' "$@" | awk 'NF{ if (m == "" || $1 + 0 < m + 0) m = $1 } END{ print m }'; }
maxv() { printf '%s\n' "$@" | awk 'NF{ if (m == "" || $1 + 0 > m + 0) m = $1 } END{ print m }'; }

# ------------------------------------------------------------------ cluster
# Creates $WORK/data with initdb (as user postgres when we are root: initdb
# refuses root), private socket directory $WORK, no TCP listener, so several
# clusters (other test tiers) can run side by side on any port.
cluster_create() {
    WORK=$(mktemp -d /tmp/cu_bench.XXXXXX) || die "mktemp failed"
    chmod 755 "$WORK"
    RUNAS=()
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || die "running as root needs an OS user 'postgres' to own the cluster"
        chown postgres "$WORK"
        RUNAS=(runuser -u postgres --)
    fi
    PGPORT_BENCH=${BENCH_PORT:-$((54000 + RANDOM % 1000))}
    log "initdb in $WORK/data (port $PGPORT_BENCH, socket dir $WORK)"
    "${RUNAS[@]}" "$PG_BINDIR/initdb" -D "$WORK/data" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth=trust >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
    cat >>"$WORK/data/postgresql.conf" <<EOF

# ---- customer_unify benchmark: default settings except these ----
shared_buffers = $SHARED_BUFFERS
port = $PGPORT_BENCH
listen_addresses = ''
unix_socket_directories = '$WORK'
log_lock_waits = on
log_line_prefix = '%m [%p] '
EOF
    SERVER_LOG="$WORK/server.log"
    # -c: let a crashing backend leave a core file in the data directory (reported at the end)
    "${RUNAS[@]}" "$PG_BINDIR/pg_ctl" -D "$WORK/data" -l "$SERVER_LOG" -c -w -t 300 start >/dev/null \
        || { cat "$SERVER_LOG" >&2; die "server did not start"; }
    export PGHOST="$WORK" PGPORT="$PGPORT_BENCH" PGUSER=postgres PGDATABASE=postgres
    "$PSQL" -X -q -c "CREATE DATABASE bench" || die "createdb failed"
    export PGDATABASE=bench
}

# After a backend crash the postmaster reinitializes; wait until it accepts connections again.
wait_ready() {
    local i
    for i in $(seq 1 120); do
        "$PG_BINDIR/pg_isready" -q && "$PSQL" -X -q -At -c "SELECT 1" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}
crash_count() { grep -c 'was terminated by signal' "$SERVER_LOG" 2>/dev/null; }
# Backtraces of core files left by crashed backends (needs gdb), into $RAW/crash-backtraces.txt
crash_backtraces() {
    local c
    command -v gdb >/dev/null 2>&1 || return 0
    for c in "$WORK"/data/core*; do
        [ -f "$c" ] || continue
        { echo "=== $c"; gdb -batch -ex bt "$PG_BINDIR/postgres" "$c" 2>/dev/null | grep -E '^#' | head -40; } >>"$RAW/crash-backtraces.txt"
    done
}

cluster_destroy() {
    [ -n "${WORK:-}" ] && [ -d "$WORK/data" ] || return 0
    [ -n "${RAW:-}" ] && [ -f "$SERVER_LOG" ] && cp "$SERVER_LOG" "$RAW/server.log" 2>/dev/null
    [ -n "${RAW:-}" ] && crash_backtraces
    "${RUNAS[@]}" "$PG_BINDIR/pg_ctl" -D "$WORK/data" -m fast -w stop >/dev/null 2>&1
    if [ "${KEEP:-0}" = 1 ]; then
        log "cluster kept in $WORK/data (stopped)"
    else
        rm -rf "$WORK"
    fi
}

# ------------------------------------------------------------------ psql
psql_() { "$PSQL" -X -q -v ON_ERROR_STOP=1 "$@"; }
# sql "SQL" -> unaligned tuples-only output; errors go to stderr and $RAW/errors.log
sql() {
    local out rc
    out=$(psql_ -At -c "$1" 2>&1); rc=$?
    if [ $rc -ne 0 ]; then
        printf -- '--- %s\n%s\n%s\n' "$(date +%T)" "$1" "$out" >>"$RAW/errors.log"
        printf '%s\n' "$out" | grep -E 'ERROR|FATAL' | head -3 >&2
        return $rc
    fi
    [ -n "$out" ] && printf '%s\n' "$out"
    return 0
}
# sql_ms "SQL;[SQL;...]" -> total elapsed ms of the statements (psql \timing),
# each statement in its own transaction unless the text says otherwise.
sql_ms() {
    local out rc
    out=$(printf '\\timing on\n%s\n' "$1" | psql_ -At 2>&1); rc=$?
    if [ $rc -ne 0 ]; then
        printf -- '--- %s\n%s\n%s\n' "$(date +%T)" "$1" "$out" >>"$RAW/errors.log"
        printf '%s\n' "$out" | grep -E 'ERROR|FATAL' | head -3 >&2
        return $rc
    fi
    printf '%s\n' "$out" | awk '/^Time: /{ s += $2 } END{ printf "%.3f\n", s }'
}

# Watched statement: run SQL in its own backend (application_name $1) and
# while it runs sample the backend's memory (/proc/<pid>/status) and/or attach
# perf.  Prints "ms" on stdout; memory peaks land in $2.mem as
# "VmHWM_kB VmRSS_peak_kB RssAnon_peak_kB RssShmem_peak_kB", perf output in $2.perf.txt.
#   watched_sql APPNAME OUTBASE "SQL" [mem] [perf]
watched_sql() {
    local app=$1 base=$2 q=$3; shift 3
    local want_mem=0 want_perf=0 w
    for w in "$@"; do case $w in mem) want_mem=1 ;; perf) want_perf=1 ;; esac; done
    local tfile="$base.timing" pid="" i ppid_psql sampler="" perfpid="" dumper=""
    ( printf '\\timing on\n%s\n' "$q" | PGAPPNAME=$app psql_ -At >"$tfile" 2>&1 ) &
    ppid_psql=$!
    for i in $(seq 1 500); do
        pid=$(psql_ -At -c "SELECT pid FROM pg_stat_activity WHERE application_name = '$app' AND pid <> pg_backend_pid() LIMIT 1" 2>/dev/null)
        [ -n "$pid" ] && break
        kill -0 "$ppid_psql" 2>/dev/null || break
        sleep 0.01
    done
    if [ -n "$pid" ]; then
        if [ $want_mem = 1 ]; then
            mem_sampler "$pid" "$base.mem" &
            sampler=$!
            # every 2 s the backend's memory contexts go to the server log (Grand total lines)
            ( while kill -0 "$ppid_psql" 2>/dev/null; do
                  psql_ -At -c "SELECT pg_log_backend_memory_contexts($pid)" >/dev/null 2>&1
                  sleep 2
              done ) &
            dumper=$!
        fi
        if [ $want_perf = 1 ] && command -v perf >/dev/null 2>&1; then
            perf record -q -F 499 -g -p "$pid" -o "$base.perf.data" >/dev/null 2>"$base.perf.err" &
            perfpid=$!
        fi
    fi
    wait "$ppid_psql"; local rc=$?
    [ -n "$sampler" ] && wait "$sampler"
    [ -n "$dumper" ] && wait "$dumper"
    echo "$pid" >"$base.pid"
    if [ -n "$perfpid" ]; then
        # perf stops by itself when the backend exits (psql disconnected)
        local k; for k in $(seq 1 100); do kill -0 "$perfpid" 2>/dev/null || break; sleep 0.1; done
        kill -INT "$perfpid" 2>/dev/null; wait "$perfpid" 2>/dev/null
        perf report -i "$base.perf.data" --stdio --no-children --sort dso,symbol -g none \
            --percent-limit 0.3 2>/dev/null | grep -v '^#' | grep -v '^$' | head -60 >"$base.perf.txt"
        perf report -i "$base.perf.data" --stdio --children --sort symbol -g none \
            --percent-limit 2 2>/dev/null | grep -v '^#' | grep -v '^$' | head -60 >"$base.perf_children.txt"
    fi
    if [ $rc -ne 0 ]; then
        printf -- '--- %s\n%s\n' "$(date +%T)" "$q" >>"$RAW/errors.log"
        cat "$tfile" >>"$RAW/errors.log"
        grep -E 'ERROR|FATAL' "$tfile" | head -3 >&2
        return $rc
    fi
    awk '/^Time: /{ s += $2 } END{ printf "%.3f\n", s }' "$tfile"
}

# mem_sampler PID OUTFILE: peak values from /proc/PID/status every 20 ms until
# the process exits; the time series ("epoch VmHWM VmRSS RssAnon RssShmem", kB)
# goes to OUTFILE.ts.
mem_sampler() {
    local pid=$1 out=$2 k v u hwm=0 rss=0 anon=0 shm=0 c_hwm c_rss c_anon c_shm
    : >"$out.ts"
    while [ -r "/proc/$pid/status" ]; do
        c_hwm=0; c_rss=0; c_anon=0; c_shm=0
        while read -r k v u; do
            case $k in
                VmHWM:) c_hwm=$v ;;
                VmRSS:) c_rss=$v ;;
                RssAnon:) c_anon=$v ;;
                RssShmem:) c_shm=$v ;;
            esac
        done <"/proc/$pid/status" 2>/dev/null || break
        [ "$c_rss" = 0 ] && break
        echo "$EPOCHREALTIME $c_hwm $c_rss $c_anon $c_shm" >>"$out.ts"
        (( c_hwm > hwm )) && hwm=$c_hwm
        (( c_rss > rss )) && rss=$c_rss
        (( c_anon > anon )) && anon=$c_anon
        (( c_shm > shm )) && shm=$c_shm
        sleep 0.02
    done
    echo "$hwm $rss $anon $shm" >"$out"
}

# ------------------------------------------------------------------ pgbench
# pgbench_run NAME SCRIPTFILE SECONDS CLIENTS [extra pgbench args...]
# per-transaction logs in $RAW/NAME.log.*; summary output in $RAW/NAME.out
pgbench_run() {
    local name=$1 script=$2 secs=$3 clients=$4; shift 4
    wait_ready
    rm -f "$RAW/$name".log.*
    "$PGBENCH" -n -c "$clients" -j "$clients" -T "$secs" -f "$script" -D rows="$ROWS" \
        --log --log-prefix="$RAW/$name.log" "$@" >"$RAW/$name.out" 2>&1
}
# pgbench_stats NAME [WINDOWS_FILE] -> "tps p99_ms n mean_ms max_ms"
# Latencies from the per-transaction log (column 3, us; completion time = cols 5,6).
# With a windows file ("t0 t1" epoch seconds per line) only transactions that
# started and finished inside a window count, and tps is over the windows' time.
pgbench_stats() {
    local name=$1 win=${2:-/dev/null}
    cat "$RAW/$name".log.* 2>/dev/null | awk -v winfile="$win" -v spanfile="$RAW/$name.span" '
        BEGIN { nw = 0; while ((getline line < winfile) > 0) { split(line, a, " "); nw++; w0[nw] = a[1]; w1[nw] = a[2] } }
        {
            lat = $3 / 1000.0; e = $5 + $6 / 1e6; s = e - $3 / 1e6
            if (first == "" || s < first) first = s
            if (last == "" || e > last) last = e
            if (nw > 0) { ok = 0; for (i = 1; i <= nw; i++) if (s >= w0[i] && e <= w1[i]) { ok = 1; break } ; if (!ok) next }
            print lat
        }
        END {
            if (nw > 0) { span = 0; for (i = 1; i <= nw; i++) { a0 = w0[i]; a1 = w1[i]; if (a0 < first) a0 = first; if (a1 > last) a1 = last; if (a1 > a0) span += a1 - a0 } }
            else span = last - first
            printf "SPAN %.6f\n", span > spanfile; close(spanfile)
        }' | sort -n | awk -v spanfile="$RAW/$name.span" '
        { v[NR] = $1; sum += $1 }
        END {
            getline l < spanfile; split(l, a, " "); span = a[2]
            if (NR == 0 || span <= 0) { print "    "; exit }
            k = int(0.99 * NR); if (k < 0.99 * NR) k++; if (k < 1) k = 1
            printf "%.1f %.3f %d %.3f %.3f\n", NR / span, v[k], NR, sum / NR, v[NR]
        }'
}

# ------------------------------------------------------------------ results
# result FIG METRIC UNIT VALUE BASELINE_METRIC BASELINE_VALUE RATIO BAR STATUS NOTE
result() {
    local IFS=$'\t'
    printf '%s\n' "$*" | tr -d '\r' >>"$RESULTS_TSV"
}
# judge RATIO OP LIMIT -> PASS / MISS / n/a
judge() {
    [ -z "$1" ] && { echo "n/a"; return; }
    awk -v r="$1" -v op="$2" -v l="$3" 'BEGIN{
        ok = (op == "<=") ? (r <= l) : (op == ">=") ? (r >= l) : (op == "<") ? (r < l) : (r > l)
        print ok ? "PASS" : "MISS" }'
}
# emit helpers ---------------------------------------------------------------
# bar_row FIG METRIC UNIT VALUE BASE_METRIC BASE_VALUE RATIO OP LIMIT NOTE
bar_row() {
    local fig=$1 metric=$2 unit=$3 v=$4 bm=$5 bv=$6 r=$7 op=$8 lim=$9 note=${10:-}
    result "$fig" "$metric" "$unit" "$v" "$bm" "$bv" "$r" "$op $lim" "$(judge "$r" "$op" "$lim")" "$note"
}
info_row() { # FIG METRIC UNIT VALUE BASE_METRIC BASE_VALUE RATIO NOTE
    result "$1" "$2" "$3" "$4" "$5" "$6" "$7" "-" "info" "${8:-}"
}
na_row() { # FIG METRIC BAR NOTE
    result "$1" "$2" "" "" "" "" "" "$3" "n/a" "$4"
}

# print_table: human readable table of $RESULTS_TSV
print_table() {
    awk -F'\t' '
        function num(x, u) {
            if (x == "") return "n/a"
            if (u == "rows/s" || u == "tps") return sprintf("%.0f", x)
            if (u == "ratio") return sprintf("%.3f", x)
            if (u == "MB") return sprintf("%.1f", x)
            if (u == "ms" || u == "us/row" || u == "us/stmt") return sprintf("%.2f", x)
            return x
        }
        {
            n++; f[n] = $1; m[n] = $2; u[n] = $3; v[n] = num($4, $3); bm[n] = $5; bv[n] = ($6 == "" ? "" : num($6, $3))
            r[n] = ($7 == "" ? "" : sprintf("%.3fx", $7)); bar[n] = $8; st[n] = $9; note[n] = $10
            if ($3 != "" && v[n] != "n/a") v[n] = v[n] " " $3
            if (bv[n] != "" && $3 != "") bv[n] = bv[n] " " $3
        }
        END {
            w1 = 3; w2 = 6; w3 = 5; w4 = 8; w5 = 10; w6 = 5; w7 = 3
            for (i = 1; i <= n; i++) {
                if (length(m[i]) > w2) w2 = length(m[i]); if (length(v[i]) > w3) w3 = length(v[i])
                if (length(bm[i]) > w4) w4 = length(bm[i]); if (length(bv[i]) > w5) w5 = length(bv[i])
                if (length(r[i]) > w6) w6 = length(r[i]); if (length(bar[i]) > w7) w7 = length(bar[i])
            }
            fmtl = "%-" w1 "s  %-" w2 "s  %" w3 "s  %-" w4 "s  %" w5 "s  %" w6 "s  %-" w7 "s  %s\n"
            printf fmtl, "fig", "figure", "value", "baseline", "base value", "ratio", "bar", "result"
            line = sprintf(fmtl, "", "", "", "", "", "", "", ""); gsub(/./, "-", line); print substr(line, 1, length(line) - 1)
            prev = ""
            for (i = 1; i <= n; i++) {
                if (prev != "" && f[i] != prev) print ""
                prev = f[i]
                printf fmtl, f[i], m[i], v[i], bm[i], bv[i], r[i], bar[i], st[i] (note[i] != "" ? "  (" note[i] ")" : "")
            }
        }' "$RESULTS_TSV"
}

write_csv() { # TSV -> CSV with quoting
    {
        echo "figure,metric,unit,value,baseline,baseline_value,ratio,bar,result,note"
        awk -F'\t' '{
            out = ""
            for (i = 1; i <= 10; i++) { x = $i; gsub(/"/, "\"\"", x); if (x ~ /[,"]/) x = "\"" x "\""; out = out (i > 1 ? "," : "") x }
            print out }' "$RESULTS_TSV"
    } >"$1"
}

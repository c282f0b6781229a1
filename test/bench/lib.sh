# Helpers for test/bench/NN_*.sh (sourced).

# pgbench_tps SCRIPT CLIENTS [extra pgbench args]: transactions per second.
# A pgbench that exits non-zero, aborts clients or prints no tps is a failure:
# it is said on stderr, recorded in $BENCH_OUT/pgbench_failures (run.sh fails the
# run on it) and gives 0, never a figure from a partial run.
pgbench_tps() {
    local script=$1 clients=$2 out rc tps
    shift 2
    out=$("$PGBIN/pgbench" -n -c "$clients" -j "$(( clients < 2 ? 1 : 2 ))" -T "$BENCH_SECONDS" \
        -f "$script" "$@" 2>&1)
    rc=$?
    tps=$(printf '%s\n' "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | tail -n1)
    if [ "$rc" -ne 0 ] || [ -z "$tps" ] || printf '%s\n' "$out" | grep -q 'aborted'; then
        {
            echo "bench: pgbench $(basename "$script") with $clients clients failed (exit $rc):"
            printf '%s\n' "$out" | grep -E 'error|abort|FATAL|ERROR' | head -n5
        } | tee -a "${BENCH_OUT:-/tmp}/pgbench_failures" >&2
        echo 0
        return 1
    fi
    echo "$tps"
}

# row WHAT OCX BASELINE TARGET_RATIO [higher|lower]: a result row.  For
# "higher" the ratio is ocx/baseline and must be >= target; for "lower" it
# is ocx/baseline and must be <= target.
row() {
    local what=$1 ocx=$2 base=$3 target=$4 dir=${5:-higher}
    awk -v w="$what" -v o="$ocx" -v b="$base" -v t="$target" -v d="$dir" 'BEGIN {
        r = (b > 0) ? o / b : 0
        ok = (d == "higher") ? (r >= t) : (r <= t)
        printf "| %s | %.1f | %.1f | %.2f | %s %s | %s |\n", w, o, b, r, (d == "higher" ? ">=" : "<="), t, ok ? "yes" : "NO"
    }' | spread_note
}

# spread_note: adds the spread of the rounds the last alt_tps measured (left in
# $BENCH_OUT/spread) to the "what" column of the row on stdin, and forgets it,
# so every ratio from rounds shows its min-max in the printed table.
spread_note() {
    local f=${BENCH_OUT:-/tmp}/spread
    if [ -s "$f" ]; then
        sed "s/^| \([^|]*[^ |]\) |/| \1; $(sed 's/[\/&]/\\&/g' "$f") |/"
        rm -f "$f"
    else
        cat
    fi
}

# Average of alternating runs: alt_tps OCX_SCRIPT BASE_SCRIPT CLIENTS ROUNDS
# [extra pgbench args, for both] -> "ocx base".
# The order alternates from round to round (ocx first in odd rounds, the baseline
# first in even ones); every round's figures and their spread (min-max) go to
# stderr, and the spread of the rounds and of their ratios to the next row()
# (printed in its first column).
alt_tps() {
    local a=$1 b=$2 c=$3 rounds=${4:-3} i ta tb la="" lb=""
    shift 4
    for i in $(seq "$rounds"); do
        if [ $((i % 2)) -eq 1 ]; then
            ta=$(pgbench_tps "$a" "$c" "$@"); tb=$(pgbench_tps "$b" "$c" "$@")
        else
            tb=$(pgbench_tps "$b" "$c" "$@"); ta=$(pgbench_tps "$a" "$c" "$@")
        fi
        la="$la ${ta:-0}"; lb="$lb ${tb:-0}"
    done
    for l in "ocx $(basename "$a"):$la" "baseline $(basename "$b"):$lb"; do
        echo "$l" | awk -F: '{ n = split($2, v, " "); min = v[1]; max = v[1]
            for (i = 2; i <= n; i++) { if (v[i] < min) min = v[i]; if (v[i] > max) max = v[i] }
            printf "bench: %s rounds:%s (spread %.1f-%.1f)\n", $1, $2, min, max }' >&2
    done
    spread_rounds "$la" "$lb"
    echo "$la|$lb" | awk -F'|' -v n="$rounds" '{
        na = split($1, x, " "); nb = split($2, y, " "); sa = 0; sb = 0
        for (i = 1; i <= na; i++) sa += x[i]; for (i = 1; i <= nb; i++) sb += y[i]
        print sa / n, sb / n }'
}

# spread_rounds "OCX FIGURES" "BASELINE FIGURES": remember the min-max of each
# side's rounds and of the per-round ratio for the next row (spread_note).
spread_rounds() {
    echo "$1|$2" | awk -F'|' '{
        n = split($1, x, " "); split($2, y, " ")
        for (i = 1; i <= n; i++) {
            r = (y[i] > 0) ? x[i] / y[i] : 0
            if (i == 1 || x[i] < xa) xa = x[i]; if (i == 1 || x[i] > xb) xb = x[i]
            if (i == 1 || y[i] < ya) ya = y[i]; if (i == 1 || y[i] > yb) yb = y[i]
            if (i == 1 || r < ra) ra = r; if (i == 1 || r > rb) rb = r }
        printf "%d rounds: ocx %.1f-%.1f, baseline %.1f-%.1f, ratio %.2f-%.2f\n", n, xa, xb, ya, yb, ra, rb }' \
        > "${BENCH_OUT:-/tmp}/spread"
}

# bench_cluster_up NAME [extra postgresql.conf lines...]: for run.sh and
# scale.sh (after test/lib.sh): a throwaway cluster with the production-like
# settings of `make bench` (fsync on, synchronous commit, ocx preloaded with
# its worker) in a fresh run directory, started, and dropped with the run
# directory on exit.  Sets RUN and DATA; exports PGHOST, PGPORT, PGUSER and
# PGBIN for psql and pgbench.
bench_cluster_up() {
    local name=$1
    shift
    RUN=$(ocx_run_dir "$name")
    DATA=$RUN/data
    trap 'ocx_cluster_stop "$DATA"; rm -rf "$RUN"' EXIT
    ocx_tmp_install "$RUN/install" || return 1
    ocx_cluster_init "$DATA" "$RUN/sock" \
        "fsync = on" "synchronous_commit = on" "shared_buffers = 512MB" \
        "max_connections = 100" "max_wal_size = 4GB" "checkpoint_timeout = 30min" \
        "log_min_messages = warning" "$@"
    ocx_cluster_start "$DATA" "$RUN/server.log" || { cat "$RUN/server.log"; return 1; }
    export PGHOST=$RUN/sock PGPORT=$OCX_PORT PGUSER=postgres PGBIN
}

# tick_events N: the JSON elements (no brackets) of N small "Tick" events, the
# batch the 100-event append loads send.
tick_events() {
    seq 1 "$1" | awk '{printf "%s{\"type\": \"Tick\", \"data\": {\"n\": %d, \"pad\": \"abcdefghij\"}}", (NR>1?",":""), $1}'
}

# append1_script FILE: the pgbench script of the single-event append
# (append_event, no expected version, over 100,000 streams of category acct).
append1_script() {
    cat > "$1" <<'SQL'
\set s random(1, 100000)
SELECT ocx.append_event('acct-' || :s, NULL, 'Deposited', '{"amount": 10, "currency": "EUR"}');
SQL
}

# wait_caught_up PROJECTION [TIMEOUT_SECONDS, default 300]: until the worker
# has applied everything in the log to the projection (a cheap index probe: the
# status view counts the lag, which would compete with the worker for CPU
# while it is far behind).  Polls every 0.02 s, less often in a long wait
# (every 2% of the time waited so far, at most every 0.5 s), so that the polls
# do not take the worker's CPU and the figure stays within ~2%.
wait_caught_up() {
    local t0 deadline
    t0=$(date +%s.%N)
    deadline=$(( ${t0%.*} + ${2:-300} ))
    while [ "$(date +%s)" -le "$deadline" ]; do
        [ "$("$PGBIN/psql" -qX -tAc "SELECT p.state = 'running' AND NOT EXISTS (SELECT 1 FROM ocx.events e
                        WHERE (e.txid, e.global_position) > (p.checkpoint_txid, p.checkpoint_position))
                        FROM ocx.projections p WHERE p.name = '$1'")" = t ] && return 0
        sleep "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { s = (b - a) * 0.02
                    print (s < 0.02) ? 0.02 : (s > 0.5) ? 0.5 : s }')"
    done
    echo "projection $1 did not catch up" >&2
    return 1
}

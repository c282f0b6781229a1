# Helpers for test/bench/NN_*.sh (sourced).

# pgbench_tps SCRIPT CLIENTS [extra pgbench args]: transactions per second.
pgbench_tps() {
    local script=$1 clients=$2
    shift 2
    "$PGBIN/pgbench" -n -c "$clients" -j "$(( clients < 2 ? 1 : 2 ))" -T "$BENCH_SECONDS" \
        -f "$script" "$@" 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | tail -n1
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
    }'
}

# Average of alternating runs: alt_tps OCX_SCRIPT BASE_SCRIPT CLIENTS ROUNDS -> "ocx base"
alt_tps() {
    local a=$1 b=$2 c=$3 rounds=${4:-2} i sa=0 sb=0 ta tb
    for i in $(seq "$rounds"); do
        ta=$(pgbench_tps "$a" "$c"); tb=$(pgbench_tps "$b" "$c")
        sa=$(awk -v x="$sa" -v y="${ta:-0}" 'BEGIN {print x + y}')
        sb=$(awk -v x="$sb" -v y="${tb:-0}" 'BEGIN {print x + y}')
    done
    awk -v x="$sa" -v y="$sb" -v n="$rounds" 'BEGIN {print x / n, y / n}'
}

#!/usr/bin/env bash
# The catch-up of a new projection on ONE category of 20 (issue 12: the
# projection's batch filtered by the one reader).  Fills a log of
# BENCH_CATCHUP_EVENTS events (default 1,000,000: 100-event appends over
# 100,000 streams in 20 categories, as make bench-scale fills it), then in
# BENCH_CATCHUP_ROUNDS rounds (default 3) defines a projection on category
# cat7 (a one-INSERT handler) and times it from the define until it has
# applied the whole log (the last event of the log is in cat7), and checks
# that it applied every cat7 event once.
#
# With BENCH_CATCHUP_BEFORE=<another ocx source tree> (built here) the same
# data directory is also run with that tree's build, the order of the two
# alternating round by round, and the ratio is printed: both builds must
# install the same SQL (the script refuses otherwise).
#
# Also prints what one batch read costs with this build: EXPLAIN ANALYZE of
# the worker's read (src/reader.c) of ocx.batch_size events of cat7 from
# the start of the log: the rows the index scan read and the rows it
# handed to the worker.  OCX_PORT as for make test; the cluster is dropped.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$OCX_ROOT"

EVENTS=${BENCH_CATCHUP_EVENTS:-1000000}
ROUNDS=${BENCH_CATCHUP_ROUNDS:-3}
BEFORE=${BENCH_CATCHUP_BEFORE:-}
say() { echo "catchup $(date -u +%H:%M:%S): $*" >&2; }

make -s PG_CONFIG="$PG_CONFIG" >/dev/null || exit 1
. "$OCX_ROOT/test/bench/lib.sh"
bench_cluster_up bench-catchup || exit 1
AFTER_BIN=$PGBIN
BIN_after=$AFTER_BIN
if [ -n "$BEFORE" ]; then
    make -s -C "$BEFORE" PG_CONFIG="$PG_CONFIG" >/dev/null || exit 1
    (OCX_ROOT=$BEFORE; ocx_tmp_install "$RUN/install_before") || exit 1
    BIN_before=$RUN/install_before$("$PG_CONFIG" --bindir)
    share=$("$PG_CONFIG" --sharedir)/extension
    if ! diff -q <(cat "$RUN/install$share"/ocx--*.sql | sha256sum) \
                 <(cat "$RUN/install_before$share"/ocx--*.sql | sha256sum) >/dev/null; then
        say "the two builds install different SQL: no comparison on one data directory"
        exit 1
    fi
fi
export PGDATABASE=postgres
P="$PGBIN/psql -qX -v ON_ERROR_STOP=1"

$P >/dev/null <<'SQL' || exit 1
CREATE EXTENSION ocx;
CREATE TABLE catchup_model (pos bigint, stream_id text, n int);
CREATE FUNCTION catchup_apply(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.catchup_model VALUES (e.global_position, e.stream_id, (e.data->>'n')::int) $$;
SQL
printf '\\set s random(1, 100000)\n\\set c :s %% 20\nSELECT ocx.append(%scat%s || :c || %s-%s || :s, NULL, %s[%s]%s);\n' \
    "'" "'" "'" "'" "'" "$(tick_events 100)" "'" > "$RUN/fill.sql"
say "filling $EVENTS events"
"$PGBIN/pgbench" -n -M prepared -c 4 -j 2 -t $(( EVENTS / 400 )) -f "$RUN/fill.sql" >/dev/null 2>&1 || { say "fill failed"; exit 1; }
$P -c "SELECT ocx.append_event('cat7-0', NULL, 'Tick', '{\"n\": 0}')" -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null || exit 1
total=$($P -tAc "SELECT count(*) FROM ocx.events")
want=$($P -tAc "SELECT count(*) FROM ocx.events WHERE stream_id LIKE 'cat7-%'")
batch=$($P -tAc "SHOW ocx.batch_size")
say "$total events, $want in cat7, ocx.batch_size $batch"

# run_with BUILD: the cluster on that build's binaries
run_with() {
    local bin=BIN_$1
    ocx_cluster_stop "$DATA"
    PGBIN=${!bin}
    ocx_cluster_start "$DATA" "$RUN/server.log" || { tail "$RUN/server.log"; exit 1; }
}

# catchup ROUND: seconds to catch up, on stdout
catchup() {
    local t0 t1 n
    $P -c "SELECT ocx.drop_projection(name) FROM ocx.projections WHERE name LIKE 'catchup_p%'" \
       -c "TRUNCATE catchup_model" -c "CHECKPOINT" >/dev/null || return 1
    t0=$(date +%s.%N)
    $P -c "SELECT ocx.define_projection('catchup_p$1', 'catchup_apply(ocx.event)', categories => '{cat7}')" >/dev/null || return 1
    wait_caught_up "catchup_p$1" 3600 || return 1
    t1=$(date +%s.%N)
    n=$($P -tAc "SELECT count(*) || ' ' || count(DISTINCT pos) FROM catchup_model")
    [ "$n" = "$want $want" ] || { say "applied $n (events, distinct), cat7 has $want"; return 1; }
    awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f\n", b - a}'
}

builds=after
[ -n "$BEFORE" ] && builds="before after"
declare -A times
for r in $(seq "$ROUNDS"); do
    order=$builds
    [ $((r % 2)) -eq 0 ] && order=$(echo "$builds" | awk '{for (i = NF; i > 0; i--) printf "%s%s", $i, (i > 1 ? " " : "")}')
    for b in $order; do
        run_with "$b"
        s=$(catchup "$b$r") || exit 1
        say "round $r, $b: $want events applied in $s s"
        times[$b]="${times[$b]:-} $s"
    done
done
run_with after

# one batch read as the worker reads it (src/reader.c), from the start
plan=$($P -tAc "EXPLAIN (ANALYZE, FORMAT JSON)
    SELECT e FROM ocx._read_log(NULL, $batch, NULL, '{cat7}', false, ocx.log_horizon()) e")
read -r scanned returned < <(printf '%s' "$plan" | python3 -c '
import json, sys
def walk(n):
    yield n
    for c in n.get("Plans", []):
        yield from walk(c)
nodes = list(walk(json.load(sys.stdin)[0]["Plan"]))
scan = [n for n in nodes if "Index" in n["Node Type"] or "Seq Scan" in n["Node Type"]][0]
print(scan["Actual Rows"] + scan.get("Rows Removed by Filter", 0), nodes[0]["Actual Rows"])')

echo "| build | rounds: catch-up of $want cat7 events in a log of $total (s) | median (s) | applied events/s |"
echo "|---|---|---|---|"
for b in $builds; do
    echo "${times[$b]}" | awk -v b="$b" -v n="$want" '{
        m = split($0, v, " "); for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
        med = (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
        printf "| %s |%s | %.2f | %.0f |\n", b, $0, med, n / med }'
done
echo
echo "one batch read of this build (EXPLAIN ANALYZE): the index scan read $scanned rows of the log for the $returned it handed to the worker ($(awk -v a="$scanned" -v b="$returned" 'BEGIN {printf "%.1f", (b > 0) ? a / b : 0}') per event applied)"

#!/usr/bin/env bash
# `make bench-scale`: the cost curves of issue 15.  Fills one log to each size
# of BENCH_SCALE_SIZES in turn (default 1M, 10M, 30M events: batched appends
# of 100 events per ocx.append call over 100,000 streams in 20 categories,
# BENCH_SCALE_CLIENTS pgbench clients; the fill is not the measurement) and at
# each size measures:
#   - append_event tx/s at 8 clients (the script of 10_append.sh);
#   - read_stream of 100 events (the first 100 of 1,000 streams sampled from
#     the fill, at random), reads/s at 2 clients;
#   - a read_all page of 1,000 events at the tail of the log, reads/s at 2 clients;
#   - load of a 1,000-event aggregate (a declarative reducer), loads/s at 2 clients;
#   - disk bytes per event: every table of schema ocx with its indexes and
#     TOAST (pg_total_relation_size) over count(*) of ocx.events;
#   - the time a newly defined projection takes to catch up from the start of
#     the log; it is on ONE category of the 20, so it applies 1/20 of the log
#     (its cost is compared per applied event).
# Per-operation costs must stay flat: the cost at the largest size over the
# cost at the smallest within 1.5x (PASS/NO per operation).
#
# Writes test/bench/out/scale/{results.tsv,results.md,*.png} after every size;
# with BENCH_SCALE_PUBLISH=1 (the default when BENCH_SCALE_SIZES is the
# default) also the PNGs to docs/scale/ and the table into docs/performance.md
# between the "scale:begin" and "scale:end" markers.  Needs gnuplot (installed
# with apt by test/deps.sh when missing) and disk: ~600 bytes per event, plus WAL.
# BENCH_SECONDS (default 10) per pgbench run; the cluster is dropped at the end.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$OCX_ROOT"

DEFAULT_SIZES="1000000 10000000 30000000"
SIZES=${BENCH_SCALE_SIZES:-$DEFAULT_SIZES}
FILL_CLIENTS=${BENCH_SCALE_CLIENTS:-4}
if [ -z "${BENCH_SCALE_PUBLISH:-}" ]; then
    [ "$SIZES" = "$DEFAULT_SIZES" ] && BENCH_SCALE_PUBLISH=1 || BENCH_SCALE_PUBLISH=0
fi

OCX_EXTRA_PKGS="${OCX_EXTRA_PKGS:-} gnuplot-nox" test/deps.sh || exit 1
command -v gnuplot >/dev/null || { echo "bench-scale: gnuplot is missing" >&2; exit 1; }
make -s PG_CONFIG="$PG_CONFIG" >/dev/null || exit 1

. "$OCX_ROOT/test/bench/lib.sh"
bench_cluster_up bench-scale "autovacuum_work_mem = 256MB" || exit 1
export BENCH_DIR=$OCX_ROOT/test/bench BENCH_OUT=$RUN/out BENCH_SECONDS=${BENCH_SECONDS:-10}
export PGDATABASE=bench_scale
OUT=$OCX_ROOT/test/bench/out/scale
mkdir -p "$BENCH_OUT" "$OUT"
rm -f "$OUT"/results.tsv "$OUT"/*.png
P="$PGBIN/psql -qX -v ON_ERROR_STOP=1"
say() { echo "bench-scale $(date -u +%H:%M:%S): $*" >&2; }

"$PGBIN/psql" -qX -d postgres -c "CREATE DATABASE $PGDATABASE" >/dev/null || exit 1
# The aggregate stream comes first, so that at every size it is the oldest
# data of the log; the projection's handler inserts one row per event.
$P >/dev/null <<'SQL' || exit 1
CREATE EXTENSION ocx;
SELECT ocx.define_aggregate('scale_account', reducer => '{
    "Deposited": [{"add": "balance", "from": "amount"}],
    "Withdrawn": [{"subtract": "balance", "from": "amount"}],
    "*":         [{"set": "version", "from": "$version"}]}', initial_state => '{"balance": 0}');
SELECT ocx.append('sagg-1', 0, (SELECT jsonb_agg(jsonb_build_object(
    'type', CASE WHEN i % 10 = 0 THEN 'Withdrawn' ELSE 'Deposited' END,
    'data', jsonb_build_object('amount', i % 7, 'currency', 'EUR')))
    FROM generate_series(1, 1000) i));
CREATE TABLE scale_model (pos bigint, stream_id text, n int);
CREATE FUNCTION scale_apply(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.scale_model VALUES (e.global_position, e.stream_id, (e.data->>'n')::int) $$;
CREATE TABLE scale_probe (i int PRIMARY KEY, stream_id text NOT NULL);
SQL

# the fill: 100 events per call to stream catC-S, S random in 1..100000, C = S % 20
printf '\\set s random(1, 100000)\n\\set c :s %% 20\nSELECT ocx.append(%scat%s || :c || %s-%s || :s, NULL, %s[%s]%s);\n' \
    "'" "'" "'" "'" "'" "$(tick_events 100)" "'" > "$BENCH_OUT/fill.sql"
append1_script "$BENCH_OUT/append1.sql"
echo 'SELECT ocx.load('"'"'scale_account'"'"', '"'"'sagg-1'"'"');' > "$BENCH_OUT/load.sql"

# median_tps SCRIPT CLIENTS [pgbench args]: the median of 3 pgbench runs
median_tps() {
    local script=$1 clients=$2 a b c
    shift 2
    a=$(pgbench_tps "$script" "$clients" "$@"); b=$(pgbench_tps "$script" "$clients" "$@")
    c=$(pgbench_tps "$script" "$clients" "$@")
    say "$(basename "$script") at $clients clients: $a $b $c"
    printf '%s\n%s\n%s\n' "$a" "$b" "$c" | sort -g | sed -n 2p
}

COLS="size events fill_s fill_eps append_tps read_stream_ps read_all_ps load_ps bytes_per_event total_bytes proj_s proj_events proj_eps"

# report: the table, the flatness verdicts and the plots from results.tsv
report() {
    local md=$OUT/results.md
    {
        echo "Machine: $(nproc) cores (shared), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'), fsync on, shared_buffers 512MB; ${BENCH_SECONDS}s per pgbench run, median of 3; run of $(date -u +%Y-%m-%d)."
        echo
        echo "| events in the log | append_event, 8 clients (tx/s) | read_stream, 100 events (reads/s) | read_all page of 1,000 at the tail (pages/s) | load, 1,000-event aggregate (loads/s) | disk (bytes/event) | ocx tables on disk | projection on 1 of 20 categories: catch-up (s) | its events | its rate (events/s) | fill (events/s) |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|"
        awk -F'\t' 'NR > 1 { printf "| %\047d | %.0f | %.0f | %.0f | %.0f | %.0f | %.2f GB | %.1f | %\047d | %.0f | %.0f |\n",
            $2, $5, $6, $7, $8, $9, $10 / 1e9, $11, $12, $13, $4 }' "$OUT/results.tsv"
        echo
        echo "Cost at the largest size over the cost at the smallest (cost: 1/throughput; bytes per event; seconds per projected event); flat means <= 1.5:"
        echo
        echo "| operation | cost ratio | <= 1.5 |"
        echo "|---|---|---|"
        awk -F'\t' 'NR == 2 { for (i = 1; i <= NF; i++) f[i] = $i } NR > 1 { for (i = 1; i <= NF; i++) l[i] = $i; n = NR }
            function v(name, r) { printf "| %s | %.2f | %s |\n", name, r, (r <= 1.5 ? "PASS" : "NO") }
            END { if (n < 3) { print "| (one size only: nothing to compare) | | |"; exit }
                  v("append_event, 8 clients", f[5] / l[5]); v("read_stream, 100 events", f[6] / l[6])
                  v("read_all page of 1,000 at the tail", f[7] / l[7]); v("load, 1,000 events", f[8] / l[8])
                  v("disk bytes per event", l[9] / f[9]); v("projection catch-up, per applied event", f[13] / l[13]) }' \
            "$OUT/results.tsv"
    } > "$md"
    # the plots: throughput per operation, and every cost relative to the smallest size
    local f5 f6 f7 f8 f9 f13
    read -r f5 f6 f7 f8 f9 f13 < <(awk -F'\t' 'NR == 2 {print $5, $6, $7, $8, $9, $13}' "$OUT/results.tsv")
    gnuplot <<EOF || say "gnuplot failed"
set terminal pngcairo size 1200,800 noenhanced font ",10"
set datafile separator "\t"
set key autotitle columnhead
set logscale x
set xlabel "events in the log (millions)"
set grid
set output "$OUT/cost_curves.png"
set multiplot layout 2,3 title "ocx cost curves (make bench-scale, $(date -u +%Y-%m-%d))"
set yrange [0:*]
array col[6] = [5, 6, 7, 8, 9, 13]
array what[6] = ["append_event, 8 clients", "read_stream, 100 events, 2 clients", \
    "read_all page of 1,000 at the tail, 2 clients", "load of a 1,000-event aggregate, 2 clients", \
    "disk per event (ocx tables, indexes, TOAST)", "new projection on 1 of 20 categories: catch-up"]
array unit[6] = ["tx/s", "reads/s", "pages/s", "loads/s", "bytes", "applied events/s"]
do for [i = 1:6] {
    set title what[i]; set ylabel unit[i]
    plot "$OUT/results.tsv" using (\$2/1e6):(column(col[i])) with linespoints lw 2 notitle
}
unset multiplot
set output "$OUT/cost_ratio.png"
set terminal pngcairo size 900,560 noenhanced font ",10"
set title "cost relative to the smallest size (flat: <= 1.5)"
set ylabel "cost / cost at the smallest size"
set yrange [0:3]
set key top left
f5 = $f5; f6 = $f6; f7 = $f7; f8 = $f8; f9 = $f9; f13 = $f13
plot "$OUT/results.tsv" using (\$2/1e6):(f5/\$5) with linespoints lw 2 title "append_event", \
     "" using (\$2/1e6):(f6/\$6) with linespoints lw 2 title "read_stream", \
     "" using (\$2/1e6):(f7/\$7) with linespoints lw 2 title "read_all page", \
     "" using (\$2/1e6):(f8/\$8) with linespoints lw 2 title "load", \
     "" using (\$2/1e6):(\$9/f9) with linespoints lw 2 title "bytes/event", \
     "" using (\$2/1e6):(f13/\$13) with linespoints lw 2 title "projection, per event", \
     1.5 with lines dt 2 lc rgb "red" title "1.5x"
EOF
    if [ "$BENCH_SCALE_PUBLISH" = 1 ]; then
        mkdir -p docs/scale
        cp "$OUT"/cost_curves.png "$OUT"/cost_ratio.png docs/scale/
        awk -v f="$md" '/<!-- scale:begin -->/ { print; while ((getline l < f) > 0) print l; skip = 1; next }
                        /<!-- scale:end -->/ { skip = 0 } !skip' docs/performance.md > "$OUT/performance.md" &&
            cp "$OUT/performance.md" docs/performance.md
    fi
    cat "$md"
}

echo "$COLS" | tr ' ' '\t' > "$OUT/results.tsv"
have=1000
for size in $SIZES; do
    # 1. the fill, up to the size (the probes of the last size count)
    calls=$(( (size - have + 99) / 100 ))
    per_client=$(( (calls + FILL_CLIENTS - 1) / FILL_CLIENTS ))
    say "filling from $have to $size events: $per_client calls of 100 events on each of $FILL_CLIENTS clients"
    t0=$(date +%s.%N)
    if [ "$per_client" -gt 0 ]; then
        out=$("$PGBIN/pgbench" -n -M prepared -c "$FILL_CLIENTS" -j 2 -t "$per_client" -f "$BENCH_OUT/fill.sql" 2>&1) ||
            { echo "$out" >&2; say "the fill failed"; exit 1; }
    fi
    t1=$(date +%s.%N)
    $P -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null || exit 1
    events=$($P -tAc "SELECT count(*) FROM ocx.events")
    fill_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
    fill_eps=$(awk -v n="$(( per_client * FILL_CLIENTS * 100 ))" -v s="$fill_s" 'BEGIN {print (s > 0) ? n / s : 0}')
    say "$events events (fill: $fill_s s, $fill_eps events/s, then VACUUM ANALYZE)"

    # 2. the operations
    $P >/dev/null <<'SQL' || exit 1
TRUNCATE scale_probe;
INSERT INTO scale_probe
SELECT row_number() OVER (), stream_id
  FROM (SELECT stream_id FROM ocx.streams WHERE stream_id LIKE 'cat%' ORDER BY random() LIMIT 1000) s;
SQL
    np=$($P -tAc "SELECT count(*) FROM scale_probe")
    printf '\\set i random(1, %s)\nSELECT count(*) FROM ocx.read_stream((SELECT stream_id FROM scale_probe WHERE i = :i), max_count => 100);\n' \
        "$np" > "$BENCH_OUT/read_stream.sql"
    rs=$(median_tps "$BENCH_OUT/read_stream.sql" 2)
    [ "$($P -tAc "SELECT count(*) FROM ocx.load('scale_account', 'sagg-1') WHERE version = 1000")" = 1 ] ||
        { say "load of sagg-1 is not at version 1000"; exit 1; }
    ld=$(median_tps "$BENCH_OUT/load.sql" 2)
    cur=$($P -tAc "SELECT ocx.cursor(txid, global_position) FROM ocx.events ORDER BY txid DESC, global_position DESC OFFSET 1000 LIMIT 1")
    echo "SELECT count(*) FROM ocx.read_all('$cur'::ocx.cursor, 1000);" > "$BENCH_OUT/read_all.sql"
    [ "$($P -tAc "SELECT count(*) FROM ocx.read_all('$cur'::ocx.cursor, 1000)")" = 1000 ] ||
        { say "the read_all page after $cur is not 1,000 events"; exit 1; }
    ra=$(median_tps "$BENCH_OUT/read_all.sql" 2)
    ap=$(median_tps "$BENCH_OUT/append1.sql" 8)

    # 3. disk
    read -r bpe total < <($P -tAF' ' -c "
        SELECT sum(pg_total_relation_size(c.oid)) / $events, sum(pg_total_relation_size(c.oid))
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'ocx' AND c.relkind IN ('r', 'p', 'm')")

    # 4. a new projection on one category: the last event of the log is in that
    # category, so "caught up" is the same whether or not the worker moves its
    # checkpoint over other categories' events
    $P -c "SELECT ocx.drop_projection(name) FROM ocx.projections WHERE name LIKE 'scale_p%'" \
       -c "TRUNCATE scale_model" -c "SELECT ocx.append_event('cat7-0', NULL, 'Tick', '{\"n\": 0}')" \
       -c "CHECKPOINT" >/dev/null || exit 1
    t0=$(date +%s.%N)
    $P -c "SELECT ocx.define_projection('scale_p$size', 'scale_apply(ocx.event)', categories => '{cat7}')" >/dev/null || exit 1
    wait_caught_up "scale_p$size" 7200 || exit 1
    t1=$(date +%s.%N)
    pn=$($P -tAc "SELECT count(*) FROM scale_model")
    want=$($P -tAc "SELECT sum(version) FROM ocx.streams WHERE category = 'cat7'")   # nothing is deleted
    [ "$pn" = "$want" ] || { say "the projection applied $pn events, category cat7 has $want"; exit 1; }
    ps=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
    say "projection on cat7: $pn events in $ps s"

    printf '%s\t' "$size" "$events" "$fill_s" "$fill_eps" "$ap" "$rs" "$ra" "$ld" "$bpe" "$total" "$ps" "$pn" >> "$OUT/results.tsv"
    awk -v n="$pn" -v s="$ps" 'BEGIN {printf "%s\n", (s > 0) ? n / s : 0}' >> "$OUT/results.tsv"
    have=$($P -tAc "SELECT count(*) FROM ocx.events")
    report
done
[ -s "$BENCH_OUT/pgbench_failures" ] && { say "a pgbench run failed: the figures are not valid"; cat "$BENCH_OUT/pgbench_failures" >&2; exit 1; }
say "done; dropping the cluster"
exit 0

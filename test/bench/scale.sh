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
#     each of these four in 3 rounds alternating with the same operation on a
#     control: a second database of the same cluster whose log stays small
#     (BENCH_SCALE_CONTROL events, default 100,000), so that the machine's load
#     of the minute, which moves these figures more than the log size does on a
#     shared machine, cancels out of the ratio main/control;
#   - disk bytes per event: every table of schema ocx with its indexes and
#     TOAST (pg_total_relation_size) over count(*) of ocx.events;
#   - the three reads also timed inside the server (BENCH_SCALE_CALLS calls in
#     a DO block, 5 rounds alternating with the control);
#   - the time a newly defined projection takes to catch up from the start of
#     the log; it is on ONE category of the 20, so it applies 1/20 of the log
#     (the worker still reads all of it; its cost is compared per applied event).
# Per-operation costs must stay flat: the cost at the largest size over the
# cost at the smallest within 1.5x (PASS/NO per operation; for the pgbench
# operations the cost is taken relative to the control's in the same rounds,
# for the reads the server's own time relative to the control's).
#
# Writes test/bench/out/scale/{results.tsv,results.md,*.png} (BENCH_SCALE_OUT)
# after every size; with BENCH_SCALE_PUBLISH=1 (the default when
# BENCH_SCALE_SIZES is the default) also the PNGs and results.tsv to
# docs/scale/ and the table into docs/performance.md
# between the "scale:begin" and "scale:end" markers.  Needs gnuplot (installed
# with apt by test/deps.sh when missing) and disk: ~400 bytes per event, plus WAL.
# BENCH_SECONDS (default 10) per pgbench run; the cluster is dropped at the end.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$OCX_ROOT"

DEFAULT_SIZES="1000000 10000000 30000000"
SIZES=${BENCH_SCALE_SIZES:-$DEFAULT_SIZES}
FILL_CLIENTS=${BENCH_SCALE_CLIENTS:-4}
CTL_SIZE=${BENCH_SCALE_CONTROL:-100000}
CTL=bench_scale_ctl
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
OUT=${BENCH_SCALE_OUT:-$OCX_ROOT/test/bench/out/scale}   # two runs at once need two
mkdir -p "$BENCH_OUT" "$OUT"
rm -f "$OUT"/results.tsv "$OUT"/*.png
P="$PGBIN/psql -qX -v ON_ERROR_STOP=1"
say() { echo "bench-scale $(date -u +%H:%M:%S): $*" >&2; }

# setup_db DB: the database, ocx, the aggregate, the projection's handler.
# The aggregate stream comes first, so that at every size it is the oldest
# data of the log; the projection's handler inserts one row per event.
setup_db() {
    "$PGBIN/psql" -qX -d postgres -c "CREATE DATABASE $1" >/dev/null || return 1
    $P -d "$1" >/dev/null <<'SQL'
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
}

# the fill: 100 events per call to stream catC-S, S random in 1..100000, C = S % 20
printf '\\set s random(1, 100000)\n\\set c :s %% 20\nSELECT ocx.append(%scat%s || :c || %s-%s || :s, NULL, %s[%s]%s);\n' \
    "'" "'" "'" "'" "'" "$(tick_events 100)" "'" > "$BENCH_OUT/fill.sql"
append1_script "$BENCH_OUT/append1.sql"
echo 'SELECT * FROM ocx.load('"'"'scale_account'"'"', '"'"'sagg-1'"'"');' > "$BENCH_OUT/load.sql"
cp "$BENCH_OUT/load.sql" "$BENCH_OUT/load_ctl.sql"
cp "$BENCH_OUT/append1.sql" "$BENCH_OUT/append1_ctl.sql"

# fill DB TO: 100-event calls into DB until its log has about TO events;
# sets fill_s and fill_eps
fill() {
    local db=$1 to=$2 have calls per_client t0 t1 out
    have=$($P -d "$db" -tAc "SELECT count(*) FROM ocx.events")
    calls=$(( (to - have + 99) / 100 ))
    per_client=$(( (calls + FILL_CLIENTS - 1) / FILL_CLIENTS ))
    [ "$per_client" -gt 0 ] || per_client=0
    say "$db: filling from $have to $to events: $per_client calls of 100 events on each of $FILL_CLIENTS clients"
    t0=$(date +%s.%N)
    if [ "$per_client" -gt 0 ]; then
        out=$("$PGBIN/pgbench" -n -M prepared -c "$FILL_CLIENTS" -j 2 -t "$per_client" -f "$BENCH_OUT/fill.sql" "$db" 2>&1) ||
            { echo "$out" >&2; say "the fill failed"; return 1; }
    fi
    t1=$(date +%s.%N)
    $P -d "$db" -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null || return 1
    fill_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
    fill_eps=$(awk -v n="$(( per_client * FILL_CLIENTS * 100 ))" -v s="$fill_s" 'BEGIN {print (s > 0) ? n / s : 0}')
}

# reads_for DB SUFFIX: the read scripts of DB (read_stream$SUFFIX.sql over
# 1,000 of its streams sampled at random, read_all$SUFFIX.sql from 1,001
# events before its end), checked to read what they should
reads_for() {
    local db=$1 sfx=$2 np cur
    $P -d "$db" >/dev/null <<'SQL' || return 1
TRUNCATE scale_probe;
INSERT INTO scale_probe
SELECT row_number() OVER (), stream_id
  FROM (SELECT stream_id FROM ocx.streams WHERE stream_id LIKE 'cat%' ORDER BY random() LIMIT 1000) s;
SQL
    np=$($P -d "$db" -tAc "SELECT count(*) FROM scale_probe")
    printf '\\set i random(1, %s)\nSELECT * FROM ocx.read_stream((SELECT stream_id FROM scale_probe WHERE i = :i), max_count => 100);\n' \
        "$np" > "$BENCH_OUT/read_stream$sfx.sql"
    [ "$($P -d "$db" -tAc "SELECT count(*) FROM ocx.read_stream((SELECT stream_id FROM scale_probe WHERE i = 1), max_count => 100)")" = 100 ] ||
        { say "$db: read_stream of a sampled stream is not 100 events"; return 1; }
    [ "$($P -d "$db" -tAc "SELECT count(*) FROM ocx.load('scale_account', 'sagg-1') WHERE version = 1000")" = 1 ] ||
        { say "$db: load of sagg-1 is not at version 1000"; return 1; }
    cur=$($P -d "$db" -tAc "SELECT ocx.cursor(txid, global_position) FROM ocx.events ORDER BY txid DESC, global_position DESC OFFSET 1000 LIMIT 1")
    echo "SELECT * FROM ocx.read_all('$cur'::ocx.cursor, 1000);" > "$BENCH_OUT/read_all$sfx.sql"
    echo "$cur" > "$BENCH_OUT/cursor$sfx"
    [ "$($P -d "$db" -tAc "SELECT count(*) FROM ocx.read_all('$cur'::ocx.cursor, 1000)")" = 1000 ] ||
        { say "$db: the read_all page after $cur is not 1,000 events"; return 1; }
}

# pair_tps NAME CLIENTS: NAME.sql on the log and NAME_ctl.sql on the control,
# 3 rounds, the order alternating (the log first in odd rounds): "median
# median" (tx/s)
pair_tps() {
    local name=$1 c=$2 i m="" k=""
    for i in 1 2 3; do
        if [ $((i % 2)) -eq 1 ]; then
            m="$m $(pgbench_tps "$BENCH_OUT/$name.sql" "$c")"
            k="$k $(PGDATABASE=$CTL pgbench_tps "$BENCH_OUT/${name}_ctl.sql" "$c")"
        else
            k="$k $(PGDATABASE=$CTL pgbench_tps "$BENCH_OUT/${name}_ctl.sql" "$c")"
            m="$m $(pgbench_tps "$BENCH_OUT/$name.sql" "$c")"
        fi
    done
    say "$name at $c clients: log$m, control$k"
    echo "$(echo $m | tr ' ' '\n' | sort -g | sed -n 2p) $(echo $k | tr ' ' '\n' | sort -g | sed -n 2p)"
}

# server_ms DB SUFFIX: the server's own time per call, in ms, of read_stream,
# the read_all page and load (BENCH_SCALE_CALLS calls of each in one DO block,
# timed with clock_timestamp: no client, socket or pgbench in the figure)
server_ms() {
    local db=$1 sfx=$2 n=${BENCH_SCALE_CALLS:-200}
    $P -d "$db" -tA -c "SET client_min_messages = notice" -c "DO \$\$
DECLARE j int; np int := (SELECT count(*) FROM scale_probe); t timestamptz; s text; a float8; b float8; c float8;
BEGIN
    -- one call of each first: a new session's first call fills its caches
    PERFORM * FROM ocx.read_stream((SELECT p.stream_id FROM scale_probe p WHERE p.i = 1), max_count => 100);
    PERFORM * FROM ocx.read_all('$(cat "$BENCH_OUT/cursor$sfx")'::ocx.cursor, 1000);
    PERFORM * FROM ocx.load('scale_account', 'sagg-1');
    t := clock_timestamp();
    FOR k IN 1..$n LOOP
        j := 1 + floor(random() * np)::int;
        SELECT p.stream_id INTO s FROM scale_probe p WHERE p.i = j;
        PERFORM * FROM ocx.read_stream(s, max_count => 100);
    END LOOP;
    a := extract(epoch FROM clock_timestamp() - t) * 1000 / $n;
    t := clock_timestamp();
    FOR k IN 1..$n LOOP PERFORM * FROM ocx.read_all('$(cat "$BENCH_OUT/cursor$sfx")'::ocx.cursor, 1000); END LOOP;
    b := extract(epoch FROM clock_timestamp() - t) * 1000 / $n;
    t := clock_timestamp();
    FOR k IN 1..$n LOOP PERFORM * FROM ocx.load('scale_account', 'sagg-1'); END LOOP;
    c := extract(epoch FROM clock_timestamp() - t) * 1000 / $n;
    RAISE NOTICE 'ms % % %', a, b, c;
END \$\$" 2>&1 | sed -n 's/^NOTICE:  ms //p'
}

# pair_ms: server_ms on the log and on the control, 5 rounds alternating:
# "rs ra ld rs_rel ra_rel ld_rel", the log's median ms per call and the median
# over the rounds of the round's log/control ratio
pair_ms() {
    local i a b rows=""
    for i in 1 2 3 4 5; do
        if [ $((i % 2)) -eq 1 ]; then
            a=$(server_ms "$PGDATABASE" ""); b=$(server_ms "$CTL" _ctl)
        else
            b=$(server_ms "$CTL" _ctl); a=$(server_ms "$PGDATABASE" "")
        fi
        say "server ms per call (read_stream, read_all page, load): log $a, control $b"
        rows="$rows$a $b
"
    done
    printf '%s' "$rows" | awk '{ for (j = 1; j <= 3; j++) { print "m" j, $j; print "r" j, ($(j + 3) > 0) ? $j / $(j + 3) : 0 } }' |
        sort -k1,1 -k2,2g | awk '{ v[$1] = v[$1] " " $2 }
            END { for (k in v) { n = split(v[k], x, " "); med[k] = x[int((n + 1) / 2)] }
                  printf "%.3f %.3f %.3f %.3f %.3f %.3f\n", med["m1"], med["m2"], med["m3"], med["r1"], med["r2"], med["r3"] }'
}

COLS="size events fill_s fill_eps append_tps read_stream_ps read_all_ps load_ps bytes_per_event total_bytes proj_s proj_events proj_eps append_ctl read_stream_ctl read_all_ctl load_ctl rs_ms ra_ms ld_ms rs_rel ra_rel ld_rel"

# report: the table, the flatness verdicts and the plots from results.tsv
report() {
    local md=$OUT/results.md
    {
        echo "Machine: $(nproc) cores (shared), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'), fsync on, shared_buffers 512MB; ${BENCH_SECONDS}s per pgbench run, median of 3; run of $(date -u +%Y-%m-%d)."
        echo
        echo "Each pgbench figure: the log's, then in parentheses the control's (a log of $CTL_SIZE events in another database, measured in alternating rounds with it)."
        echo
        echo "| events in the log | append_event, 8 clients (tx/s) | read_stream, 100 events (reads/s) | read_all page of 1,000 at the tail (pages/s) | load, 1,000-event aggregate (loads/s) | disk (bytes/event) | ocx tables on disk | projection on 1 of 20 categories: catch-up (s) | its events | its rate (events/s) | fill (events/s) |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|"
        awk -F'\t' 'NR > 1 { printf "| %\047d | %.0f (%.0f) | %.0f (%.0f) | %.0f (%.0f) | %.0f (%.0f) | %.0f | %.2f GB | %.1f | %\047d | %.0f | %.0f |\n",
            $2, $5, $14, $6, $15, $7, $16, $8, $17, $9, $10 / 1e9, $11, $12, $13, $4 }' "$OUT/results.tsv"
        echo
        echo "The server's own time per call (ms; ${BENCH_SCALE_CALLS:-200} calls in a DO block, median of 5 rounds), and in parentheses the log's over the control's (median of the rounds' ratios):"
        echo
        echo "| events in the log | read_stream, 100 events | read_all page of 1,000 | load, 1,000 events |"
        echo "|---|---|---|---|"
        awk -F'\t' 'NR > 1 { printf "| %\047d | %.2f (%.2f) | %.2f (%.2f) | %.2f (%.2f) |\n", $2, $18, $21, $19, $22, $20, $23 }' "$OUT/results.tsv"
        echo
        echo "Cost at the largest size over the cost at the smallest (cost: 1/throughput; bytes per event; seconds per applied event). For the four pgbench operations the cost is taken relative to the control's in the same rounds (raw: without); for the three reads also the server's own time relative to the control's; flat means <= 1.5 (for the reads: the server-side ratio):"
        echo
        echo "| operation | raw cost ratio | cost ratio against the control | server time against the control | <= 1.5 |"
        echo "|---|---|---|---|---|"
        awk -F'\t' 'NR == 2 { for (i = 1; i <= NF; i++) f[i] = $i } NR > 1 { for (i = 1; i <= NF; i++) l[i] = $i; n = NR }
            function v(name, raw, r, q,   x) { x = (q != "") ? q : (r != "") ? r : raw
                printf "| %s | %.2f | %s | %s | %s |\n", name, raw, (r == "" ? "" : sprintf("%.2f", r)),
                    (q == "" ? "" : sprintf("%.2f", q)), (x <= 1.5 ? "PASS" : "NO") }
            function c(name, m, k, s) { v(name, f[m] / l[m], (f[m] / l[m]) * (l[k] / f[k]), (s && f[s] > 0) ? l[s] / f[s] : "") }
            END { if (n < 3) { print "| (one size only: nothing to compare) | | | | |"; exit }
                  c("append_event, 8 clients", 5, 14, 0); c("read_stream, 100 events", 6, 15, 21)
                  c("read_all page of 1,000 at the tail", 7, 16, 22); c("load, 1,000 events", 8, 17, 23)
                  v("disk bytes per event", l[9] / f[9], "", ""); v("projection catch-up, per applied event", f[13] / l[13], "", "") }' \
            "$OUT/results.tsv"
    } > "$md"
    # the plots: throughput per operation, and every cost relative to the smallest size
    local f5 f6 f7 f8 f9 f13 f14 f15 f16 f17
    read -r f5 f6 f7 f8 f9 f13 f14 f15 f16 f17 < <(awk -F'\t' 'NR == 2 {print $5, $6, $7, $8, $9, $13, $14, $15, $16, $17}' "$OUT/results.tsv")
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
array ctl[6] = [14, 15, 16, 17, 0, 0]
array unit[6] = ["tx/s", "reads/s", "pages/s", "loads/s", "bytes", "applied events/s"]
set key bottom left
do for [i = 1:6] {
    set title what[i]; set ylabel unit[i]
    if (ctl[i] > 0) {
        plot "$OUT/results.tsv" using (\$2/1e6):(column(col[i])) with linespoints lw 2 title "the log", \
             "" using (\$2/1e6):(column(ctl[i])) with linespoints dt 2 title "control ($CTL_SIZE events)"
    } else {
        plot "$OUT/results.tsv" using (\$2/1e6):(column(col[i])) with linespoints lw 2 notitle
    }
}
unset multiplot
set output "$OUT/cost_ratio.png"
set terminal pngcairo size 900,560 noenhanced font ",10"
set title "cost relative to the smallest size; pgbench operations against the control (flat: <= 1.5)"
set ylabel "cost / cost at the smallest size"
set yrange [0:3]
set key top left
f5 = $f5; f6 = $f6; f7 = $f7; f8 = $f8; f9 = $f9; f13 = $f13; f14 = $f14; f15 = $f15; f16 = $f16; f17 = $f17
plot "$OUT/results.tsv" using (\$2/1e6):((f5/\$5)*(\$14/f14)) with linespoints lw 2 title "append_event", \
     "" using (\$2/1e6):((f6/\$6)*(\$15/f15)) with linespoints lw 2 title "read_stream", \
     "" using (\$2/1e6):((f7/\$7)*(\$16/f16)) with linespoints lw 2 title "read_all page", \
     "" using (\$2/1e6):((f8/\$8)*(\$17/f17)) with linespoints lw 2 title "load", \
     "" using (\$2/1e6):(\$9/f9) with linespoints lw 2 title "bytes/event", \
     "" using (\$2/1e6):(f13/\$13) with linespoints lw 2 title "projection, per event", \
     1.5 with lines dt 2 lc rgb "red" title "1.5x"
EOF
    if [ "$BENCH_SCALE_PUBLISH" = 1 ]; then
        mkdir -p docs/scale
        cp "$OUT"/cost_curves.png "$OUT"/cost_ratio.png "$OUT"/results.tsv docs/scale/
        awk -v f="$md" '/<!-- scale:begin -->/ { print; while ((getline l < f) > 0) print l; skip = 1; next }
                        /<!-- scale:end -->/ { skip = 0 } !skip' docs/performance.md > "$OUT/performance.md" &&
            cp "$OUT/performance.md" docs/performance.md
    fi
    cat "$md"
}

echo "$COLS" | tr ' ' '\t' > "$OUT/results.tsv"
setup_db "$PGDATABASE" && setup_db "$CTL" || exit 1
fill "$CTL" "$CTL_SIZE" || exit 1
for size in $SIZES; do
    # 1. the fill, up to the size (the probes of the last size count); the
    # control gets 2,000 more events the same way, so that the tail of both
    # logs, where the read_all page is read, is fill events and not the
    # single-event appends of the last size's append measurement
    fill "$CTL" "$(( $($P -d "$CTL" -tAc "SELECT count(*) FROM ocx.events") + 2000 ))" || exit 1
    fill "$PGDATABASE" "$size" || exit 1
    events=$($P -tAc "SELECT count(*) FROM ocx.events")
    say "$events events (fill: $fill_s s, $fill_eps events/s, then VACUUM ANALYZE)"

    # 2. the operations, each alternating with the control
    reads_for "$PGDATABASE" "" && reads_for "$CTL" _ctl || exit 1
    read -r rs rs_c < <(pair_tps read_stream 2)
    read -r ld ld_c < <(pair_tps load 2)
    read -r ra ra_c < <(pair_tps read_all 2)
    read -r ap ap_c < <(pair_tps append1 8)
    read -r rs_ms ra_ms ld_ms rs_rel ra_rel ld_rel < <(pair_ms)

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

    printf '%s\t' "$size" "$events" "$fill_s" "$fill_eps" "$ap" "$rs" "$ra" "$ld" "$bpe" "$total" "$ps" "$pn" \
        "$(awk -v n="$pn" -v s="$ps" 'BEGIN {print (s > 0) ? n / s : 0}')" "$ap_c" "$rs_c" "$ra_c" "$ld_c" \
        "$rs_ms" "$ra_ms" "$ld_ms" "$rs_rel" "$ra_rel" >> "$OUT/results.tsv"
    echo "$ld_rel" >> "$OUT/results.tsv"
    report
done
[ -s "$BENCH_OUT/pgbench_failures" ] && { say "a pgbench run failed: the figures are not valid"; cat "$BENCH_OUT/pgbench_failures" >&2; exit 1; }
say "done; dropping the cluster"
exit 0

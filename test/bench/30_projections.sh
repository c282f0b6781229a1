#!/usr/bin/env bash
# Projections (issue 4's targets):
#  1. an async projection with a trivial handler (one INSERT) applies events
#     at least as fast as the fastest append load produces them: events are
#     appended for BENCH_SECONDS with the projection paused (appended/s), then
#     it is resumed and timed until caught up (projected/s; the append rate is
#     the target here, not a baseline).  The plain-SQL baseline is a
#     hand-written catch-up over the same backlog: one loop that reads the log
#     after its checkpoint in log order, batch by batch (ocx.batch_size),
#     inserts into its model and moves its checkpoint in the batch's
#     transaction (exactly once, like ocx), set-based (no handler call per
#     event, which ocx makes).  3 rounds, each with a fresh backlog that both
#     catch up, the order alternating per round; the rows give the spread;
#  2. the same load with the projection running alongside, against the same
#     load with the hand-written loop running alongside (a background session
#     catching up, polling every 10 ms when it finds nothing; ocx is woken by
#     the commits): how far behind each is when the load stops, in seconds.
#     3 rounds, the order alternating; the other one is paused meanwhile and
#     catches up untimed before its own round;
#  3. wake-up latency from an append's commit to the projection's commit at a
#     light steady load (50 appends/s): median < 10 ms, p99 < 50 ms.  The
#     client commits an append, then polls the read model until the row is
#     visible (0.2 ms polls), so the figure includes both commits.
set -euo pipefail
. "$BENCH_DIR/lib.sh"
P="$PGBIN/psql -qX -v ON_ERROR_STOP=1"

$P <<'SQL'
CREATE TABLE bench_model (pos bigint, stream_id text, amount int);
CREATE FUNCTION bench_apply(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.bench_model VALUES (e.global_position, e.stream_id, (e.data->>'n')::int) $$;
SELECT ocx.define_projection('bench_model', 'bench_apply(ocx.event)', categories => '{pbatch}');
SQL
wait_caught_up bench_model

# the hand-written catch-up (its own model and checkpoint), once over what is
# there (hw_catch_up) or following the log until told to stop (hw_follow)
$P <<'SQL'
CREATE TABLE hw_model (pos bigint, stream_id text, amount int);
CREATE TABLE hw_checkpoint (txid xid8 NOT NULL, pos bigint NOT NULL);
INSERT INTO hw_checkpoint VALUES ('0', 0);
CREATE TABLE hw_stop (stop boolean);
CREATE PROCEDURE hw_catch_up(batch int) LANGUAGE plpgsql AS $$
DECLARE
    n int;
    c_txid xid8;
    c_pos bigint;
    horizon xid8;
BEGIN
    -- the checkpoint and the horizon as values, so the read is an index range
    -- scan of (txid, global_position) whatever the statistics say
    SELECT c.txid, c.pos INTO c_txid, c_pos FROM hw_checkpoint c;
    LOOP
        horizon := ocx.log_horizon();
        WITH b AS (
            SELECT e.txid, e.global_position, e.stream_id, e.data
              FROM ocx.events e
             WHERE (e.txid, e.global_position) > (c_txid, c_pos)
               AND e.txid < horizon
             ORDER BY e.txid, e.global_position
             LIMIT batch),
        ins AS (
            INSERT INTO hw_model
            SELECT b.global_position, b.stream_id, (b.data->>'n')::int FROM b
             WHERE b.stream_id LIKE 'pbatch-%')
        SELECT count(*), (array_agg(b.txid ORDER BY b.txid DESC, b.global_position DESC))[1],
               (array_agg(b.global_position ORDER BY b.txid DESC, b.global_position DESC))[1]
          INTO n, c_txid, c_pos FROM b;
        EXIT WHEN n = 0;
        UPDATE hw_checkpoint SET txid = c_txid, pos = c_pos;
        COMMIT;
    END LOOP;
END $$;
CREATE PROCEDURE hw_follow(batch int) LANGUAGE plpgsql AS $$
BEGIN
    LOOP
        CALL hw_catch_up(batch);
        EXIT WHEN EXISTS (SELECT 1 FROM hw_stop);
        PERFORM pg_sleep(0.01);
        COMMIT;
    END LOOP;
END $$;
SQL
batch=$($P -tAc "SHOW ocx.batch_size")
hw_caught_up() {
    for _ in $(seq 1 15000); do
        [ "$($P -tAc "SELECT NOT EXISTS (SELECT 1 FROM ocx.events e, hw_checkpoint c
                        WHERE (e.txid, e.global_position) > (c.txid, c.pos))")" = t ] && return 0
        sleep 0.02
    done
    echo "the hand-written catch-up did not catch up" >&2
    return 1
}
now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN {print (b > a) ? n / (b - a) : 0}'; }
count_of() { $P -tAc "SELECT count(*) FROM $1"; }
load() {   # the append load; a failed pgbench is recorded by pgbench_tps
    pgbench_tps "$BENCH_OUT/proj_append100.sql" 4 >/dev/null || true
}

# 1. throughput: the fastest append load (100 events per call, 4 clients)
events=$(tick_events 100)
printf '\\set s random(1, 1000000)\nSELECT ocx.append(%spbatch-%s || :s, NULL, %s[%s]%s);\n' "'" "'" "'" "$events" "'" > "$BENCH_OUT/proj_append100.sql"
ocx_catch() {   # resume the paused projection and time its catch-up: events/s
    local n0 t0 t1
    n0=$(count_of bench_model)
    $P -c "SELECT ocx.resume_projection('bench_model')" >/dev/null
    t0=$(now); wait_caught_up bench_model; t1=$(now)
    rate $(( $(count_of bench_model) - n0 )) "$t0" "$t1"
}
hw_catch() {    # the hand-written catch-up over the same backlog: events/s
    local n0 t0 t1
    n0=$(count_of hw_model)
    t0=$(now); $P -c "CALL hw_catch_up($batch)" >/dev/null; t1=$(now)
    rate $(( $(count_of hw_model) - n0 )) "$t0" "$t1"
}
hw_catch >/dev/null   # whatever is in the log already, untimed
lp=""; la=""; lo=""; lh=""
for r in 1 2 3; do   # a fresh backlog per round, the order alternating
    $P -c "SELECT ocx.pause_projection('bench_model')" >/dev/null
    before=$(count_of "ocx.events WHERE stream_id LIKE 'pbatch-%'")
    t0=$(now); load; t1=$(now)
    appended=$(( $(count_of "ocx.events WHERE stream_id LIKE 'pbatch-%'") - before ))
    if [ $((r % 2)) -eq 1 ]; then o=$(ocx_catch); h=$(hw_catch); else h=$(hw_catch); o=$(ocx_catch); fi
    la="$la $(rate "$appended" "$t0" "$t1")"; lo="$lo $o"; lh="$lh $h"
    echo "bench: round $r: $appended events appended; catch-up ocx $o/s, hand-written $h/s" >&2
done
hw_rows=$(count_of hw_model); ocx_rows=$(count_of bench_model)
[ "$hw_rows" -eq "$ocx_rows" ] || echo "bench: the hand-written catch-up has $hw_rows rows, the projection $ocx_rows" | tee -a "$BENCH_OUT/pgbench_failures" >&2
mean() { echo "$1" | awk '{s = 0; for (i = 1; i <= NF; i++) s += $i; print (NF ? s / NF : 0)}'; }
spread_rounds "$lo" "$la"
row "async projection, INSERT handler: projected vs appended (events/s; target: the append rate)" "$(mean "$lo")" "$(mean "$la")" 1.0
spread_rounds "$lo" "$lh"
row "async projection catch-up vs a hand-written set-based catch-up, same backlog (events/s)" "$(mean "$lo")" "$(mean "$lh")" 0.3

# 2. the same load with the projection running alongside, against the same
#    load with the hand-written loop running alongside: behind when it stops
ocx_alongside() {   # seconds
    local t1 t2
    load; t1=$(now); wait_caught_up bench_model; t2=$(now)
    awk -v a="$t1" -v b="$t2" 'BEGIN {printf "%.3f", b - a}'
}
hw_alongside() {    # seconds
    local t1 t2 follower
    $P -c "SELECT ocx.pause_projection('bench_model')" -c "TRUNCATE hw_stop" >/dev/null
    $P -c "CALL hw_follow($batch)" >/dev/null & follower=$!
    load; t1=$(now); hw_caught_up; t2=$(now)
    $P -c "INSERT INTO hw_stop VALUES (true)" >/dev/null
    wait "$follower"
    $P -c "SELECT ocx.resume_projection('bench_model')" >/dev/null
    wait_caught_up bench_model   # the projection's backlog, untimed
    awk -v a="$t1" -v b="$t2" 'BEGIN {printf "%.3f", b - a}'
}
lo=""; lh=""
for r in 1 2 3; do
    $P -c "CALL hw_catch_up($batch)" >/dev/null   # the hand-written backlog, untimed
    if [ $((r % 2)) -eq 1 ]; then o=$(ocx_alongside); h=$(hw_alongside); else h=$(hw_alongside); o=$(ocx_alongside); fi
    lo="$lo $o"; lh="$lh $h"
done
echo "bench: behind when the load stops (s): projection$lo; hand-written loop$lh" >&2
hw_rows=$(count_of hw_model); ocx_rows=$(count_of bench_model)
[ "$hw_rows" -eq "$ocx_rows" ] || echo "bench: alongside the load, the hand-written loop has $hw_rows rows, the projection $ocx_rows" | tee -a "$BENCH_OUT/pgbench_failures" >&2
spread_rounds "$lo" "$lh"
awk -v o="$(mean "$lo")" -v b="$(mean "$lh")" 'BEGIN {
    printf "| async projection running alongside the 100-event append load: behind when it stops (s; baseline: the hand-written loop alongside) | %.3f | %.3f | %.2f | < 1 s | %s |\n", o, b, (b > 0 ? o / b : 0), (o < 1 ? "yes" : "NO") }' | spread_note

# 3. wake-up latency at a light steady load
$P <<'SQL'
CREATE TABLE bench_latency (ms float8);
CREATE TABLE bench_seen (pos bigint PRIMARY KEY);
CREATE FUNCTION bench_seen(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.bench_seen VALUES (e.global_position) $$;
SELECT ocx.define_projection('bench_latency', 'bench_seen(ocx.event)', categories => '{plat}');
CREATE PROCEDURE bench_measure(n int) LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
    p bigint;
    t0 timestamptz;
BEGIN
    FOR i IN 1..n LOOP
        v := ocx.append_event('plat-1', NULL, 'Ping', '{}');
        SELECT e.global_position INTO p FROM ocx.events e
         WHERE e.stream_id = 'plat-1' AND e.stream_version = v;
        COMMIT;
        t0 := clock_timestamp();
        LOOP
            EXIT WHEN EXISTS (SELECT 1 FROM public.bench_seen WHERE pos = p);
            PERFORM pg_sleep(0.0002);
            IF clock_timestamp() - t0 > interval '10 s' THEN
                RAISE EXCEPTION 'event % not projected after 10 s', p;
            END IF;
        END LOOP;
        INSERT INTO public.bench_latency VALUES (extract(epoch FROM clock_timestamp() - t0) * 1000);
        COMMIT;
        PERFORM pg_sleep(0.02);
    END LOOP;
END $$;
SQL
wait_caught_up bench_latency
# the sections above leave ~1.3 million events and a model's worth of dirty
# pages: flush them first, so the probe's commits are not timed against the
# checkpointer's writes
$P -c "CHECKPOINT" >/dev/null
$P -c "CALL bench_measure(20)" >/dev/null   # warm-up
$P -c "TRUNCATE bench_latency" >/dev/null
$P -c "CALL bench_measure($((BENCH_SECONDS * 40)))" >/dev/null
read -r median p99 < <($P -tAF' ' -c "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) FROM bench_latency")
row "wake-up latency append commit -> projection commit, median (ms; baseline = target)" "$median" 10 1.0 lower
row "wake-up latency append commit -> projection commit, p99 (ms; baseline = target)" "$p99" 50 1.0 lower
$P -c "SELECT ocx.drop_projection('bench_model'); SELECT ocx.drop_projection('bench_latency')" >/dev/null

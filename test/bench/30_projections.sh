#!/usr/bin/env bash
# Projections (issue 4's targets):
#  1. an async projection with a trivial handler (one INSERT) applies events
#     at least as fast as the fastest append load produces them: events are
#     appended for BENCH_SECONDS with the projection paused (appended/s), then
#     it is resumed and timed until caught up (projected/s).  Against a
#     hand-written catch-up over the same backlog: one plain-SQL loop that
#     reads the log after its checkpoint in log order, batch by batch
#     (ocx.batch_size), inserts into its model and moves its checkpoint in the
#     batch's transaction (exactly once, like ocx), set-based (no handler call
#     per event, which ocx makes); then the same load with the projection
#     running alongside: how far behind it is when the load stops;
#  2. wake-up latency from an append's commit to the projection's commit at a
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

# 1. throughput: the fastest append load (100 events per call, 4 clients)
events=$(tick_events 100)
printf '\\set s random(1, 1000000)\nSELECT ocx.append(%spbatch-%s || :s, NULL, %s[%s]%s);\n' "'" "'" "'" "$events" "'" > "$BENCH_OUT/proj_append100.sql"
$P -c "SELECT ocx.pause_projection('bench_model')" >/dev/null
before=$($P -tAc "SELECT count(*) FROM ocx.events WHERE stream_id LIKE 'pbatch-%'")
t0=$(date +%s.%N)
"$PGBIN/pgbench" -n -c 4 -j 2 -T "$BENCH_SECONDS" -f "$BENCH_OUT/proj_append100.sql" >/dev/null 2>&1 ||
    echo "bench: pgbench proj_append100.sql failed" | tee -a "$BENCH_OUT/pgbench_failures" >&2
t1=$(date +%s.%N)
after=$($P -tAc "SELECT count(*) FROM ocx.events WHERE stream_id LIKE 'pbatch-%'")
appended=$((after - before))
$P -c "SELECT ocx.resume_projection('bench_model')" >/dev/null
t2=$(date +%s.%N)
wait_caught_up bench_model
t3=$(date +%s.%N)
append_rate=$(awk -v n="$appended" -v a="$t0" -v b="$t1" 'BEGIN {print n / (b - a)}')
project_rate=$(awk -v n="$appended" -v a="$t2" -v b="$t3" 'BEGIN {print n / (b - a)}')
row "async projection, INSERT handler: projected vs appended (events/s)" "$project_rate" "$append_rate" 1.0

# the hand-written catch-up over the same backlog (its own model and checkpoint)
$P <<'SQL'
CREATE TABLE hw_model (pos bigint, stream_id text, amount int);
CREATE TABLE hw_checkpoint (txid xid8 NOT NULL, pos bigint NOT NULL);
INSERT INTO hw_checkpoint VALUES ('0', 0);
CREATE PROCEDURE hw_catch_up(batch int) LANGUAGE plpgsql AS $$
DECLARE
    n int;
    last_txid xid8;
    last_pos bigint;
BEGIN
    LOOP
        WITH b AS (
            SELECT e.txid, e.global_position, e.stream_id, e.data
              FROM ocx.events e, hw_checkpoint c
             WHERE (e.txid, e.global_position) > (c.txid, c.pos)
               AND e.txid < ocx.log_horizon()
             ORDER BY e.txid, e.global_position
             LIMIT batch),
        ins AS (
            INSERT INTO hw_model
            SELECT b.global_position, b.stream_id, (b.data->>'n')::int FROM b
             WHERE b.stream_id LIKE 'pbatch-%')
        SELECT count(*), (array_agg(b.txid ORDER BY b.txid DESC, b.global_position DESC))[1],
               (array_agg(b.global_position ORDER BY b.txid DESC, b.global_position DESC))[1]
          INTO n, last_txid, last_pos FROM b;
        EXIT WHEN n = 0;
        UPDATE hw_checkpoint SET txid = last_txid, pos = last_pos;
        COMMIT;
    END LOOP;
END $$;
SQL
batch=$($P -tAc "SHOW ocx.batch_size")
t4=$(date +%s.%N)
$P -c "CALL hw_catch_up($batch)" >/dev/null
t5=$(date +%s.%N)
hw_rows=$($P -tAc "SELECT count(*) FROM hw_model")
ocx_rows=$($P -tAc "SELECT count(*) FROM bench_model")
[ "$hw_rows" -eq "$ocx_rows" ] || echo "bench: the hand-written catch-up has $hw_rows rows, the projection $ocx_rows" | tee -a "$BENCH_OUT/pgbench_failures" >&2
hw_rate=$(awk -v n="$hw_rows" -v a="$t4" -v b="$t5" 'BEGIN {print n / (b - a)}')
ocx_catch=$(awk -v n="$ocx_rows" -v a="$t2" -v b="$t3" 'BEGIN {print n / (b - a)}')
echo "bench: catch-up over $ocx_rows events: projection $(awk -v a="$t2" -v b="$t3" 'BEGIN {printf "%.2f", b - a}') s, hand-written $(awk -v a="$t4" -v b="$t5" 'BEGIN {printf "%.2f", b - a}') s" >&2
row "async projection catch-up vs a hand-written set-based catch-up, same backlog (events/s)" "$ocx_catch" "$hw_rate" 0.3

# the same load with the projection running alongside: how far behind it is
# when the load stops (seconds until caught up; baseline = target)
t0=$(date +%s.%N)
"$PGBIN/pgbench" -n -c 4 -j 2 -T "$BENCH_SECONDS" -f "$BENCH_OUT/proj_append100.sql" >/dev/null 2>&1 ||
    echo "bench: pgbench proj_append100.sql failed" | tee -a "$BENCH_OUT/pgbench_failures" >&2
t1=$(date +%s.%N)
wait_caught_up bench_model
t2=$(date +%s.%N)
row "async projection running alongside the 100-event append load: behind when it stops (s; baseline = target)" \
    "$(awk -v a="$t1" -v b="$t2" 'BEGIN {printf "%.3f", b - a}')" 1 1.0 lower

# 2. wake-up latency at a light steady load
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

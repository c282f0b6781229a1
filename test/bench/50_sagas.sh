#!/usr/bin/env bash
# Sagas (issue 6's targets):
# 1. step transition latency, success event committed -> next command
#    visible, with 1,000 running sagas: median and p99 (goal p99 < 10 ms).
#    Baseline: the same probe against a plain table where a trigger inserts
#    the next command in the event's own transaction (the probe's floor).
#    3 rounds of PROBES/3 probes each, the order alternating per round; the
#    row gives the median and p99 of all probes and the spread of the rounds'
#    medians.
# 2. sagas completed per second, 1,000 concurrent 3-step sagas run by the
#    worker (in-server handlers), timed from before start_saga to the last
#    saga's finish.  Baseline: what a hand-written saga runner in one process
#    does for the same work, batched as the worker batches (16 commands per
#    transaction): per batch of 16 sagas, one transaction starts them (saga
#    rows and first commands), then per step one transaction for the
#    handlers' events and one for the transitions (saga rows updated, next
#    commands written): 7 transactions per 16 sagas.  Its clock (pgbench's)
#    also runs from before the start, and counts only whole sagas (16 per
#    pgbench transaction).  It keeps no command history and no step audit
#    log, which ocx writes.  3 rounds each, the order alternating, the spread
#    in the row.
set -euo pipefail
. "$BENCH_DIR/lib.sh"
P="$PGBIN/psql -qX -v ON_ERROR_STOP=1"
N=${BENCH_SAGAS:-1000}
PROBES=${BENCH_SAGA_PROBES:-300}

$P -o /dev/null <<'SQL'
-- probe saga: its commands are handled in the server and do nothing, so each
-- saga waits for the event the probe appends
CREATE FUNCTION bench_noop(c ocx.command) RETURNS void LANGUAGE sql AS 'SELECT';
SELECT ocx.define_command_handler('bench.P' || k, 'bench_noop(ocx.command)') FROM generate_series(1, 3) k;
SELECT ocx.define_saga('bench_probe', '{"steps": [
  {"name": "s1", "command": "bench.P1", "success": "bench.P1Done"},
  {"name": "s2", "command": "bench.P2", "success": "bench.P2Done"},
  {"name": "s3", "command": "bench.P3", "success": "bench.P3Done"}]}');
CREATE TABLE bench_probe_ms (round int, ms float8);
CREATE TABLE bench_probe_base_ms (round int, ms float8);

CREATE PROCEDURE bench_probe(n int, r int) LANGUAGE plpgsql AS $$
DECLARE
    id uuid; nxt uuid; t0 timestamptz; k int;
BEGIN
    FOR k IN 1..n LOOP
        SELECT saga_id INTO id FROM ocx.saga_instances
         WHERE saga_name = 'bench_probe' AND state = 'running' AND current_step = 1 LIMIT 1;
        EXIT WHEN id IS NULL;
        nxt := md5(id::text || '/2/do')::uuid;
        PERFORM ocx.append('bench_probe-' || id, NULL,
                           jsonb_build_object('type', 'bench.P1Done', 'data', '{}'::jsonb, 'correlation_id', id));
        COMMIT;
        t0 := clock_timestamp();
        LOOP
            EXIT WHEN EXISTS (SELECT 1 FROM ocx.commands WHERE command_id = nxt);
            IF clock_timestamp() > t0 + interval '10 seconds' THEN
                RAISE EXCEPTION 'saga % did not advance within 10 seconds: is the ocx worker running?', id;
            END IF;
            PERFORM pg_sleep(0.0002);
        END LOOP;
        INSERT INTO bench_probe_ms VALUES (r, extract(epoch FROM clock_timestamp() - t0) * 1000);
        COMMIT;
    END LOOP;
END $$;

-- the floor: a trigger writes the next command in the event's transaction
CREATE TABLE bench_raw_events (id bigserial, saga bigint, type text, data jsonb);
CREATE TABLE bench_raw_cmds (id bigserial, saga bigint, type text, data jsonb);
CREATE FUNCTION bench_raw_next() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_raw_cmds (saga, type, data) VALUES (NEW.saga, 'next', NEW.data);
    RETURN NEW;
END $$;
CREATE TRIGGER bench_raw_next AFTER INSERT ON bench_raw_events FOR EACH ROW EXECUTE FUNCTION bench_raw_next();
CREATE INDEX ON bench_raw_cmds (saga);
CREATE PROCEDURE bench_probe_base(n int, r int) LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz; k int;
BEGIN
    FOR k IN (r - 1) * n + 1 .. r * n LOOP
        INSERT INTO bench_raw_events (saga, type, data) VALUES (k, 'P1Done', '{}');
        COMMIT;
        t0 := clock_timestamp();
        LOOP
            EXIT WHEN EXISTS (SELECT 1 FROM bench_raw_cmds WHERE saga = k)
                   OR clock_timestamp() > t0 + interval '10 seconds';
            PERFORM pg_sleep(0.0002);
        END LOOP;
        IF NOT EXISTS (SELECT 1 FROM bench_raw_cmds WHERE saga = k) THEN
            RAISE EXCEPTION 'baseline probe %: no command within 10 seconds', k;
        END IF;
        INSERT INTO bench_probe_base_ms VALUES (r, extract(epoch FROM clock_timestamp() - t0) * 1000);
        COMMIT;
    END LOOP;
END $$;

-- throughput saga: three steps, each handled in the server
CREATE FUNCTION bench_saga_step(c ocx.command) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ocx.append('bench_saga-' || c.correlation_id, NULL,
                       jsonb_build_object('type', c.type || 'Done', 'data', c.data));
    RETURN NULL;
END $$;
SELECT ocx.define_command_handler('bench.T' || k, 'bench_saga_step(ocx.command)') FROM generate_series(1, 3) k;
SELECT ocx.define_saga('bench_three', '{"steps": [
  {"name": "s1", "command": "bench.T1", "success": "bench.T1Done"},
  {"name": "s2", "command": "bench.T2", "success": "bench.T2Done", "data": {"prev": "$.steps.s1.n", "n": 2}},
  {"name": "s3", "command": "bench.T3", "success": "bench.T3Done", "data": {"prev": "$.steps.s2.n", "n": 3}}]}');

-- baseline for throughput: a saga table, a command table, an event table
CREATE TABLE bench_raw_saga (id bigint PRIMARY KEY, step int NOT NULL, state text NOT NULL);
CREATE SEQUENCE bench_raw_saga_seq;
SQL

# 1. transition latency with N running sagas
$P -c "SELECT count(ocx.start_saga('bench_probe', jsonb_build_object('k', k))) FROM generate_series(1, $N) k" >/dev/null
$P -c "DO \$\$ BEGIN
    FOR i IN 1..6000 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM ocx.commands WHERE type = 'bench.P1' AND status <> 'succeeded');
        PERFORM pg_sleep(0.01);
    END LOOP; END \$\$" >/dev/null
per=$(( PROBES / 3 ))
for r in 1 2 3; do   # the order alternates per round
    if [ $((r % 2)) -eq 1 ]; then
        $P -c "CALL bench_probe($per, $r)"; $P -c "CALL bench_probe_base($per, $r)"
    else
        $P -c "CALL bench_probe_base($per, $r)"; $P -c "CALL bench_probe($per, $r)"
    fi
done
probed=$($P -At -c "SELECT count(*) FROM bench_probe_ms")
[ "$probed" -eq $(( per * 3 )) ] ||
    echo "bench: only $probed of $(( per * 3 )) saga probes ran (too few running sagas?)" | tee -a "$BENCH_OUT/pgbench_failures" >&2
# pooled median and p99 of each side, and the min-max of the rounds' medians
pct_sql() {   # table, percentile: pooled, then the rounds' min-max
    echo "(SELECT round(percentile_cont($2) WITHIN GROUP (ORDER BY ms)::numeric, 2) FROM $1),
          (SELECT round(min(m)::numeric, 2) || '-' || round(max(m)::numeric, 2) FROM
             (SELECT percentile_cont($2) WITHIN GROUP (ORDER BY ms) m FROM $1 GROUP BY round) x)"
}
read -r med medr p99 p99r bmed bmedr bp99 bp99r < <($P -At -F ' ' -c "
    SELECT $(pct_sql bench_probe_ms 0.5), $(pct_sql bench_probe_ms 0.99),
           $(pct_sql bench_probe_base_ms 0.5), $(pct_sql bench_probe_base_ms 0.99)")
echo "3 rounds of $per probes: ocx median $medr, baseline median $bmedr" > "$BENCH_OUT/spread"
awk -v w="saga step transition, median (ms), $N running sagas" -v o="$med" -v b="$bmed" 'BEGIN {
    printf "| %s | %.2f | %.2f | %.1f | < 5 ms | %s |\n", w, o, b, (b > 0 ? o / b : 0), (o < 5 ? "yes" : "NO") }' | spread_note
echo "3 rounds of $per probes: ocx p99 $p99r, baseline p99 $bp99r" > "$BENCH_OUT/spread"
awk -v w="saga step transition, p99 (ms), $N running sagas" -v o="$p99" -v b="$bp99" 'BEGIN {
    printf "| %s | %.2f | %.2f | %.1f | < 10 ms | %s |\n", w, o, b, (b > 0 ? o / b : 0), (o < 10 ? "yes" : "NO") }' | spread_note
# the probe sagas are done with: abort them so they do not weigh on the rest
$P -c "SELECT count(ocx.abort_saga(saga_id)) FROM ocx.saga_instances WHERE saga_name = 'bench_probe' AND state = 'running'" >/dev/null

# 2. N concurrent 3-step sagas, run by the worker, against the batched
#    hand-written runner
cat > "$BENCH_OUT/saga_raw.sql" <<'SQL'
BEGIN;
SELECT nextval('bench_raw_saga_seq') * 16 AS b \gset
INSERT INTO bench_raw_saga SELECT :b + i, 1, 'running' FROM generate_series(0, 15) i;
INSERT INTO bench_raw_cmds (saga, type, data) SELECT :b + i, 'T1', jsonb_build_object('n', 1, 'k', i) FROM generate_series(0, 15) i;
COMMIT;
BEGIN;
INSERT INTO bench_raw_events (saga, type, data) SELECT :b + i, 'T1Done', jsonb_build_object('n', 1) FROM generate_series(0, 15) i;
COMMIT;
BEGIN;
UPDATE bench_raw_saga SET step = 2 WHERE id BETWEEN :b AND :b + 15;
INSERT INTO bench_raw_cmds (saga, type, data) SELECT :b + i, 'T2', jsonb_build_object('prev', 1, 'n', 2) FROM generate_series(0, 15) i;
COMMIT;
BEGIN;
INSERT INTO bench_raw_events (saga, type, data) SELECT :b + i, 'T2Done', jsonb_build_object('n', 2) FROM generate_series(0, 15) i;
COMMIT;
BEGIN;
UPDATE bench_raw_saga SET step = 3 WHERE id BETWEEN :b AND :b + 15;
INSERT INTO bench_raw_cmds (saga, type, data) SELECT :b + i, 'T3', jsonb_build_object('prev', 2, 'n', 3) FROM generate_series(0, 15) i;
COMMIT;
BEGIN;
INSERT INTO bench_raw_events (saga, type, data) SELECT :b + i, 'T3Done', jsonb_build_object('n', 3) FROM generate_series(0, 15) i;
COMMIT;
BEGIN;
UPDATE bench_raw_saga SET state = 'completed' WHERE id BETWEEN :b AND :b + 15;
COMMIT;
SQL
$P -c "DROP TRIGGER bench_raw_next ON bench_raw_events" >/dev/null

# one ocx round: N sagas, from before start_saga to the last one's finish
ocx_round() {
    local t0 secs done_n
    $P -c "TRUNCATE bench_round_start" >/dev/null
    $P -c "INSERT INTO bench_round_start VALUES (clock_timestamp())" \
       -c "DO \$\$ BEGIN PERFORM ocx.start_saga('bench_three', jsonb_build_object('n', 1, 'k', k)) FROM generate_series(1, $N) k; END \$\$" >/dev/null
    $P -c "DO \$\$ BEGIN
        FOR i IN 1..6000 LOOP
            EXIT WHEN NOT EXISTS (SELECT 1 FROM ocx.saga_instances WHERE saga_name = 'bench_three' AND state = 'running');
            PERFORM pg_sleep(0.01);
        END LOOP; END \$\$" >/dev/null
    read -r secs done_n < <($P -At -F ' ' -c "
        SELECT extract(epoch FROM max(i.finished_at) - (SELECT t FROM bench_round_start)), count(*)
          FROM ocx.saga_instances i
         WHERE i.saga_name = 'bench_three' AND i.state = 'completed'
           AND i.started_at >= (SELECT t FROM bench_round_start)")
    [ "$done_n" -eq "$N" ] || echo "bench: only $done_n of $N sagas completed" | tee -a "$BENCH_OUT/pgbench_failures" >&2
    awk -v n="$done_n" -v s="$secs" 'BEGIN {print (s > 0) ? n / s : 0}'
}
$P -c "CREATE TABLE bench_round_start (t timestamptz)" >/dev/null
lo=""; lb=""
for r in 1 2 3; do   # the order alternates per round
    if [ $((r % 2)) -eq 1 ]; then
        o=$(ocx_round); b=$(pgbench_tps "$BENCH_OUT/saga_raw.sql" 1)
    else
        b=$(pgbench_tps "$BENCH_OUT/saga_raw.sql" 1); o=$(ocx_round)
    fi
    lo="$lo $o"; lb="$lb $(awk -v t="${b:-0}" 'BEGIN {print t * 16}')"
done
echo "bench: sagas/s rounds: ocx$lo; hand-written runner$lb" >&2
spread_rounds "$lo" "$lb"
ocx_rate=$(echo "$lo" | awk '{s = 0; for (i = 1; i <= NF; i++) s += $i; print s / NF}')
base_rate=$(echo "$lb" | awk '{s = 0; for (i = 1; i <= NF; i++) s += $i; print s / NF}')
row "3-step sagas completed/s, $N concurrent (worker vs a hand-written runner batching 16 per transaction)" "$ocx_rate" "$base_rate" 0.1

#!/usr/bin/env bash
# Sagas (issue 6's targets):
# 1. step transition latency, success event committed -> next command
#    visible, with 1,000 running sagas: median and p99 (goal p99 < 10 ms).
#    Baseline: the same probe against a plain table where a trigger inserts
#    the next command in the event's own transaction (the probe's floor).
# 2. sagas completed per second, 1,000 concurrent 3-step sagas run by the
#    worker (in-server handlers).  Baseline: the same row changes without
#    ocx, one client (the worker is one process), one transaction per step.
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
CREATE TABLE bench_probe_ms (ms float8);
CREATE TABLE bench_probe_base_ms (ms float8);

CREATE PROCEDURE bench_probe(n int) LANGUAGE plpgsql AS $$
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
        INSERT INTO bench_probe_ms VALUES (extract(epoch FROM clock_timestamp() - t0) * 1000);
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
CREATE PROCEDURE bench_probe_base(n int) LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz; k int;
BEGIN
    FOR k IN 1..n LOOP
        INSERT INTO bench_raw_events (saga, type, data) VALUES (k, 'P1Done', '{}');
        COMMIT;
        t0 := clock_timestamp();
        LOOP
            EXIT WHEN EXISTS (SELECT 1 FROM bench_raw_cmds WHERE saga = k)
                   OR clock_timestamp() > t0 + interval '10 seconds';
            PERFORM pg_sleep(0.0002);
        END LOOP;
        INSERT INTO bench_probe_base_ms VALUES (extract(epoch FROM clock_timestamp() - t0) * 1000);
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
$P -c "CALL bench_probe_base($PROBES)"
$P -c "CALL bench_probe($PROBES)"
read -r med p99 bmed bp99 < <($P -At -F ' ' -c "
    SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY a.ms)::numeric, 2),
           round(percentile_cont(0.99) WITHIN GROUP (ORDER BY a.ms)::numeric, 2),
           (SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2) FROM bench_probe_base_ms),
           (SELECT round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2) FROM bench_probe_base_ms)
      FROM bench_probe_ms a")
awk -v w="saga step transition, median (ms), $N running sagas" -v o="$med" -v b="$bmed" 'BEGIN {
    printf "| %s | %.2f | %.2f | %.1f | < 5 ms | %s |\n", w, o, b, (b > 0 ? o / b : 0), (o < 5 ? "yes" : "NO") }'
awk -v w="saga step transition, p99 (ms), $N running sagas" -v o="$p99" -v b="$bp99" 'BEGIN {
    printf "| %s | %.2f | %.2f | %.1f | < 10 ms | %s |\n", w, o, b, (b > 0 ? o / b : 0), (o < 10 ? "yes" : "NO") }'
# the probe sagas are done with: abort them so they do not weigh on the rest
$P -c "SELECT count(ocx.abort_saga(saga_id)) FROM ocx.saga_instances WHERE saga_name = 'bench_probe' AND state = 'running'" >/dev/null

# 2. N concurrent 3-step sagas, run by the worker
secs=$($P -At -c "
    DO \$\$ BEGIN PERFORM ocx.start_saga('bench_three', jsonb_build_object('n', 1, 'k', k)) FROM generate_series(1, $N) k; END \$\$;
    SELECT extract(epoch FROM clock_timestamp())" | tail -n1)
$P -c "DO \$\$ BEGIN
    FOR i IN 1..6000 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM ocx.saga_instances WHERE saga_name = 'bench_three' AND state = 'running');
        PERFORM pg_sleep(0.01);
    END LOOP; END \$\$" >/dev/null
secs=$($P -At -c "SELECT max(extract(epoch FROM finished_at)) - $secs FROM ocx.saga_instances WHERE saga_name = 'bench_three'")
done_n=$($P -At -c "SELECT count(*) FROM ocx.saga_instances WHERE saga_name = 'bench_three' AND state = 'completed'")
ocx_rate=$(awk -v n="$done_n" -v s="$secs" 'BEGIN {print (s > 0) ? n / s : 0}')

cat > "$BENCH_OUT/saga_raw.sql" <<'SQL'
\set k random(1, 1000000)
BEGIN;
SELECT nextval('bench_raw_saga_seq') AS id \gset
INSERT INTO bench_raw_saga VALUES (:id, 1, 'running');
INSERT INTO bench_raw_cmds (saga, type, data) VALUES (:id, 'T1', jsonb_build_object('k', :k));
COMMIT;
BEGIN;
INSERT INTO bench_raw_events (saga, type, data) VALUES (:id, 'T1Done', '{}');
UPDATE bench_raw_saga SET step = 2 WHERE id = :id;
COMMIT;
BEGIN;
INSERT INTO bench_raw_events (saga, type, data) VALUES (:id, 'T2Done', '{}');
UPDATE bench_raw_saga SET step = 3 WHERE id = :id;
COMMIT;
BEGIN;
INSERT INTO bench_raw_events (saga, type, data) VALUES (:id, 'T3Done', '{}');
UPDATE bench_raw_saga SET state = 'completed' WHERE id = :id;
COMMIT;
SQL
$P -c "DROP TRIGGER bench_raw_next ON bench_raw_events" >/dev/null
base_rate=$(pgbench_tps "$BENCH_OUT/saga_raw.sql" 1)
row "3-step sagas completed/s, $N concurrent (worker vs one plain-SQL client)" "$ocx_rate" "${base_rate:-0}" 0.1

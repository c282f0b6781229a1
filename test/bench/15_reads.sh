#!/usr/bin/env bash
# Reads of issue 13 on a 100,000-event stream: ocx.last_event and a backward
# read_stream of 10 events, each against the same plain SELECT ... ORDER BY
# stream_version DESC LIMIT on ocx.events (target: within 2x, ratio >= 0.5).
# Prepared statements (-M prepared) on both sides, as an application would.
# A third row reads from a time (after_time) near the end of a log of
# 100,000 events against the plain SELECT on the log-order index from the
# cursor that time maps to (the one a client that knew it would pass); no
# target, shown for the cost of the time map's look-up.
set -euo pipefail
. "$BENCH_DIR/lib.sh"
P="$PGBIN/psql -qX -v ON_ERROR_STOP=1"

$P -c "SELECT ocx.append('rdbench-1', 0, (SELECT jsonb_agg(jsonb_build_object('type', CASE WHEN i % 10 = 0 THEN 'Marked' ELSE 'Tick' END, 'data', jsonb_build_object('n', i))) FROM generate_series(1, 100000) i))" >/dev/null
# other streams around it, so the index holds more than the one stream
$P -c "SELECT ocx.append('rdbench-' || s, 0, '[{\"type\": \"Tick\", \"data\": {}}, {\"type\": \"Tick\", \"data\": {}}]') FROM generate_series(2, 2000) s" >/dev/null
$P -c "VACUUM ANALYZE ocx.events" >/dev/null

cat > "$BENCH_OUT/rd_last.sql" <<'SQL'
SELECT * FROM ocx.last_event('rdbench-1');
SQL
cat > "$BENCH_OUT/rd_last_raw.sql" <<'SQL'
SELECT * FROM ocx.events WHERE stream_id = 'rdbench-1' ORDER BY stream_version DESC LIMIT 1;
SQL
cat > "$BENCH_OUT/rd_back.sql" <<'SQL'
SELECT * FROM ocx.read_stream('rdbench-1', NULL, 10, 'backward');
SQL
cat > "$BENCH_OUT/rd_back_raw.sql" <<'SQL'
SELECT * FROM ocx.events WHERE stream_id = 'rdbench-1' ORDER BY stream_version DESC LIMIT 10;
SQL

read -r o b < <(alt_tps "$BENCH_OUT/rd_last.sql" "$BENCH_OUT/rd_last_raw.sql" 2 3 -M prepared)
row "last_event, 100,000-event stream, 2 clients (reads/s)" "$o" "$b" 0.5
read -r o b < <(alt_tps "$BENCH_OUT/rd_back.sql" "$BENCH_OUT/rd_back_raw.sql" 2 3 -M prepared)
row "read_stream backward, 10 of 100,000 events, 2 clients (reads/s)" "$o" "$b" 0.5

# after_time: the last 100 events of the log carry a later time; wait until
# the worker has mapped them, then read from that time
$P -c "SELECT ocx.append('rdbench-late', 0, (SELECT jsonb_agg(jsonb_build_object('type', 'Late', 'time', '2100-01-01T00:00:00Z', 'data', '{}'::jsonb)) FROM generate_series(1, 100) i))" >/dev/null
for _ in $(seq 300); do
    done_=$($P -tAc "SELECT (SELECT ocx.cursor(txid, global_position) FROM ocx.time_map_state) OPERATOR(ocx.>) (SELECT ocx.cursor(txid, global_position) FROM ocx.events WHERE stream_id = 'rdbench-late' AND stream_version = 100)")
    [ "$done_" = t ] && break
    sleep 0.1
done
start=$($P -tAc "SELECT COALESCE(ocx._read_start(NULL, '2100-01-01')::text, '0/0')")
echo "bench: after_time 2100-01-01 maps to cursor $start (mapped: $done_)" >&2
cat > "$BENCH_OUT/rd_time.sql" <<'SQL'
SELECT * FROM ocx.read_all(NULL, 100, after_time => '2100-01-01');
SQL
cat > "$BENCH_OUT/rd_time_raw.sql" <<SQL
SELECT * FROM ocx.events WHERE (txid, global_position) > ('$(echo "$start" | cut -d/ -f1)'::xid8, $(echo "$start" | cut -d/ -f2))
   AND time >= '2100-01-01' ORDER BY txid, global_position LIMIT 100;
SQL
read -r o b < <(alt_tps "$BENCH_OUT/rd_time.sql" "$BENCH_OUT/rd_time_raw.sql" 2 3 -M prepared)
row "read_all after_time, the last 100 events of the log, 2 clients (reads/s)" "$o" "$b" 0.0

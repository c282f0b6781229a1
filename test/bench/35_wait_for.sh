#!/usr/bin/env bash
# Read-your-writes (issue 12's target): the round trip of an API that appends
# and then waits until its own event is projected, at light load (1 client):
# append (autocommit) -> ocx.wait_for(projection, ocx.last_append_cursor(),
# '5s'), median < 5 ms and p99 < 20 ms.  pgbench logs every transaction
# (-l); median and p99 come from those logs.  The same append without the
# wait runs too; its latency is printed (stderr) to show what the wait adds.
set -euo pipefail
. "$BENCH_DIR/lib.sh"
P="$PGBIN/psql -qX -v ON_ERROR_STOP=1"

$P <<'SQL'
CREATE TABLE bench_rw (pos bigint PRIMARY KEY, stream_id text);
CREATE FUNCTION bench_rw_apply(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.bench_rw VALUES (e.global_position, e.stream_id) $$;
SELECT ocx.define_projection('bench_rw', 'bench_rw_apply(ocx.event)', categories => '{rw}');
SQL

# the round trip fails the client (division by zero) if a wait times out
cat > "$BENCH_OUT/rw_wait.sql" <<'SQL'
\set s random(1, 100000)
SELECT ocx.append_event('rw-' || :s, NULL, 'Deposited', '{"amount": 10}');
SELECT 1 / ocx.wait_for('bench_rw', ocx.last_append_cursor(), '5 s')::int;
SQL
cat > "$BENCH_OUT/rw_append.sql" <<'SQL'
\set s random(1, 100000)
SELECT ocx.append_event('rw-' || :s, NULL, 'Deposited', '{"amount": 10}');
SQL

# latency_ms SCRIPT NAME: run 1 client for BENCH_SECONDS with a per-transaction
# log; prints "median p99 count" in ms (field 3 of the log is the latency in us)
latency_ms() {
    local script=$1 name=$2
    rm -f "$BENCH_OUT/$name".*
    (cd "$BENCH_OUT" && "$PGBIN/pgbench" -n -c 1 -j 1 -T "$BENCH_SECONDS" -l --log-prefix="$name" \
        -f "$script" >"$BENCH_OUT/$name.out" 2>&1) || { cat "$BENCH_OUT/$name.out" >&2; return 1; }
    cat "$BENCH_OUT/$name".[0-9]* | awk '{print $3 / 1000}' | sort -n | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print 0, 0, 0; exit }
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            i = int(NR * 0.99 + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR
            print m, v[i], NR
        }'
}

# warm up: plans, the worker, the projection caught up
"$PGBIN/pgbench" -n -c 1 -T 1 -f "$BENCH_OUT/rw_wait.sql" >/dev/null 2>&1
# (a plain assignment, not read < <(...): a failure in a process substitution
# would not stop the script, and a failed latency run went unrecorded)
w=$(latency_ms "$BENCH_OUT/rw_wait.sql" rw_wait_log)
a=$(latency_ms "$BENCH_OUT/rw_append.sql" rw_append_log)
read -r w_med w_p99 w_n <<< "$w"
read -r a_med a_p99 a_n <<< "$a"
echo "append -> wait_for: median $w_med ms, p99 $w_p99 ms over $w_n round trips;" \
     "append alone: median $a_med ms, p99 $a_p99 ms over $a_n" >&2
row "append -> wait_for round trip, 1 client, median (ms; baseline = target)" "$w_med" 5 1.0 lower
row "append -> wait_for round trip, 1 client, p99 (ms; baseline = target)" "$w_p99" 20 1.0 lower
$P -c "SELECT ocx.drop_projection('bench_rw')" >/dev/null

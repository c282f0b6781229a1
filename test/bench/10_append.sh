#!/usr/bin/env bash
# Appends and stream reads against plain SQL (issue 2's targets).
set -euo pipefail
. "$BENCH_DIR/lib.sh"
P="$PGBIN/psql -qX -v ON_ERROR_STOP=1"

# Two baselines for appends (docs/performance.md says what each guarantees):
#  - minimal: a plain table like ocx.events with only the unique (stream,
#    version) index, the version from a global sequence, no stream row: the
#    floor, what issue 16's write-path targets are measured against;
#  - hand-written store: what a team writes for the same guarantees as
#    ocx.append_event with expected version NULL: a streams row locked and
#    bumped per append (per-stream versions, the stream as the lock), the
#    log-order column (txid), and the same four indexes as ocx.events
#    (position, (stream, version), (source, event id), (txid, position)).
$P <<'SQL'
CREATE TABLE raw_events (
    global_position bigserial, stream_id text NOT NULL, stream_version bigint NOT NULL,
    event_id uuid NOT NULL DEFAULT gen_random_uuid(), source text NOT NULL DEFAULT 'ocx',
    type text NOT NULL, schema_version int NOT NULL DEFAULT 1,
    time timestamptz NOT NULL DEFAULT clock_timestamp(), data jsonb NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}', correlation_id uuid, causation_id uuid,
    tenant_id text, txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    UNIQUE (stream_id, stream_version));
CREATE SEQUENCE raw_version;
CREATE TABLE hw_streams (
    stream_id text PRIMARY KEY, version bigint NOT NULL, category text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX ON hw_streams (category);
CREATE TABLE hw_events (
    global_position bigserial PRIMARY KEY, stream_id text NOT NULL, stream_version bigint NOT NULL,
    event_id uuid NOT NULL DEFAULT gen_random_uuid(), source text NOT NULL DEFAULT 'ocx',
    type text NOT NULL, schema_version int NOT NULL DEFAULT 1,
    time timestamptz NOT NULL DEFAULT now(), data jsonb NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}', correlation_id uuid, causation_id uuid,
    tenant_id text, txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    UNIQUE (stream_id, stream_version), UNIQUE (source, event_id));
CREATE INDEX ON hw_events (txid, global_position);
SQL

# 1. single-event append, 8 clients
append1_script "$BENCH_OUT/append1.sql"
cat > "$BENCH_OUT/raw1.sql" <<'SQL'
\set s random(1, 100000)
INSERT INTO raw_events (stream_id, stream_version, type, data)
VALUES ('acct-' || :s, nextval('raw_version'), 'Deposited', '{"amount": 10, "currency": "EUR"}');
SQL
cat > "$BENCH_OUT/hw1.sql" <<'SQL'
\set s random(1, 100000)
WITH s AS (
    INSERT INTO hw_streams AS h (stream_id, version, category) VALUES ('acct-' || :s, 1, 'acct')
    ON CONFLICT (stream_id) DO UPDATE SET version = h.version + 1, updated_at = now()
    RETURNING h.version)
INSERT INTO hw_events (stream_id, stream_version, type, data)
SELECT 'acct-' || :s, s.version, 'Deposited', '{"amount": 10, "currency": "EUR"}' FROM s;
SQL
# issue 16's targets: >= 0.95 of the minimal INSERT at 1 and 8 clients
read -r o b < <(alt_tps "$BENCH_OUT/append1.sql" "$BENCH_OUT/raw1.sql" 1 3)
row "append_event, 1 event/tx, 1 client, fsync on (tx/s; baseline: minimal INSERT)" "$o" "$b" 0.95
read -r o b < <(alt_tps "$BENCH_OUT/append1.sql" "$BENCH_OUT/raw1.sql" 8 3)
row "append_event, 1 event/tx, 8 clients, fsync on (tx/s; baseline: minimal INSERT)" "$o" "$b" 0.95
read -r o b < <(alt_tps "$BENCH_OUT/append1.sql" "$BENCH_OUT/hw1.sql" 1 3)
row "append_event, 1 event/tx, 1 client, fsync on (tx/s; baseline: hand-written store, same guarantees and indexes)" "$o" "$b" 0.9
read -r o b < <(alt_tps "$BENCH_OUT/append1.sql" "$BENCH_OUT/hw1.sql" 8 3)
row "append_event, 1 event/tx, 8 clients, fsync on (tx/s; baseline: hand-written store, same guarantees and indexes)" "$o" "$b" 0.9

# 1b. what one append writes to the WAL, against the minimal INSERT: with both
# sides waiting for their WAL flush, the 8-client ratio follows it
# (docs/performance.md, "Which query needs each index").  4 clients x 500
# transactions of each script, 3 alternating rounds, the cluster's WAL between
# (a second's wait after each, so that the worker's share of an append is in
# ocx's figure).  A guard as much as a figure: a new index, a wider row or a
# chattier worker shows here first.
# (autovacuum's own WAL counts to whichever side it runs in: each side starts
# once no autovacuum worker runs, waiting at most 10 s, so that a vacuum the
# other side's rows started is not counted here)
quiet() {
    local i
    for i in $(seq 1 100); do
        [ "$($P -Atc "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")" = 0 ] && return
        sleep 0.1
    done
}
wal_per_tx() {   # SCRIPT -> WAL bytes per transaction
    local a b out
    quiet
    a=$($P -Atc "SELECT pg_current_wal_insert_lsn()")
    if ! out=$("$PGBIN/pgbench" -n -c 4 -j 2 -t 500 -f "$1" 2>&1) || printf '%s\n' "$out" | grep -q aborted; then
        echo "bench: pgbench $(basename "$1") for the WAL row failed" | tee -a "$BENCH_OUT/pgbench_failures" >&2
        echo 0
        return 1
    fi
    sleep 1
    b=$($P -Atc "SELECT pg_current_wal_insert_lsn()")
    $P -Atc "SELECT round(pg_wal_lsn_diff('$b', '$a') / 2000.0)"
}
wo=""; wb=""
for i in 1 2 3; do
    if [ $((i % 2)) -eq 1 ]; then
        wo="$wo $(wal_per_tx "$BENCH_OUT/append1.sql")"; wb="$wb $(wal_per_tx "$BENCH_OUT/raw1.sql")"
    else
        wb="$wb $(wal_per_tx "$BENCH_OUT/raw1.sql")"; wo="$wo $(wal_per_tx "$BENCH_OUT/append1.sql")"
    fi
done
spread_rounds "$wo" "$wb"
row "WAL bytes per single-event append_event (worker's share included) vs per minimal INSERT" \
    "$(echo "$wo" | awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; print s / NF }')" \
    "$(echo "$wb" | awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; print s / NF }')" 3.0 lower

# 2. 100 events per call, 4 clients, in events/s
events=$(tick_events 100)
values=$(seq 1 100 | awk '{printf "%s(:s, nextval(%sraw_version%s), %sTick%s, %s{\"n\": %d, \"pad\": \"abcdefghij\"}%s)", (NR>1?",":""), "\047", "\047", "\047", "\047", "\047", $1, "\047"}')
printf '\\set s random(1, 1000000)\nSELECT ocx.append(%sbatch-%s || :s, NULL, %s[%s]%s);\n' "'" "'" "'" "$events" "'" > "$BENCH_OUT/append100.sql"
printf '\\set s random(1, 1000000)\nINSERT INTO raw_events (stream_id, stream_version, type, data) VALUES %s;\n' \
    "$(echo "$values" | sed "s/(:s,/('batch-' || :s,/g")" > "$BENCH_OUT/raw100.sql"
# -M prepared for both: without it the baseline's 100-row VALUES is parsed
# and planned on every call (ocx's one-argument call is cheap to plan), which
# flattered ocx
read -r o b < <(alt_tps "$BENCH_OUT/append100.sql" "$BENCH_OUT/raw100.sql" 4 3 -M prepared)
row "append, 100 events/call, 4 clients (events/s; baseline: minimal INSERT)" "$(awk -v x="$o" 'BEGIN {print x * 100}')" \
    "$(awk -v x="$b" 'BEGIN {print x * 100}')" 1.2
# the hand-written store for a batch: the stream row upserted and bumped by 100
# (the stream as the lock), the 100 rows at the versions below the new head,
# one statement, the same four indexes as ocx.events
hw_values=$(seq 1 100 | awk '{printf "%s(%d, %s{\"n\": %d, \"pad\": \"abcdefghij\"}%s::jsonb)", (NR>1?",":""), $1, "\047", $1, "\047"}')
cat > "$BENCH_OUT/hw100.sql" <<SQL
\\set s random(1, 1000000)
WITH s AS (
    INSERT INTO hw_streams AS h (stream_id, version, category) VALUES ('batch-' || :s, 100, 'batch')
    ON CONFLICT (stream_id) DO UPDATE SET version = h.version + 100, updated_at = now()
    RETURNING h.version)
INSERT INTO hw_events (stream_id, stream_version, type, data)
SELECT 'batch-' || :s, s.version - 100 + v.n, 'Tick', v.d FROM s, (VALUES $hw_values) v(n, d);
SQL
read -r o b < <(alt_tps "$BENCH_OUT/append100.sql" "$BENCH_OUT/hw100.sql" 4 3 -M prepared)
row "append, 100 events/call, 4 clients (events/s; baseline: hand-written store, same guarantees and indexes)" \
    "$(awk -v x="$o" 'BEGIN {print x * 100}')" "$(awk -v x="$b" 'BEGIN {print x * 100}')" 0.9

# 3. read_stream of a 10,000-event stream against the plain indexed SELECT
$P -c "SELECT ocx.append('big-1', 0, (SELECT jsonb_agg(jsonb_build_object('type', 'Tick', 'data', jsonb_build_object('n', i))) FROM generate_series(1, 10000) i))" >/dev/null
$P -c "VACUUM ANALYZE ocx.events" >/dev/null
echo "SELECT * FROM ocx.read_stream('big-1');" > "$BENCH_OUT/read.sql"
echo "SELECT * FROM ocx.events WHERE stream_id = 'big-1' ORDER BY stream_version;" > "$BENCH_OUT/rawread.sql"
read -r o b < <(alt_tps "$BENCH_OUT/read.sql" "$BENCH_OUT/rawread.sql" 2 3)
row "read_stream, 10,000 events (reads/s)" "$o" "$b" 0.8

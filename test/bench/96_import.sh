#!/usr/bin/env bash
# Bulk import (issue 16, docs/migrating.md): 200,000 events (20,000 streams of
# 10, every column given) through ocx.import_begin(), COPY into
# ocx.import_staging and ocx.import_commit() in one transaction, into a fresh
# database, against a raw COPY of the same CSV into a fresh hand-written
# events table (a bigserial key, UNIQUE (stream_id, stream_version), a unique
# event id), in 3 alternating rounds, each leg after a CHECKPOINT (so that
# neither writes out the other's dirty pages).  Events per second; target 0.5x
# (the issue's).  Also prints an export's rate (ocx.export() to NDJSON) on stderr.
set -euo pipefail
. "$BENCH_DIR/lib.sh"

N=${BENCH_IMPORT_EVENTS:-200000}
csv=$BENCH_OUT/import_rows.csv
"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -c "\\copy (SELECT 'bimp-' || (g / 10), (g % 10) + 1, 'Deposited',
    jsonb_build_object('amount', g, 'note', 'a note of some length'), jsonb_build_object('by', 'bench'),
    gen_random_uuid(), '/bench', '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 ms'
    FROM generate_series(0, $N - 1) g) TO '$csv' (FORMAT csv)"

cols="stream_id, stream_version, type, data, metadata, event_id, source, \"time\""
now() { date +%s.%N; }

baseline() {
    local t0 t1
    "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -c "DROP TABLE IF EXISTS plain_events" -c "CREATE TABLE plain_events (
        global_position bigserial PRIMARY KEY, stream_id text NOT NULL, stream_version bigint NOT NULL,
        type text NOT NULL, data jsonb NOT NULL, metadata jsonb NOT NULL, event_id uuid NOT NULL UNIQUE,
        source text NOT NULL, time timestamptz NOT NULL, UNIQUE (stream_id, stream_version))" >/dev/null
    # each leg starts with clean shared buffers, not with the last leg's dirty pages
    "$PGBIN/psql" -X -q -c "CHECKPOINT" >/dev/null
    t0=$(now)
    "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -c "\\copy plain_events ($cols) FROM '$csv' (FORMAT csv)" >/dev/null
    t1=$(now)
    awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", n / (b - a) }'
}

ocx_import() {
    local db=bench_import_target t0 t1
    "$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
    "$PGBIN/psql" -X -q -d "$db" -c "CREATE EXTENSION ocx" -c "CHECKPOINT" >/dev/null
    t0=$(now)
    "$PGBIN/psql" -X -q -d "$db" -v ON_ERROR_STOP=1 <<SQL >/dev/null
BEGIN;
SELECT ocx.import_begin();
\\copy ocx.import_staging ($cols) FROM '$csv' (FORMAT csv)
SELECT * FROM ocx.import_commit();
COMMIT;
SQL
    t1=$(now)
    local problems
    problems=$("$PGBIN/psql" -X -Atq -d "$db" -c "SELECT count(*) FROM ocx.events")
    [ "$problems" = "$N" ] || { echo "bench: the import wrote $problems events, not $N" >&2; return 1; }
    awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", n / (b - a) }'
}

la="" lb=""
for i in 1 2 3; do
    if [ $((i % 2)) -eq 1 ]; then a=$(ocx_import); b=$(baseline); else b=$(baseline); a=$(ocx_import); fi
    la="$la $a"; lb="$lb $b"
    echo "bench: import round $i: ocx $a events/s, raw COPY $b events/s" >&2
done

# for reference (stderr, no target): the raw COPY into a table shaped like
# ocx.events (LIKE ... INCLUDING ALL: its five indexes), what the table
# itself costs without any of the import's work
"$PGBIN/psql" -X -q -d bench_import_target -v ON_ERROR_STOP=1 -c "CREATE TABLE public.events_shape
    (LIKE ocx.events INCLUDING DEFAULTS INCLUDING INDEXES INCLUDING CONSTRAINTS)" >/dev/null
t0=$(now)
"$PGBIN/psql" -X -q -d bench_import_target -v ON_ERROR_STOP=1 -c "\\copy public.events_shape ($cols, txid) FROM PROGRAM 'sed \"s/\$/,1/\" $csv' (FORMAT csv)" >/dev/null
t1=$(now)
echo "bench: raw COPY into a table shaped like ocx.events (its indexes): $(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }') events/s" >&2

# the export of what the last round imported, as NDJSON
t0=$(now)
"$PGBIN/psql" -X -q -d bench_import_target -c "\\copy (SELECT cloudevent FROM ocx.export()) TO '$BENCH_OUT/export.ndjson' (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')"
t1=$(now)
echo "bench: export of $N events to NDJSON: $(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }') events/s" >&2
"$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS bench_import_target WITH (FORCE)" >/dev/null
"$PGBIN/psql" -X -q -c "DROP TABLE IF EXISTS plain_events" >/dev/null
rm -f "$csv" "$BENCH_OUT/export.ndjson"

spread_rounds "$la" "$lb"
read -r o b < <(echo "$la|$lb" | awk -F'|' '{ na = split($1, x, " "); split($2, y, " "); sa = 0; sb = 0
    for (i = 1; i <= na; i++) { sa += x[i]; sb += y[i] }; print sa / na, sb / na }')
row "bulk import (import_begin, COPY, import_commit) vs raw COPY into a plain table, $N events (events/s)" "$o" "$b" 0.5

#!/usr/bin/env bash
# Retention (issue 14, docs/retention.md): single-event appends, 8 clients,
# to 16 streams of a category capped by a retention policy (max_count 100:
# the worker removes events in batches of at most 500 all along) against the
# same appends to a category without a policy, in alternating rounds of one
# run.  No target in the issue; 0.8x is ours.  The count of events retention
# removed during the run is printed on stderr (it must not be 0, else the
# comparison says nothing).
set -euo pipefail
. "$BENCH_DIR/lib.sh"

"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -c "SELECT ocx.define_retention('bret', max_count => 100)" >/dev/null

cat > "$BENCH_OUT/ret_capped.sql" <<'SQL'
\set s random(1, 16)
SELECT ocx.append_event('bret-' || :s, NULL, 'Tick', jsonb_build_object('s', :s));
SQL
cat > "$BENCH_OUT/ret_plain.sql" <<'SQL'
\set s random(1, 16)
SELECT ocx.append_event('bnoret-' || :s, NULL, 'Tick', jsonb_build_object('s', :s));
SQL
read -r o b < <(alt_tps "$BENCH_OUT/ret_capped.sql" "$BENCH_OUT/ret_plain.sql" 8 3)
removed=$("$PGBIN/psql" -X -Atq -c "SELECT events_removed FROM ocx.retention WHERE category = 'bret'")
kept=$("$PGBIN/psql" -X -Atq -c "SELECT max(n) FROM (SELECT count(*) AS n FROM ocx.events WHERE stream_id LIKE 'bret-%' GROUP BY stream_id) x")
echo "bench: retention removed $removed events during the run; the largest capped stream holds $kept" >&2
row "append to a category under retention (max_count 100, worker removing) vs without, 1 event/tx, 8 clients (tx/s)" "$o" "$b" 0.8
"$PGBIN/psql" -X -q -c "SELECT ocx.drop_retention('bret')" >/dev/null

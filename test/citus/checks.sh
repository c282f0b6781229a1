#!/usr/bin/env bash
# The Citus suite (run by test/citus/run.sh on a coordinator $COORD, workers
# $W1 and $W2 and a single node $SINGLE, all with ocx; database $CITUS_DB).
# Each check prints "ok N - what" or "not ok N - what"; the last line is
# "N passed, N failed".
set -uo pipefail
RUN=$1
HERE=$(cd "$(dirname "$0")" && pwd)
pass=0 fail=0 n=0

ok()     { n=$((n + 1)); pass=$((pass + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n - $1"; [ -n "${2:-}" ] && printf '#   %s\n' "$2"; }
q()      { "$PGBIN/psql" -qXtA -v ON_ERROR_STOP=1 -p "$1" -d "$CITUS_DB" -c "$2" 2>&1; }
# is WHAT ACTUAL EXPECTED
is()     { if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "got '$2', want '$3'"; fi; }
# sqlstate PORT SQL: the SQLSTATE the statement fails with ('00000': none)
sqlstate() {
    "$PGBIN/psql" -qXtA -p "$1" -d "$CITUS_DB" -v VERBOSITY=terse 2>/dev/null <<SQL | tail -n1
\\set ON_ERROR_STOP 0
${2};
\\echo :LAST_ERROR_SQLSTATE
SQL
}
C=$COORD

# --- distribute ----------------------------------------------------------
is "distribute() without Citus: OX701" "$(sqlstate "$SINGLE" "SELECT ocx.distribute()")" OX701
out=$(q $C "SELECT ocx.distribute()")
is "distribute() on the coordinator" "$out" "ocx: log distributed by stream_id"
if [ "$out" != "ocx: log distributed by stream_id" ]; then
    echo "# nothing else is meaningful on an undistributed log"
    echo "$pass passed, $fail failed"; exit 1
fi
is "distribute() twice: OX702" "$(sqlstate $C "SELECT ocx.distribute()")" OX702
is "streams, events, snapshots: distributed by stream_id, co-located" \
   "$(q $C "SELECT string_agg(logicalrelid::text || ':' || partmethod::text, ',' ORDER BY logicalrelid::text),
                   count(DISTINCT colocationid) FROM pg_dist_partition
             WHERE logicalrelid IN ('ocx.events'::regclass, 'ocx.streams'::regclass, 'ocx.snapshots'::regclass)")" \
   "ocx.events:h,ocx.snapshots:h,ocx.streams:h|1"
is "definitions: reference tables" \
   "$(q $C "SELECT string_agg(logicalrelid::text || ':' || partmethod::text, ',' ORDER BY logicalrelid::text) FROM pg_dist_partition
             WHERE logicalrelid IN ('ocx.event_types'::regclass, 'ocx.upcasters'::regclass,
                                    'ocx.aggregates'::regclass, 'ocx.modules'::regclass)")" \
   "ocx.aggregates:n,ocx.event_types:n,ocx.modules:n,ocx.upcasters:n"
is "shards on both workers" \
   "$(q $C "SELECT count(DISTINCT n.nodeport) FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)
             JOIN pg_dist_node n USING (groupid) WHERE s.logicalrelid = 'ocx.events'::regclass")" 2

# --- append, expected versions, idempotency, read_stream -------------------
is "append to a new stream (expected 0)" \
   "$(q $C "SELECT ocx.append('acct-1', 0, '[{\"type\": \"Opened\", \"data\": {\"n\": 1}}, {\"type\": \"Deposited\", \"data\": {\"amount\": 10}}]')")" 2
is "append at the expected version" \
   "$(q $C "SELECT ocx.append('acct-1', 2, '{\"type\": \"Deposited\", \"data\": {\"amount\": 5}}')")" 3
is "append at a stale version: OX001" \
   "$(sqlstate $C "SELECT ocx.append('acct-1', 2, '{\"type\": \"Deposited\", \"data\": {\"amount\": 5}}')")" OX001
is "append to a new stream that exists: OX001" \
   "$(sqlstate $C "SELECT ocx.append('acct-1', 0, '{\"type\": \"Opened\", \"data\": {}}')")" OX001
is "append to a stream that must exist: OX001" \
   "$(sqlstate $C "SELECT ocx.append('acct-none', ocx.stream_exists(), '{\"type\": \"Opened\", \"data\": {}}')")" OX001
is "append with any version" \
   "$(q $C "SELECT ocx.append('acct-2', NULL, '{\"type\": \"Opened\", \"data\": {}}')")" 1
id=7d1c2a8e-0000-4000-8000-000000000001
is "idempotent append: first" \
   "$(q $C "SELECT ocx.append('acct-3', NULL, '{\"id\": \"$id\", \"type\": \"Opened\", \"data\": {}}')")" 1
is "idempotent append: the retry returns the stored version" \
   "$(q $C "SELECT ocx.append('acct-3', NULL, '{\"id\": \"$id\", \"type\": \"Opened\", \"data\": {}}')")" 1
is "idempotent append: one row" "$(q $C "SELECT count(*) FROM ocx.events WHERE event_id = '$id'")" 1
is "an event id reused in the same stream with another payload: OX004" \
   "$(sqlstate $C "SELECT ocx.append('acct-3', NULL, '{\"id\": \"$id\", \"type\": \"Opened\", \"data\": {\"x\": 1}}')")" OX004
is "an event id reused in another stream: OX004" \
   "$(sqlstate $C "SELECT ocx.append('acct-4', NULL, '{\"id\": \"$id\", \"type\": \"Opened\", \"data\": {}}')")" OX004
is "read_stream forward" \
   "$(q $C "SELECT string_agg(stream_version || type, ',' ORDER BY stream_version) FROM ocx.read_stream('acct-1')")" \
   "1Opened,2Deposited,3Deposited"
is "read_stream backward, from version, max count" \
   "$(q $C "SELECT string_agg(stream_version::text, ',') FROM ocx.read_stream('acct-1', 2, 2, 'backward')")" "2,1"
is "stream_version" "$(q $C "SELECT ocx.stream_version('acct-1')")" 3
# soft delete (ocx.delete_stream) on the distributed log: stream reads skip the
# deleted versions, the stream goes on at the next version
q $C "SELECT ocx.append('gone-1', 0, '[{\"type\": \"A\", \"data\": {}}, {\"type\": \"B\", \"data\": {}}]')" >/dev/null
is "soft delete: delete_stream returns the last version" "$(q $C "SELECT ocx.delete_stream('gone-1', 2)")" "2"
is "soft delete: read_stream and last_event return nothing" \
   "$(q $C "SELECT (SELECT count(*) FROM ocx.read_stream('gone-1')) || ':' || (SELECT count(*) FROM ocx.last_event('gone-1'))")" "0:0"
is "soft delete: the stream goes on at the next version, and reads show only it" \
   "$(q $C "SELECT ocx.append('gone-1', 2, '{\"type\": \"C\", \"data\": {}}')")|$(q $C "SELECT string_agg(stream_version || type, ',') FROM ocx.read_stream('gone-1')")" "3|3C"
is "append_event" "$(q $C "SELECT ocx.append_event('acct-2', 1, 'Deposited', '{\"amount\": 1}')")" 2

# --- contracts, upcasters, aggregates, snapshots: same as one node ----------
defs="
SELECT ocx.define_event_type('ct.Opened', 1, '{\"type\": \"object\", \"required\": [\"holder\"]}');
SELECT ocx.define_aggregate('acct', 'public.acct_apply(jsonb, ocx.event)', '{\"balance\": 0, \"count\": 0}', 3);
"
# user code named by definitions (apply functions, upcaster transforms) must
# exist on every node: the reference tables' regprocedure columns are checked
# on each copy (docs/scaling.md)
fns="CREATE FUNCTION public.acct_apply(state jsonb, e ocx.event) RETURNS jsonb LANGUAGE sql
    RETURN CASE e.type
        WHEN 'ct.Opened' THEN state || jsonb_build_object('holder', e.data->>'holder', 'name', e.data->>'name')
        WHEN 'Deposited' THEN state || jsonb_build_object('balance', (state->>'balance')::int + (e.data->>'amount')::int,
                                                          'count', (state->>'count')::int + 1)
        ELSE state END;"
for p in $W1 $W2; do q $p "SET citus.enable_ddl_propagation = off; $fns" >/dev/null || not_ok "apply function on port $p"; done
for p in $C $SINGLE; do q $p "SET citus.enable_ddl_propagation = off; $fns" >/dev/null || not_ok "apply function on port $p"; done
for p in $C $SINGLE; do q $p "$defs" >/dev/null || not_ok "definitions on port $p" "$(q $p "$defs")"; done
is "contract: an event without the required field is refused" \
   "$(sqlstate $C "SELECT ocx.append('ct-1', 0, '{\"type\": \"ct.Opened\", \"data\": {}}')" | cut -c1-2)" OX
is "contract: the same refusal on one node" \
   "$(sqlstate $C "SELECT ocx.append('ct-1', 0, '{\"type\": \"ct.Opened\", \"data\": {}}')")" \
   "$(sqlstate $SINGLE "SELECT ocx.append('ct-1', 0, '{\"type\": \"ct.Opened\", \"data\": {}}')")"
events="SELECT ocx.append('ct-1', 0, '[{\"type\": \"ct.Opened\", \"data\": {\"holder\": \"Ann Lee\"}},
  {\"type\": \"Deposited\", \"data\": {\"amount\": 3}}, {\"type\": \"Deposited\", \"data\": {\"amount\": 4}},
  {\"type\": \"Deposited\", \"data\": {\"amount\": 5}}]');"
up="SELECT ocx.define_event_type('ct.Opened', 2, '{\"type\": \"object\", \"required\": [\"holder\", \"name\"]}');
SELECT ocx.define_upcaster('ct.Opened', 1, spec => '[{\"op\": \"default\", \"path\": \"name\", \"value\": \"unnamed\"}]');"
more="SELECT ocx.append('ct-1', 4, '[{\"type\": \"Deposited\", \"data\": {\"amount\": 6}}, {\"type\": \"Deposited\", \"data\": {\"amount\": 7}}]');"
for p in $C $SINGLE; do
    for sql in "$events" "$up" "$more"; do out=$(q $p "$sql") || not_ok "on port $p: $sql" "$out"; done
done
is "upcaster: read_stream sees version 2" \
   "$(q $C "SELECT schema_version || ':' || (data->>'name') FROM ocx.read_stream('ct-1', 1, 1)")" "2:unnamed"
is "load with an upcaster" "$(q $C "SELECT ocx.load('acct', 'ct-1')")" \
   "$(q $SINGLE "SELECT ocx.load('acct', 'ct-1')")"
is "load took a snapshot (every 3 events) into the distributed table" \
   "$(q $C "SELECT count(*) > 0 FROM ocx.snapshots WHERE stream_id = 'ct-1'")" t
is "load from the snapshot equals one node's" "$(q $C "SELECT ocx.load('acct', 'ct-1')")" \
   "$(q $SINGLE "SELECT ocx.load('acct', 'ct-1')")"
is "load at a version (time travel)" "$(q $C "SELECT ocx.load('acct', 'ct-1', 3)")" \
   "$(q $SINGLE "SELECT ocx.load('acct', 'ct-1', 3)")"
is "the definitions reached the workers" \
   "$(q $W1 "SELECT count(*) FROM ocx.upcasters WHERE type = 'ct.Opened'")" 1

# --- tenancy ---------------------------------------------------------------
for p in $C $W1 $W2; do
    q $p "CREATE ROLE ocx_citus_app LOGIN IN ROLE ocx_writer" >/dev/null 2>&1
done
# ocx.tenant reaches the workers as SET LOCAL (citus.propagate_set_commands =
# 'local', which ocx.distribute() sets for the database): one transaction each
tq() { "$PGBIN/psql" -qXtA -v ON_ERROR_STOP=1 -p "$1" -d "$CITUS_DB" -U ocx_citus_app \
           -c "BEGIN" -c "SET LOCAL ocx.tenant = '$2'" -c "$3" -c "COMMIT" 2>&1; }
tq $C acme "SELECT ocx.append('ten-a', 0, '{\"type\": \"Opened\", \"data\": {}}')" >/dev/null
tq $C globex "SELECT ocx.append('ten-g', 0, '{\"type\": \"Opened\", \"data\": {}}')" >/dev/null
is "tenancy: the append stored the tenant" \
   "$(q $C "SELECT string_agg(stream_id || '=' || tenant_id, ',' ORDER BY stream_id) FROM ocx.events WHERE stream_id LIKE 'ten-%'")" \
   "ten-a=acme,ten-g=globex"
is "tenancy: a tenant reads its stream" "$(tq $C acme "SELECT count(*) FROM ocx.read_stream('ten-a')")" 1
is "tenancy: and not another tenant's" "$(tq $C acme "SELECT count(*) FROM ocx.read_stream('ten-g')")" 0
is "tenancy: nor its version" "$(tq $C acme "SELECT ocx.stream_version('ten-g')")" 0
is "tenancy: nor its last event" "$(tq $C acme "SELECT count(*) FROM ocx.last_event('ten-g')")" 0
is "tenancy: the table, read directly, shows the tenant's rows only" \
   "$(tq $C acme "SELECT string_agg(DISTINCT coalesce(tenant_id, '-'), ',') FROM ocx.events")" acme
is "tenancy: an append, then a read of the stream in the same transaction" \
   "$(tq $C acme "SELECT ocx.append('ten-a', 1, '{\"type\": \"Opened\", \"data\": {}}') + (SELECT count(*) FROM ocx.read_stream('ten-a'))")" 4
is "tenancy: an append to another tenant's stream fails as on one node" \
   "$("$PGBIN/psql" -qXtA -p $C -d "$CITUS_DB" -U ocx_citus_app -v VERBOSITY=terse 2>/dev/null <<SQL | tail -n1
BEGIN;
SET LOCAL ocx.tenant = 'acme';
SELECT ocx.append('ten-g', NULL, '{"type": "Opened", "data": {}}');
\\echo :LAST_ERROR_SQLSTATE
SQL
)" 42501
is "tenancy: untenanted sessions see no tenant's rows" \
   "$("$PGBIN/psql" -qXtA -p $C -d "$CITUS_DB" -U ocx_citus_app -c "SELECT count(*) FROM ocx.read_stream('ten-a')")" 0
is "tenancy: ocx_reader may not select ocx.snapshots directly on Citus" \
   "$(q $C "SELECT has_table_privilege('ocx_reader', 'ocx.snapshots', 'SELECT')")" f

# --- refused: what a distributed log does not support yet --------------------
for call in "SELECT ocx.rebuild_projection('p')" \
            "SELECT ocx.append_if('{\"stream_id\": \"x-1\", \"type\": \"X\", \"data\": {}}', '{}')"; do
    is "refused on a distributed log: ${call#SELECT }" "$(sqlstate $C "$call")" OX700
done
# the bulk import writes through the heap of ocx.events, which Citus does not route
is "refused on a distributed log: import_commit" \
   "$(sqlstate $C "BEGIN; SELECT ocx.import_begin();
                   INSERT INTO ocx.import_staging (stream_id, stream_version, type) VALUES ('imp-1', '1', 'A');
                   SELECT * FROM ocx.import_commit()")" OX661

# --- the whole log in log order: read_all, read_category ---------------------
is "read_all: the log in log order (cursor ascending), every event once" \
   "$(q $C "SELECT count(*) = (SELECT count(*) FROM ocx.events)
                   AND count(DISTINCT global_position) = count(*)
                   AND bool_and(prev IS NULL OR (ocx.txid(prev), ocx.global_position(prev))
                                                < (ocx.txid(cursor), ocx.global_position(cursor)))
             FROM (SELECT global_position, cursor, lag(cursor) OVER (ORDER BY n) AS prev
                     FROM ocx.read_all(NULL, NULL) WITH ORDINALITY AS r(global_position, stream_id,
                          stream_version, event_id, source, type, schema_version, time, data, metadata,
                          correlation_id, causation_id, tenant_id, txid, cursor, n)) x")" t
is "read_all: upcast as read_stream" \
   "$(q $C "SELECT schema_version || ':' || (data->>'name') FROM ocx.read_all(NULL, NULL)
             WHERE stream_id = 'ct-1' AND stream_version = 1")" "2:unnamed"
is "read_all: after a cursor, a page" \
   "$(q $C "SELECT string_agg(global_position::text, ',') FROM ocx.read_all(
              (SELECT cursor FROM ocx.read_all(NULL, 2) OFFSET 1), 2)")" \
   "$(q $C "SELECT string_agg(global_position::text, ',') FROM (SELECT global_position FROM ocx.read_all(NULL, 4) OFFSET 2) x")"
q $C "SELECT ocx.append('tag-1', 0, '[{\"type\": \"A\", \"data\": {}, \"tags\": [\"t:1\", \"t:2\"]}, {\"type\": \"B\", \"data\": {}}]')" >/dev/null
q $C "SELECT ocx.append('tag-2', 0, '{\"type\": \"C\", \"data\": {}, \"tags\": [\"t:1\"]}')" >/dev/null
q $C "SELECT ocx.append('tag-1', 2, '{\"type\": \"D\", \"data\": {}, \"tags\": [\"t:1\"]}')" >/dev/null
is "read_tagged: the events with every tag, across shards, in log order" \
   "$(q $C "SELECT string_agg(stream_id || type, ',') FROM ocx.read_tagged(ARRAY['t:1'])")|$(q $C "SELECT string_agg(type, ',') FROM ocx.read_tagged(ARRAY['t:1', 't:2'])")|$(q $C "SELECT string_agg(type, ',') FROM ocx.read_tagged(ARRAY['t:1'], ARRAY['C', 'D'], (SELECT cursor FROM ocx.read_tagged(ARRAY['t:1'], NULL, NULL, 1)))")" \
   "tag-1A,tag-2C,tag-1D|A|C,D"
is "read_category: one category, in log order" \
   "$(q $C "SELECT string_agg(stream_version || type, ',') FROM ocx.read_category('acct')
             WHERE stream_id = 'acct-1'")" "1Opened,2Deposited,3Deposited"

# --- concurrency: 8 clients, 1,000 streams, 10% rollbacks --------------------
# The ledger records each committed append in the same transaction; it is
# distributed by the token, so about half of the transactions write two
# workers and commit with two-phase commit (the case the horizon waits for:
# src/citus.c).
q $C "CREATE TABLE public.ledger (stream_id text NOT NULL, token bigint NOT NULL);
      SELECT create_distributed_table('public.ledger', 'token', colocate_with => 'none')" >/dev/null \
    || not_ok "ledger table"
# A projection on the coordinator (a local read model) that refuses a gap or
# a repeat in a stream: either shows up as an error and as a difference from
# the replay below.
"$PGBIN/psql" -qXtA -v ON_ERROR_STOP=1 -p $C -d "$CITUS_DB" >/dev/null 2>&1 <<'SQL' || not_ok "the projection"
SET citus.enable_ddl_propagation = off;
CREATE TABLE public.model (stream_id text PRIMARY KEY, n bigint NOT NULL, total bigint NOT NULL,
                           last_version bigint NOT NULL);
CREATE FUNCTION public.model_apply(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.stream_version <> COALESCE((SELECT last_version FROM public.model WHERE stream_id = e.stream_id), 0) + 1 THEN
        RAISE EXCEPTION 'out of stream order: % version %', e.stream_id, e.stream_version;
    END IF;
    INSERT INTO public.model VALUES (e.stream_id, 1, (e.data->>'amount')::bigint, e.stream_version)
    ON CONFLICT (stream_id) DO UPDATE SET n = model.n + 1, total = model.total + excluded.total,
                                          last_version = excluded.last_version;
END $$;
GRANT ALL ON public.model TO PUBLIC;
SELECT ocx.define_projection('model', 'public.model_apply(ocx.event)', categories => '{load}');
SQL
# A durable subscription of the load's category, and a subscriber that polls
# (500 at a time) and acknowledges each batch in the transaction that records
# it, while the clients append, until it has polled nothing after they finished.
q $C "SELECT ocx.define_subscription('load_sub', categories => '{load}')" >/dev/null \
    || not_ok "define_subscription" "$(q $C "SELECT ocx.define_subscription('load_sub', categories => '{load}')")"
subscriber() {
    local done=0 rows
    : > "$RUN/polled"
    while :; do
        [ -f "$RUN/load.done" ] && done=1
        rows=$("$PGBIN/psql" -qXtA -v ON_ERROR_STOP=1 -p $C -d "$CITUS_DB" 2>&1 <<'SQL'
BEGIN;
CREATE TEMP TABLE got ON COMMIT DROP AS SELECT * FROM ocx.poll('load_sub', 500);
SELECT cursor || '|' || stream_id || '|' || stream_version || '|' || coalesce(data->>'tok', '')
  FROM got ORDER BY txid, global_position;
SELECT ocx.ack('load_sub', cursor) FROM got ORDER BY txid DESC, global_position DESC LIMIT 1;
COMMIT;
SQL
) || { echo "subscriber: $rows" >> "$RUN/polled.err"; return 1; }
        rows=$(grep '|' <<<"$rows")
        [ -n "$rows" ] && printf '%s\n' "$rows" >> "$RUN/polled"
        [ "$done" -eq 1 ] && [ -z "$rows" ] && return 0
    done
}
# A reader that pages through read_all (500 at a time, from the cursor of its
# last event) while the clients append, until it has read a page that began
# after they finished and came back short.
reader() {
    local c=NULL done=0 rows last
    : > "$RUN/paged"
    while :; do
        [ -f "$RUN/load.done" ] && done=1
        rows=$(q $C "SELECT cursor || '|' || stream_id || '|' || stream_version || '|' || coalesce(data->>'tok', '')
                       FROM ocx.read_all($c, 500)") || { echo "reader: $rows" >> "$RUN/paged.err"; return 1; }
        if [ -n "$rows" ]; then
            printf '%s\n' "$rows" >> "$RUN/paged"
            last=$(tail -n1 <<<"$rows" | cut -d'|' -f1)
            c="'$last'::ocx.cursor"
        fi
        [ "$done" -eq 1 ] && [ "$(printf '%s' "$rows" | grep -c .)" -lt 500 ] && return 0
    done
}
rm -f "$RUN/load.done"
reader & reader_pid=$!
subscriber & subscriber_pid=$!
# A race of 8 sessions on one stream, while the clients append: each round,
# 8 appends at the same expected version.
rounds=${OCX_CITUS_RACE:-20}
race() {
    local v i
    for v in $(seq 0 $((rounds - 1))); do
        for i in 1 2 3 4 5 6 7 8; do
            "$PGBIN/psql" -qXtA -v VERBOSITY=verbose -p $C -d "$CITUS_DB" -c \
                "SELECT ocx.append('race-1', $v, '{\"type\": \"Won\", \"data\": {\"who\": $i, \"round\": $v}}')" \
                >"$RUN/race.$v.$i" 2>&1 &
        done
        wait
    done
}
race & race_pid=$!
# Sagas, while the clients append: 20 sagas of two steps; a handler claims
# their commands and answers each with an event correlated to its saga, in a
# stream of its own (trip-N, on either worker); the worker's saga task reads
# them through the one reader of the distributed log and moves the sagas.
nsagas=20
q $C "SELECT ocx.define_saga('trip', '{\"steps\": [
        {\"name\": \"hotel\", \"command\": \"trip.BookHotel\", \"data\": {\"n\": \"\$.input.n\"},
         \"success\": \"trip.HotelBooked\", \"failure\": \"trip.HotelFull\"},
        {\"name\": \"pay\", \"command\": \"trip.Pay\", \"success\": \"trip.Paid\", \"failure\": \"trip.Declined\"}]}')" >/dev/null \
    || not_ok "define_saga"
q $C "SELECT count(ocx.start_saga('trip', jsonb_build_object('n', n), ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid))
        FROM generate_series(1, $nsagas) n" >/dev/null || not_ok "start_saga"
saga_handler() {
    local i out
    for i in $(seq 1 600); do
        out=$(q $C "SELECT count(ocx.append('trip-' || (c.data->>'n'), NULL,
                       jsonb_build_object('type', CASE c.type WHEN 'trip.BookHotel' THEN 'trip.HotelBooked' ELSE 'trip.Paid' END,
                                          'data', jsonb_build_object('booking', 'B' || (c.data->>'n')),
                                          'correlation_id', c.correlation_id)))
                      FROM ocx.claim_commands('{trip.BookHotel,trip.Pay}', 10, '1 hour', 'citus') c") \
            || { echo "saga handler: $out" >> "$RUN/saga.err"; return 1; }
        [ "$(q $C "SELECT count(*) FROM ocx.saga_instances WHERE state <> 'completed'")" = 0 ] && return 0
        sleep 0.2
    done
    echo "saga handler: sagas still running after the wait" >> "$RUN/saga.err"
    return 1
}
saga_handler & saga_pid=$!
cat > "$RUN/load.sql" <<'SQL'
\set s random(1, 1000)
\set tok :client_id * 1000000000000 + random(1, 999999999999)
\set r random(1, 10)
BEGIN;
SELECT ocx.append('load-' || :s, NULL, jsonb_build_object('type', 'Deposited', 'data', jsonb_build_object('amount', :r, 'tok', :tok)));
INSERT INTO public.ledger VALUES ('load-' || :s, :tok);
\if :r = 1
ROLLBACK;
\else
COMMIT;
\endif
SQL
out=$("$PGBIN/pgbench" -n -c 8 -j 2 -t "${OCX_CITUS_TX:-500}" -f "$RUN/load.sql" -p $C "$CITUS_DB" 2>&1)
if [ $? -eq 0 ] && ! grep -q aborted <<<"$out"; then ok "pgbench: 8 clients appended through the coordinator"; else not_ok "pgbench" "$(grep -E 'error|abort' <<<"$out" | head -3)"; fi
wait $race_pid
wait $saga_pid
is "sagas: the handler answered every step command while the clients appended" "$?|$(cat "$RUN/saga.err" 2>/dev/null)" "0|"
touch "$RUN/load.done"
wait $reader_pid
is "the reader paged through read_all while the clients appended" "$?|$(cat "$RUN/paged.err" 2>/dev/null)" "0|"
wait $subscriber_pid
is "the subscriber polled and acknowledged while the clients appended" "$?|$(cat "$RUN/polled.err" 2>/dev/null)" "0|"
committed=$(q $C "SELECT count(*) FROM public.ledger")
is "some transactions rolled back (10%)" \
   "$(q $C "SELECT count(*) BETWEEN 0.8 * 8 * ${OCX_CITUS_TX:-500} AND 0.97 * 8 * ${OCX_CITUS_TX:-500} FROM public.ledger")" t
q $C "SELECT stream_id || ':' || token FROM public.ledger ORDER BY 1" > "$RUN/ledger"
q $C "SELECT stream_id || ':' || (data->>'tok') FROM ocx.events WHERE stream_id LIKE 'load-%' ORDER BY 1" > "$RUN/logged"
if cmp -s "$RUN/ledger" "$RUN/logged" && [ "$(wc -l < "$RUN/ledger")" -eq "$committed" ]; then
    ok "every committed append is in the log once, and nothing else"
else
    not_ok "every committed append is in the log once, and nothing else" "$(diff "$RUN/ledger" "$RUN/logged" | head -5)"
fi
is "no rolled-back append is in the log" \
   "$(q $C "SELECT count(*) FROM ocx.events WHERE stream_id LIKE 'load-%'")" "$committed"
is "versions per stream are 1..n without gaps" \
   "$(q $C "SELECT count(*) FROM (SELECT stream_id, max(stream_version) m, count(*) c FROM ocx.events
             WHERE stream_id LIKE 'load-%' GROUP BY stream_id) s JOIN ocx.streams t USING (stream_id)
             WHERE s.m <> s.c OR t.version <> s.m")" 0
is "the events are in the workers' shards" \
   "$(q $C "SELECT sum(result::bigint) = (SELECT count(*) FROM ocx.events) AND count(*) = 8
             FROM run_command_on_shards('ocx.events', 'SELECT count(*) FROM %s')")" t
# read back every stream with read_stream, per stream in version order
# (read_all is refused on a distributed log: OX700)
# (the stream ids first: a function called per row of a distributed table
# would be pushed to the workers)
ids=$(q $C "SELECT string_agg(quote_literal(stream_id), ',' ORDER BY stream_id) FROM ocx.streams WHERE stream_id LIKE 'load-%'")
q $C "SELECT e.stream_id, e.stream_version, e.data->>'tok'
        FROM unnest(ARRAY[$ids]::text[]) sid, LATERAL ocx.read_stream(sid) e" > "$RUN/readback" 2>&1
is "read_stream of every stream returns every committed event once" \
   "$(cut -d'|' -f3 "$RUN/readback" | sort | uniq | wc -l)|$(wc -l < "$RUN/readback")" "$committed|$committed"
is "read back per stream in version order" \
   "$(awk -F'|' '{ if ($1 == s && $2 != v + 1) bad++; s = $1; v = $2 } END { print bad + 0 }' "$RUN/readback")" 0
# the concurrent reader: every committed event once, nothing rolled back,
# in log order (cursors ascending), each stream in version order
is "some appends committed on two workers (two-phase commit)" \
   "$(q $C "WITH l AS MATERIALIZED (SELECT stream_id, token FROM public.ledger)
             SELECT count(*) > 0 FROM l
             WHERE (SELECT nodeport FROM pg_dist_shard_placement
                     WHERE shardid = get_shard_id_for_distribution_column('ocx.events', l.stream_id))
                <> (SELECT nodeport FROM pg_dist_shard_placement
                     WHERE shardid = get_shard_id_for_distribution_column('public.ledger', l.token))")" t
grep '|load-' "$RUN/paged" | awk -F'|' '{ print $2 ":" $4 }' | LC_ALL=C sort > "$RUN/paged.load"
LC_ALL=C sort "$RUN/ledger" > "$RUN/ledger.sorted"
if cmp -s "$RUN/ledger.sorted" "$RUN/paged.load"; then
    ok "read_all during the appends: every committed event once, none rolled back"
else
    not_ok "read_all during the appends: every committed event once, none rolled back" \
        "$(wc -l < "$RUN/paged.load") read, $committed committed; $(diff "$RUN/ledger.sorted" "$RUN/paged.load" | head -4 | tr '\n' ' ')"
fi
is "read_all during the appends: in log order, each stream in version order" \
   "$(tr '/' '|' < "$RUN/paged" | awk -F'|' '
        { if (n++ && ($1 < t || ($1 == t && $2 <= p))) bad++; t = $1; p = $2
          if ($3 ~ /^load-/) { if ($4 != v[$3] + 1) bad++; v[$3] = $4 } }
        END { print bad + 0 }')" 0
# the subscriber: every committed event of its category once, none rolled
# back, in log order, each stream in version order; nothing left to poll
awk -F'|' '{ print $2 ":" $4 }' "$RUN/polled" | LC_ALL=C sort > "$RUN/polled.load"
if cmp -s "$RUN/ledger.sorted" "$RUN/polled.load"; then
    ok "subscription during the appends: every committed event polled and acknowledged once, none rolled back"
else
    not_ok "subscription during the appends: every committed event polled and acknowledged once, none rolled back" \
        "$(wc -l < "$RUN/polled.load") polled, $committed committed; $(diff "$RUN/ledger.sorted" "$RUN/polled.load" | head -4 | tr '\n' ' ')"
fi
is "subscription during the appends: in log order, each stream in version order" \
   "$(tr '/' '|' < "$RUN/polled" | awk -F'|' '
        { if (n++ && ($1 < t || ($1 == t && $2 <= p))) bad++; t = $1; p = $2
          if ($4 != v[$3] + 1) bad++; v[$3] = $4 }
        END { print bad + 0 }')" 0
is "subscription: acknowledged past the last event of its category, nothing left to poll" \
   "$(q $C "SELECT s.acked OPERATOR(ocx.>=) (SELECT cursor FROM ocx.read_all(NULL, NULL, categories => '{load}')
                                                ORDER BY txid DESC, global_position DESC LIMIT 1)
             FROM ocx.subscription_status s WHERE s.name = 'load_sub'")|$(q $C "SELECT count(*) FROM ocx.poll('load_sub', 100)")" "t|0"
is "read_all after the appends equals the log" \
   "$(q $C "SELECT count(*) FROM ocx.read_all(NULL, NULL)")|$(wc -l < "$RUN/paged")" \
   "$(q $C "SELECT count(*) FROM ocx.events")|$(q $C "SELECT count(*) FROM ocx.events")"
# the projection catches up with the tail of the log, and equals a replay
for _ in $(seq 1 120); do
    [ "$(q $C "SELECT (checkpoint_txid, checkpoint_position) >= (ocx.txid(t), ocx.global_position(t))
                 FROM ocx.projections, ocx._log_tail(NULL) t WHERE name = 'model'")" = t ] && break
    sleep 1
done
is "the projection caught up, without errors" \
   "$(q $C "SELECT (checkpoint_txid, checkpoint_position) >= (ocx.txid(t), ocx.global_position(t))
                   AND last_error IS NULL
             FROM ocx.projections, ocx._log_tail(NULL) t WHERE name = 'model'")|$(q $C "SELECT count(*) FROM ocx.dead_letters")" "t|0"
is "the projection's read model equals a replay of the log" \
   "$(q $C "SELECT md5(string_agg(stream_id || ':' || n || ':' || total || ':' || last_version, ',' ORDER BY stream_id))
             FROM public.model")" \
   "$(q $C "SELECT md5(string_agg(stream_id || ':' || n || ':' || total || ':' || last_version, ',' ORDER BY stream_id))
             FROM (SELECT stream_id, count(*) n, sum((data->>'amount')::bigint) total, max(stream_version) last_version
                     FROM ocx.events WHERE stream_id LIKE 'load-%' GROUP BY stream_id) r")"
# ocx.projection_status on the distributed log: the view's lag goes through
# ocx._projection_lag, which distribute() replaces (docs/scaling.md)
is "projection_status: the caught-up projection, no lag, no dead letters" \
   "$(q $C "SELECT name || ':' || lag_events || ':' || dead_letters || ':' || (last_error IS NULL)
             FROM ocx.projection_status WHERE name = 'model'")" "model:0:0:true"
# read-your-writes: wait_for on the distributed log, in the appending session
is "wait_for: an append, then wait for the projection to pass it" \
   "$("$PGBIN/psql" -qXtA -v ON_ERROR_STOP=1 -p $C -d "$CITUS_DB" \
        -c "SELECT ocx.append('load-1', NULL, '{\"type\": \"Deposited\", \"data\": {\"amount\": 7}}') > 0" \
        -c "SELECT ocx.wait_for('model', ocx.last_append_cursor(), '60 s')" \
        -c "SELECT m.last_version = ocx.stream_version('load-1') FROM public.model m WHERE m.stream_id = 'load-1'" 2>&1 | tr '\n' ' ')" \
   "t t t "
is "wait_for: a cursor the projection has not passed times out (false)" \
   "$("$PGBIN/psql" -qXtA -v ON_ERROR_STOP=1 -p $C -d "$CITUS_DB" \
        -c "SELECT ocx.pause_projection('model')" \
        -c "SELECT ocx.append('load-1', NULL, '{\"type\": \"Deposited\", \"data\": {\"amount\": 1}}') > 0" \
        -c "SELECT ocx.wait_for('model', ocx.last_append_cursor(), '1 s')" \
        -c "SELECT ocx.resume_projection('model')" 2>&1 | tail -n +2 | head -2 | tr '\n' ' ')" \
   "t f "
is "wait_for: a paused projection has passed an event it does not select (nothing it wants is left)" \
   "$("$PGBIN/psql" -qXtA -v ON_ERROR_STOP=1 -p $C -d "$CITUS_DB" \
        -c "SELECT 'w:' || ocx.wait_for('model', ocx._log_tail(NULL), '60 s')" \
        -c "SELECT ocx.pause_projection('model')" \
        -c "SELECT ocx.append('other-1', NULL, '{\"type\": \"Deposited\", \"data\": {\"amount\": 1}}') > 0" \
        -c "SELECT 'w:' || ocx.wait_for('model', ocx.last_append_cursor(), '5 s')" \
        -c "SELECT ocx.resume_projection('model')" 2>&1 | grep '^w:' | tr '\n' ' ')" \
   "w:true w:true "
is "projection_status: a paused projection's lag counts the events it selects after its checkpoint" \
   "$("$PGBIN/psql" -qXtA -v ON_ERROR_STOP=1 -p $C -d "$CITUS_DB" \
        -c "SELECT 'w:' || ocx.wait_for('model', ocx._log_tail(NULL), '60 s')" \
        -c "SELECT ocx.pause_projection('model')" \
        -c "SELECT ocx.append('load-2', NULL, '[{\"type\": \"Deposited\", \"data\": {\"amount\": 1}}, {\"type\": \"Deposited\", \"data\": {\"amount\": 2}}]') > 0" \
        -c "SELECT ocx.append('other-2', NULL, '{\"type\": \"Deposited\", \"data\": {\"amount\": 1}}') > 0" \
        -c "SELECT 'lag:' || lag_events || ':' || (lag_seconds >= 0) FROM ocx.projection_status WHERE name = 'model'" \
        -c "SELECT ocx.resume_projection('model')" 2>&1 | grep -E '^(w|lag):' | tr '\n' ' ')" \
   "w:true lag:2:true "
# tamper evidence: the chain the routed single-event statements wrote (the
# stream row statement hashes the event into the head on the worker), checked
# stream by stream
is "ocx.verify() of each of the 1,000 streams: the hash chain written through the coordinator holds" \
   "$(q $C "SELECT count(*) FROM unnest(ARRAY[$ids]::text[]) sid, LATERAL ocx.verify(sid)")|$(q $C "SELECT count(*) FROM ocx.events WHERE hash IS NULL")" "0|0"
# the whole log: every stream's chain and every seal, the worker's and one
# taken now (the sealer takes the horizon on the coordinator first: in the
# query, Citus evaluated ocx.log_horizon() on each worker, against the
# worker's transaction ids, and a seal missed events of its range)
q $C "SELECT ocx.seal()" >/dev/null
is "ocx.verify() of the whole log: every chain and every seal hold" \
   "$(q $C "SELECT count(*) > 0 AND sum(events) = (SELECT count(*) FROM ocx.events) FROM ocx.seals")|$(q $C "SELECT count(*) FROM ocx.verify()")" \
   "t|0"
# the same events on one node: load equals
q $C "SELECT stream_id, stream_version, data FROM ocx.events WHERE stream_id LIKE 'load-%'
      ORDER BY stream_id, stream_version" > "$RUN/events"
"$PGBIN/psql" -qXtA -v ON_ERROR_STOP=1 -p $SINGLE -d "$CITUS_DB" >/dev/null 2>&1 <<SQL || not_ok "copy the events to one node"
CREATE TABLE public.src (stream_id text, stream_version bigint, data jsonb);
\\copy public.src FROM '$RUN/events' WITH (FORMAT text, DELIMITER '|')
SELECT count(ocx.append(stream_id, stream_version - 1, jsonb_build_object('type', 'Deposited', 'data', data)))
  FROM (SELECT * FROM public.src ORDER BY stream_id, stream_version) s;
SQL
loads="SELECT md5(string_agg(sid || ocx.load('acct', sid)::text, ',' ORDER BY sid))
         FROM unnest(ARRAY[$ids]::text[]) sid"
is "load of the 1,000 streams equals one node's" "$(q $C "$loads")" "$(q $SINGLE "$loads")"

# --- the sagas (run during the load): each completed, each step once
is "sagas: every saga completed, with its own results" \
   "$(q $C "SELECT count(*) FILTER (WHERE state = 'completed'
                                      AND results = jsonb_build_object('hotel', jsonb_build_object('booking', 'B' || (input->>'n')),
                                                                       'pay', jsonb_build_object('booking', 'B' || (input->>'n'))))
             FROM ocx.saga_instances WHERE saga_name = 'trip'")" "$nsagas"
is "sagas: each step sent once and succeeded once (exactly once through the distributed log)" \
   "$(q $C "SELECT count(*) FILTER (WHERE action = 'step_sent') || ':' || count(*) FILTER (WHERE action = 'step_succeeded')
                   || ':' || count(DISTINCT (saga_id, step)) FILTER (WHERE action = 'step_succeeded')
                   || ':' || count(*) FILTER (WHERE action = 'completed')
             FROM ocx.saga_steps")" "$((nsagas * 2)):$((nsagas * 2)):$((nsagas * 2)):$nsagas"

# --- the race of 8 on one stream (run during the load): one winner per version
winners=0 losers=0 other=0
for v in $(seq 0 $((rounds - 1))); do
    w=$(grep -lx "$((v + 1))" "$RUN"/race.$v.* | wc -l)
    l=$(grep -l 'OX001' "$RUN"/race.$v.* | wc -l)
    [ "$w" -eq 1 ] && winners=$((winners + 1))
    losers=$((losers + l))
    other=$((other + 8 - w - l))
done
is "race: exactly one winner per version in $rounds rounds" "$winners" "$rounds"
is "race: the 7 others of each round got wrong_expected_version" "$losers|$other" "$((rounds * 7))|0"
is "race: the stream holds one event per round" \
   "$(q $C "SELECT count(*) || ':' || count(DISTINCT data->>'round') || ':' || max(stream_version) FROM ocx.events WHERE stream_id = 'race-1'")" \
   "$rounds:$rounds:$rounds"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

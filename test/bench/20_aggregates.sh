#!/usr/bin/env bash
# Aggregates (issue 3's targets): ocx.load against plain-SQL folds, snapshots,
# and the backend's memory while replaying a long stream.
set -euo pipefail
. "$BENCH_DIR/lib.sh"
P="$PGBIN/psql -qX -v ON_ERROR_STOP=1"

# A 10,000-event account stream, some other streams around it, an apply
# function in PL/pgSQL, the same fold as a declarative reducer, and the
# plain PL/pgSQL loop over read_stream a user would write without ocx.load.
$P >/dev/null <<'SQL'
SELECT ocx.append('bagg-1', NULL, (SELECT jsonb_agg(jsonb_build_object(
    'type', CASE WHEN i % 10 = 0 THEN 'BWithdrawn' ELSE 'BDeposited' END,
    'data', jsonb_build_object('amount', i % 7, 'currency', 'EUR')))
    FROM generate_series(1, 10000) i));
SELECT ocx.append('bagg-other-' || g, NULL, (SELECT jsonb_agg(jsonb_build_object(
    'type', 'BDeposited', 'data', jsonb_build_object('amount', 1))) FROM generate_series(1, 10)))
  FROM generate_series(1, 2000) g;

CREATE FUNCTION bagg_apply(state jsonb, e ocx.event) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF e.type = 'BDeposited' THEN
        RETURN jsonb_set(state, '{balance}', to_jsonb((state->>'balance')::numeric + (e.data->>'amount')::numeric));
    END IF;
    RETURN jsonb_set(state, '{balance}', to_jsonb((state->>'balance')::numeric - (e.data->>'amount')::numeric));
END $$;

CREATE FUNCTION bagg_loop(s text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    state jsonb := '{"balance": 0}';
    e ocx.event;
BEGIN
    FOR e IN SELECT * FROM ocx.read_stream(s) LOOP
        state := bagg_apply(state, e);
    END LOOP;
    RETURN state;
END $$;

SELECT ocx.define_aggregate('bagg_fn', 'bagg_apply(jsonb, ocx.event)', '{"balance": 0}');
SELECT ocx.define_aggregate('bagg_red', reducer => '{"BDeposited": [{"add": "balance", "from": "amount"}],
                                                     "BWithdrawn": [{"subtract": "balance", "from": "amount"}]}',
                            initial_state => '{"balance": 0}');
-- the same apply, with a snapshot 100 events behind the head: a time-travel
-- load to 9,900 crosses snapshot_every and stores it; loads of the head then
-- start there and never store another (10,000 / 9,900 = 9,900 / 9,900)
SELECT ocx.define_aggregate('bagg_snap', 'bagg_apply(jsonb, ocx.event)', '{"balance": 0}', 9900);
SELECT ocx.load('bagg_snap', 'bagg-1', 9900);
VACUUM ANALYZE ocx.events;
VACUUM ANALYZE ocx.snapshots;
SQL
# Check that every fold agrees before timing anything.
want=$($P -At -c "SELECT bagg_loop('bagg-1')")
for agg in bagg_fn bagg_red bagg_snap; do
    got=$($P -At -c "SELECT state FROM ocx.load('$agg', 'bagg-1')")
    [ "$got" = "$want" ] || { echo "20_aggregates: $agg folds to $got, the loop to $want" >&2; exit 1; }
done

# 1. ocx.load with a PL/pgSQL apply against the PL/pgSQL loop over read_stream
echo "SELECT ocx.load('bagg_fn', 'bagg-1');" > "$BENCH_OUT/agg_load_fn.sql"
echo "SELECT bagg_loop('bagg-1');" > "$BENCH_OUT/agg_loop.sql"
read -r o b < <(alt_tps "$BENCH_OUT/agg_load_fn.sql" "$BENCH_OUT/agg_loop.sql" 1 3)
row "ocx.load, 10,000 events, PL/pgSQL apply, vs PL/pgSQL loop over read_stream (loads/s)" "$o" "$b" 3

# 2. the declarative reducer against count(*) over the same rows
echo "SELECT ocx.load('bagg_red', 'bagg-1');" > "$BENCH_OUT/agg_load_red.sql"
echo "SELECT count(*) FROM ocx.events WHERE stream_id = 'bagg-1';" > "$BENCH_OUT/agg_count.sql"
read -r o b < <(alt_tps "$BENCH_OUT/agg_load_red.sql" "$BENCH_OUT/agg_count.sql" 1 3)
row "ocx.load, 10,000 events, declarative reducer, vs SELECT count(*) of the rows (loads/s)" "$o" "$b" 0.33

# 2b. for scale: the same fold as one plain SQL aggregate over the rows (informative)
echo "SELECT sum(CASE WHEN type = 'BDeposited' THEN 1 ELSE -1 END * (data->>'amount')::numeric) FROM ocx.events WHERE stream_id = 'bagg-1';" > "$BENCH_OUT/agg_sum.sql"
read -r o b < <(alt_tps "$BENCH_OUT/agg_load_red.sql" "$BENCH_OUT/agg_sum.sql" 1 3)
row "ocx.load, declarative reducer, vs the same fold as SELECT sum(...) (loads/s, informative)" "$o" "$b" 1

# 3. a snapshot 100 events behind the head against a full replay (same apply)
snapv=$($P -At -c "SELECT 1 FROM ocx.load('bagg_snap', 'bagg-1')" -c "SELECT snapshot_version FROM ocx.last_load()" | tail -n1)
echo "SELECT ocx.load('bagg_snap', 'bagg-1');" > "$BENCH_OUT/agg_load_snap.sql"
read -r o b < <(alt_tps "$BENCH_OUT/agg_load_snap.sql" "$BENCH_OUT/agg_load_fn.sql" 1 3)
row "ocx.load from a snapshot $((10000 - snapv)) events behind the head vs full replay (loads/s)" "$o" "$b" 20

# 4. memory: replay a 1,000,000-event stream; peak anonymous memory of the backend
$P -c "SELECT ocx.append('bagg-big', NULL, (SELECT jsonb_agg(jsonb_build_object(
           'type', CASE WHEN i % 10 = 0 THEN 'BWithdrawn' ELSE 'BDeposited' END,
           'data', jsonb_build_object('amount', i % 7, 'currency', 'EUR', 'note', repeat('x', 40))))
       FROM generate_series(1, 100000) i)) FROM generate_series(1, 10)" >/dev/null
$P -c "VACUUM ANALYZE ocx.events" >/dev/null

# peak_growth AGGREGATE: KiB of anonymous memory the backend gained during the load
peak_growth() {
    local agg=$1 pid base peak cur
    PGAPPNAME=bagg_mem $P -c "SELECT pg_sleep(1)" -c "SELECT 1 FROM ocx.load('$agg', 'bagg-big')" >/dev/null &
    local job=$!
    pid=""
    for _ in $(seq 50); do
        pid=$($P -At -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'bagg_mem'")
        [ -n "$pid" ] && break
        sleep 0.02
    done
    if [ -z "$pid" ] || [ ! -r "/proc/$pid/status" ]; then wait "$job"; echo unreadable; return; fi
    base=$(awk '/^RssAnon/ {print $2}' "/proc/$pid/status")
    peak=$base
    while kill -0 "$job" 2>/dev/null && [ -r "/proc/$pid/status" ]; do
        cur=$(awk '/^RssAnon/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        [ -n "$cur" ] && [ "$cur" -gt "$peak" ] && peak=$cur
        sleep 0.02
    done
    wait "$job"
    echo $((peak - base))
}
for agg in bagg_fn bagg_red; do
    kib=$(peak_growth "$agg")
    what="ocx.load of 1,000,000 events ($agg): backend peak memory growth (MB) vs the 20 MB budget"
    if [ "$kib" = unreadable ]; then
        # /proc of the server's processes is not readable by this user
        echo "| $what | n/a | 20 | n/a | <= 1 | n/a |"
    else
        row "$what" "$(awk -v k="$kib" 'BEGIN {print k / 1024}')" 20 1 lower
    fi
done

#!/usr/bin/env bash
# Partitioned projections (issue 12): a handler that waits 1 ms per event
# (pg_sleep(0.001), a stand-in for a call out), over the same 4,000 events
# in 400 streams, as 4 partitions (the database worker and 3 helpers) against
# 1 partition: events/s from define to caught up (wall clock around it).  Target: >= 3x.
# 3 rounds, the order alternating per round, the spread in the row.
set -euo pipefail
. "$BENCH_DIR/lib.sh"
P="$PGBIN/psql -qAtX -v ON_ERROR_STOP=1"
N=${BENCH_PARTITION_EVENTS:-4000}

$P -o /dev/null <<SQL
CREATE TABLE bench_model (projection text, pos bigint);
CREATE FUNCTION bench_slow(e ocx.event) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
    PERFORM pg_sleep(0.001);
    INSERT INTO public.bench_model VALUES (current_setting('bench.projection', true), e.global_position);
END \$\$;
SELECT ocx.append_event('acct-' || (i % 400), NULL, 'Tick', '{}') FROM generate_series(1, $N) i;
SQL

# events/s of a projection with $1 partitions, from define to caught up
rate() {
    local parts=$1 t0 t1
    t0=$(date +%s.%N)
    $P -o /dev/null -c "SELECT ocx.define_projection('bench_p$parts', 'bench_slow(ocx.event)', partitions => $parts)"
    $P -o /dev/null <<SQL
DO \$\$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
    LOOP
        EXIT WHEN (SELECT lag_events = 0 AND events_applied >= $N FROM ocx.projection_status WHERE name = 'bench_p$parts');
        IF clock_timestamp() > t0 + interval '5 minutes' THEN
            RAISE EXCEPTION 'projection bench_p$parts did not catch up';
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END \$\$;
SQL
    t1=$(date +%s.%N)
    $P -o /dev/null -c "SELECT ocx.drop_projection('bench_p$parts')"
    awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { t = b - a; printf "%.1f", (t > 0) ? n / t : 0 }'
}

l4=""; l1=""
for r in 1 2 3; do   # the order alternates per round
    if [ $((r % 2)) -eq 1 ]; then four=$(rate 4); one=$(rate 1); else one=$(rate 1); four=$(rate 4); fi
    l4="$l4 $four"; l1="$l1 $one"
done
echo "bench: events/s rounds: 4 partitions$l4; 1 partition$l1" >&2
spread_rounds "$l4" "$l1"
mean() { echo "$1" | awk '{s = 0; for (i = 1; i <= NF; i++) s += $i; print s / NF}'; }
row "projection, 4 partitions vs 1, handler waits 1 ms/event (events/s)" "$(mean "$l4")" "$(mean "$l1")" 3

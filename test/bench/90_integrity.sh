#!/usr/bin/env bash
# Tamper evidence (issue 14, docs/integrity.md):
#  1. single-event append at 8 clients with the hash chain on against the
#     same appends with it off (ocx.chain = off, a superuser-only switch the
#     bench's superuser connection sets through PGOPTIONS), in alternating
#     rounds of one run: target >= 0.9 (the chain costs at most 10%);
#  2. sealing against the fastest append load: the events per second ocx.seal()
#     seals from a backlog (10,000 per seal) against the events per second of
#     100-event batch appends at 4 clients, in 3 rounds, the order alternating,
#     the spread in the row: target >= 1 (sealing keeps up);
#  3. ocx.verify() of 1,000,000 events: events per second against the
#     33,334 events/s that 30 s allows: target >= 1 (the rate is the figure).
set -euo pipefail
. "$BENCH_DIR/lib.sh"
P="$PGBIN/psql -qX -v ON_ERROR_STOP=1"

# the worker does not seal during the measurements (ocx.seal() does)
$P -c "ALTER SYSTEM SET ocx.seal_interval = 0" -c "SELECT pg_reload_conf()" >/dev/null

# 1. chain on vs off, alternating rounds
cat > "$BENCH_OUT/chain1.sql" <<'SQL'
\set s random(1, 100000)
SELECT ocx.append_event('chain-' || :s, NULL, 'Deposited', '{"amount": 10, "currency": "EUR"}');
SQL
# the same appends into streams of their own: events appended with the chain
# off carry no hash, and ocx.verify() reports them (section 3 leaves them out)
sed 's/chain-/nochain-/' "$BENCH_OUT/chain1.sql" > "$BENCH_OUT/nochain1.sql"
on=""; off=""
for i in 1 2 3; do   # the order alternates per round
    if [ $((i % 2)) -eq 1 ]; then
        a=$(pgbench_tps "$BENCH_OUT/chain1.sql" 8)
        b=$(PGOPTIONS='-c ocx.chain=off' pgbench_tps "$BENCH_OUT/nochain1.sql" 8)
    else
        b=$(PGOPTIONS='-c ocx.chain=off' pgbench_tps "$BENCH_OUT/nochain1.sql" 8)
        a=$(pgbench_tps "$BENCH_OUT/chain1.sql" 8)
    fi
    on="$on $a"; off="$off $b"
done
echo "bench: chain on rounds:$on; off rounds:$off" >&2
spread_rounds "$on" "$off"
read -r o b < <(echo "$on|$off" | awk -F'|' '{ na = split($1, x, " "); nb = split($2, y, " ")
    for (i = 1; i <= na; i++) sa += x[i]; for (i = 1; i <= nb; i++) sb += y[i]; print sa / na, sb / nb }')
row "append_event with the hash chain, 1 event/tx, 8 clients (tx/s; baseline: ocx.chain = off)" "$o" "$b" 0.9

# 2. sealing rate against the fastest append rate
events=$(tick_events 100)
printf '\\set s random(1, 1000000)\nSELECT ocx.append(%sseal-%s || :s, NULL, %s[%s]%s);\n' "'" "'" "'" "$events" "'" > "$BENCH_OUT/chain100.sql"
# the events after the last seal
unsealed() {
    $P -Atc "SELECT count(*) FROM ocx.events e WHERE ocx.cursor(e.txid, e.global_position) OPERATOR(ocx.>)
             COALESCE((SELECT last_cursor FROM ocx.seals ORDER BY seal_id DESC LIMIT 1), ocx.cursor('0'::xid8, 0))"
}
# one sealing round: a backlog of at least 200,000 events (and whatever the
# append rounds left), sealed 10,000 per ocx.seal() until nothing is left:
# events/s
seal_round() {
    local n t0 t1
    $P -c "DO \$\$ BEGIN FOR i IN 1..200 LOOP PERFORM ocx.append('backlog-' || i, NULL, (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('type', 'Tick', 'data', pg_catalog.jsonb_build_object('n', g, 'pad', 'abcdefghij'))) FROM pg_catalog.generate_series(1, 1000) g)); END LOOP; END \$\$" >/dev/null
    n=$(unsealed)
    [ -n "$n" ] && [ "$n" -gt 0 ] || { echo "bench: no unsealed backlog to seal" >&2; return 1; }
    t0=$(date +%s.%N)
    while [ -n "$($P -Atc 'SELECT ocx.seal()')" ]; do :; done
    t1=$(date +%s.%N)
    echo "bench: sealed $n events in $(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}') s" >&2
    awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN {print n / (b - a)}'
}
append_round() {    # 100-event batches, 4 clients: events/s
    awk -v x="$(pgbench_tps "$BENCH_OUT/chain100.sql" 4 -M prepared)" 'BEGIN {print x * 100}'
}
while [ -n "$($P -Atc 'SELECT ocx.seal()')" ]; do :; done    # seal what section 1 left
# 3 rounds, the order alternating (sealing first in the second round)
ls="" la=""
for i in 1 2 3; do
    if [ $((i % 2)) -eq 1 ]; then
        ta=$(append_round); ts=$(seal_round)
    else
        ts=$(seal_round); ta=$(append_round)
    fi
    ls="$ls $ts"; la="$la $ta"
done
spread_rounds "$ls" "$la"
read -r seal_eps append_eps < <(echo "$ls|$la" | awk -F'|' '{ n = split($1, x, " "); split($2, y, " ")
    for (i = 1; i <= n; i++) { sa += x[i]; sb += y[i] }; print sa / n, sb / n }')
row "sealing, 10,000 events per seal (events/s; baseline: append of 100-event batches, 4 clients, events/s)" "$seal_eps" "$append_eps" 1.0

# 3. verify() of 1,000,000 events
have=$($P -Atc "SELECT count(*) FROM ocx.events")
need=$(( (1000000 - have + 999) / 1000 ))
if [ "$need" -gt 0 ]; then
    $P -c "DO \$\$ BEGIN FOR i IN 1..$need LOOP PERFORM ocx.append('verify-' || i, NULL, (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('type', 'Tick', 'data', pg_catalog.jsonb_build_object('n', g, 'pad', 'abcdefghij'))) FROM pg_catalog.generate_series(1, 1000) g)); END LOOP; END \$\$" >/dev/null
fi
$P -c "VACUUM ANALYZE ocx.events" >/dev/null
total=$($P -Atc "SELECT count(*) FROM ocx.events")
t0=$(date +%s.%N)
found=$($P -Atc "SELECT count(*) FROM ocx.verify() WHERE NOT authorised AND stream NOT LIKE 'nochain-%'")
t1=$(date +%s.%N)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')
echo "bench: ocx.verify() of $total events (and every seal): $secs s, $found findings outside the chain-off streams" >&2
[ "$found" = 0 ] || echo "bench: ocx.verify() reported $found findings on an untouched log" | tee -a "$BENCH_OUT/pgbench_failures" >&2
row "ocx.verify() of $total events and their seals (events/s; baseline: 1,000,000 events in 30 s)" \
    "$(awk -v n="$total" -v s="$secs" 'BEGIN {print n / s}')" 33334 1.0

$P -c "ALTER SYSTEM RESET ocx.seal_interval" -c "SELECT pg_reload_conf()" >/dev/null

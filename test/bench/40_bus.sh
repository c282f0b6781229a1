#!/usr/bin/env bash
# The bus (issue 5): append throughput with wake-ups on against off, the
# latency from an append's commit to a listening client's wake-up, and
# claim_commands + complete_command against pgmq-style plain SQL.
set -euo pipefail
. "$BENCH_DIR/lib.sh"
P="$PGBIN/psql -qX -v ON_ERROR_STOP=1"
NODE_DIR=$(cd "$BENCH_DIR/../node" && pwd)
(cd "$NODE_DIR" && { [ node_modules/.package-lock.json -nt package-lock.json ] ||
    npm ci --silent --no-audit --no-fund; }) >&2
export NODE_PATH=$NODE_DIR/node_modules

# A small client: "listen SECONDS" counts wake-ups; "latency N" appends N
# times at light load and prints the N latencies (ms, one line) from the
# append's acknowledged commit to the wake-up on ocx_events.
cat > "$BENCH_OUT/bus_client.cjs" <<'JS'
const { Client } = require('pg');
const [mode, arg] = process.argv.slice(2);
(async () => {
  const listener = new Client(); await listener.connect();
  await listener.query('LISTEN ocx_events');
  if (mode === 'listen') {
    let n = 0;
    listener.on('notification', () => n++);
    await new Promise((r) => setTimeout(r, Number(arg) * 1000));
    console.log(n); await listener.end(); return;
  }
  const writer = new Client(); await writer.connect();
  // every wake-up, with the head position it announces and when it came
  const seen = [];
  let waiter = null;
  listener.on('notification', (m) => {
    seen.push([JSON.parse(m.payload).global_position, process.hrtime.bigint()]);
    if (waiter) waiter();
  });
  const lat = [];
  for (let i = 0; i < Number(arg); i++) {
    const stream = `lat-${process.pid}-${i}`;
    await writer.query(`SELECT ocx.append_event($1, NULL, 'Pinged', '{}')`, [stream]);
    const acked = process.hrtime.bigint();
    const r = await writer.query('SELECT global_position FROM ocx.events WHERE stream_id = $1', [stream]);
    const pos = Number(r.rows[0].global_position);
    let hit;
    while (!(hit = seen.find(([p]) => p >= pos)))
      await new Promise((resolve, reject) => {
        waiter = resolve;
        setTimeout(() => reject(new Error(`no wake-up for position ${pos} within 5 s`)), 5000);
      });
    waiter = null;
    lat.push(Math.max(0, Number(hit[1] - acked) / 1e6));
    seen.length = 0;
    await new Promise((r) => setTimeout(r, 20));
  }
  console.log(lat.map((x) => x.toFixed(3)).join(' '));
  await writer.end(); await listener.end();
})().catch((e) => { console.error(e); process.exit(1); });
JS

# The ocx worker sends the wake-ups; without it (before the worker is
# built) a session runs the worker's bus task every 2 ms instead, committing
# asynchronously as the worker does.
worker=$($P -Atc "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND backend_type ILIKE '%ocx%'")
start_ticker() {
    [ "$worker" -eq 0 ] || return 0
    PGAPPNAME=ocx_bench_ticker $P -c "SET synchronous_commit = off" -c "SET statement_timeout = '$(( BENCH_SECONDS * 3 + 30 ))s'" \
        -c "DO \$\$ BEGIN LOOP PERFORM ocx._bus_tick(); COMMIT; PERFORM pg_sleep(0.002); END LOOP; END \$\$" \
        >/dev/null 2>&1 &
}
stop_ticker() {
    [ "$worker" -eq 0 ] || return 0
    $P -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'ocx_bench_ticker'" >/dev/null
    wait 2>/dev/null || true
}
# ocx.notify_mode for every session, the worker included (it reloads on SIGHUP)
mode() {
    $P -c "ALTER SYSTEM SET ocx.notify_mode = $1" -c "SELECT pg_reload_conf()" >/dev/null
    sleep 0.5
}
who=$([ "$worker" -eq 0 ] && echo "a 2 ms tick loop (no worker yet)" || echo "the worker")

# 1. append throughput, 8 clients: wake-ups on (worker mode, a listener) vs off
cat > "$BENCH_OUT/bus_append.sql" <<'SQL'
\set s random(1, 100000)
SELECT ocx.append_event('acct-' || :s, NULL, 'Deposited', '{"amount": 10, "currency": "EUR"}');
SQL
run_on() {
    mode worker; start_ticker
    node "$BENCH_OUT/bus_client.cjs" listen "$BENCH_SECONDS" > "$BENCH_OUT/wakeups" &
    local t; t=$(pgbench_tps "$BENCH_OUT/bus_append.sql" 8); wait $!; stop_ticker
    echo "${t:-0}"
}
run_off() { mode off; local t; t=$(pgbench_tps "$BENCH_OUT/bus_append.sql" 8); echo "${t:-0}"; }
lon=""; loff=""
for i in 1 2 3; do   # the order alternates per round
    if [ $((i % 2)) -eq 1 ]; then on=$(run_on); off=$(run_off); else off=$(run_off); on=$(run_on); fi
    lon="$lon $on"; loff="$loff $off"
done
echo "bench: wake-ups on:$lon; off:$loff" >&2
spread_rounds "$lon" "$loff"
row "append_event with NOTIFY wake-ups on vs off, 8 clients (tx/s; $(cat "$BENCH_OUT/wakeups") wake-ups in the last run)" \
    "$(echo "$lon" | awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; print s / NF }')" \
    "$(echo "$loff" | awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; print s / NF }')" 0.95

# 2. commit-to-wake-up latency at light load; baseline: NOTIFY from the
#    appending transaction itself (ocx.notify_mode = immediate).  3 rounds of
#    67 appends each, the order alternating per round; the median and p99 of
#    all 201 and the spread of the rounds' medians and p99s.
lat_worker() {
    mode worker
    $P -c "DO \$\$ BEGIN WHILE ocx._bus_tick() LOOP END LOOP; END \$\$"   # announce the backlog
    start_ticker
    node "$BENCH_OUT/bus_client.cjs" latency 67
    stop_ticker
}
lat_immediate() { mode immediate; node "$BENCH_OUT/bus_client.cjs" latency 67; }
pct() {   # P "LIST": the P-quantile of the figures, as the client computed them
    echo "$2" | tr ' ' '\n' | grep . | sort -g |
        awk -v p="$1" '{ v[NR] = $1 } END { i = int(p * NR) + 1; if (i > NR) i = NR; printf "%.2f", v[i] }'
}
aw=""; ai=""; mw=""; mi=""; pw=""; pi=""
for r in 1 2 3; do   # the order alternates per round
    if [ $((r % 2)) -eq 1 ]; then w=$(lat_worker); i=$(lat_immediate); else i=$(lat_immediate); w=$(lat_worker); fi
    aw="$aw $w"; ai="$ai $i"
    mw="$mw $(pct 0.5 "$w")"; mi="$mi $(pct 0.5 "$i")"; pw="$pw $(pct 0.99 "$w")"; pi="$pi $(pct 0.99 "$i")"
done
$P -c "ALTER SYSTEM RESET ocx.notify_mode" -c "SELECT pg_reload_conf()" >/dev/null
med=$(pct 0.5 "$aw"); p99=$(pct 0.99 "$aw"); imed=$(pct 0.5 "$ai"); ip99=$(pct 0.99 "$ai")
echo "bench: wake-up latency per round (ms): worker medians$mw, p99s$pw; immediate medians$mi, p99s$pi" >&2
spread_rounds "$mw" "$mi"
awk -v m="$med" -v b="$imed" -v w="$who" 'BEGIN {
    printf "| commit to wake-up, median, light load (ms; sent by %s; baseline: immediate NOTIFY) | %.2f | %.2f | %.2f | < 5 ms | %s |\n", w, m, b, (b > 0 ? m / b : 0), (m < 5 ? "yes" : "NO") }' | spread_note
spread_rounds "$pw" "$pi"
awk -v m="$p99" -v b="$ip99" -v w="$who" 'BEGIN {
    printf "| commit to wake-up, p99, light load (ms; sent by %s; baseline: immediate NOTIFY) | %.2f | %.2f | %.2f | < 25 ms | %s |\n", w, m, b, (b > 0 ? m / b : 0), (m < 25 ? "yes" : "NO") }' | spread_note

# 3. claim + complete round trips, 4 competing claimers, against pgmq-style
#    plain SQL (SELECT ... FOR UPDATE SKIP LOCKED, then DELETE)
$P <<'SQL'
CREATE TABLE pgmq_q (
    msg_id bigserial PRIMARY KEY, read_ct integer NOT NULL DEFAULT 0,
    enqueued_at timestamptz NOT NULL DEFAULT now(), vt timestamptz NOT NULL DEFAULT now(),
    message jsonb);
CREATE INDEX pgmq_q_vt_idx ON pgmq_q (vt);
INSERT INTO pgmq_q (message) SELECT jsonb_build_object('n', i) FROM generate_series(1, 300000) i;
INSERT INTO ocx.commands (command_id, type, data, correlation_id)
    SELECT u, 'bench.Job', jsonb_build_object('n', i), u
      FROM (SELECT gen_random_uuid() AS u, i FROM generate_series(1, 300000) i) s;
VACUUM ANALYZE pgmq_q;
VACUUM ANALYZE ocx.commands;
SQL
cat > "$BENCH_OUT/claim.sql" <<'SQL'
SELECT pg_catalog.quote_literal(command_id) AS cid, pg_catalog.quote_literal(claim_token) AS tok
  FROM ocx.claim_commands(ARRAY['bench.Job'], 1, '30 seconds', 'bench') \gset
SELECT ocx.complete_command(:cid, '{"ok": true}', :tok);
SQL
cat > "$BENCH_OUT/pgmq.sql" <<'SQL'
WITH m AS (SELECT msg_id FROM pgmq_q WHERE vt <= clock_timestamp() ORDER BY msg_id
           LIMIT 1 FOR UPDATE SKIP LOCKED)
UPDATE pgmq_q q SET vt = clock_timestamp() + interval '30 seconds', read_ct = read_ct + 1
  FROM m WHERE q.msg_id = m.msg_id RETURNING q.msg_id, q.message \gset
DELETE FROM pgmq_q WHERE msg_id = :msg_id;
SQL
read -r o b < <(alt_tps "$BENCH_OUT/claim.sql" "$BENCH_OUT/pgmq.sql" 4 3)
row "claim_commands + complete_command, 4 claimers (round trips/s; baseline pgmq-style SKIP LOCKED + DELETE)" "$o" "$b" 0.4

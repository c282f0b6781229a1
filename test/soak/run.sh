#!/usr/bin/env bash
# `make soak`: a long run under mixed load, then invariants (docs/testing.md).
# SOAK_SECONDS (default 600) of load; SOAK_RATE (default 200) pgbench
# transactions per second in all; SOAK_SETTLE (default 180) seconds to wait for
# the worker and the client loops to catch up.  OCX_KEEP=1 keeps the run directory.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$OCX_ROOT"
SOAK_DIR=$OCX_ROOT/test/soak
SOAK_SECONDS=${SOAK_SECONDS:-600}
SOAK_RATE=${SOAK_RATE:-200}
SOAK_SETTLE=${SOAK_SETTLE:-180}

test/deps.sh || exit 1
make -s PG_CONFIG="$PG_CONFIG" >/dev/null || exit 1

RUN=$(ocx_run_dir soak)
DATA=$RUN/data
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    ocx_cluster_stop "$DATA"
    if [ -n "${OCX_KEEP:-}" ]; then echo "run directory kept: $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT

ocx_tmp_install "$RUN/install" || exit 1
ocx_cluster_init "$DATA" "$RUN/sock" \
    "fsync = off" "synchronous_commit = off" "full_page_writes = off" \
    "shared_buffers = 256MB" "max_connections = 100" "max_wal_size = 4GB" \
    "log_min_messages = warning"
ocx_cluster_start "$DATA" "$RUN/server.log" || { cat "$RUN/server.log"; exit 1; }

export PGHOST=$RUN/sock PGPORT=$OCX_PORT PGUSER=postgres PGDATABASE=soak
P() { "$PGBIN/psql" -qXAt -v ON_ERROR_STOP=1 "$@"; }
"$PGBIN/psql" -qX -d postgres -c "CREATE DATABASE soak" >/dev/null || exit 1
P -f "$SOAK_DIR/setup.sql" >/dev/null || exit 1

# the inline projection is running (caught up) before any load
for _ in $(seq 100); do
    [ "$(P -c "SELECT state FROM ocx.projection_status WHERE name = 'soak_inline'")" = running ] && break
    sleep 0.1
done

# client loops: two subscription consumers and a command claimer; a loop that
# ends with an error (say a lost lease) starts again until the stop flag is set
client_loop() {
    local call=$1 log=$2
    while :; do
        P -c "CALL $call" >>"$log" 2>&1 && break
        [ "$(P -c 'SELECT stop FROM soak.control')" = t ] && [ "$call" != "${call#soak.claimer}" ] && break
        sleep 0.2
    done
}
client_loop "soak.consume('c1')" "$RUN/consumer-c1.log" & PIDS+=($!); C1=$!
client_loop "soak.consume('c2')" "$RUN/consumer-c2.log" & PIDS+=($!); C2=$!
client_loop "soak.claimer('claimer-1')" "$RUN/claimer.log" & PIDS+=($!); CL=$!

worker_pid() { P -c "SELECT pid FROM ocx.worker_status() WHERE datname = 'soak'"; }
WPID=$(worker_pid)
[ -n "$WPID" ] || { echo "soak: no ocx worker for database soak"; exit 1; }

# RSS sampler, every 10 s: seconds since start, worker pid, RssAnon and VmRSS
# in kB.  VmRSS also counts the pages of shared_buffers the worker has touched
# (RssShmem), which grows towards shared_buffers as it reads more of the
# database and is no leak; RssAnon is its private memory, the one that is checked.
RSS=$RUN/rss.tsv
START=$(date +%s)
sample_rss() {
    local pid
    pid=$(worker_pid)
    printf '%s\t%s\t%s\t%s\n' $(( $(date +%s) - START )) "${pid:-none}" \
        "$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)" \
        "$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)" >> "$RSS"
}
(
    while :; do sample_rss; sleep 10; done
) & PIDS+=($!); SAMPLER=$!

echo "soak: ${SOAK_SECONDS}s, 8 clients, ${SOAK_RATE} tx/s (writers 80%, sagas+commands 20%, 10% rolled back)"
"$PGBIN/pgbench" -n -c 8 -j 4 -T "$SOAK_SECONDS" -R "$SOAK_RATE" --max-tries 20 \
    -f "$SOAK_DIR/writer.sql@8" -f "$SOAK_DIR/business.sql@2" > "$RUN/pgbench.log" 2>&1
PGBENCH_RC=$?

# settle: projections caught up, commands finished, sagas ended
SETTLED=f
DEADLINE=$(( $(date +%s) + SOAK_SETTLE ))
while [ "$(date +%s)" -lt "$DEADLINE" ]; do
    SETTLED=$(P -c "SELECT
        (SELECT coalesce(bool_and(lag_events = 0 AND state = 'running'), true) FROM ocx.projection_status)
        AND NOT EXISTS (SELECT FROM ocx.command_status WHERE status IN ('pending', 'running'))
        AND NOT EXISTS (SELECT FROM ocx.saga_instances WHERE state IN ('running', 'compensating'))")
    [ "$SETTLED" = t ] && break
    sleep 1
done
P -c "UPDATE soak.control SET stop = true"
for p in $C1 $C2 $CL; do
    for _ in $(seq 600); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
done
# a last sample after the load
kill "$SAMPLER" 2>/dev/null
sample_rss

FAIL=0
check() {   # check NAME OK(t/f) DETAIL
    if [ "$2" = t ]; then echo "ok    $1: $3"; else echo "FAIL  $1: $3"; FAIL=1; fi
}

echo
echo "== pgbench"
grep -E '^(number of transactions actually processed|number of failed|latency average|tps)' "$RUN/pgbench.log"
check pgbench "$([ $PGBENCH_RC = 0 ] && echo t || echo f)" "exit code $PGBENCH_RC"
check settled "$SETTLED" "projections lag 0, no pending/running command, no running/compensating saga within ${SOAK_SETTLE}s"
for p in $C1 $C2 $CL; do
    kill -0 "$p" 2>/dev/null && { check clients f "a client loop did not stop"; break; }
done

echo
echo "== counts"
P -F ' ' -c "SELECT 'events', count(*), 'streams', count(DISTINCT stream_id) FROM ocx.events"
P -F ' ' -c "SELECT 'commands', status, count(*) FROM ocx.command_status GROUP BY status ORDER BY 2"
P -F ' ' -c "SELECT 'sagas', state, count(*) FROM ocx.saga_instances GROUP BY state ORDER BY 2"
P -F ' ' -c "SELECT 'delivered', consumer, count(*) FROM soak.delivered GROUP BY consumer ORDER BY 2"

echo
echo "== invariants"
REPLAY="SELECT stream_id, sum(CASE type WHEN 'Deposited' THEN 1 ELSE -1 END * (data->>'amount')::bigint) AS balance,
               count(*) AS n
          FROM ocx.events WHERE stream_id LIKE 'acct-%' AND type IN ('Deposited', 'Withdrawn') GROUP BY stream_id"
for t in async inline; do
    d=$(P -c "SELECT count(*) FROM ((SELECT * FROM soak.balance_$t EXCEPT ALL ($REPLAY))
                                    UNION ALL (($REPLAY) EXCEPT ALL SELECT * FROM soak.balance_$t)) x")
    n=$(P -c "SELECT count(*) FROM soak.balance_$t")
    check "read model $t" "$([ "$d" = 0 ] && echo t || echo f)" "$n streams, $d rows differ from a replay of ocx.events"
done

r=$(P -F ' ' -c "SELECT (SELECT count(*) FROM ocx.events e WHERE NOT EXISTS (SELECT FROM soak.delivered d WHERE d.global_position = e.global_position)),
                        (SELECT count(*) FROM (SELECT global_position FROM soak.delivered GROUP BY 1 HAVING count(*) > 1) x),
                        (SELECT count(*) FROM soak.delivered d WHERE NOT EXISTS (SELECT FROM ocx.events e WHERE e.global_position = d.global_position))")
read -r missing dup extra <<<"$r"
check "subscription" "$([ "$missing$dup$extra" = 000 ] && echo t || echo f)" \
    "every event delivered once: $missing missing, $dup delivered twice or more, $extra not in the log"

r=$(P -F ' ' -c "SELECT (SELECT count(*) FROM ocx.dead_letters),
                        (SELECT count(*) FROM ocx.dead_letters WHERE NOT (projection = 'soak_async' AND type = 'Poison' AND state = 'parked')),
                        (SELECT count(*) FROM ocx.events WHERE type = 'Poison'),
                        (SELECT count(*) FROM ocx.commands WHERE status = 'dead_letter')")
read -r dl unexplained poison cmd_dl <<<"$r"
check "dead letters" "$([ "$unexplained" = 0 ] && [ "$dl" = "$poison" ] && [ "$cmd_dl" = 0 ] && echo t || echo f)" \
    "$dl parked, all Poison events (raised on purpose by soak_async; $poison in the log), $unexplained unexplained; $cmd_dl dead-lettered commands"

r=$(P -F ' ' -c "SELECT (SELECT count(*) FROM ocx.saga_instances WHERE state = 'completed'),
                        (SELECT count(*) FROM ocx.saga_instances WHERE state = 'compensated'),
                        (SELECT count(*) FROM ocx.saga_instances WHERE state NOT IN ('completed', 'compensated')),
                        (SELECT count(*) FROM ocx.saga_instances s WHERE (state = 'compensated') <> ((s.input->>'amount')::int % 5 = 0))")
read -r done comp other wrong <<<"$r"
check "sagas" "$([ "$other$wrong" = 00 ] && echo t || echo f)" "$done completed, $comp compensated (amount % 5 = 0), $other other, $wrong ended otherwise than their input says"

# atomicity: every business transaction started one saga and sent one Deposit
# and one Notify, committed or rolled back together; each Notify made one event
r=$(P -F ' ' -c "SELECT (SELECT count(*) FROM ocx.saga_instances),
                        (SELECT count(*) FROM ocx.commands WHERE type = 'soak.Deposit'),
                        (SELECT count(*) FROM ocx.commands WHERE type = 'soak.Notify'),
                        (SELECT count(*) FROM ocx.events WHERE type = 'Notified')")
read -r sagas deps notes notified <<<"$r"
check "business transactions" "$([ "$sagas" = "$deps" ] && [ "$deps" = "$notes" ] && [ "$notes" = "$notified" ] && echo t || echo f)" \
    "$sagas sagas, $deps Deposit and $notes Notify commands, $notified Notified events (all equal)"

# RSS: the sample at min(60 s, half the run) is the baseline; the last (after
# the load) may exceed it by at most 20% or 10 MB, whichever is more
half=$(( SOAK_SECONDS / 2 < 60 ? SOAK_SECONDS / 2 : 60 ))
base=$(awk -F'\t' -v h="$half" '$1 >= h && $3 > 0 {print $3; exit}' "$RSS")
last=$(awk -F'\t' '$3 > 0 {v = $3} END {print v}' "$RSS")
pids=$(cut -f2 "$RSS" | sort -u | paste -sd' ')
max=$(awk -F'\t' 'BEGIN {m = 0} $3 > m {m = $3} END {print m}' "$RSS")
ok=$(awk -v b="${base:-0}" -v l="${last:-0}" 'BEGIN {lim = b * 0.2; if (lim < 10240) lim = 10240; print (b > 0 && l - b <= lim) ? "t" : "f"}')
[ "$(echo $pids | wc -w)" = 1 ] || ok=f
vm=$(awk -F'\t' '{v = $4} END {print v}' "$RSS")
check "worker RSS" "$ok" "pid $pids; RssAnon ${base:-?} kB at ${half}s, ${last:-?} kB at the end, max $max kB ($(wc -l < "$RSS") samples; VmRSS at the end $vm kB)"

restarts=$(P -c "SELECT worker_restarts FROM ocx.worker_status() WHERE datname = 'soak'")
check "worker restarts" "$([ "$restarts" = 0 ] && echo t || echo f)" "$restarts"

# server log: ERRORs other than the expected ones
EXPECTED='soak poison event'   # the Poison events, on purpose (logged as LOG by the worker, not ERROR)
errs=$(grep -E '(ERROR|FATAL|PANIC):' "$RUN/server.log" | grep -vE "$EXPECTED")
nexp=$(grep -E 'ERROR:' "$RUN/server.log" | grep -cE "$EXPECTED")
check "server log" "$([ -z "$errs" ] && echo t || echo f)" "$(printf '%s' "$errs" | grep -c .) unexpected ERROR/FATAL/PANIC lines ($nexp ERRORs about the Poison events)"
[ -n "$errs" ] && printf '%s\n' "$errs" | head -20
cerrs=$(cat "$RUN"/consumer-*.log "$RUN/claimer.log" 2>/dev/null)
check "client loops" "$([ -z "$cerrs" ] && echo t || echo f)" "$(printf '%s' "$cerrs" | grep -c .) lines of errors"
[ -n "$cerrs" ] && printf '%s\n' "$cerrs" | head -20

echo
echo "worker RSS samples (s: RssAnon/VmRSS kB):"
awk -F'\t' '{printf "  %s:%s/%s", $1, $3, $4} END {print ""}' "$RSS"
if [ $FAIL = 0 ]; then echo "soak: passed"; else echo "soak: FAILED"; OCX_KEEP=1; fi
exit $FAIL

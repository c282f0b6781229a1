#!/usr/bin/env bash
# `make bench-citus`: append throughput through a Citus coordinator (two
# workers) against one node, in the same run, on the clusters test/citus/run.sh
# started ($COORD, $W1, $W2, $SINGLE; database $CITUS_DB).  Also a plain
# INSERT into a distributed table of the log's shape, and the two statements
# of an append on plain tables in one transaction (a stream row upsert, then
# the INSERT), to tell Citus's cost per statement and per transaction from
# ocx's.  OCX_CITUS_CLIENTS (16), OCX_CITUS_SECONDS (20).
set -uo pipefail
RUN=$1
clients=${OCX_CITUS_CLIENTS:-16}
secs=${OCX_CITUS_SECONDS:-20}
q() { "$PGBIN/psql" -qXtA -v ON_ERROR_STOP=1 -p "$1" -d "$CITUS_DB" -c "$2"; }

q "$COORD" "SELECT ocx.distribute()" >/dev/null || { echo "distribute failed"; exit 1; }
for p in "$COORD" "$SINGLE"; do
    q "$p" "CREATE TABLE public.plain (stream_id text NOT NULL, n bigint NOT NULL DEFAULT 0,
              data jsonb NOT NULL, PRIMARY KEY (stream_id, n))" >/dev/null
done
for p in "$COORD" "$SINGLE"; do
    q "$p" "CREATE TABLE public.plain_streams (stream_id text PRIMARY KEY, version bigint NOT NULL)" >/dev/null
done
q "$COORD" "SELECT create_distributed_table('public.plain', 'stream_id')" >/dev/null
q "$COORD" "SELECT create_distributed_table('public.plain_streams', 'stream_id', colocate_with => 'public.plain')" >/dev/null

cat > "$RUN/append.sql" <<'SQL'
\set s random(1, 100000)
SELECT ocx.append('bench-' || :s, NULL, '{"type": "Deposited", "data": {"amount": 1}}');
SQL
cat > "$RUN/plain.sql" <<'SQL'
\set s random(1, 100000)
\set n random(1, 1000000000)
INSERT INTO public.plain VALUES ('bench-' || :s, :n, '{"amount": 1}') ON CONFLICT DO NOTHING;
SQL
cat > "$RUN/plain2.sql" <<'SQL'
\set s random(1, 100000)
\set n random(1, 1000000000)
BEGIN;
INSERT INTO public.plain_streams AS s VALUES ('bench-' || :s, 1)
    ON CONFLICT (stream_id) DO UPDATE SET version = s.version + 1;
INSERT INTO public.plain VALUES ('bench-' || :s, :n, '{"amount": 1}') ON CONFLICT DO NOTHING;
COMMIT;
SQL
tps() {   # port script
    "$PGBIN/pgbench" -n -c "$clients" -j 2 -T "$secs" -f "$2" -p "$1" "$CITUS_DB" 2>&1 |
        sed -n 's/^tps = \([0-9.]*\).*/\1/p' | tail -n1
}
# warm up both, then alternate
tps "$COORD" "$RUN/append.sql" >/dev/null; tps "$SINGLE" "$RUN/append.sql" >/dev/null
single=$(tps "$SINGLE" "$RUN/append.sql")
citus=$(tps "$COORD" "$RUN/append.sql")
citus_plain=$(tps "$COORD" "$RUN/plain.sql")
single_plain=$(tps "$SINGLE" "$RUN/plain.sql")
single_plain2=$(tps "$SINGLE" "$RUN/plain2.sql")
citus_plain2=$(tps "$COORD" "$RUN/plain2.sql")
echo "| what ($clients clients, ${secs}s) | one node tx/s | Citus coordinator + 2 workers tx/s | Citus / one node |"
echo "|---|---|---|---|"
awk -v a="$single" -v b="$citus" 'BEGIN { printf "| ocx.append, 1 event, 100,000 streams | %.0f | %.0f | %.2f |\n", a, b, (a > 0 ? b / a : 0) }'
awk -v a="$single_plain" -v b="$citus_plain" 'BEGIN { printf "| plain INSERT into a table of the same key | %.0f | %.0f | %.2f |\n", a, b, (a > 0 ? b / a : 0) }'
awk -v a="$single_plain2" -v b="$citus_plain2" 'BEGIN { printf "| plain stream row upsert + INSERT, one transaction | %.0f | %.0f | %.2f |\n", a, b, (a > 0 ? b / a : 0) }'
# where the time goes: statements the coordinator sent per append
q "$COORD" "SELECT 'coordinator: ' || count(*) || ' connections to workers' FROM pg_stat_activity WHERE backend_type = 'client backend'" || true
[ -n "$single" ] && [ -n "$citus" ]

#!/usr/bin/env bash
# The price of row-level security and the ocx roles: the same appends and
# reads by an ordinary member of ocx_writer with ocx.tenant set (policies
# apply) against the superuser (policies bypassed), in the same run.
set -euo pipefail
. "$BENCH_DIR/lib.sh"
P="$PGBIN/psql -qX -v ON_ERROR_STOP=1"

$P <<'SQL'
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bench_tenant') THEN
        CREATE ROLE bench_tenant LOGIN IN ROLE ocx_writer;
    END IF;
END $$;
ALTER ROLE bench_tenant SET ocx.tenant = 'acme';
SQL

# 1. single-event append, 8 clients: tenant writer vs superuser
# (separate streams: a tenant may not append to the superuser's untenanted ones)
for who in t s; do
    cat > "$BENCH_OUT/sec_append_$who.sql" <<SQL
\\set s random(1, 100000)
SELECT ocx.append_event('sec$who-' || :s, NULL, 'Deposited', '{"amount": 10, "currency": "EUR"}');
SQL
done
# alt_users OCX_USER OCX_SCRIPT BASE_USER BASE_SCRIPT CLIENTS: alt_tps with a
# role per side: 3 rounds, the order alternating, "ocx base" means, the spread
# left for the next row
alt_users() {
    local ua=$1 a=$2 ub=$3 b=$4 c=$5 i ta tb la="" lb=""
    for i in 1 2 3; do
        if [ $((i % 2)) -eq 1 ]; then
            ta=$(PGUSER=$ua pgbench_tps "$a" "$c"); tb=$(PGUSER=$ub pgbench_tps "$b" "$c")
        else
            tb=$(PGUSER=$ub pgbench_tps "$b" "$c"); ta=$(PGUSER=$ua pgbench_tps "$a" "$c")
        fi
        la="$la ${ta:-0}"; lb="$lb ${tb:-0}"
    done
    echo "bench: $(basename "$a") as $ua:$la; $(basename "$b") as $ub:$lb" >&2
    spread_rounds "$la" "$lb"
    echo "$la|$lb" | awk -F'|' '{ na = split($1, x, " "); split($2, y, " "); sa = 0; sb = 0
        for (i = 1; i <= na; i++) { sa += x[i]; sb += y[i] }; print sa / na, sb / na }'
}
read -r o b < <(alt_users bench_tenant "$BENCH_OUT/sec_append_t.sql" postgres "$BENCH_OUT/sec_append_s.sql" 8)
row "append_event under RLS as an ocx_writer tenant vs superuser, 8 clients (tx/s)" "$o" "$b" 0.9

# 2. read_stream of a 1,000-event stream: tenant reader vs superuser
PGUSER=bench_tenant $P -c "SELECT ocx.append('secbig-1', 0, (SELECT jsonb_agg(jsonb_build_object('type', 'Tick', 'data', jsonb_build_object('n', i))) FROM generate_series(1, 1000) i))" >/dev/null
$P -c "VACUUM ANALYZE ocx.events" >/dev/null
echo "SELECT * FROM ocx.read_stream('secbig-1');" > "$BENCH_OUT/sec_read.sql"
read -r o b < <(alt_users bench_tenant "$BENCH_OUT/sec_read.sql" postgres "$BENCH_OUT/sec_read.sql" 2)
row "read_stream, 1,000 events, under RLS vs superuser (reads/s)" "$o" "$b" 0.8

# 3. the owner-rights entry point (0.3.0: SECURITY DEFINER as ocx_owner, SET
# search_path) vs 0.2.0's path (the same C function with the caller's rights,
# the writer holding INSERT on the tables as it did in 0.2.0): both as the
# tenant writer, alternating, in the same run
$P <<'SQL'
CREATE FUNCTION public.append_event_invoker(stream_id text, expected_version bigint, type text, data jsonb,
                                            metadata jsonb DEFAULT '{}', event_id uuid DEFAULT NULL)
    RETURNS bigint LANGUAGE C VOLATILE AS '$libdir/ocx', 'ocx_append_event';
GRANT INSERT ON ocx.events TO bench_tenant;
GRANT INSERT, UPDATE ON ocx.streams TO bench_tenant;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA ocx TO bench_tenant;
-- the chain (0.3.0) hashes with an internal function the owner-rights entry point may call
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA ocx TO bench_tenant;
SQL
for who in o i; do
    fn=$([ $who = o ] && echo ocx.append_event || echo public.append_event_invoker)
    cat > "$BENCH_OUT/sec_rights_$who.sql" <<SQL
\\set s random(1, 100000)
SELECT $fn('rights$who-' || :s, NULL, 'Deposited', '{"amount": 10, "currency": "EUR"}');
SQL
done
read -r o b < <(alt_users bench_tenant "$BENCH_OUT/sec_rights_o.sql" bench_tenant "$BENCH_OUT/sec_rights_i.sql" 8)
row "append_event through the owner-rights entry point vs 0.2.0's invoker path, tenant writer, 8 clients (tx/s)" "$o" "$b" 0.95

#!/usr/bin/env bash
# `make demo`: install what is missing, build and install ocx, start a
# throwaway cluster with ocx preloaded, run examples/bank_demo.sql end to end
# and leave the cluster running for you to explore.  `make demo-stop` stops it.
set -euo pipefail
. "$(dirname "$0")/../test/lib.sh"
cd "$OCX_ROOT"

DEMO=${OCX_DEMO_DIR:-/tmp/ocx-demo}
PORT=${OCX_DEMO_PORT:-54330}
PGBIN=$("$PG_CONFIG" --bindir)

stop() {
    if [ -f "$DEMO/data/postmaster.pid" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$DEMO/data" -m fast -w stop >/dev/null && echo "ocx demo cluster stopped"
    fi
    rm -rf "$DEMO"
}

case "${1:-start}" in
stop) stop; exit 0 ;;
start) ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

test/deps.sh
make -s PG_CONFIG="$PG_CONFIG" >/dev/null
if [ "$(id -u)" -eq 0 ]; then
    make -s install PG_CONFIG="$PG_CONFIG" >/dev/null
else
    sudo make -s install PG_CONFIG="$PG_CONFIG" >/dev/null
fi
echo "ocx built and installed into $("$PG_CONFIG" --pkglibdir)"

stop >/dev/null 2>&1 || true
mkdir -p "$DEMO"
chmod 755 "$DEMO"
OCX_PORT=$PORT ocx_cluster_init "$DEMO/data" "$DEMO" "fsync = off"
ocx_cluster_start "$DEMO/data" "$DEMO/server.log"
echo "demo cluster running (data in $DEMO/data, log in $DEMO/server.log)"

export PGHOST=$DEMO PGPORT=$PORT PGUSER=postgres
"$PGBIN/psql" -qX -d postgres -c "CREATE DATABASE ocx_demo" >/dev/null
export PGDATABASE=ocx_demo
"$PGBIN/psql" -qX -c "CREATE EXTENSION ocx" >/dev/null

echo
"$PGBIN/psql" -X -v ON_ERROR_STOP=1 -f examples/bank_demo.sql

echo
echo "== 2. Two tellers withdraw from Alice's account, both having read version 2"
echo "   teller T1 appends in a transaction that stays open for a second;"
echo "   teller T2 appends at the same expected version: it waits for T1, then is refused"
"$PGBIN/psql" -qX -P footer=off -v ON_ERROR_STOP=1 -c "BEGIN" \
    -c "SELECT ocx.append_event('account-alice', 2, 'Withdrawn', '{\"amount\": 30, \"teller\": \"T1\"}') AS t1_new_version" \
    -c "SELECT 'T1 commits now' AS t1 FROM pg_sleep(1)" -c "COMMIT" &
sleep 0.3
echo "   T2 appends and waits..."
"$PGBIN/psql" -qX -P footer=off -c "SELECT ocx.append_event('account-alice', 2, 'Withdrawn', '{\"amount\": 80, \"teller\": \"T2\"}') AS t2_new_version" || true
wait
echo "   (T2's client reloads the stream, sees the balance is 70, and decides again)"
echo
"$PGBIN/psql" -X -v ON_ERROR_STOP=1 -f examples/bank_demo_replay.sql
for f in examples/[0-9][0-9]_*.sql; do
    [ -e "$f" ] || continue
    echo
    "$PGBIN/psql" -X -v ON_ERROR_STOP=1 -f "$f"
done

cat <<MSG

The demo cluster is still running. Connect with:

    psql -h $DEMO -p $PORT -U postgres ocx_demo

and try:  SELECT * FROM ocx.read_stream('account-alice');
Stop it with:  make demo-stop
MSG

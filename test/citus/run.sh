#!/usr/bin/env bash
# `make test-citus`: ocx on a Citus cluster (docs/scaling.md, docs/testing.md).
# Installs Citus if missing (install-citus.sh from $OCX_CITUS_TOOLS or
# ../shared/tools: citus_tools below), builds ocx into a private copy of the server (which then
# holds citus.so too), starts a coordinator and two workers on loopback ports
# $OCX_PORT, +1 and +2 (unix sockets and 127.0.0.1 only,
# shared_preload_libraries = 'citus,ocx') and a single node on +3 for the
# comparisons, runs test/citus/checks.sh against them, stops them.
# Prints "N passed, N failed" last; exits non-zero on any failure.
# OCX_CITUS_BENCH=1 runs test/citus/bench.sh on the same clusters instead;
# OCX_CITUS_SCRIPT=file runs that script in place of checks.sh (development).
set -uo pipefail

. "$(dirname "$0")/../lib.sh"
cd "$OCX_ROOT"

# Where install-citus.sh (and the vendored Citus sources beside it) are: the
# first of $OCX_CITUS_TOOLS, ../shared/tools beside this checkout, and
# ../shared/tools beside the repository it was cloned from (a clean clone in
# /tmp/x of /work/main finds /work/shared/tools through its origin).
citus_tools() {
    local origin d
    origin=$(git -C "$OCX_ROOT" config --get remote.origin.url 2>/dev/null || true)
    case $origin in /*) ;; file://*) origin=${origin#file://} ;; *) origin= ;; esac
    for d in ${OCX_CITUS_TOOLS:-} "$OCX_ROOT/../shared/tools" ${origin:+"$origin/../shared/tools"}; do
        [ -f "$d/install-citus.sh" ] && { (cd "$d" && pwd); return 0; }
    done
    return 1
}
libdir=$("$PG_CONFIG" --pkglibdir)
if [ ! -f "$libdir/citus.so" ]; then
    if ! TOOLS=$(citus_tools); then
        echo "ocx: no citus.so in $libdir and no install-citus.sh in \$OCX_CITUS_TOOLS,"
        echo "ocx: $OCX_ROOT/../shared/tools or ../shared/tools beside the origin repository"
        echo "0 passed, 1 failed"; exit 1
    fi
    echo "== installing Citus ($TOOLS/install-citus.sh)"
    bash "$TOOLS/install-citus.sh" "$PG_CONFIG" || { echo "Citus install failed"; echo "0 passed, 1 failed"; exit 1; }
fi

test/deps.sh >/dev/null || exit 1
make -s PG_CONFIG="$PG_CONFIG" >/dev/null || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }

RUN=$(ocx_run_dir citus)
BASE=$OCX_PORT
NODES="coord:$BASE w1:$((BASE + 1)) w2:$((BASE + 2)) single:$((BASE + 3))"
export CITUS_DB=ocx_citus
rc=1

cleanup() {
    local n
    for n in $NODES; do ocx_cluster_stop "$RUN/${n%%:*}"; done
    if [ "$rc" -eq 0 ] && [ -z "${OCX_KEEP:-}" ]; then
        rm -rf "$RUN"
    else
        echo "ocx: citus run kept in $RUN (server logs: $RUN/*.log)"
    fi
}
trap cleanup EXIT

ocx_tmp_install "$RUN/install" || { echo "install failed"; echo "0 passed, 1 failed"; exit 1; }
[ -f "$PGBIN/../lib/citus.so" ] || { echo "citus.so missing from the private install"; echo "0 passed, 1 failed"; exit 1; }

for n in $NODES; do
    name=${n%%:*} port=${n##*:}
    preload="'citus,ocx'"
    [ "$name" = single ] && preload="'ocx'"
    OCX_PORT=$port ocx_cluster_init "$RUN/$name" "$RUN/sock" "fsync = off" \
        "listen_addresses = '127.0.0.1'" "shared_preload_libraries = $preload" \
        "max_connections = 200" "max_prepared_transactions = 200" \
        "shared_preload_libraries = $preload" \
        "citus.shard_count = 8" "citus.log_remote_commands = off" \
        "wal_level = logical"
    ocx_cluster_start "$RUN/$name" "$RUN/$name.log" || { cat "$RUN/$name.log"; echo "0 passed, 1 failed"; exit 1; }
done

export PGHOST=$RUN/sock PGUSER=postgres
export COORD=$BASE W1=$((BASE + 1)) W2=$((BASE + 2)) SINGLE=$((BASE + 3))

psql_at() { "$PGBIN/psql" -qXtA -v ON_ERROR_STOP=1 -p "$1" "${@:2}"; }
for p in $COORD $W1 $W2 $SINGLE; do
    psql_at "$p" -d postgres -c "CREATE DATABASE $CITUS_DB" >/dev/null || { echo "0 passed, 1 failed"; exit 1; }
done
# CREATE EXTENSION citus and ocx on every node, then the worker nodes join.
for p in $COORD $W1 $W2; do
    psql_at "$p" -d "$CITUS_DB" -c "CREATE EXTENSION citus; CREATE EXTENSION ocx" >/dev/null \
        || { echo "CREATE EXTENSION on port $p failed"; echo "0 passed, 1 failed"; exit 1; }
done
psql_at "$SINGLE" -d "$CITUS_DB" -c "CREATE EXTENSION ocx" >/dev/null || { echo "0 passed, 1 failed"; exit 1; }
psql_at "$COORD" -d "$CITUS_DB" >/dev/null <<SQL || { echo "forming the cluster failed"; echo "0 passed, 1 failed"; exit 1; }
SELECT citus_set_coordinator_host('127.0.0.1', $COORD);
SELECT citus_add_node('127.0.0.1', $W1);
SELECT citus_add_node('127.0.0.1', $W2);
SQL

if [ -n "${OCX_CITUS_BENCH:-}" ]; then
    bash test/citus/bench.sh "$RUN"
    rc=$?
    exit $rc
fi
bash "${OCX_CITUS_SCRIPT:-test/citus/checks.sh}" "$RUN" 2>&1 | tee "$RUN/checks.out"
rc=${PIPESTATUS[0]}
exit $rc

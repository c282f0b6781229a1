#!/usr/bin/env bash
# `make test`: install what is missing, build with -Werror, install ocx into a
# private copy of the server, start a throwaway cluster with ocx preloaded and
# run every suite against it:
#   pg_regress   test/sql/*.sql     -> expected/*.out
#   isolation    test/specs/*.spec  -> expected/*.out
#   pgTAP        test/pgtap/*.sql   (pg_prove)
#   Perl TAP     test/t/*.pl        (prove; each test starts its own clusters)
# Prints "N passed, N failed" last and exits non-zero on any failure.
#   node         test/node/*.test.mjs (node --test, npm packages pg and cloudevents)
# OCX_SUITES=regress,isolation,pgtap,tap,node narrows the run (default: all).
set -uo pipefail

. "$(dirname "$0")/lib.sh"
cd "$OCX_ROOT"

test/deps.sh || exit 1
make -s PG_CONFIG="$PG_CONFIG" >/dev/null || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }

SUITES=${OCX_SUITES:-regress,isolation,pgtap,tap,node}
RUN=$(ocx_run_dir test)
SOCK=$RUN/sock
DATA=$RUN/data
passed=0
failed=0

cleanup() {
    ocx_cluster_stop "$DATA"
    if [ "$failed" -eq 0 ] && [ -z "${OCX_KEEP:-}" ]; then
        rm -rf "$RUN"
    else
        echo "ocx: test run kept in $RUN (server log: $RUN/server.log)"
    fi
}
trap cleanup EXIT

ocx_tmp_install "$RUN/install" || { echo "install failed"; echo "0 passed, 1 failed"; exit 1; }
ocx_cluster_init "$DATA" "$SOCK" "fsync = off"
ocx_cluster_start "$DATA" "$RUN/server.log" || { cat "$RUN/server.log"; echo "0 passed, 1 failed"; exit 1; }

export PGHOST=$SOCK PGPORT=$OCX_PORT PGUSER=postgres
PGXS_DIR=$(cd "$(dirname "$("$PG_CONFIG" --pgxs)")/../.." && pwd)   # .../lib/pgxs

count_regress() {   # file with pg_regress output, its exit code
    local p f
    p=$(grep -cE '\.\.\. +ok' "$1")
    f=$(grep -cE '\.\.\. +FAILED' "$1")
    if [ "${2:-0}" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f))
}

count_prove() {     # file with prove output, prove's exit code
    local out=$1 rc=$2 tests fails
    tests=$(sed -n 's/.*Files=[0-9]*, Tests=\([0-9]*\).*/\1/p' "$out" | tail -n1)
    fails=$(sed -n 's/.*Failed \([0-9]*\)\/[0-9]* subtests.*/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
    tests=${tests:-0}
    if [ "$rc" -ne 0 ] && [ "$fails" -eq 0 ]; then fails=1; fi
    passed=$((passed + tests - (fails > tests ? tests : fails))); failed=$((failed + fails))
}

has() { case ",$SUITES," in *",$1,"*) return 0;; esac; return 1; }

if has regress && ls test/sql/*.sql >/dev/null 2>&1; then
    echo "== pg_regress"
    rm -rf results regression.diffs regression.out
    tests=$(ls test/sql/*.sql | xargs -n1 basename | sed 's/\.sql$//' | sort)
    "$PGXS_DIR/src/test/regress/pg_regress" --inputdir=test --outputdir=. \
        --bindir="$PGBIN" --dbname=contrib_regression --load-extension=ocx \
        $tests 2>&1 | tee "$RUN/regress.out"
    count_regress "$RUN/regress.out" "${PIPESTATUS[0]}"
    [ -f regression.diffs ] && { echo "== regression.diffs"; cat regression.diffs; }
fi

if has isolation && ls test/specs/*.spec >/dev/null 2>&1; then
    echo "== isolation"
    mkdir -p "$RUN/iso"
    tests=$(ls test/specs/*.spec | xargs -n1 basename | sed 's/\.spec$//' | sort)
    "$PGXS_DIR/src/test/isolation/pg_isolation_regress" --inputdir=test --outputdir="$RUN/iso" \
        --bindir="$PGBIN" --dbname=isolation_regression --load-extension=ocx \
        $tests 2>&1 | tee "$RUN/isolation.out"
    count_regress "$RUN/isolation.out" "${PIPESTATUS[0]}"
    [ -f "$RUN/iso/regression.diffs" ] && { echo "== isolation regression.diffs"; cat "$RUN/iso/regression.diffs"; }
fi

if has pgtap && ls test/pgtap/*.sql >/dev/null 2>&1; then
    echo "== pgTAP"
    "$PGBIN/psql" -qX -d postgres -c "CREATE DATABASE ocx_tap" >/dev/null
    "$PGBIN/psql" -qX -d ocx_tap -c "CREATE EXTENSION pgtap; CREATE EXTENSION ocx;" >/dev/null
    pg_prove -d ocx_tap test/pgtap/*.sql 2>&1 | tee "$RUN/pgtap.out"
    count_prove "$RUN/pgtap.out" "${PIPESTATUS[0]}"
fi

if has tap && ls test/t/*.pl >/dev/null 2>&1; then
    echo "== Perl TAP"
    mkdir -p "$RUN/tap"
    cp -r test/t "$RUN/tap/t"
    [ "$(id -u)" -eq 0 ] && chown -R postgres "$RUN/tap"
    (cd "$RUN/tap" && as_pg env PATH="$PGBIN:$PATH" TESTDIR="$RUN/tap" \
        PG_REGRESS="$PGXS_DIR/src/test/regress/pg_regress" OCX_EXAMPLES="$OCX_ROOT/examples" \
        prove -I "$PGXS_DIR/src/test/perl" -I t t/*.pl) 2>&1 | tee "$RUN/tap.out"
    count_prove "$RUN/tap.out" "${PIPESTATUS[0]}"
fi

if has node && [ -f test/node/package.json ]; then
    echo "== node"
    "$PGBIN/psql" -qX -d postgres -c "CREATE DATABASE ocx_node" >/dev/null
    "$PGBIN/psql" -qX -d ocx_node -c "CREATE EXTENSION ocx" >/dev/null
    (cd test/node &&
        { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --silent --no-audit --no-fund; } &&
        OCX_NODE_DB=ocx_node node --test) 2>&1 | tee "$RUN/node.out"
    rc=${PIPESTATUS[0]}
    p=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$RUN/node.out" | tail -n1)
    f=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$RUN/node.out" | tail -n1)
    p=${p:-0}; f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]

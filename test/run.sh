#!/usr/bin/env bash
# `make test`: install what is missing, build with -Werror, install ocx into a
# private copy of the server, start a throwaway cluster with ocx preloaded and
# run every suite against it:
#   pg_regress   test/sql/*.sql     -> expected/*.out
#   isolation    test/specs/*.spec  -> expected/*.out
#   pgTAP        test/pgtap/*.sql   (pg_prove)
#   Perl TAP     test/t/*.pl        (prove; each test starts its own clusters)
# Prints "N passed, N failed" last and exits non-zero on any failure.
#   node         test/node/*.test.mjs (node --test, npm packages pg and cloudevents;
#                the client examples examples/clients/node, npm pg)
#   docs         test/docs/*.pl     (checks of the checkout, no server: links,
#                                    anchors and tables in README.md and docs/;
#                                    every function, view, setting and SQLSTATE
#                                    documented; released scripts unchanged)
# OCX_SUITES=regress,isolation,pgtap,tap,node,docs narrows the run (default: all);
# OCX_TAP='t/190_*.pl t/120_fuzz.pl' narrows the Perl TAP files (relative to test/).
set -uo pipefail

. "$(dirname "$0")/lib.sh"
cd "$OCX_ROOT"

test/deps.sh || exit 1
make -s PG_CONFIG="$PG_CONFIG" >/dev/null || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }

SUITES=${OCX_SUITES:-regress,isolation,pgtap,tap,node,docs}
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

SUMMARY=""
# Every suite's counts go through tally: it prints them, adds them up, and turns a
# suite that ran nothing, or whose runner printed something these parsers cannot
# read, into a counted failure with a message (never a silent 0).
tally() {           # suite, passed, failed, [problem]
    local suite=$1 p=$2 f=$3 problem=${4:-}
    if [ -z "$problem" ] && [ $((p + f)) -eq 0 ]; then
        problem="ran nothing"
    fi
    if [ -n "$problem" ]; then
        echo "ocx: $suite: $problem: counted as a failure" >&2
        f=$((f + 1))
    fi
    echo "== $suite: $p passed, $f failed"
    SUMMARY="$SUMMARY  $suite: $p passed, $f failed
"
    passed=$((passed + p)); failed=$((failed + f))
}

# pg_regress / pg_isolation_regress: PostgreSQL 15 prints "test NAME ... ok" (or
# "... FAILED", "... failed (ignored)"); 16 and later print TAP: "ok N - NAME" and
# "not ok N - NAME", with "+" for "-" when the test ran in a parallel group.
# Either is read; one result per test file given, or it is a format problem.
count_regress() {   # suite, file with the output, exit code, number of tests given
    local suite=$1 out=$2 rc=$3 want=$4 p f problem=""
    p=$(grep -cE '\.\.\. +ok|^ok +[0-9]+ +[-+] ' "$out")
    f=$(grep -cE '\.\.\. +(FAILED|failed)|^not ok +[0-9]+ +[-+] ' "$out")
    if [ $((p + f)) -ne "$want" ]; then
        problem="$want tests given, $((p + f)) results read (output format not understood?)"
    elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        problem="exit status $rc with no test failed"
    fi
    tally "$suite" "$p" "$f" "$problem"
}

# prove / pg_prove: "Files=N, Tests=N, ..." and "Failed N/M subtests"; a missing
# summary line is a format problem, a non-zero exit with nothing failed is a failure.
count_prove() {     # suite, file with prove output, prove's exit code, files given
    local suite=$1 out=$2 rc=$3 want=$4 files tests fails problem=""
    files=$(sed -n 's/.*Files=\([0-9]*\), Tests=[0-9]*.*/\1/p' "$out" | tail -n1)
    tests=$(sed -n 's/.*Files=[0-9]*, Tests=\([0-9]*\).*/\1/p' "$out" | tail -n1)
    fails=$(sed -n 's/.*Failed \([0-9]*\)\/[0-9]* subtests.*/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
    if [ -z "$tests" ]; then
        problem="no 'Files=N, Tests=N' summary in the output of prove"
        tests=0
    elif [ "$files" -ne "$want" ]; then
        problem="$want files given, prove reports $files"
    fi
    if [ "$rc" -ne 0 ] && [ "$fails" -eq 0 ] && [ -z "$problem" ]; then
        problem="exit status $rc with no subtest failed"
    fi
    tally "$suite" "$((tests - (fails > tests ? tests : fails)))" "$fails" "$problem"
}

# node --test with the TAP reporter forced (the default reporter changed in Node 23):
# the run ends with "# pass N" and "# fail N".
count_node() {      # file with the output, exit code
    local out=$1 rc=$2 p f problem=""
    p=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$out" | tail -n1)
    f=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$out" | tail -n1)
    if [ -z "$p" ] || [ -z "$f" ]; then
        problem="no '# pass N' / '# fail N' in the TAP output of node --test"
        p=${p:-0}; f=${f:-0}
    elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        problem="exit status $rc with no test failed"
    fi
    tally node "$p" "$f" "$problem"
}

has() { case ",$SUITES," in *",$1,"*) return 0;; esac; return 1; }

if has regress && ls test/sql/*.sql >/dev/null 2>&1; then
    echo "== pg_regress"
    rm -rf results regression.diffs regression.out
    tests=$(ls test/sql/*.sql | xargs -n1 basename | sed 's/\.sql$//' | sort)
    "$PGXS_DIR/src/test/regress/pg_regress" --inputdir=test --outputdir=. \
        --bindir="$PGBIN" --dbname=contrib_regression --load-extension=ocx \
        $tests 2>&1 | tee "$RUN/regress.out"
    count_regress pg_regress "$RUN/regress.out" "${PIPESTATUS[0]}" "$(echo $tests | wc -w)"
    [ -f regression.diffs ] && { echo "== regression.diffs"; cat regression.diffs; }
fi

if has isolation && ls test/specs/*.spec >/dev/null 2>&1; then
    echo "== isolation"
    mkdir -p "$RUN/iso"
    tests=$(ls test/specs/*.spec | xargs -n1 basename | sed 's/\.spec$//' | sort)
    "$PGXS_DIR/src/test/isolation/pg_isolation_regress" --inputdir=test --outputdir="$RUN/iso" \
        --bindir="$PGBIN" --dbname=isolation_regression --load-extension=ocx \
        $tests 2>&1 | tee "$RUN/isolation.out"
    count_regress isolation "$RUN/isolation.out" "${PIPESTATUS[0]}" "$(echo $tests | wc -w)"
    [ -f "$RUN/iso/regression.diffs" ] && { echo "== isolation regression.diffs"; cat "$RUN/iso/regression.diffs"; }
fi

if has pgtap && ls test/pgtap/*.sql >/dev/null 2>&1; then
    echo "== pgTAP"
    "$PGBIN/psql" -qX -d postgres -c "CREATE DATABASE ocx_tap" >/dev/null
    "$PGBIN/psql" -qX -d ocx_tap -c "CREATE EXTENSION pgtap; CREATE EXTENSION ocx;" >/dev/null
    pg_prove -d ocx_tap test/pgtap/*.sql 2>&1 | tee "$RUN/pgtap.out"
    count_prove pgTAP "$RUN/pgtap.out" "${PIPESTATUS[0]}" "$(ls test/pgtap/*.sql | wc -l)"
fi

if has tap && ls test/t/*.pl >/dev/null 2>&1; then
    echo "== Perl TAP"
    mkdir -p "$RUN/tap"
    cp -r test/t "$RUN/tap/t"
    # the external proof verifier t/190_integrity.pl runs (Node's crypto only)
    mkdir -p "$RUN/tap/node" && cp test/node/verify_proof.mjs "$RUN/tap/node/"
    [ "$(id -u)" -eq 0 ] && chown -R postgres "$RUN/tap"
    (cd "$RUN/tap" && as_pg env PATH="$PGBIN:$PATH" TESTDIR="$RUN/tap" \
        PG_REGRESS="$PGXS_DIR/src/test/regress/pg_regress" OCX_EXAMPLES="$OCX_ROOT/examples" OCX_MONITORING="$OCX_ROOT/docs/monitoring" \
        prove -I "$PGXS_DIR/src/test/perl" -I t ${OCX_TAP:-t/*.pl}) 2>&1 | tee "$RUN/tap.out"
    count_prove "Perl TAP" "$RUN/tap.out" "${PIPESTATUS[0]}" "$(cd test && ls ${OCX_TAP:-t/*.pl} | wc -l)"
fi

if has node && [ -f test/node/package.json ]; then
    echo "== node"
    "$PGBIN/psql" -qX -d postgres -c "CREATE DATABASE ocx_node" >/dev/null
    "$PGBIN/psql" -qX -d ocx_node -c "CREATE EXTENSION ocx" >/dev/null
    # test/node/clients.test.mjs runs the client examples, which have their own packages
    for d in test/node examples/clients/node; do
        (cd "$d" && { [ node_modules/.package-lock.json -nt package-lock.json ] ||
                      npm ci --silent --no-audit --no-fund; }) || echo "ocx: npm ci failed in $d" >&2
    done
    (cd test/node && OCX_NODE_DB=ocx_node node --test --test-reporter=tap) 2>&1 | tee "$RUN/node.out"
    count_node "$RUN/node.out" "${PIPESTATUS[0]}"
fi

if has docs && ls test/docs/*.pl >/dev/null 2>&1; then
    echo "== docs"
    prove test/docs/*.pl 2>&1 | tee "$RUN/docs.out"
    count_prove docs "$RUN/docs.out" "${PIPESTATUS[0]}" "$(ls test/docs/*.pl | wc -l)"
fi

printf '== per suite\n%s' "$SUMMARY"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]

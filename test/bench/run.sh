#!/usr/bin/env bash
# `make bench`: ocx against a plain-SQL baseline in the same run, as ratios.
# See test/bench/README.md.  BENCH_SECONDS (default 10) per pgbench run;
# BENCH_ONLY=NN runs only test/bench/NN_*.sh; BENCH_CONF='setting = value' adds
# one line to the cluster's postgresql.conf (e.g. "ocx.horizon = 'appenders'").
set -uo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$OCX_ROOT"

test/deps.sh || exit 1
make -s PG_CONFIG="$PG_CONFIG" >/dev/null || exit 1

. "$OCX_ROOT/test/bench/lib.sh"
bench_cluster_up bench ${BENCH_CONF:+"$BENCH_CONF"} || exit 1

export BENCH_DIR=$OCX_ROOT/test/bench BENCH_OUT=$RUN/out BENCH_SECONDS=${BENCH_SECONDS:-10}
mkdir -p "$BENCH_OUT"

results=$OCX_ROOT/test/bench/out/results.md
mkdir -p "$(dirname "$results")"
{
    echo "# make bench, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, $(uname -sr), PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'); ${BENCH_SECONDS}s per pgbench run, runs alternate ocx/baseline.${BENCH_CONF:+ Extra setting: \`$BENCH_CONF\`.}"
    echo
    echo "| what | ocx | baseline | ratio | target | ok |"
    echo "|---|---|---|---|---|---|"
} > "$results"

for script in "$BENCH_DIR"/[0-9][0-9]_*.sh; do
    [ -e "$script" ] || continue
    case "$(basename "$script")" in ${BENCH_ONLY:-[0-9][0-9]}_*) ;; *) continue;; esac
    echo "== $(basename "$script")" >&2
    # each script gets a database of its own, so that what one leaves behind
    # (projections, subscriptions, sagas) does not load the worker for the next
    export PGDATABASE=bench_$(basename "$script" .sh)
    "$PGBIN/psql" -qX -d postgres -c "CREATE DATABASE $PGDATABASE" >/dev/null
    "$PGBIN/psql" -qX -c "CREATE EXTENSION ocx" >/dev/null
    # a script that fails (set -e: a psql, a check, a latency run) fails the
    # run: say which, record it with the pgbench failures, keep its stderr
    bash "$script" 2> >(tee "$BENCH_OUT/$(basename "$script" .sh).err" >&2) > "$BENCH_OUT/rows"
    rc=$?
    grep '^|' "$BENCH_OUT/rows" >> "$results"
    if [ "$rc" -ne 0 ]; then
        echo "bench: $(basename "$script") failed (exit $rc); its rows above are incomplete:" |
            tee -a "$BENCH_OUT/pgbench_failures" >&2
        tail -n5 "$BENCH_OUT/$(basename "$script" .sh).err" >> "$BENCH_OUT/pgbench_failures"
    fi
    "$PGBIN/psql" -qX -d postgres -c "DROP DATABASE $PGDATABASE" >/dev/null
done

if [ -s "$BENCH_OUT/pgbench_failures" ]; then
    { echo; echo "**a bench script or pgbench failed in this run; the figures above are not valid:**"; echo '```'
      cat "$BENCH_OUT/pgbench_failures"; echo '```'; } >> "$results"
    cat "$results"
    exit 1
fi
cat "$results"

#!/usr/bin/env bash
# `make test-package`: the Debian package as an operator uses it.
#   1. build postgresql-15-ocx_<version>_<arch>.deb (test/package/build.sh);
#   2. install it into the system PostgreSQL 15 with apt (dependencies resolved);
#   3. start a throwaway cluster from the system binaries (not a private copy), so
#      the server loads the packaged ocx.so and ocx.control, with ocx preloaded, on a
#      private unix socket;
#   4. run `make installcheck` (pg_regress and isolation suites) against it;
#   5. remove the package and check that none of its files is left behind.
# If ocx was installed by `make install` before (e.g. by `make demo`), it is put
# back at the end.  Prints "N passed, N failed" and exits non-zero on a failure.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$OCX_ROOT"

[ "$(id -u)" -eq 0 ] || { echo "ocx: the package test installs a package: run it as root" >&2; exit 1; }

passed=0 failed=0
APTLOG=$(mktemp /tmp/ocx-package-apt.XXXXXX)
quiet() { "$@" >>"$APTLOG" 2>&1 || { tail -20 "$APTLOG"; return 1; }; }
check() {   # description, then a command; counts and prints one result
    local what=$1; shift
    if "$@"; then
        passed=$((passed + 1)); echo "ok - $what"
    else
        failed=$((failed + 1)); echo "not ok - $what"
    fi
}

pkglib=$("$PG_CONFIG" --pkglibdir)
had_make_install=
if [ -f "$pkglib/ocx.so" ] && ! dpkg -S "$pkglib/ocx.so" >/dev/null 2>&1; then
    had_make_install=1
fi

deb=$(test/package/build.sh | tail -1)
check "make deb builds $deb" test -f "$deb"
[ -f "$deb" ] || { echo "$passed passed, $failed failed"; exit 1; }

deps_ok() {
    local d
    d=$(dpkg-deb -f "$deb" Depends)
    grep -q 'libjson-c5' <<<"$d" && grep -q 'libssl3' <<<"$d" && grep -q 'postgresql-15' <<<"$d"
}
check "the package depends on postgresql-15, libjson-c5 and libssl3" deps_ok

export DEBIAN_FRONTEND=noninteractive
check "apt installs the package" quiet apt-get install -y -qq --no-install-recommends "./$deb"
check "ocx.so belongs to postgresql-15-ocx" bash -c "dpkg -S '$pkglib/ocx.so' | grep -q '^postgresql-15-ocx:'"
files=$(dpkg -L postgresql-15-ocx 2>/dev/null | while read -r f; do [ -f "$f" ] && echo "$f"; done)

RUN=$(ocx_run_dir package)
PGBIN=$(dirname "$PG_CONFIG")           # the system binaries: they load the packaged files
OCX_PORT=${OCX_PORT:-54339}
ocx_cluster_init "$RUN/data" "$RUN/sock" "fsync = off"
if ocx_cluster_start "$RUN/data" "$RUN/server.log"; then
    check "the server preloads the packaged ocx" \
        bash -c "'$PGBIN/psql' -h '$RUN/sock' -p $OCX_PORT -U postgres -XAtqc \"SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'ocx%'\" postgres | grep -qv '^0$'"
    # installcheck writes its results into the tree: run it in a scratch copy
    mkdir -p "$RUN/src"
    git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$RUN/src"
    if PGHOST=$RUN/sock PGPORT=$OCX_PORT PGUSER=postgres \
            make -C "$RUN/src" -s installcheck PG_CONFIG="$PG_CONFIG" >"$RUN/installcheck.log" 2>&1; then
        check "make installcheck against the packaged ocx" true
    else
        cat "$RUN/src"/regression.diffs "$RUN/src"/output_iso/regression.diffs 2>/dev/null | head -60
        tail -20 "$RUN/installcheck.log"
        check "make installcheck against the packaged ocx" false
    fi
    grep -E 'tests passed|failed' "$RUN/installcheck.log"
else
    cat "$RUN/server.log"
    check "the server starts with the packaged ocx preloaded" false
fi
ocx_cluster_stop "$RUN/data"

check "apt removes the package" quiet apt-get remove -y -qq postgresql-15-ocx
left=$(for f in $files; do [ -e "$f" ] && echo "$f"; done)
[ -z "$left" ] || echo "left behind: $left"
check "no file of the package is left behind" test -z "$left"

if [ -n "$had_make_install" ]; then
    make -s install PG_CONFIG="$PG_CONFIG" >/dev/null && echo "ocx: the earlier 'make install' is put back"
fi
if [ "$failed" -eq 0 ]; then rm -rf "$RUN"; else echo "ocx: package test run kept in $RUN"; fi
rm -f "$APTLOG"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

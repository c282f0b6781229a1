# Shared shell helpers for test/run.sh, examples/demo.sh and test/bench/run.sh.
# Sourced, not executed.
#
# A throwaway cluster runs from a private copy of the PostgreSQL 15 binaries
# with ocx installed into it (PostgreSQL finds share/ and lib/ relative to its
# own binary), listens only on a unix socket in a private directory, and runs
# as user postgres when we are root (the server refuses to run as root).

OCX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-$( [ -x /usr/lib/postgresql/15/bin/pg_config ] && echo /usr/lib/postgresql/15/bin/pg_config || echo pg_config )}
OCX_PORT=${OCX_PORT:-54329}

# Run a command as the server's OS user.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Build ocx and install it into a private copy of the server under $1.
# Sets PGBIN to the private bin directory.
ocx_tmp_install() {
    local dest=$1 bindir sharedir
    bindir=$("$PG_CONFIG" --bindir)
    sharedir=$("$PG_CONFIG" --sharedir)
    local pgdir=$(dirname "$bindir")    # /usr/lib/postgresql/15
    mkdir -p "$dest$(dirname "$pgdir")" "$dest$(dirname "$sharedir")"
    cp -a "$pgdir" "$dest$(dirname "$pgdir")/" || return 1
    cp -a "$sharedir" "$dest$(dirname "$sharedir")/" || return 1
    make -C "$OCX_ROOT" -s install DESTDIR="$dest" PG_CONFIG="$PG_CONFIG" >/dev/null || return 1
    PGBIN=$dest$bindir
    export PGBIN
}

# ocx_cluster_init DATADIR SOCKDIR [extra postgresql.conf lines...]
ocx_cluster_init() {
    local data=$1 sock=$2
    shift 2
    mkdir -p "$data" "$sock"
    [ "$(id -u)" -eq 0 ] && chown postgres "$data" "$sock"
    as_pg "$PGBIN/initdb" -D "$data" -A trust -U postgres -E UTF8 --locale=C --no-sync >/dev/null
    {
        echo "listen_addresses = ''"
        echo "unix_socket_directories = '$sock'"
        echo "port = $OCX_PORT"
        echo "shared_preload_libraries = 'ocx'"
        echo "max_prepared_transactions = 10"
        echo "log_line_prefix = '%m [%p] %q%a '"
        for line in "$@"; do echo "$line"; done
    } >> "$data/postgresql.conf"
}

ocx_cluster_start() {
    local data=$1 log=$2
    touch "$log"
    [ "$(id -u)" -eq 0 ] && chown postgres "$log"
    as_pg "$PGBIN/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null
}

ocx_cluster_stop() {
    local data=$1
    [ -f "$data/postmaster.pid" ] || return 0
    as_pg "$PGBIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null || true
}

# A private run directory the postgres user can reach.
ocx_run_dir() {
    local d
    d=$(mktemp -d "${OCX_TMPDIR:-/tmp}"/ocx-"$1".XXXXXX)
    chmod 755 "$d"
    echo "$d"
}

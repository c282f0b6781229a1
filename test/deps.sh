#!/usr/bin/env bash
# Install, with apt, whatever the build and the tests need and is missing.
# Idempotent: when everything is present it only checks and returns.
set -euo pipefail

pkgs=(
    build-essential
    postgresql-15
    postgresql-server-dev-15
    libjson-c-dev
    libssl-dev
    postgresql-15-pgtap
    libtap-parser-sourcehandler-pgtap-perl
    libipc-run-perl
    # the Prometheus test (t/200_prometheus.pl): Debian's exporter, server and promtool
    prometheus
    prometheus-postgres-exporter
    # ocx.saga_graph/projection_graph examples rendered to SVG (t/200, docs)
    graphviz
    python3-psycopg     # the Python client examples (examples/clients/python, t/195)
    ${OCX_EXTRA_PKGS:-}
)
# the Node.js client test (test/node); a node from elsewhere (nodesource) counts
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)

missing=()
for p in "${pkgs[@]}"; do
    [ -n "$p" ] || continue
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "ocx: installing missing packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=sudo
    else
        echo "ocx: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    fi
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
# Debian's prometheus packages start system services (prometheus on *:9090,
# the exporter on *:9187) when installed.  The tests start their own instances
# on loopback, so forbid service starts during the install (policy-rc.d,
# honoured by invoke-rc.d and deb-systemd-invoke) unless a policy exists, and
# afterwards stop and disable whatever such a service we installed runs.
policy=/usr/sbin/policy-rc.d
made_policy=
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    made_policy=1
fi
drop_policy() { if [ -n "$made_policy" ]; then $SUDO rm -f "$policy"; fi; }
trap drop_policy EXIT
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for svc in prometheus prometheus-postgres-exporter prometheus-node-exporter; do
    case " ${missing[*]} " in *" $svc "*) ;; *) continue ;; esac
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$svc" ]; then
        $SUDO "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
        command -v update-rc.d >/dev/null 2>&1 && $SUDO update-rc.d "$svc" disable >/dev/null 2>&1 || true
    fi
done
echo "ocx: packages installed"

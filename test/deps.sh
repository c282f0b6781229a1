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
    python3-psycopg     # the Python client examples (examples/clients/python, t/194)
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
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "ocx: packages installed"

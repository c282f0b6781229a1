#!/usr/bin/env bash
# `make deb`: build postgresql-15-ocx_<version>_<arch>.deb the Debian way
# (debian/, pg_buildext through debhelper's pgxs_loop) from a copy of the
# checkout's tracked files, and put it in dist/.  Installs the build
# dependencies with apt when they are missing.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$OCX_ROOT"

OCX_EXTRA_PKGS="debhelper postgresql-server-dev-all dpkg-dev fakeroot ${OCX_EXTRA_PKGS:-}" test/deps.sh

version=$(dpkg-parsechangelog -l debian/changelog -S Version)
work=$(mktemp -d /tmp/ocx-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
src=$work/ocx-$version
mkdir -p "$src"
# the tracked files as they are in the work tree (uncommitted edits included)
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$src"

( cd "$src" && dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1 ) || {
    tail -50 "$work/build.log" >&2
    echo "ocx: the package build failed (log above)" >&2
    exit 1
}
mkdir -p dist
mv "$work"/postgresql-15-ocx_"$version"_*.deb dist/
ls dist/postgresql-15-ocx_"$version"_*.deb

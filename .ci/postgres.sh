#!/usr/bin/env bash
# Make sure PostgreSQL 15's server binaries exist for tests/integration/test_migration.py, which starts its own
# throwaway server (tests/support/postgres.py). This script never creates or starts a cluster.
#
#   source .ci/postgres.sh    or    .ci/postgres.sh
#
# Found under /usr/lib/postgresql/15/bin: print what was found. Missing and root: install postgresql-15
# (or, where the distribution has no such package, `postgresql`) with apt-get, telling the package not to
# create its "main" cluster. Missing and not root: say so; that is an error only when CI=true, because the
# tests skip without PostgreSQL locally but must fail under CI.
# Prints one line (on stdout when all is well, on stderr otherwise). Returns/exits non-zero on failure.

_ha_ensure_postgres() {
    local bindir=/usr/lib/postgresql/15/bin pkg found version out
    local dropin=/etc/postgresql-common/createcluster.d/50-hosting-automator-ci.conf

    if [ -x "$bindir/initdb" ]; then
        version=$("$bindir/postgres" --version 2>/dev/null) || version="PostgreSQL 15"
        echo "postgres.sh: found $version in $bindir"
        return 0
    fi

    if [ "$(id -u)" -ne 0 ]; then
        echo "postgres.sh: no PostgreSQL 15 ($bindir/initdb missing) and not root, so not installing it;" \
             "the migration tests will skip (or fail, under CI=true)" >&2
        [ "${CI:-}" = true ] && return 1
        return 0
    fi

    # Debian's postgresql-NN package creates (and may start) a "main" cluster on first install unless
    # createcluster.conf says otherwise; its include_dir reads this drop-in.
    mkdir -p "${dropin%/*}" && printf 'create_main_cluster = false\n' >"$dropin" || return 1

    pkg=postgresql-15
    if ! apt-get update -qq; then
        echo "postgres.sh: apt-get update failed; cannot install PostgreSQL 15" >&2
        rm -f "$dropin"
        return 1
    fi
    # No pipe into grep -q here: when sourced by a script with `set -o pipefail`, an early grep exit would
    # SIGPIPE apt-cache and make a present package look absent.
    out=$(LC_ALL=C apt-cache show postgresql-15 2>/dev/null) || out=""
    if ! grep -qx 'Package: postgresql-15' <<<"$out"; then
        pkg=postgresql  # the distribution's default major version
    fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null; then
        echo "postgres.sh: apt-get install $pkg failed" >&2
        rm -f "$dropin"
        return 1
    fi
    rm -f "$dropin"

    # postgresql-15 lands in $bindir; the `postgresql` fallback may bring another major version, which the
    # tests use when 15 is absent (tests/support/postgres.py takes 15 first, else the newest).
    found=$bindir
    if [ ! -x "$found/initdb" ]; then
        found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5V | tail -n 1) || found=""
    fi
    if [ -z "$found" ] || [ ! -x "$found/initdb" ]; then
        echo "postgres.sh: installed $pkg but found no initdb under /usr/lib/postgresql/*/bin" >&2
        return 1
    fi
    version=$("$found/postgres" --version 2>/dev/null) || version="PostgreSQL (unknown version)"
    echo "postgres.sh: installed $pkg: $version in $found"
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    _ha_ensure_postgres
    return
fi
_ha_ensure_postgres

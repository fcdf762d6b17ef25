#!/usr/bin/env bash
# Sets up a local PostgreSQL for the store's conformance tests, idempotently.
#
# Runs as root on Debian bookworm without systemd (CI containers): installs `postgresql`
# if missing, starts the cluster, creates role `sluice` (password `sluice`, LOGIN CREATEDB)
# and database `sluice_test`, waits for connections, and prints one line on stdout:
#
#   export SLUICE_TEST_POSTGRES_URL=postgres://sluice:sluice@127.0.0.1:5432/sluice_test
#
# so a caller can `eval "$(.ci/postgres.sh)"`. Everything else goes to stderr.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

export DEBIAN_FRONTEND=noninteractive

if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    # A fresh container has no package lists; refresh them only then (or if install fails).
    if ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
        log "no apt package lists yet; running apt-get update"
        apt-get update >&2
    fi
    log "installing postgresql"
    if ! apt-get install -y --no-install-recommends postgresql >&2; then
        log "apt-get install failed; updating package lists and retrying"
        apt-get update >&2
        apt-get install -y --no-install-recommends postgresql >&2
    fi
fi

# The newest installed major version (15 on bookworm).
version="$(ls /usr/lib/postgresql | sort -V | tail -n1)"
if [ -z "$version" ]; then
    log "no postgresql version found under /usr/lib/postgresql; install postgresql and retry"
    exit 1
fi

# A package install without a cluster (e.g. create_main_cluster = false) needs one made.
if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$version main"; then
    log "creating cluster $version/main"
    pg_createcluster "$version" main >&2
fi

# policy-rc.d usually stops the package from starting the cluster in containers, and there
# is no systemd, so start it by hand; "already running" is fine.
status="$(pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $4}')"
if [ "$status" != "online" ]; then
    log "starting cluster $version/main"
    pg_ctlcluster "$version" main start >&2 || {
        status="$(pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $4}')"
        if [ "$status" != "online" ]; then
            log "could not start the cluster; see /var/log/postgresql/postgresql-$version-main.log"
            exit 1
        fi
    }
fi

port="$(pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $3}')"

# Wait until the server accepts connections (at most ~30 s).
for _ in $(seq 1 60); do
    if pg_isready -q -h 127.0.0.1 -p "$port"; then
        break
    fi
    sleep 0.5
done
if ! pg_isready -q -h 127.0.0.1 -p "$port"; then
    log "postgresql is not accepting connections on 127.0.0.1:$port; check the server log"
    exit 1
fi

psql_admin() { (cd / && runuser -u postgres -- psql -p "$port" -v ON_ERROR_STOP=1 -qAt "$@"); }

if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'sluice'")" != "1" ]; then
    log "creating role sluice"
    psql_admin -c "CREATE ROLE sluice WITH LOGIN CREATEDB PASSWORD 'sluice'" >&2
else
    psql_admin -c "ALTER ROLE sluice WITH LOGIN CREATEDB PASSWORD 'sluice'" >&2
fi

if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = 'sluice_test'")" != "1" ]; then
    log "creating database sluice_test"
    psql_admin -c "CREATE DATABASE sluice_test OWNER sluice" >&2
fi

# Check the URL really works with a password over TCP.
if ! PGPASSWORD=sluice psql -h 127.0.0.1 -p "$port" -U sluice -d sluice_test -qAt -c "SELECT 1" >/dev/null 2>&1; then
    log "cannot log in as sluice over 127.0.0.1:$port; check pg_hba.conf"
    exit 1
fi

log "postgresql $version ready on 127.0.0.1:$port"
echo "export SLUICE_TEST_POSTGRES_URL=postgres://sluice:sluice@127.0.0.1:$port/sluice_test"

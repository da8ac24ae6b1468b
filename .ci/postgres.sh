#!/usr/bin/env bash
# A throwaway PostgreSQL server for the store tests, from Debian's `postgresql` package.
#   .ci/postgres.sh start   installs the package if missing, starts a server on 127.0.0.1:$PGPORT
#                           with a fresh data directory under $PGROOT (kept while it runs, so a
#                           second start reuses it), creates the role and database for the tests
#                           and prints the URL to export as RLHF_TEST_PG_URL
#   .ci/postgres.sh stop    stops it and removes the data directory
# The server runs as the postgres OS user (it refuses to run as root).
set -euo pipefail
PGPORT="${PGPORT:-55432}"
PGROOT="${PGROOT:-/tmp/rlhf-ci-postgres}"
DB=rlhf_test
ROLE=rlhf
PASSWORD=rlhf-ci
URL="postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$PGPORT/$DB"

SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO="sudo"
fi

# The newest installed server's bin directory, or nothing.
pg_bin() {
    { ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true; } | sort -V | tail -n 1
}

as_postgres() {
    $SUDO runuser -u postgres -- "$@"
}

start() {
    if [ -z "$(pg_bin)" ]; then
        export DEBIAN_FRONTEND=noninteractive
        $SUDO apt-get update -q >&2
        $SUDO apt-get install -y -q --no-install-recommends postgresql >&2
    fi
    local bin
    bin="$(pg_bin)"
    $SUDO mkdir -p "$PGROOT"
    $SUDO chown postgres:postgres "$PGROOT"
    if ! as_postgres "$bin/pg_ctl" status -D "$PGROOT/data" >/dev/null 2>&1; then
        $SUDO rm -rf "$PGROOT/data"
        as_postgres "$bin/initdb" -D "$PGROOT/data" -U postgres --auth-local=trust \
            --auth-host=scram-sha-256 -E UTF8 --no-sync >&2
        # Test-only settings: nothing here needs to survive a power cut.
        as_postgres "$bin/pg_ctl" start -D "$PGROOT/data" -l "$PGROOT/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGROOT -c fsync=off \
                -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" >&2
    fi
    as_postgres "$bin/psql" -h "$PGROOT" -p "$PGPORT" -U postgres -d postgres -qtA \
        -v ON_ERROR_STOP=1 >&2 <<SQL
SELECT 'CREATE ROLE $ROLE LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$ROLE')\gexec
ALTER ROLE $ROLE PASSWORD '$PASSWORD';
SELECT 'CREATE DATABASE $DB OWNER $ROLE' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$DB')\gexec
SQL
    echo "$URL"
}

stop() {
    local bin
    bin="$(pg_bin)"
    if [ -n "$bin" ] && [ -d "$PGROOT/data" ]; then
        as_postgres "$bin/pg_ctl" stop -D "$PGROOT/data" -m fast -w >&2 || true
    fi
    $SUDO rm -rf "$PGROOT"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

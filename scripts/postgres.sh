#!/usr/bin/env bash
# A throwaway PostgreSQL server for the collector's tests, on 127.0.0.1 and a free port.
#
#   scripts/postgres.sh start   # installs Debian's postgresql if needed, starts a cluster, prints its URL
#   scripts/postgres.sh url     # prints the URL of the running cluster
#   scripts/postgres.sh stop    # stops the cluster and removes its files
#
# `start` is idempotent: when the cluster in $PEEKAPI_PG_DIR (default /tmp/peekapi-test-pg) is already running
# it only prints the URL. The only line on stdout is the URL (postgresql://...), so
#   export PEEKAPI_TEST_POSTGRES_URL="$(scripts/postgres.sh start)"
# works; progress goes to stderr.
set -euo pipefail

PG_DIR="${PEEKAPI_PG_DIR:-/tmp/peekapi-test-pg}"
DB_NAME="peekapi_test"
DB_USER="peekapi"

log() { printf 'postgres.sh: %s\n' "$*" >&2; }

find_bindir() {
    local d
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return 0
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

ensure_installed() {
    if BINDIR="$(find_bindir)"; then
        return 0
    fi
    log "installing Debian package postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    BINDIR="$(find_bindir)" || { log "postgresql installed but pg_ctl/initdb not found"; exit 1; }
}

# Runs a command as the cluster's owner: root may not run a PostgreSQL server.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

url() {
    local port
    port="$(cat "$PG_DIR/port")"
    echo "postgresql://${DB_USER}@127.0.0.1:${port}/${DB_NAME}"
}

running() {
    [ -f "$PG_DIR/port" ] && [ -d "$PG_DIR/data" ] && as_owner "$BINDIR/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1
}

start() {
    ensure_installed
    if running; then
        url
        return 0
    fi
    rm -rf "$PG_DIR"
    mkdir -p "$PG_DIR"
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$PG_DIR"
    fi
    local port
    port="$(free_port)"
    as_owner "$BINDIR/initdb" -D "$PG_DIR/data" -U "$DB_USER" --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    # Settings for a disposable test server: fast, not durable.
    cat >>"$PG_DIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$PG_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
shared_buffers = 256MB
CONF
    echo "$port" >"$PG_DIR/port"
    as_owner "$BINDIR/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start >/dev/null
    as_owner "$BINDIR/createdb" -h 127.0.0.1 -p "$port" -U "$DB_USER" "$DB_NAME"
    log "started on 127.0.0.1:$port"
    url
}

stop() {
    BINDIR="$(find_bindir)" || return 0
    if running; then
        as_owner "$BINDIR/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null
        log "stopped"
    fi
    rm -rf "$PG_DIR"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) BINDIR="$(find_bindir)" && running && url ;;
    *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac

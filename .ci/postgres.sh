#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for the tests that run several worker processes on one study.
#
#   .ci/postgres.sh start   install PostgreSQL if needed (root only), create and start the cluster; idempotent
#   .ci/postgres.sh url     print the SQLAlchemy URL of that server
#   .ci/postgres.sh stop    stop the cluster and remove its directory; idempotent
#
# Environment: LATENCYSOLVER_PG_DIR (default /tmp/latencysolver-pg: the cluster, its log and a lock beside it),
# LATENCYSOLVER_PG_PORT (default 55432), LATENCYSOLVER_PG_INSTALL (default 1; 0: never apt-get install).
# Role and database are both `latencysolver`, password `latencysolver` (scram), with CREATEDB so that each test
# can make a fresh database (tests/conftest.py: postgres_url).  The server listens on 127.0.0.1 only, its unix
# socket is inside the data directory, and it runs as the `postgres` system user when this script runs as root
# (PostgreSQL refuses to run as root).  Progress goes to stderr, one short line per step; `url` alone writes to
# stdout.
#
# THIS IS A THROWAWAY TEST SERVER: fsync, synchronous_commit and full_page_writes are off for speed, so a crash
# of the machine can lose or corrupt its data.  Never point it at data you want to keep.
set -euo pipefail

PG_DIR="$(realpath -m "${LATENCYSOLVER_PG_DIR:-/tmp/latencysolver-pg}")"
PG_PORT="${LATENCYSOLVER_PG_PORT:-55432}"
PG_INSTALL="${LATENCYSOLVER_PG_INSTALL:-1}"
PG_DATA="$PG_DIR/data"
PG_LOG="$PG_DIR/server.log"
MARKER="$PG_DIR/.latencysolver-pg"   # only a directory holding this file is ever removed by `stop`
ROLE=latencysolver
PASSWORD=latencysolver
DATABASE=latencysolver
URL="postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$PG_PORT/$DATABASE"

say() { echo "postgres.sh: $*" >&2; }
die() { say "$*"; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# the directory holding initdb, pg_ctl and postgres: PATH first, then the newest /usr/lib/postgresql/*/bin
find_bindir() {
    local initdb
    if initdb="$(command -v initdb 2>/dev/null)"; then
        dirname "$(readlink -f "$initdb")"
        return 0
    fi
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
        echo "$dir"
        return 0
    fi
    return 1
}

# the client: next to the server binaries (the Debian packages put it there), else on PATH
psql_bin() {
    local bindir
    if bindir="$(find_bindir)" && [ -x "$bindir/psql" ]; then
        echo "$bindir/psql"
    else
        command -v psql 2>/dev/null
    fi
}

# whether a server on the port accepts our role, password and database
url_ok() {
    local psql
    psql="$(psql_bin)" || return 1
    PGPASSWORD="$PASSWORD" PGCONNECT_TIMEOUT=3 "$psql" -X -w -q -A -t -h 127.0.0.1 -p "$PG_PORT" -U "$ROLE" \
        -d "$DATABASE" -c 'select 1' >/dev/null 2>&1
}

# run a command as the cluster's owner: `postgres` when we are root, else ourselves
as_owner() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")   # from /: the caller's directory may be closed to postgres
    else
        "$@"
    fi
}

install_postgres() {
    is_root || die "initdb not found (PATH, /usr/lib/postgresql/*/bin) and not root: install PostgreSQL (Debian: apt-get install postgresql) or run as root"
    [ "$PG_INSTALL" = 1 ] || die "initdb not found and LATENCYSOLVER_PG_INSTALL=$PG_INSTALL: not installing PostgreSQL"
    command -v apt-get >/dev/null || die "initdb not found and no apt-get to install PostgreSQL with"
    say "installing PostgreSQL with apt-get (quiet)"
    # no default `main` cluster on 5432: we only want the binaries (Debian's createcluster.conf reads this dir)
    mkdir -p /etc/postgresql-common/createcluster.d
    echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/latencysolver.conf
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get install -y -q --no-install-recommends postgresql)
    if ! "${apt[@]}" >/dev/null 2>&1; then
        say "apt-get install failed; running apt-get update and trying again"
        apt-get update -q >/dev/null 2>&1 || say "apt-get update failed"
        "${apt[@]}" >/dev/null || die "apt-get install postgresql failed"
    fi
}

# stop a server on our data directory, if any, and remove the directory (only if this script made it)
remove_cluster() {
    [ -e "$PG_DIR" ] || return 0
    [ -f "$MARKER" ] || die "$PG_DIR exists but was not made by this script; not removing it"
    local bindir
    if [ -f "$PG_DATA/postmaster.pid" ] && bindir="$(find_bindir)"; then
        as_owner "$bindir/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null 2>&1 ||
            as_owner "$bindir/pg_ctl" -D "$PG_DATA" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PG_DIR"
}

create_cluster() {
    local bindir="$1"
    if is_root && ! id postgres >/dev/null 2>&1; then
        say "creating the postgres system user"
        useradd --system --user-group --no-create-home --home-dir "$PG_DIR" --shell /usr/sbin/nologin postgres
    fi
    mkdir -p "$PG_DIR"
    touch "$MARKER"
    if is_root; then chown -R postgres: "$PG_DIR"; fi
    as_owner test -w "$PG_DIR" || die "$PG_DIR is not writable by the cluster's owner (postgres): pick another LATENCYSOLVER_PG_DIR"
    say "creating a throwaway cluster in $PG_DATA"
    # local (unix socket, inside the 0700 data dir) trusts the owner; TCP needs a scram password
    as_owner "$bindir/initdb" -D "$PG_DATA" --username=postgres --encoding=UTF8 --locale=C --auth-local=trust \
        --auth-host=scram-sha-256 --no-sync >"$PG_DIR/initdb.log" 2>&1 ||
        { tail -n 20 "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
    # Throwaway test server: durability off (fsync, synchronous_commit, full_page_writes) for speed.
    # max_connections: ~8 worker processes, each with a small SQLAlchemy pool, plus the tests' own connections.
    cat >>"$PG_DATA/postgresql.conf" <<EOF

# --- latencysolver test server (.ci/postgres.sh); THROWAWAY: durability is off ---
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DATA'
max_connections = 200
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    say "starting PostgreSQL on 127.0.0.1:$PG_PORT (log $PG_LOG)"
    # 9>&-: the server must not inherit (and so hold forever) the lock taken in lock()
    as_owner "$bindir/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >/dev/null 9>&- ||
        { tail -n 20 "$PG_LOG" >&2 || true; die "PostgreSQL did not start (is port $PG_PORT taken?)"; }
    local psql
    psql="$(psql_bin)" || die "psql not found beside $bindir or on PATH"
    as_owner "$psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DATA" -p "$PG_PORT" -U postgres -d postgres >/dev/null <<EOF ||
CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
CREATE DATABASE $DATABASE OWNER $ROLE;
EOF
        die "could not create role and database $ROLE"
}

start() {
    if url_ok; then
        say "reusing the PostgreSQL server on 127.0.0.1:$PG_PORT"
        return 0
    fi
    local bindir
    if ! bindir="$(find_bindir)"; then
        install_postgres
        bindir="$(find_bindir)" || die "initdb still not found after installing PostgreSQL"
        if url_ok; then   # psql may have been missing before the install
            say "reusing the PostgreSQL server on 127.0.0.1:$PG_PORT"
            return 0
        fi
    fi
    # a cluster left behind (stopped, or serving something else) is thrown away: it holds nothing worth keeping
    remove_cluster
    create_cluster "$bindir"
    url_ok || die "the server started but does not accept $ROLE@127.0.0.1:$PG_PORT/$DATABASE"
    say "ready: $URL"
}

lock() {
    # one start/stop at a time on this cluster (two test runs starting together); flock is in util-linux
    if command -v flock >/dev/null; then
        exec 9>"$PG_DIR.lock"
        flock -w 60 9 || die "timed out waiting for the lock $PG_DIR.lock"
    fi
}

case "${1:-}" in
    start) lock; start ;;
    stop)
        lock
        if [ -f "$MARKER" ]; then say "stopping PostgreSQL and removing $PG_DIR"; fi
        remove_cluster
        ;;
    url) echo "$URL" ;;
    *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on loopback (for an MLflow backend store), installing
# PostgreSQL from the OS packages first when it is missing.
#
#   scripts/start_postgres.sh --install-only          # install if missing, start nothing
#   scripts/start_postgres.sh [--port N] [--dir DIR] [--db NAME]
#       prints the connection URI (postgresql://segcore@127.0.0.1:N/NAME) as its last line;
#       the cluster lives in DIR (default: a new folder under $TMPDIR or /tmp)
#   scripts/stop_postgres.sh DIR                      # stop it and remove DIR
#
# The server listens on 127.0.0.1 only, trusts local connections (it is for tests and
# trials, not for production) and runs as the `postgres` user when started by root (the
# server refuses to run as root). Exit codes: 0 started, 3 PostgreSQL is not installed and
# cannot be installed here, 1 any other failure.
set -euo pipefail

PORT=0
DIR=""
DB="mlflow"
INSTALL_ONLY=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --port) PORT="$2"; shift 2 ;;
        --dir) DIR="$2"; shift 2 ;;
        --db) DB="$2"; shift 2 ;;
        --install-only) INSTALL_ONLY=1; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "start_postgres.sh: unknown option $1 (see --help)" >&2; exit 1 ;;
    esac
done

pg_bindir() {
    # Debian keeps the server binaries in /usr/lib/postgresql/<version>/bin, off the PATH.
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$dir" && -x "$dir/initdb" ]]; then
        echo "$dir"
    elif command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    fi
}

BIN=$(pg_bindir)
if [[ -z "$BIN" ]]; then
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "start_postgres.sh: PostgreSQL is not installed and cannot be installed here" \
            "(needs root and apt-get); install it with your package manager" >&2
        exit 3
    fi
    echo "start_postgres.sh: installing PostgreSQL (apt-get install postgresql)..." >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends postgresql; } >&2; then
        echo "start_postgres.sh: apt-get could not install postgresql" >&2
        exit 3
    fi
    BIN=$(pg_bindir)
    if [[ -z "$BIN" ]]; then
        echo "start_postgres.sh: postgresql installed but initdb not found" >&2
        exit 3
    fi
fi
if [[ $INSTALL_ONLY -eq 1 ]]; then
    echo "PostgreSQL server binaries: $BIN"
    exit 0
fi

if [[ "$PORT" == 0 ]]; then
    PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
if [[ -z "$DIR" ]]; then
    DIR=$(mktemp -d "${TMPDIR:-/tmp}/segcore-pg.XXXXXX")
fi
mkdir -p "$DIR"
AS=()
if [[ $(id -u) -eq 0 ]]; then
    if ! id postgres >/dev/null 2>&1; then
        echo "start_postgres.sh: running as root but there is no 'postgres' user to run" \
            "the server; reinstall the postgresql package" >&2
        exit 1
    fi
    chown postgres: "$DIR"
    chmod 700 "$DIR"
    AS=(runuser -u postgres --)
fi

"${AS[@]}" "$BIN/initdb" -D "$DIR/data" --username=segcore --auth=trust --encoding=UTF8 \
    --no-sync >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; exit 1; }
# Loopback only, the socket in DIR (not /var/run/postgresql), no fsync: a scratch server.
"${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=off" start >&2 \
    || { cat "$DIR/server.log" >&2; exit 1; }
"${AS[@]}" "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U segcore "$DB"
echo "$DIR" >"$DIR/.dir"
echo "postgresql://segcore@127.0.0.1:$PORT/$DB"

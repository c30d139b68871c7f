#!/usr/bin/env bash
# Stop a server started by scripts/start_postgres.sh and remove its folder.
#   scripts/stop_postgres.sh DIR
set -euo pipefail
DIR="${1:?usage: scripts/stop_postgres.sh DIR (the --dir given to start_postgres.sh)}"
if [[ ! -f "$DIR/.dir" ]]; then
    echo "stop_postgres.sh: $DIR was not made by start_postgres.sh; not touching it" >&2
    exit 1
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[[ -n "$BIN" && -x "$BIN/pg_ctl" ]] || BIN=$(dirname "$(command -v pg_ctl)")
AS=()
[[ $(id -u) -eq 0 ]] && AS=(runuser -u postgres --)
if [[ -f "$DIR/data/postmaster.pid" ]]; then
    "${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -m fast -w -t 60 stop >&2
fi
rm -rf "$DIR"

#!/usr/bin/env bash
# Runs lunabench against a throwaway PostgreSQL, started the way
# scripts/test.sh starts one, and removes it afterwards.
#
#   ./cmd/lunabench/with-postgres.sh [lunabench flags]     e.g. -n 1000 -rate 20 -tokens 200
#
# The server runs in a temporary directory on a free loopback port, as the
# 'postgres' user when run as root. Unlike the test server it keeps fsync and
# full-page writes on; synchronous_commit is off, which is what Luna's SQLite
# does too (WAL with synchronous=NORMAL: a crash may lose the last commits,
# never corrupts).
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf 'with-postgres.sh: %s\n' "$*" >&2; }

PG_BIN=$(for d in /usr/lib/postgresql/*/bin; do
	if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; fi
done | sort -V | tail -n 1)
if [ -z "$PG_BIN" ]; then
	log "PostgreSQL server binaries not found; install the 'postgresql' package (or run ./scripts/test.sh once as root)"
	exit 1
fi

PG_DIR=$(mktemp -d /tmp/lunabench-pg.XXXXXX)
for _ in $(seq 1 50); do
	PG_PORT=$((20000 + RANDOM % 20000))
	if ! (exec 3<>"/dev/tcp/127.0.0.1/$PG_PORT") 2>/dev/null; then break; fi
done

as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		id postgres >/dev/null 2>&1 || useradd --system --home-dir "$PG_DIR" --shell /bin/sh postgres
		chown -R postgres "$PG_DIR"
		su postgres -s /bin/sh -c "$*"
	else
		sh -c "$*"
	fi
}

cleanup() {
	as_pg "'$PG_BIN/pg_ctl' -D '$PG_DIR/data' -m fast stop" >/dev/null 2>&1 || true
	rm -rf "$PG_DIR"
}
trap cleanup EXIT

log "starting PostgreSQL ($PG_BIN) on 127.0.0.1:$PG_PORT"
as_pg "'$PG_BIN/initdb' -D '$PG_DIR/data' -U postgres -A trust -E UTF8" >"$PG_DIR/initdb.log" 2>&1 ||
	{ cat "$PG_DIR/initdb.log" >&2; exit 1; }
as_pg "'$PG_BIN/pg_ctl' -D '$PG_DIR/data' -l '$PG_DIR/server.log' -w -t 60 \
	-o \"-p $PG_PORT -k '$PG_DIR' -c listen_addresses=127.0.0.1 -c max_connections=200 -c synchronous_commit=off\" start" >/dev/null ||
	{ cat "$PG_DIR/server.log" >&2; exit 1; }

go build -o "$PG_DIR/lunabench" ./cmd/lunabench
"$PG_DIR/lunabench" -database-url "postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable" "$@"

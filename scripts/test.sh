#!/usr/bin/env bash
# Runs Luna's whole test suite against SQLite, a throwaway PostgreSQL and a
# throwaway S3-compatible server.
#
#   ./scripts/test.sh [go test flags/packages]   (default: -race ./... and then
#                                                 the iOS app's tests)
#   ./scripts/test.sh --mobile-only               (only the iOS app's tests:
#                                                 mobile/scripts/test.sh)
#
# Without arguments it first runs go vet and staticcheck over the tree.
#
# It needs Go. It finds PostgreSQL's server binaries (installing the Debian
# package when they are missing and it runs as root), starts a private
# server on a free loopback port in a temporary directory, runs `go test`
# with LUNA_TEST_POSTGRES_URL pointing at it, and removes it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--mobile-only" ]; then
	exec mobile/scripts/test.sh
fi

log() { printf 'test.sh: %s\n' "$*" >&2; }

find_pg_bin() {
	local d
	for d in /usr/lib/postgresql/*/bin; do
		if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; fi
	done | sort -V | tail -n 1
}

PG_BIN=$(find_pg_bin || true)
if [ -z "$PG_BIN" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		log "PostgreSQL server binaries not found; install the 'postgresql' package (or run as root)"
		exit 1
	fi
	log "installing PostgreSQL server (apt-get install postgresql)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends postgresql >/dev/null
	PG_BIN=$(find_pg_bin)
fi

PG_DIR=$(mktemp -d /tmp/luna-pg.XXXXXX)
# pick_pg_port sets PG_PORT to a loopback port that nothing answers on,
# below Linux's ephemeral range (32768 and up), where outgoing connections
# could hold it; start-up still retries with another port if it is taken.
pick_pg_port() {
	for _ in $(seq 1 50); do
		PG_PORT=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$PG_PORT") 2>/dev/null; then return; fi
	done
}

# PostgreSQL refuses to run as root: run it as the 'postgres' user when we are root.
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
	as_pg "'$PG_BIN/pg_ctl' -D '$PG_DIR/data' -m immediate stop" >/dev/null 2>&1 || true
	rm -rf "$PG_DIR"
	if declare -F s3test_stop >/dev/null; then s3test_stop; fi
}
trap cleanup EXIT

as_pg "'$PG_BIN/initdb' -D '$PG_DIR/data' -U postgres -A trust -E UTF8 --no-sync" >"$PG_DIR/initdb.log" 2>&1 ||
	{ cat "$PG_DIR/initdb.log" >&2; exit 1; }
for attempt in 1 2 3 4 5; do
	pick_pg_port
	log "starting PostgreSQL ($PG_BIN) on 127.0.0.1:$PG_PORT"
	if as_pg "'$PG_BIN/pg_ctl' -D '$PG_DIR/data' -l '$PG_DIR/server.log' -w -t 60 \
		-o \"-p $PG_PORT -k '$PG_DIR' -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off\" start" >/dev/null; then
		break
	fi
	if [ "$attempt" -eq 5 ] || ! grep -q "could not bind" "$PG_DIR/server.log"; then
		cat "$PG_DIR/server.log" >&2
		exit 1
	fi
	log "port $PG_PORT is taken; trying another"
done

# Chromium for the browser tests (the web app's and the iOS app's web build).
. scripts/chromium.sh
export LUNA_TEST_REQUIRE_BROWSER=1

# A real S3-compatible server (versitygw, built once into a cache dir) for
# the S3 storage tests.
log "starting an S3-compatible server (versitygw; the first build takes about 1.5 minutes)"
# shellcheck source=scripts/s3test.sh
source scripts/s3test.sh

export LUNA_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable"
export LUNA_TEST_REQUIRE_POSTGRES=1

everything=0
if [ "$#" -eq 0 ]; then
	everything=1
	# The whole suite starts with the linters: go vet and staticcheck (pinned
	# in go.mod as a tool dependency).
	log "go vet ./..."
	go vet ./...
	log "go tool staticcheck ./..."
	go tool staticcheck ./...
	# The race detector needs cgo, hence a C compiler.
	if ! command -v gcc >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
		log "installing gcc for the race detector (apt-get install gcc)"
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null || true
	fi
	if command -v gcc >/dev/null 2>&1; then
		set -- -race -timeout 30m ./...
	else
		log "no C compiler: running without the race detector"
		set -- -timeout 30m ./...
	fi
fi
log "go test $*"
go test "$@"

# With no arguments, the whole suite includes the iOS app (mobile/): its
# npm install, type check, lint, Jest tests against luna, the web journey in
# Chromium and the iOS bundle export.
if [ "$everything" -eq 1 ]; then
	log "the iOS app's tests (mobile/scripts/test.sh)"
	mobile/scripts/test.sh
fi

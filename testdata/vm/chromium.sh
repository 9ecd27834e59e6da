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

RP_ADDR=127.0.0.1:8080
URL=http://localhost:8080/
RESULTS=$WORK/rp.results

sc_virtkey_start() {
	t0=$(now_ms)
	vk_start /tmp/vk
	out=$(fido2-token -I "$(dev)") || die "fido2-token -I failed"
	echo "$out"
	echo "$out" | grep "^options:" | grep -q "[ ,]uv" || die "getInfo does not offer built-in uv: $(echo "$out" | grep '^options:')"
	detail "$(dev) $(($(now_ms) - t0)) ms after start; $(echo "$out" | grep '^options:')"
}

sc_rp_start() {
	rm -f "$RESULTS"
	setsid sh -c 'echo $$ >"$0"; exec "$@"' "$WORK/rp.pid" \
		"$BIN/rp" -listen "$RP_ADDR" -origin "${URL%/}" -results "$RESULTS" -timeout 10m \
		>"$LOGS/rp.log" 2>&1 </dev/null &
	i=0
	until grep -q "^rp-ready PASS" "$RESULTS" 2>/dev/null; do
		i=$((i + 1))
		[ $i -gt 200 ] && die "the RP server did not start: $(tail -n 5 "$LOGS/rp.log")"
		sleep 0.1
	done
	detail "$(grep '^rp-ready' "$RESULTS" | cut -d' ' -f3-)"
}

# await NAME SECONDS: wait for the RP's result line NAME (or the page's
# report of that step), print it, and pass or fail with it.
await() {
	_i=0
	while :; do
		_l=$(grep -E "^($1|page-${1#chromium-}) (PASS|FAIL)" "$RESULTS" 2>/dev/null | grep -v "^page-.* PASS" | head -n 1)
		[ -n "$_l" ] && break
		if grep -q "^page-done" "$RESULTS" 2>/dev/null; then
			_l=$(grep "^page-" "$RESULTS" | grep FAIL | head -n 1)
			[ -n "$_l" ] || _l="no $1 result before the page finished"
			break
		fi
		if ! kill -0 "$(cat "$WORK/chromium.pid")" 2>/dev/null; then
			_l="chromium exited: $(tail -n 3 "$LOGS/chromium.log" | tr '\n' ' ')"
			break
		fi
		_i=$((_i + 1))
		[ $_i -gt $(($2 * 5)) ] && die "no $1 result within $2 s"
		sleep 0.2
	done
	echo "$_l"
	cat "$RESULTS"
	case "$_l" in
	"$1 PASS"*) detail "${_l#"$1" PASS }" ;;
	*)
		# What the key last did tells a key error from a browser that
		# got its answer and then waited on a sheet headless mode cannot
		# show (account chooser, PIN prompt).
		_k=$(grep -o 'cmd=[A-Za-z]* status=[A-Z_]*' "$VKLOGFILE" | tail -n 3 | tr '\n' ' ')
		die "$_l; the key's last commands: $_k"
		;;
	esac
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
	i=0
	until grep -q "^page-loaded" "$RESULTS" 2>/dev/null; do
		if ! kill -0 "$(cat "$WORK/chromium.pid" 2>/dev/null)" 2>/dev/null; then
			tail -n 30 "$LOGS/chromium.log"
			die "chromium exited before the page loaded"
		fi
		i=$((i + 1))
		[ $i -gt 1500 ] && die "the page did not load within 300 s"
		sleep 0.2
	done
	grep "^page-loaded" "$RESULTS"
	detail "page loaded $(($(now_ms) - t0)) ms after starting chromium; $(grep '^page-loaded' "$RESULTS" | grep -o 'Chrome/[0-9.]*')"
}

sc_chromium_create() { await chromium-create 200; }

# The second registration lists the passkey in excludeCredentials: the key
# must answer makeCredential with CREDENTIAL_EXCLUDED (whatever Chromium
# sent before it: a token, a silent up=false getAssertion), the RP must see
# no second credential, and the page's call must end without one.
sc_chromium_exclude() {
	await chromium-exclude 200
	grep -q 'cmd=makeCredential status=CREDENTIAL_EXCLUDED' "$VKLOGFILE" ||
		die "the key never answered makeCredential with CREDENTIAL_EXCLUDED; its commands: $(grep -o 'cmd=[A-Za-z]* status=[A-Z_]*' "$VKLOGFILE" | tail -n 8 | tr '\n' ' ')"
	# What Chromium sent for the excluded registration, from the key's log.
	seq=$(sed -n '/cmd=makeCredential status=OK/,/cmd=makeCredential status=CREDENTIAL_EXCLUDED/p' "$VKLOGFILE" |
		grep -o 'cmd=[A-Za-z]* status=[A-Z_]*' | tail -n +2 | sed 's/cmd=//; s/ status=/:/' | tr '\n' ' ')
	detail "key saw: $seq"
}

sc_chromium_get() { await chromium-get 200; }

sc_chromium_stop() {
	i=0
	until grep -q "^page-done" "$RESULTS" 2>/dev/null; do
		i=$((i + 1))
		[ $i -gt 100 ] && break
		sleep 0.2
	done
	cp "$RESULTS" "$LOGS/rp.results" 2>/dev/null
	kill -TERM "$(cat "$WORK/chromium.pid")" 2>/dev/null
	kill -TERM "$(cat "$WORK/rp.pid")" 2>/dev/null
	sleep 1
	kill -KILL "$(cat "$WORK/chromium.pid")" 2>/dev/null
	vk_alive || die "virtkey died during the browser run"
	# The key now holds the passkey Chromium made.
	out=$(fido2-token -I "$(dev)") || die "fido2-token -I after the browser run"
	vk_stop TERM || die "virtkey did not stop on SIGTERM"
	"$HT" find -gone -timeout 10s || die "a stale hidraw node after SIGTERM"
	grep -q "^page-done" "$RESULTS" || die "the page never reported done"
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

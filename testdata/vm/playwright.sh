# playwright.sh — the VM harness's Playwright group (one boot, 2 GiB): the
# example of examples/playwright runs as a test suite would. virtkey serves
# a uhid key with --profile browser-test and its control API on a Unix
# socket; the demo site (examples/playwright/demo-rp, go-webauthn) verifies
# every ceremony; node runs example.mjs, where playwright-core drives the
# system's headless Chromium (executablePath) and @virtkey/control steers
# the key: sign up, sign in with the discoverable passkey, seed a
# credential through the API and sign in with it, UV off and the sign-in
# refused, credentials deleted and the sign-in refused. Chromium under TCG
# needs about a minute to load a page: the example runs with
# EXAMPLE_SLOW=1 (long launch and navigation timeouts) in one boot.
SELF=$0
VK_RUN_ARGS="--profile browser-test --control unix:/tmp/vkctl/control.sock --control-allow-export"
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/repo.env"

RP_ADDR=127.0.0.1:8080

sc_virtkey_start() {
	vk_start /tmp/vk
	i=0
	until [ -S /tmp/vkctl/control.sock ]; do
		i=$((i + 1))
		[ $i -gt 100 ] && die "no control socket"
		sleep 0.1
	done
	out=$("$VK" ctl --control unix:/tmp/vkctl/control.sock keys) || die "virtkey ctl keys failed"
	echo "$out"
	detail "$(dev); $(echo "$out" | tail -n 1 | tr -s ' ')"
}

sc_rp_start() {
	spawn rp "$BIN/demo-rp" -listen "$RP_ADDR"
	await_start "^demo-rp ready" "$LOGS/rp.log" rp "the demo site"
	detail "$(grep '^demo-rp ready' "$LOGS/rp.log")"
}

sc_playwright_example() {
	cd "$REPO/examples/playwright" || die "no $REPO/examples/playwright"
	VIRTKEY_CONTROL=unix:/tmp/vkctl/control.sock RP_URL=http://localhost:8080/ \
		CHROMIUM=$(command -v chromium) EXAMPLE_SLOW=1 HOME=/tmp/home \
		node example.mjs >"$WORK/example.out" 2>"$LOGS/example.stderr"
	rc=$?
	cat "$WORK/example.out"
	cp "$WORK/example.out" "$LOGS/example.out"
	for step in page-load sign-up sign-in seeded-sign-in uv-off-refused deleted-refused no-credentials-left; do
		grep -q "^EXAMPLE $step PASS" "$WORK/example.out" ||
			die "step $step: $(grep "^EXAMPLE $step" "$WORK/example.out" || grep '^EXAMPLE .* FAIL' "$WORK/example.out" | head -n 1 || tail -n 3 "$LOGS/example.stderr")"
	done
	[ $rc = 0 ] || die "example.mjs exit $rc"
	detail "$(grep -c '^EXAMPLE .* PASS' "$WORK/example.out") steps passed; $(grep '^EXAMPLE page-load' "$WORK/example.out" | cut -d' ' -f4-)"
}

# A key added through the API on uhid: the kernel makes its hidraw node,
# libfido2 sees it, a replug re-creates the device, and removing the key
# removes the node.
sc_api_uhid_key() {
	ctl() { "$VK" ctl --control unix:/tmp/vkctl/control.sock "$@"; }
	out=$(ctl keys add --attach uhid --json) || die "keys add --attach uhid failed"
	echo "$out"
	node=$(echo "$out" | sed -n 's/.*"hidraw": "\(.*\)".*/\1/p')
	id=$(echo "$out" | sed -n 's/.*"id": "\(.*\)".*/\1/p')
	[ -n "$node" ] || die "no hidraw node in the answer"
	[ -c "$node" ] || die "$node is not a device node"
	fido2-token -I "$node" | grep -q "^options:.*uv" || die "fido2-token -I $node: no built-in uv"
	ctl --key "$id" replug || die "replug failed"
	node2=$(ctl --key "$id" info | sed -n 's/^address: *//p')
	fido2-token -I "$node2" >/dev/null || die "fido2-token -I $node2 after replug"
	ctl keys delete "$id" || die "keys delete failed"
	sleep 1
	[ ! -e "$node2" ] || die "$node2 still there after the key was removed"
	detail "$id on $node, $node2 after replug; gone after delete"
}

sc_virtkey_stop() {
	kill -TERM "$(cat "$WORK/rp.pid")" 2>/dev/null
	vk_alive || die "virtkey died during the example"
	vk_stop TERM || die "virtkey did not stop on SIGTERM"
	[ ! -e /tmp/vkctl/control.sock ] || die "the control socket outlived virtkey"
	detail "stopped cleanly; control socket removed"
}

main() {
	scenario virtkey-start 45
	scenario rp-start 30
	scenario playwright-example 900
	scenario api-uhid-key 60
	scenario virtkey-stop 30
}

dispatch "$@"

# firefox.sh — the VM harness's Firefox group (one boot, 2 GiB): headless
# Firefox ESR, whose WebAuthn stack (authenticator-rs) is not Chromium's —
# it finds the key through libudev and speaks CTAPHID on hidraw itself —
# runs the flow page of internal/vmtest/rp (flow.go, flow.html) in one page
# load against `virtkey run --transport uhid --uv auto --select-account
# newest`: a passkey sign-up, a discoverable sign-in with one account, a
# second sign-up, a discoverable sign-in with two accounts (the key picks
# the newest), and a sign-in with allowCredentials; then the script resets
# the key and sets a PIN, and the page does all five again with built-in UV
# plus the PIN. go-webauthn verifies every step in the RP server.
#
# Not tested, on purpose: a PIN without built-in UV. Firefox then opens a
# tab-modal PIN prompt that headless Firefox can never answer and that
# freezes the page (not even its own timeouts fire). See docs/testing.md and
# README "Browsers". Conventions: lib.sh.
SELF=$0
VK_RUN_ARGS="--uv auto --select-account newest"
. "$(dirname "$0")/lib.sh"

GATES=$WORK/gates
PROFILE=/tmp/firefox-profile

# The page's plan (rp/flow.go): NAME:OP:USER, one result line per NAME.
PLAN="firefox-signup:create:alice,firefox-signin-one:get:alice"
PLAN="$PLAN,firefox-signup-second:create:bob,firefox-signin-two:get:bob,firefox-signin-allow:allow:alice"
PLAN="$PLAN,firefox-pin-gate:gate:pin-set"
PLAN="$PLAN,firefox-pin-signup:create:carol,firefox-pin-signin-one:get:carol"
PLAN="$PLAN,firefox-pin-signup-second:create:dave,firefox-pin-signin-two:get:dave,firefox-pin-signin-allow:allow:carol"
URL="$RP_ORIGIN/flow/?plan=$PLAN"

sc_virtkey_start() { browser_key_start; }

sc_rp_start() {
	rm -rf "$GATES"
	mkdir -p "$GATES"
	rp_start -gate-dir "$GATES"
}

# firefox_profile writes a fresh profile with what a headless run needs
# (README "Browsers"): attestation "direct" without the Allow/Block
# doorhanger, no session restore, no first-run or what's-new tabs (a page
# that loses focus to one is refused: "CredentialsContainer request is not
# allowed"), nothing fetched from the network.
firefox_profile() {
	rm -rf "$PROFILE"
	mkdir -p "$PROFILE"
	cat >"$PROFILE/user.js" <<'EOF'
user_pref("security.webauthn.always_allow_direct_attestation", true);
user_pref("browser.sessionstore.resume_from_crash", false);
user_pref("browser.startup.page", 0);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("startup.homepage_welcome_url", "");
user_pref("startup.homepage_welcome_url.additional", "");
user_pref("startup.homepage_override_url", "");
user_pref("browser.aboutwelcome.enabled", false);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("datareporting.policy.dataSubmissionPolicyBypassNotification", true);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
user_pref("app.update.auto", false);
user_pref("app.normandy.enabled", false);
user_pref("extensions.update.enabled", false);
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("browser.safebrowsing.update.enabled", false);
user_pref("devtools.console.stdout.content", true);
EOF
}

sc_firefox_load() {
	firefox_profile
	t0=$(now_ms)
	MOZ_CRASHREPORTER_DISABLE=1 setsid sh -c 'echo $$ >"$0"; exec "$@"' "$WORK/firefox.pid" \
		firefox-esr --headless --no-remote --profile "$PROFILE" "$URL" \
		>"$LOGS/firefox.log" 2>&1 </dev/null &
	# ~30 s on an idle 2-core machine under TCG; minutes when it is busy.
	l=$(browser_loaded firefox 480) || exit 1
	echo "$l"
	echo "$l" | grep -q "isSecureContext=true" || die "http://localhost is not a secure context here: $l"
	echo "$l" | grep -q "hasFocus=true" || die "the page has no focus (a first-run tab?): $l"
	detail "page loaded $(($(now_ms) - t0)) ms after starting firefox; $(echo "$l" | grep -o 'Firefox/[0-9.]*'); $(echo "$l" | grep -o 'steps=[0-9]*')"
}

# await NAME SECONDS: the RP's verdict on step NAME (the page reports it
# under the same name), in $AWAITED.
await() { rp_await "$1" "$1" "$2" firefox; }

# signup NAME: a registration, verified with UP, UV and a packed (batch)
# attestation — Firefox passed "direct" attestation through unprompted.
signup() {
	await "$1" 200
	echo "$AWAITED" | grep -q "fmt=packed" || die "not a packed attestation (is always_allow_direct_attestation honoured?): $AWAITED"
	echo "$AWAITED" | grep -q "UP=true UV=true" || die "flags: $AWAITED"
	detail "$AWAITED"
}

# signin NAME WANT: a verified sign-in as WANT, with UV.
signin() {
	await "$1" 200
	echo "$AWAITED" | grep -q "user $2@localhost" || die "signed in as someone else than $2: $AWAITED"
	echo "$AWAITED" | grep -q "UV=true" || die "no UV: $AWAITED"
	detail "$AWAITED"
}

# The counter: Firefox sends a silent getAssertion (up=false) before an
# allowList sign-in (docs/testing.md), so the RP sees it move by 2 since
# the credential's last use; the detail shows it, the RP only demands that
# it grows.
sc_firefox_signup() { signup firefox-signup; }
sc_firefox_signin_one() { signin firefox-signin-one alice; }
sc_firefox_signup_second() { signup firefox-signup-second; }
sc_firefox_signin_two() { signin firefox-signin-two bob; }
sc_firefox_signin_allow() { signin firefox-signin-allow alice; }

# Between the two halves, with the page waiting at its gate: erase the
# key and set a PIN, keeping built-in UV. Firefox must then take a UV
# token (clientPIN getPinUvAuthTokenUsingUvWithPermissions) and never ask
# for the PIN, which headless it could not answer.
sc_firefox_pin_set() {
	grep -q "^firefox-signin-allow PASS" "$RESULTS" || die "the first half did not finish"
	out=$(VIRTKEY_PIN=$PIN run "$VK" creds list --rp localhost --device "$(dev)" 2>&1)
	echo "$out"
	n=$(echo "$out" | grep -c "@localhost")
	[ "$n" = 2 ] || die "the key holds $n passkeys for localhost after the first half, want 2 (alice, bob)"
	run "$VK" reset --device "$(dev)" || die "virtkey reset failed"
	VIRTKEY_PIN=$PIN run "$VK" pin set --device "$(dev)" || die "virtkey pin set failed"
	out=$(fido2-token -I "$(dev)") || die "fido2-token -I failed"
	opts=$(echo "$out" | grep '^options:')
	echo "$opts" | grep -q "[ ,]clientPin" || die "no clientPin after setting the PIN: $opts"
	echo "$opts" | grep -Eq "[ ,]uv(,|$)" || die "built-in uv gone after the reset: $opts"
	touch "$GATES/pin-set"
	detail "the key reset and a PIN set (built-in UV kept): $opts"
}

sc_firefox_pin_signup() { signup firefox-pin-signup; }
sc_firefox_pin_signin_one() { signin firefox-pin-signin-one carol; }
sc_firefox_pin_signup_second() { signup firefox-pin-signup-second; }
sc_firefox_pin_signin_two() { signin firefox-pin-signin-two dave; }
sc_firefox_pin_signin_allow() { signin firefox-pin-signin-allow carol; }

sc_firefox_stop() {
	browser_stop firefox
	# Firefox never tried the PIN: the retries are untouched.
	out=$(fido2-token -I "$(dev)") || die "fido2-token -I after the browser run"
	echo "$out" | grep -q '^pin retries: 8' || die "PIN retries moved: $(echo "$out" | grep '^pin retries')"
	out=$(VIRTKEY_PIN=$PIN run "$VK" creds list --rp localhost --device "$(dev)" 2>&1)
	echo "$out"
	n=$(echo "$out" | grep -c "@localhost")
	[ "$n" = 2 ] || die "the key holds $n passkeys for localhost, want 2 (carol, dave)"
	vk_stop TERM || die "virtkey did not stop on SIGTERM"
	"$HT" find -gone -timeout 10s || die "a stale hidraw node after SIGTERM"
	detail "page done; PIN retries 8 (Firefox never sent the PIN); carol and dave on the key; virtkey stopped cleanly"
}

main() {
	scenario virtkey-start 45
	scenario rp-start 30
	scenario firefox-load 500
	scenario firefox-signup 210
	scenario firefox-signin-one 210
	scenario firefox-signup-second 210
	scenario firefox-signin-two 210
	scenario firefox-signin-allow 210
	scenario firefox-pin-set 90
	scenario firefox-pin-signup 210
	scenario firefox-pin-signin-one 210
	scenario firefox-pin-signup-second 210
	scenario firefox-pin-signin-two 210
	scenario firefox-pin-signin-allow 210
	scenario firefox-stop 60
}

dispatch "$@"

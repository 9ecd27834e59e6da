# login.sh — the VM harness's login group (one boot): the two everyday
# Linux uses of a security key, with virtkey on the guest's /dev/uhid and
# Debian's own tools, each with its refusals.
#
#   - PAM login with pam-u2f: pamu2fcfg registers (plain, and -r -N: a
#     resident credential that needs the PIN), pamtester runs the PAM stack
#     `auth required pam_u2f.so authfile=F origin=pam://vk appid=pam://vk
#     cue`; refused: an unknown user, a wrong PIN, a deleted credential, the
#     key absent, the key reset.
#   - LUKS2 unlock with systemd-cryptenroll --fido2-device (hmac-secret) and
#     systemd-cryptsetup attach: first the systemd 252 trap (the key offers
#     makeCredUvNotRqd, so enrolling asks no PIN and derives the secret
#     without UV, while unlocking sends the PIN and gets the other secret:
#     the slot never opens; systemd issue 31443), then the recipe that works
#     (`virtkey config always-uv on` before enrolling); refused: a wrong PIN,
#     the key absent, the key reset.
#
# The key runs as a user would run it: no built-in UV, a PIN. Scenarios
# build on each other, with their files in $WORK. Conventions: lib.sh.
SELF=$0
. "$(dirname "$0")/lib.sh"

STATE=/tmp/vk
ORIGIN=pam://vk
AUTHFILE=/etc/vk/u2f_keys
IMG=$WORK/luks.img
KEY=$WORK/luks.key
VOL=vkluks
CRYPTSETUP=/lib/systemd/systemd-cryptsetup
# libdevmapper waits for udev to make /dev/mapper nodes unless told there
# is none (the guest runs no udevd).
export DM_DISABLE_UDEV=1

# pin_retries prints the key's PIN retry counter.
pin_retries() { fido2-token -I "$(dev)" | sed -n 's/^pin retries: //p'; }

# key_log_since N: virtkey's log after its first N lines.
key_log_since() { tail -n "+$(($1 + 1))" "$VKLOGFILE"; }
key_log_lines() { wc -l <"$VKLOGFILE"; }

# ---- the key ----

sc_virtkey_start() {
	vk_start "$STATE"
	VIRTKEY_PIN=$PIN run "$VK" pin set --device "$(dev)" || die "virtkey pin set failed"
	opts=$(fido2-token -I "$(dev)" | grep '^options:')
	echo "$opts"
	echo "$opts" | grep -q "[ ,]clientPin" || die "no clientPin after setting the PIN: $opts"
	# The trap below needs a key like most hardware keys: PIN, no
	# built-in UV, makeCredUvNotRqd.
	echo "$opts" | grep -Eq "[ ,]uv(,|$)" && die "built-in uv is on: $opts"
	echo "$opts" | grep -q "[ ,]makeCredUvNotRqd" || die "no makeCredUvNotRqd: $opts"
	[ "$(pin_retries)" = 8 ] || die "PIN retries $(pin_retries), want 8"
	detail "$(dev), PIN set; $opts"
}

# ---- PAM: pam-u2f ----

# pam USER [expect flags]: pamtester's authenticate for USER through the
# vktest service. Without flags it runs with no terminal (a PIN prompt
# fails); `pam USER -pin P` answers PIN prompts with P on a pty.
pam() {
	_u=$1
	shift
	if [ $# -eq 0 ]; then
		run setsid -w pamtester -v vktest "$_u" authenticate </dev/null 2>&1
	else
		echo "+ pamtester -v vktest $_u authenticate (on a pty: $*)"
		"$HT" expect "$@" -timeout 60s -- pamtester -v vktest "$_u" authenticate
	fi
}

# pam_ok USER [expect flags] and pam_refused USER [expect flags] run pam and
# check its verdict; the output is in $PAMOUT.
pam_ok() {
	PAMOUT=$(pam "$@")
	_rc=$?
	echo "$PAMOUT"
	[ $_rc = 0 ] && echo "$PAMOUT" | grep -q "successfully authenticated"
}
pam_refused() {
	PAMOUT=$(pam "$@")
	_rc=$?
	echo "$PAMOUT"
	[ $_rc != 0 ] && ! echo "$PAMOUT" | grep -q "successfully authenticated"
}

sc_pam_register() {
	for u in alice bob mallory; do
		id "$u" >/dev/null 2>&1 || run useradd -M -N -s /bin/sh "$u" || die "useradd $u"
	done
	mkdir -p /etc/vk
	# alice: pamu2fcfg without -r/-N: a non-resident credential (its id is
	# the wrapped key), user presence only. No PIN is asked: the key
	# offers makeCredUvNotRqd. No terminal, so a PIN prompt would fail.
	echo "+ pamu2fcfg -u alice -o $ORIGIN -i $ORIGIN (no terminal)"
	setsid -w pamu2fcfg -u alice -o "$ORIGIN" -i "$ORIGIN" >"$WORK/alice.line" </dev/null ||
		die "pamu2fcfg -u alice failed"
	# bob: -r -N: a resident credential, and pam_u2f will demand the PIN.
	# The PIN prompt is answered on a pty; the line goes to a file.
	echo "+ pamu2fcfg -u bob -r -N (on a pty)"
	"$HT" expect -pin "$PIN" -timeout 60s -- sh -c 'pamu2fcfg -u bob -r -N -o "$1" -i "$1" >"$2"' _ "$ORIGIN" "$WORK/bob.line" ||
		die "pamu2fcfg -u bob -r -N failed"
	# pamu2fcfg ends its line without a newline: one line per user.
	for u in alice bob; do printf '%s\n' "$(cat "$WORK/$u.line")"; done >"$AUTHFILE"
	cat "$AUTHFILE"
	[ "$(wc -l <"$AUTHFILE")" = 2 ] || die "$AUTHFILE does not hold two lines"
	# alice's key handle is her (non-resident) credential id; bob's is "*":
	# pam_u2f finds his resident credential by a discoverable getAssertion.
	sed -n 1p "$AUTHFILE" | grep -Eq '^alice:[^*,][^,]*,[^,]+,es256,\+presence$' || die "alice's line: $(cat "$WORK/alice.line")"
	sed -n 2p "$AUTHFILE" | grep -Eq '^bob:\*,[^,]+,es256,\+presence\+pin$' || die "bob's line: $(cat "$WORK/bob.line")"
	cat >/etc/pam.d/vktest <<EOF
auth required pam_u2f.so authfile=$AUTHFILE origin=$ORIGIN appid=$ORIGIN cue
account required pam_permit.so
EOF
	# Only bob's credential is resident.
	out=$(VIRTKEY_PIN=$PIN "$VK" creds list --rp "$ORIGIN" --device "$(dev)" --json) || die "virtkey creds list failed"
	echo "$out"
	[ "$(echo "$out" | grep -o '"credentialId"' | wc -l)" = 1 ] || die "want one resident credential for $ORIGIN (bob's): $out"
	echo "$out" | grep -Eq '"userName": *"bob"' || die "the resident credential is not bob's: $out"
	echo "$out" | grep -Eo '"credentialId": *"[^"]*"' | cut -d'"' -f4 >"$WORK/bob.credid"
	detail "alice: $(cut -d, -f3- "$WORK/alice.line") (non-resident); bob: $(cut -d, -f3- "$WORK/bob.line") (resident, -r -N)"
}

sc_pam_login() {
	pam_ok alice || die "alice (presence only) was refused"
	echo "$PAMOUT" | grep -q "Please touch the device" || die "no cue for alice"
	pam_ok bob -pin "$PIN" || die "bob (PIN) was refused"
	echo "$PAMOUT" | grep -qi "pin" || die "bob was not asked for the PIN"
	grep -q 'cmd=getAssertion status=OK' "$VKLOGFILE" || die "no getAssertion OK in virtkey's log"
	detail "pamtester authenticate: alice (touch) and bob (PIN on the PAM conversation, touch) accepted"
}

sc_pam_unknown_user() {
	# mallory has an account but no line in the authfile; nobody has neither.
	pam_refused mallory || die "mallory (no key registered) was let in"
	pam_refused nobody-here || die "a user without an account was let in"
	pam_ok alice || die "alice refused after the unknown users"
	detail "mallory (an account, no line in $AUTHFILE) and an unknown account refused; alice still accepted"
}

sc_pam_wrong_pin() {
	pam_refused bob -pin 000000 || die "bob was let in with a wrong PIN"
	r=$(pin_retries)
	[ "$r" = 7 ] || die "PIN retries $r after one wrong PIN, want 7"
	grep -q 'cmd=clientPIN status=PIN_INVALID' "$VKLOGFILE" || die "no clientPIN PIN_INVALID in virtkey's log"
	pam_ok bob -pin "$PIN" || die "bob refused with the right PIN after a wrong one"
	r2=$(pin_retries)
	[ "$r2" = 8 ] || die "PIN retries $r2 after the right PIN, want 8 again"
	detail "wrong PIN refused (PIN_INVALID, retries 8→$r), then the right one accepted (retries back to $r2)"
}

sc_pam_cred_deleted() {
	id=$(cat "$WORK/bob.credid")
	[ -n "$id" ] || die "no credential id for bob"
	VIRTKEY_PIN=$PIN run "$VK" creds delete "$id" --device "$(dev)" || die "virtkey creds delete failed"
	n=$(key_log_lines)
	pam_refused bob -pin "$PIN" || die "bob was let in with his credential deleted from the key"
	key_log_since "$n" | grep -q 'cmd=getAssertion status=NO_CREDENTIALS' ||
		die "the key did not answer NO_CREDENTIALS: $(key_log_since "$n" | grep -o 'cmd=[A-Za-z]* status=[A-Z_]*' | tr '\n' ' ')"
	pam_ok alice || die "alice refused after bob's credential was deleted"
	detail "bob's resident credential deleted (virtkey creds delete): refused with NO_CREDENTIALS; alice still accepted"
}

sc_pam_key_absent() {
	vk_stop TERM || die "virtkey did not stop on SIGTERM"
	"$HT" find -gone -timeout 10s || die "a stale hidraw node after SIGTERM"
	t0=$(now_ms)
	pam_refused alice || die "alice was let in with no key plugged in"
	ms=$(($(now_ms) - t0))
	vk_start "$STATE"
	pam_ok alice || die "alice refused after the key came back"
	detail "no key: refused in $ms ms; key back: accepted"
}

# ---- LUKS2: systemd-cryptenroll --fido2-device ----

# attach [PIN]: systemd-cryptsetup attach of the image with the FIDO2
# token, no terminal (headless=yes; the PIN from $PIN), no passphrase.
attach() {
	echo "+ PIN=${1:+***} $CRYPTSETUP attach $VOL $IMG - fido2-device=$(dev),headless=yes,token-timeout=5s"
	PIN=$1 setsid -w "$CRYPTSETUP" attach "$VOL" "$IMG" - "fido2-device=$(dev),headless=yes,token-timeout=5s" </dev/null 2>&1
}

detach() { run "$CRYPTSETUP" detach "$VOL" 2>&1; }

# opened: the mapping exists and holds the marker written at format time.
opened() {
	[ -b "/dev/mapper/$VOL" ] || return 1
	dd if="/dev/mapper/$VOL" bs=4096 count=1 2>/dev/null | cmp -s - "$WORK/marker"
}

sc_luks_format() {
	for n in /dev/loop-control /dev/mapper/control; do
		[ -c "$n" ] || die "$n missing (kernel modules loop and dm-mod?)"
	done
	(umask 077 && dd if=/dev/urandom of="$KEY" bs=32 count=1 2>/dev/null)
	truncate -s 40M "$IMG" || die "truncate"
	# PBKDF2 with few iterations: the passphrase slot is a random key file,
	# and argon2 under TCG would take minutes.
	run cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
		--key-file "$KEY" "$IMG" 2>&1 || die "cryptsetup luksFormat failed"
	run cryptsetup open --key-file "$KEY" "$IMG" "$VOL" 2>&1 || die "cryptsetup open with the key file failed"
	dd if=/dev/urandom of="$WORK/marker" bs=4096 count=1 2>/dev/null
	dd if="$WORK/marker" of="/dev/mapper/$VOL" bs=4096 count=1 conv=fsync 2>/dev/null || die "writing the marker"
	opened || die "the marker does not read back"
	run cryptsetup close "$VOL" 2>&1 || die "cryptsetup close failed"
	detail "LUKS2 image made and opened with its key file (loop, dm-crypt $(cryptsetup luksDump "$IMG" | sed -n 's/^[[:space:]]*cipher: //p' | head -n 1))"
}

# enroll: systemd-cryptenroll --fido2-device on a pty, so a PIN prompt can be
# answered; the output (with any prompt) is in $ENROLLOUT.
enroll() {
	mkdir -p /run/systemd/ask-password # systemd 252 watches it while prompting
	echo "+ systemd-cryptenroll --fido2-device=$(dev) --unlock-key-file=$KEY $IMG (on a pty)"
	ENROLLOUT=$("$HT" expect -pin "$PIN" -timeout 90s -- systemd-cryptenroll --fido2-device="$(dev)" --unlock-key-file="$KEY" "$IMG")
	_rc=$?
	echo "$ENROLLOUT"
	return $_rc
}

sc_luks_trap() {
	enroll || die "systemd-cryptenroll failed"
	echo "$ENROLLOUT" | grep -q "security token PIN" &&
		die "systemd-cryptenroll asked for the PIN: the trap needs an enrollment without it (a newer systemd?)"
	tok=$(cryptsetup token export --token-id 0 "$IMG") || die "no LUKS2 token after enrolling"
	echo "$tok"
	echo "$tok" | grep -Eq '"fido2-clientPin-required": ?true' || die "the token does not require the PIN: $tok"
	# Unlock as boot would: with the (right) PIN.
	n=$(key_log_lines)
	if out=$(attach "$PIN"); then
		echo "$out"
		detach
		die "the slot opened: systemd 252's PIN trap did not happen (fixed in this systemd or in virtkey? update README's Login and disk unlock)"
	fi
	echo "$out"
	[ -b "/dev/mapper/$VOL" ] && die "attach failed but /dev/mapper/$VOL exists"
	# The key was asked, took the PIN and answered with an hmac-secret —
	# just not the one the slot was made with.
	key_log_since "$n" | grep -o 'cmd=[A-Za-z]* status=[A-Z_]*'
	key_log_since "$n" | grep -q 'cmd=clientPIN status=OK' || die "the key gave no PIN token during the attach: not the trap"
	key_log_since "$n" | grep -q 'cmd=getAssertion status=OK' || die "the key returned no assertion during the attach: not the trap"
	r=$(pin_retries)
	[ "$r" = 8 ] || die "PIN retries $r: the PIN was refused, not the trap"
	run systemd-cryptenroll --wipe-slot=fido2 --unlock-key-file="$KEY" "$IMG" 2>&1 || die "wiping the fido2 slot failed"
	detail "trap reproduced: enrolled without a PIN prompt (makeCredUvNotRqd), token says clientPin-required; unlocking with the right PIN (key: getAssertion OK, retries 8) does not open the slot"
}

sc_luks_always_uv() {
	VIRTKEY_PIN=$PIN run "$VK" config always-uv on --device "$(dev)" || die "virtkey config always-uv on failed"
	opts=$(fido2-token -I "$(dev)" | grep '^options:')
	echo "$opts"
	echo "$opts" | grep -q "[ ,]alwaysUv" || die "alwaysUv not on: $opts"
	echo "$opts" | grep -q "[ ,]makeCredUvNotRqd" && die "makeCredUvNotRqd still offered with alwaysUv: $opts"
	enroll || die "systemd-cryptenroll failed with alwaysUv on"
	echo "$ENROLLOUT" | grep -q "security token PIN" || die "systemd-cryptenroll did not ask for the PIN with alwaysUv on"
	out=$(attach "$PIN") || {
		echo "$out"
		die "the FIDO2 slot did not open with the PIN after enrolling with alwaysUv on"
	}
	echo "$out"
	opened || die "attached, but the volume does not hold the marker written at format time"
	detach || die "detach failed"
	detail "with alwaysUv on: enrolling asked for the PIN; unlocking with the PIN opens the volume (marker intact)"
}

sc_luks_wrong_pin() {
	if out=$(attach 000000); then
		echo "$out"
		detach
		die "the volume opened with a wrong PIN"
	fi
	echo "$out"
	r=$(pin_retries)
	[ "$r" = 7 ] || die "PIN retries $r after a wrong PIN, want 7"
	out=$(attach "$PIN") || {
		echo "$out"
		die "the right PIN after a wrong one did not open the volume"
	}
	opened || die "the volume does not hold the marker"
	detach || die "detach failed"
	detail "wrong PIN refused (retries 8→$r); the right one opens the volume (retries $(pin_retries))"
}

sc_luks_key_absent() {
	vk_stop TERM || die "virtkey did not stop on SIGTERM"
	"$HT" find -gone -timeout 10s || die "a stale hidraw node after SIGTERM"
	t0=$(now_ms)
	if out=$(PIN=$PIN setsid -w "$CRYPTSETUP" attach "$VOL" "$IMG" - "fido2-device=auto,headless=yes,token-timeout=5s" </dev/null 2>&1); then
		echo "$out"
		detach
		die "the volume opened with no key plugged in"
	fi
	ms=$(($(now_ms) - t0))
	echo "$out"
	vk_start "$STATE"
	out=$(attach "$PIN") || {
		echo "$out"
		die "the volume did not open after the key came back"
	}
	opened || die "the volume does not hold the marker"
	detach || die "detach failed"
	detail "no key: refused after $ms ms (token-timeout=5s); key back: opens"
}

# ---- the key reset: every credential gone, for both ----

sc_key_reset() {
	run "$VK" reset --device "$(dev)" || die "virtkey reset failed"
	# The same PIN again, so only the reset itself differs.
	VIRTKEY_PIN=$PIN run "$VK" pin set --device "$(dev)" || die "virtkey pin set after the reset failed"
	n=$(key_log_lines)
	if out=$(attach "$PIN"); then
		echo "$out"
		detach
		die "the volume opened with a key that was reset"
	fi
	echo "$out"
	key_log_since "$n" | grep -q 'cmd=getAssertion status=NO_CREDENTIALS' ||
		die "LUKS: the key did not answer NO_CREDENTIALS: $(key_log_since "$n" | grep -o 'cmd=[A-Za-z]* status=[A-Z_]*' | tr '\n' ' ')"
	n=$(key_log_lines)
	pam_refused alice || die "alice was let in by a key that was reset"
	key_log_since "$n" | grep -q 'cmd=getAssertion status=NO_CREDENTIALS' ||
		die "PAM: the key did not answer NO_CREDENTIALS: $(key_log_since "$n" | grep -o 'cmd=[A-Za-z]* status=[A-Z_]*' | tr '\n' ' ')"
	# The volume still opens with its key file (recovery).
	run cryptsetup open --key-file "$KEY" "$IMG" "$VOL" 2>&1 || die "the key file no longer opens the volume"
	opened || die "the volume does not hold the marker"
	run cryptsetup close "$VOL" 2>&1
	vk_stop TERM || die "virtkey did not stop on SIGTERM"
	detail "after virtkey reset (and the same PIN set again): LUKS and pam-u2f refused with NO_CREDENTIALS; the key file still opens the volume"
}

main() {
	scenario virtkey-start 45
	scenario pam-register 90
	scenario pam-login 90
	scenario pam-unknown-user 60
	scenario pam-wrong-pin 90
	scenario pam-cred-deleted 90
	scenario pam-key-absent 90
	scenario luks-format 120
	scenario luks-trap 150
	scenario luks-always-uv 150
	scenario luks-wrong-pin 120
	scenario luks-key-absent 120
	scenario key-reset 120
}

dispatch "$@"

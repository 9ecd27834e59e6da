# tpm.sh — the VM harness's TPM group (one boot): a fresh swtpm on the host
# is the guest's TPM 2.0 (qemu's tpm-tis; internal/vmtest starts swtpm and
# attaches it), and `virtkey run --transport uhid --keystore tpm --tpm
# /dev/tpmrm0` keeps its credential keys in it, through the kernel's TPM
# driver and resource manager. libfido2's fido2-tools register and sign
# with PIN and verify both, across a restart of virtkey. See lib.sh for the
# conventions; scenarios build on each other, with their files in $WORK.
SELF=$0
VK_RUN_ARGS="--keystore tpm --tpm /dev/tpmrm0"
. "$(dirname "$0")/lib.sh"

RP=tpm.vktest.example
STATE=/tmp/vk

# ---- the kernel's TPM ----

sc_tpm_device() {
	[ -c /dev/tpmrm0 ] || die "/dev/tpmrm0 missing (TPM devices: $(ls /dev/tpm* 2>&1 | tr '\n' ' ')); kernel: $(dmesg | grep -i tpm | tr '\n' ' ')"
	[ -c /dev/tpm0 ] || die "/dev/tpm0 missing"
	major=$(cat /sys/class/tpm/tpm0/tpm_version_major 2>/dev/null)
	[ "$major" = 2 ] || die "the TPM is not a TPM 2.0 (tpm_version_major=$major)"
	dmesg | grep -i tpm
	# virtkey's own check of the device: it opens /dev/tpmrm0 and creates
	# the storage root key.
	out=$(run "$VK" doctor --keystore tpm --tpm /dev/tpmrm0 --state-dir "$STATE" 2>&1)
	echo "$out"
	echo "$out" | grep -q "^OK .*TPM answers" || die "virtkey doctor: $(echo "$out" | grep -v '^OK' | tr '\n' ' ')"
	detail "$(dmesg | grep -o 'tpm_tis .*2\.0 TPM.*' | head -n 1); $(nproc) vCPU; virtkey doctor: $(echo "$out" | grep -c '^OK') OK"
}

# ---- virtkey with its keys in the TPM ----

sc_virtkey_start() {
	t0=$(now_ms)
	vk_start "$STATE"
	vk_alive || die "virtkey exited"
	grep -q "virtkey serving" "$VKLOGFILE" || die "no 'virtkey serving' line in its log"
	ks=$(grep 'msg="key store"' "$VKLOGFILE" | tail -n 1)
	echo "$ks"
	echo "$ks" | grep -q "keystore=tpm " || die "virtkey did not log the TPM key store: $ks"
	grep -q 'msg="TPM key store created"' "$VKLOGFILE" || die "no 'TPM key store created' line: a fresh state directory should create one"
	[ -s "$STATE/tpm.json" ] || die "no $STATE/tpm.json after the start"
	detail "$(dev) $(($(now_ms) - t0)) ms after start; $(echo "$ks" | grep -o 'algorithms=.*')"
}

sc_fido2_token_info() {
	out=$(run fido2-token -I "$(dev)") || die "fido2-token -I failed: $out"
	echo "$out"
	algs=$(echo "$out" | grep '^algorithms:')
	[ -n "$algs" ] || die "getInfo lists no algorithms"
	echo "$algs" | grep -q "es256" || die "getInfo does not offer ES256: $algs"
	echo "$algs" | grep -qi "eddsa" && die "getInfo offers EdDSA, which --keystore tpm refuses: $algs"
	[ "$(echo "$algs" | grep -o '(public-key)' | wc -l)" = 1 ] || die "getInfo offers more than ES256: $algs"
	# And a makeCredential that asks for EdDSA only is refused. No PIN is
	# set yet, so nothing prompts.
	cred_input "$WORK/eve.in" eve
	if out=$(run fido2-cred -M -i "$WORK/eve.in" -o "$WORK/eve.cred" "$(dev)" eddsa 2>&1); then
		die "fido2-cred -M eddsa succeeded with --keystore tpm"
	fi
	echo "$out"
	echo "$out" | grep -q "FIDO_ERR_UNSUPPORTED_ALGORITHM" || die "EdDSA refused with another error than UNSUPPORTED_ALGORITHM: $out"
	detail "$algs; fido2-cred -M eddsa: FIDO_ERR_UNSUPPORTED_ALGORITHM"
}

sc_fido2_set_pin() {
	pinrun fido2-token -S "$(dev)" || die "fido2-token -S (set PIN) failed"
	out=$(fido2-token -I "$(dev)") || die "fido2-token -I failed after setting the PIN"
	echo "$out" | grep "^options:" | grep -q "[ ,]clientPin" || die "options do not show clientPin after set: $(echo "$out" | grep '^options:')"
	detail "PIN set with fido2-token -S; $(echo "$out" | grep '^pin retries:')"
}

sc_fido2_cred() {
	# alice: ES256, resident, with PIN; verified with fido2-cred -V.
	t0=$(now_ms)
	resident_make alice es256
	ms=$(($(now_ms) - t0))
	resident_verify alice es256
	cat "$WORK/alice.pem"
	grep -q 'cmd=makeCredential status=OK' "$VKLOGFILE" || die "no makeCredential OK in virtkey's log"
	detail "resident es256 credential made in $ms ms (fmt=$(sed -n 3p "$WORK/alice.cred")) and verified (fido2-cred -V)"
}

# assert_alice TAG: an assertion by alice's credential id with UP and UV,
# verified with her public key; prints the time fido2-assert -G took.
assert_alice() {
	assert_input "$WORK/a-$1.in" "$WORK/alice.id"
	_t0=$(now_ms)
	pinrun fido2-assert -G -p -v -i "$WORK/a-$1.in" -o "$WORK/a-$1.out" "$(dev)" >&2 || return 1
	_ms=$(($(now_ms) - _t0))
	run fido2-assert -V -p -v -i "$WORK/a-$1.out" "$WORK/alice.pem" es256 >&2 || return 1
	echo "$_ms"
}

sc_fido2_assert() {
	[ -s "$WORK/alice.id" ] || die "no credential from fido2-cred"
	ms=$(assert_alice first) || die "fido2-assert -G/-V with alice's credential id failed"
	# Discoverable: no credential id, the key finds alice's resident key.
	assert_input "$WORK/assert-r.in"
	pinrun fido2-assert -G -r -p -v -i "$WORK/assert-r.in" -o "$WORK/assert-r.out" "$(dev)" ||
		die "fido2-assert -G -r failed"
	[ "$(wc -l <"$WORK/assert-r.out")" = 5 ] || die "fido2-assert -G -r returned $(($(wc -l <"$WORK/assert-r.out") / 5)) assertions, want 1"
	[ "$(sed -n 5p "$WORK/assert-r.out")" = "$(cat "$WORK/alice.uid")" ] || die "the discoverable assertion is not alice's"
	head -n 4 "$WORK/assert-r.out" >"$WORK/assert-r.1"
	run fido2-assert -V -p -v -i "$WORK/assert-r.1" "$WORK/alice.pem" es256 ||
		die "the discoverable assertion does not verify"
	detail "assertion by credential id (UP, UV) in $ms ms and a discoverable one, both verified (fido2-assert -V)"
}

sc_restart() {
	# The sealed master key and the TPM-held credential key survive
	# virtkey's process: SIGTERM, start again on the same state.
	vk_stop TERM || die "virtkey did not stop on SIGTERM"
	"$HT" find -gone -timeout 10s || die "a stale hidraw node after SIGTERM"
	t0=$(now_ms)
	vk_start "$STATE"
	up=$(($(now_ms) - t0))
	grep -q 'msg="TPM key store ready"' "$VKLOGFILE" || die "no 'TPM key store ready' line after the restart"
	ms=$(assert_alice restart) || die "alice's assertion fails after restarting virtkey"
	out=$(fido2-token -I "$(dev)") || die "fido2-token -I after the restart"
	echo "$out" | grep -q '^pin retries: 8' || die "PIN retries changed: $(echo "$out" | grep '^pin retries')"
	# And after SIGKILL (no clean shutdown).
	vk_stop KILL || die "virtkey did not die on SIGKILL"
	"$HT" find -gone -timeout 10s || die "a stale hidraw node after SIGKILL"
	vk_start "$STATE"
	assert_alice kill >/dev/null || die "alice's assertion fails after SIGKILL and a restart"
	detail "restarted (SIGTERM) in $up ms: alice's assertion verifies ($ms ms), PIN retries 8; again after SIGKILL"
}

sc_state_dir() {
	ls -la "$STATE"
	[ -s "$STATE/tpm.json" ] || die "no tpm.json in $STATE"
	[ -e "$STATE/master.key" ] && die "$STATE holds master.key: the software key store's key file"
	# Nothing in the state directory is readable by others.
	bad=$(find "$STATE" -perm /077 ! -type l)
	[ -z "$bad" ] || die "group/other-accessible: $bad"
	vk_stop TERM || die "virtkey did not stop on SIGTERM"
	"$HT" find -gone -timeout 10s || die "a stale hidraw node after SIGTERM"
	# (--presence auto warns at every start, as it should.)
	grep -E 'level=(ERROR|WARN)' "$VKLOGFILE" | grep -v 'msg="presence: auto-approving' &&
		die "virtkey logged errors or warnings (above)"
	detail "$STATE: $(ls "$STATE" | tr '\n' ' ')— tpm.json, no master.key, mode 0700/0600; no ERROR or WARN in virtkey's log"
}

main() {
	scenario tpm-device 40
	scenario virtkey-start 45
	scenario fido2-token-info 45
	scenario fido2-set-pin 60
	scenario fido2-cred 90
	scenario fido2-assert 90
	scenario restart 120
	scenario state-dir 30
}

dispatch "$@"

# tools.sh — the VM harness's main group (one boot): the kernel path,
# libfido2's fido2-tools, OpenSSH, virtkey's own CLI over hidraw, and
# robustness, all against `virtkey run --transport uhid` on the guest's
# /dev/uhid. Run by testdata/vm/init as `sh /vkshare/testdata/vm/tools.sh`;
# see lib.sh for the conventions. Scenarios run in order and build on each
# other (the PIN, the credentials), with their files in $WORK.
SELF=$0
. "$(dirname "$0")/lib.sh"

RP=vktest.example

# ---- the kernel path, without virtkey's transport ----

sc_sanity() {
	[ -c /dev/uhid ] || die "/dev/uhid missing"
	for m in hid uhid hid_generic 9p overlay; do
		[ -d /sys/module/$m ] || die "module $m not loaded"
	done
	out=$("$HT" uhidprobe) || die "uhid probe: $out"
	echo "$out"
	detail "kernel $(uname -r), $(nproc) vCPUs; hidtool uhidprobe: $out"
}

# ---- virtkey on /dev/uhid ----

sc_virtkey_start() {
	t0=$(now_ms)
	vk_start /tmp/vk
	vk_alive || die "virtkey exited"
	grep -q "virtkey serving" "$VKLOGFILE" || die "no 'virtkey serving' line in its log"
	detail "$(dev) appeared $(($(now_ms) - t0)) ms after start;" \
		"$(tr '\n' ' ' </sys/class/hidraw/"$(basename "$(dev)")"/device/uevent | grep -o 'HID_ID=[^ ]*')"
}

# ---- libfido2 (fido2-tools) ----

sc_fido2_token_list() {
	out=$(run fido2-token -L) || die "fido2-token -L failed: $out"
	echo "$out"
	echo "$out" | grep -q "^$(dev): vendor=0x1209, product=0x7664" ||
		die "fido2-token -L does not list $(dev) with vendor 0x1209 product 0x7664: $out"
	detail "$(echo "$out" | grep "^$(dev)")"
}

sc_fido2_token_info() {
	out=$(run fido2-token -I "$(dev)") || die "fido2-token -I failed: $out"
	echo "$out"
	echo "$out" | grep -q "^version strings: .*FIDO_2_0" || die "no FIDO_2_0 in the version strings"
	echo "$out" | grep -q "^aaguid: " || die "no aaguid"
	echo "$out" | grep -q "^options: .*rk" || die "no rk option"
	detail "$(echo "$out" | grep '^version strings')"
}

sc_fido2_set_pin() {
	pinrun fido2-token -S "$(dev)" || die "fido2-token -S (set PIN) failed"
	out=$(fido2-token -I "$(dev)") || die "fido2-token -I failed after setting the PIN"
	echo "$out"
	echo "$out" | grep "^options:" | grep -q "[ ,]clientPin" || die "options do not show clientPin after set: $(echo "$out" | grep '^options:')"
	retries=$(echo "$out" | grep '^pin retries:')
	detail "PIN set with fido2-token -S; $retries"
}

sc_fido2_cred() {
	# alice: ES256, resident, with PIN/UV; verified with fido2-cred -V.
	resident_make alice es256
	resident_verify alice es256
	# bob: EdDSA, resident; deleted later.
	resident_make bob eddsa
	resident_verify bob eddsa
	detail "2 resident credentials made and verified (es256 fmt=$(sed -n 3p "$WORK/alice.cred"), eddsa fmt=$(sed -n 3p "$WORK/bob.cred"))"
}

sc_fido2_assert() {
	[ -s "$WORK/alice.id" ] || die "no credential from fido2-cred"
	# With a credential id: alice's key, UP and UV.
	assert_input "$WORK/assert.in" "$WORK/alice.id"
	pinrun fido2-assert -G -p -v -i "$WORK/assert.in" -o "$WORK/assert.out" "$(dev)" ||
		die "fido2-assert -G failed"
	run fido2-assert -V -p -v -i "$WORK/assert.out" "$WORK/alice.pem" es256 ||
		die "fido2-assert -V rejected the assertion"
	# Discoverable (-r): one assertion per resident credential, each
	# verified with its own key, picked by user id.
	assert_input "$WORK/assert-r.in"
	pinrun fido2-assert -G -r -p -v -i "$WORK/assert-r.in" -o "$WORK/assert-r.out" "$(dev)" ||
		die "fido2-assert -G -r failed"
	n=$(($(wc -l <"$WORK/assert-r.out") / 5))
	[ "$n" = 2 ] || die "fido2-assert -G -r returned $n assertions, want 2"
	i=0
	while [ $i -lt "$n" ]; do
		sed -n "$((i * 5 + 1)),$((i * 5 + 4))p" "$WORK/assert-r.out" >"$WORK/assert-r.$i"
		uid=$(sed -n "$((i * 5 + 5))p" "$WORK/assert-r.out")
		if [ "$uid" = "$(cat "$WORK/alice.uid")" ]; then
			run fido2-assert -V -p -v -i "$WORK/assert-r.$i" "$WORK/alice.pem" es256 || die "alice's discoverable assertion does not verify"
		elif [ "$uid" = "$(cat "$WORK/bob.uid")" ]; then
			run fido2-assert -V -p -v -i "$WORK/assert-r.$i" "$WORK/bob.pem" eddsa || die "bob's discoverable assertion does not verify"
		else
			die "assertion $i has an unknown user id $uid"
		fi
		i=$((i + 1))
	done
	detail "assertion by credential id verified (UP, UV); discoverable -r gave $n assertions, each verified"
}

sc_fido2_token_list_creds() {
	out=$(pinrun fido2-token -L -r "$(dev)") || die "fido2-token -L -r failed: $out"
	echo "$out" | grep -q " $RP\$" || die "fido2-token -L -r does not list $RP"
	rps=$(echo "$out" | grep -c '^[0-9][0-9]: ')
	out=$(pinrun fido2-token -L -k "$RP" "$(dev)") || die "fido2-token -L -k $RP failed: $out"
	echo "$out" | grep -qF "$(cat "$WORK/alice.id")" || die "alice's credential is not listed"
	echo "$out" | grep -qF "$(cat "$WORK/bob.id")" || die "bob's credential is not listed"
	detail "fido2-token -L -r: $rps RP(s) incl. $RP; -L -k: $(echo "$out" | grep -c '^[0-9][0-9]: ') credentials incl. alice and bob"
}

sc_fido2_token_update_user() {
	pinrun fido2-token -S -c -i "$(cat "$WORK/alice.id")" -k "$(cat "$WORK/alice.uid")" \
		-n alice2 -p "Alice Renamed" "$(dev)" || die "fido2-token -S -c failed"
	out=$(pinrun fido2-token -L -k "$RP" "$(dev)") || die "fido2-token -L -k failed: $out"
	# fido2-token -L -k shows the display name; virtkey-cli-creds checks the name.
	echo "$out" | grep -F "$(cat "$WORK/alice.id")" | grep -q "Alice Renamed" || die "the user did not change (see the log)"
	detail "alice renamed to alice2 / \"Alice Renamed\" (fido2-token -S -c), seen in -L -k"
}

sc_fido2_token_delete() {
	pinrun fido2-token -D -i "$(cat "$WORK/bob.id")" "$(dev)" || die "fido2-token -D -i failed"
	out=$(pinrun fido2-token -L -k "$RP" "$(dev)") || die "fido2-token -L -k failed: $out"
	echo "$out" | grep -qF "$(cat "$WORK/bob.id")" && die "bob's credential is still listed"
	echo "$out" | grep -qF "$(cat "$WORK/alice.id")" || die "alice's credential went too"
	detail "bob's credential deleted (fido2-token -D -i); alice's kept"
}

# ---- OpenSSH ----

sc_ssh_ed25519_sk_resident() {
	rm -f "$WORK/id_ed25519_sk" "$WORK/id_ed25519_sk.pub"
	pinrun ssh-keygen -q -t ed25519-sk -O resident -O application=ssh:vktest -N '' \
		-C vk-ed25519 -f "$WORK/id_ed25519_sk" || die "ssh-keygen -t ed25519-sk -O resident failed"
	[ -s "$WORK/id_ed25519_sk.pub" ] || die "no public key file"
	grep -q '^sk-ssh-ed25519@openssh.com ' "$WORK/id_ed25519_sk.pub" || die "unexpected key type: $(cat "$WORK/id_ed25519_sk.pub")"
	detail "$(cut -c1-60 "$WORK/id_ed25519_sk.pub")…"
}

sc_ssh_ecdsa_sk() {
	rm -f "$WORK/id_ecdsa_sk" "$WORK/id_ecdsa_sk.pub"
	pinrun ssh-keygen -q -t ecdsa-sk -N '' -C vk-ecdsa -f "$WORK/id_ecdsa_sk" || die "ssh-keygen -t ecdsa-sk failed"
	grep -q '^sk-ecdsa-sha2-nistp256@openssh.com ' "$WORK/id_ecdsa_sk.pub" || die "unexpected key: $(cat "$WORK/id_ecdsa_sk.pub")"
	detail "$(cut -c1-60 "$WORK/id_ecdsa_sk.pub")…"
}

sc_ssh_sign_verify() {
	echo "virtkey signs this $(date +%s%N)" >"$WORK/data"
	: >"$WORK/allowed_signers"
	for k in id_ed25519_sk id_ecdsa_sk; do
		[ -s "$WORK/$k" ] || die "no $k from the keygen scenario"
		rm -f "$WORK/data.sig"
		pinrun ssh-keygen -Y sign -f "$WORK/$k" -n file "$WORK/data" || die "ssh-keygen -Y sign with $k failed"
		[ -s "$WORK/data.sig" ] || die "no signature from $k"
		mv "$WORK/data.sig" "$WORK/data.$k.sig"
		echo "vk-$k@test namespaces=\"file\" $(cut -d' ' -f1,2 "$WORK/$k.pub")" >>"$WORK/allowed_signers"
	done
	for k in id_ed25519_sk id_ecdsa_sk; do
		run ssh-keygen -Y verify -f "$WORK/allowed_signers" -I "vk-$k@test" -n file \
			-s "$WORK/data.$k.sig" <"$WORK/data" || die "ssh-keygen -Y verify rejected the $k signature"
	done
	# And a tampered message must not verify.
	echo tampered >>"$WORK/data"
	if ssh-keygen -Y verify -f "$WORK/allowed_signers" -I vk-id_ed25519_sk@test -n file \
		-s "$WORK/data.id_ed25519_sk.sig" <"$WORK/data"; then
		die "a tampered message verified"
	fi
	detail "ed25519-sk and ecdsa-sk signatures made (-Y sign) and verified (-Y verify); a tampered message rejected"
}

sc_ssh_keygen_K() {
	rm -rf "$WORK/K" && mkdir -p "$WORK/K" && cd "$WORK/K" || die "mkdir"
	pinrun ssh-keygen -K -N '' || die "ssh-keygen -K failed"
	ls -la
	f=$(ls id_ed25519_sk_rk_vktest.pub 2>/dev/null) || die "ssh-keygen -K did not download ssh:vktest: $(ls)"
	[ "$(cut -d' ' -f2 "$f")" = "$(cut -d' ' -f2 "$WORK/id_ed25519_sk.pub")" ] ||
		die "the downloaded key differs from the generated one"
	detail "ssh-keygen -K downloaded $(ls ./*.pub | wc -l) resident key(s); ssh:vktest matches the generated ed25519-sk key"
}

# ---- virtkey's own CLI over hidraw ----

sc_virtkey_cli_info() {
	out=$(run "$VK" --device "$(dev)" info) || die "virtkey info failed: $out"
	echo "$out"
	echo "$out" | grep -q "FIDO_2" || die "no FIDO_2 versions in virtkey info"
	echo "$out" | grep -q "^PIN: *set" || die "virtkey info does not show the PIN as set"
	detail "virtkey --device $(dev) info: $(echo "$out" | grep -E '^(Versions|PIN):' | tr -s ' ' | tr '\n' ';')"
}

sc_virtkey_cli_creds() {
	out=$(VIRTKEY_PIN=$PIN run "$VK" --device "$(dev)" creds list) || die "virtkey creds list failed: $out"
	echo "$out"
	echo "$out" | grep "$RP" | grep -q alice2 || die "alice2 at $RP not listed"
	echo "$out" | grep -q "ssh:vktest" || die "the ssh:vktest resident key is not listed"
	echo "$out" | grep -q "bob" && die "bob (deleted) is listed"
	detail "virtkey creds list over hidraw: $(echo "$out" | tail -n 1)"
}

# ---- robustness ----

# wait_ping waits up to 15 s for the key to answer INIT+PING+getInfo.
wait_ping() {
	_t0=$(now_ms)
	while :; do
		if _o=$("$HT" ping -dev "$(dev)" -timeout 3s 2>&1); then
			echo "$_o"
			echo "answered after $(($(now_ms) - _t0)) ms"
			return 0
		fi
		[ $(($(now_ms) - _t0)) -gt 15000 ] && {
			echo "$_o"
			return 1
		}
		sleep 0.2
	done
}

# assert_alice: an assertion with alice's credential, verified.
assert_alice() {
	assert_input "$WORK/a.in" "$WORK/alice.id"
	pinrun fido2-assert -G -p -v -i "$WORK/a.in" -o "$WORK/a.out" "$(dev)" || return 1
	run fido2-assert -V -p -v -i "$WORK/a.out" "$WORK/alice.pem" es256
}

sc_client_killed() {
	# 1. A client that dies in the middle of a CTAPHID message.
	"$HT" partial -dev "$(dev)" -hold 60s >"$WORK/partial.out" 2>&1 &
	p=$!
	i=0
	until grep -q PARTIAL "$WORK/partial.out"; do
		i=$((i + 1))
		[ $i -gt 100 ] && die "hidtool partial did not start: $(cat "$WORK/partial.out")"
		sleep 0.1
	done
	cat "$WORK/partial.out"
	kill -9 $p
	wait $p 2>/dev/null
	wait_ping || die "the key does not answer after a client died mid-message"
	# 2. fido2-token killed at random points of its requests.
	for d in 0.05 0.1 0.2 0.3 0.5 0.05 0.15 0.25; do
		fido2-token -I "$(dev)" >/dev/null 2>&1 &
		p=$!
		sleep $d
		kill -9 $p 2>/dev/null
		wait $p 2>/dev/null
	done
	for d in 0.1 0.3 0.6; do
		"$HT" expect -pin "$PIN" -timeout 20s -- fido2-token -L -k "$RP" "$(dev)" >/dev/null 2>&1 &
		p=$!
		sleep $d
		pkill -9 -P $p 2>/dev/null
		kill -9 $p 2>/dev/null
		wait $p 2>/dev/null
	done
	vk_alive || die "virtkey died"
	# A client killed between the packets of a message leaves the key busy
	# on that channel until its message timeout: wait for it.
	wait_ping || die "the key does not answer after the killed clients"
	run fido2-token -I "$(dev)" >/dev/null || die "fido2-token -I fails after the killed clients"
	assert_alice || die "an assertion fails after the killed clients"
	detail "a client killed mid-message and 11 fido2-token runs killed mid-request; the key answers and alice's assertion verifies"
}

sc_garbage_reports() {
	out=$("$HT" garbage -dev "$(dev)" -n 400 2>&1) || die "hidtool garbage: $out"
	echo "$out"
	# Raw writes with random report numbers and lengths.
	dd if=/dev/urandom of="$(dev)" bs=65 count=40 2>&1 | tail -n 1
	dd if=/dev/urandom of="$(dev)" bs=13 count=20 2>&1 | tail -n 1
	dd if=/dev/urandom of="$(dev)" bs=200 count=10 2>&1 | tail -n 1
	vk_alive || die "virtkey died"
	wait_ping || die "the key does not answer after the garbage"
	assert_alice || die "an assertion fails after the garbage"
	detail "$(echo "$out" | grep '^wrote') + 70 raw dd writes; the key answers and alice's assertion verifies"
}

sc_device_recreated() {
	old=$(dev)
	# 1. A request waiting (a partly sent message) when the device goes.
	"$HT" partial -dev "$old" -hold 40s >"$WORK/partial2.out" 2>&1 &
	p=$!
	i=0
	until grep -q PARTIAL "$WORK/partial2.out"; do
		i=$((i + 1))
		[ $i -gt 100 ] && die "hidtool partial did not start"
		sleep 0.1
	done
	t0=$(now_ms)
	run kill -USR1 "$(vk_pid)"
	i=0
	while kill -0 $p 2>/dev/null; do
		i=$((i + 1))
		[ $i -gt 150 ] && {
			kill -9 $p
			die "the waiting client hung for 15 s after the device was re-created: $(cat "$WORK/partial2.out")"
		}
		sleep 0.1
	done
	cat "$WORK/partial2.out"
	waited=$(($(now_ms) - t0))
	how=$(tail -n 1 "$WORK/partial2.out")
	new=$("$HT" find -timeout 20s) || die "no hidraw node after the re-creation"
	echo "$new" >"$WORK/dev"
	echo "device $old -> $new"
	# 2. Requests in flight while the device is re-created twice.
	: >"$WORK/inflight.rc"
	for n in 1 2 3 4; do
		(
			"$HT" expect -pin "$PIN" -timeout 30s -- fido2-assert -G -p -v -i "$WORK/assert.in" "$(dev)" >/dev/null 2>&1
			echo "assert$n rc=$?" >>"$WORK/inflight.rc"
		) &
	done
	sleep 0.5
	kill -USR1 "$(vk_pid)"
	sleep 1
	kill -USR1 "$(vk_pid)"
	wait
	cat "$WORK/inflight.rc"
	grep -q "rc=124" "$WORK/inflight.rc" && die "a client hung while the device was re-created: $(tr '\n' ' ' <"$WORK/inflight.rc")"
	vk_alive || die "virtkey died"
	new=$("$HT" find -timeout 20s) || die "no hidraw node after the re-creations"
	echo "$new" >"$WORK/dev"
	wait_ping || die "the key does not answer after the re-creations"
	assert_alice || die "an assertion fails after the re-creations (state lost?)"
	detail "a waiting client returned ${waited} ms after SIGUSR1 ($how); 4 clients in flight over 2 more re-creations all returned ($(grep -c 'rc=0' "$WORK/inflight.rc") succeeded); node $old -> $new; alice's assertion verifies"
}

# count_goroutines LOG: goroutines in the last SIGQUIT dump of LOG.
count_goroutines() {
	awk '/^SIGQUIT: quit/ { n = 0; dump = 1 } dump && /^goroutine [1-9][0-9]* .*\[/ { n++ } END { print n + 0 }' "$1"
}

sc_goroutines() {
	# The long-lived key, after everything above...
	vk_stop QUIT || die "virtkey did not exit on SIGQUIT"
	used=$(count_goroutines "$VKLOGFILE")
	"$HT" find -gone -timeout 10s || die "the hidraw node outlived the process"
	# ...against a fresh key that answered one request.
	vk_start /tmp/vk-fresh "$LOGS/virtkey-fresh.log"
	wait_ping || die "the fresh key does not answer"
	fido2-token -I "$(dev)" >/dev/null || die "fido2-token -I on the fresh key"
	vk_stop QUIT || die "the fresh virtkey did not exit on SIGQUIT"
	fresh=$(count_goroutines "$LOGS/virtkey-fresh.log")
	"$HT" find -gone -timeout 10s || die "the fresh key's hidraw node outlived the process"
	echo "goroutines: after all scenarios $used, fresh $fresh"
	[ "$used" -gt 0 ] && [ "$fresh" -gt 0 ] || die "no goroutine dump (used=$used fresh=$fresh)"
	[ "$used" -le $((fresh + 3)) ] || {
		awk '/^SIGQUIT: quit/ { dump = 1 } dump' "$VKLOGFILE" | grep -A 12 '^goroutine [1-9][0-9]* ' | head -n 200
		die "goroutine leak: $used goroutines after all scenarios, $fresh in a fresh key"
	}
	detail "$used goroutines after all scenarios vs $fresh in a fresh key (SIGQUIT dumps); no stale hidraw node after either exit"
}

sc_restart_state() {
	# The key's state survives its process: restart on the same state dir
	# (the previous one ended by SIGQUIT, a crash), then SIGKILL and again.
	vk_start /tmp/vk
	assert_alice || die "alice's assertion fails after a restart"
	vk_stop KILL || die "virtkey did not die on SIGKILL"
	"$HT" find -gone -timeout 10s || die "a stale hidraw node after SIGKILL"
	vk_start /tmp/vk
	assert_alice || die "alice's assertion fails after SIGKILL and a restart"
	out=$(fido2-token -I "$(dev)") || die "fido2-token -I"
	echo "$out" | grep '^pin retries:'
	echo "$out" | grep -q '^pin retries: 8' || die "PIN retries changed: $(echo "$out" | grep '^pin retries')"
	out=$(pinrun fido2-token -L -k "$RP" "$(dev)") || die "fido2-token -L -k"
	echo "$out" | grep -q "Alice Renamed" || die "the renamed user is gone"
	vk_stop TERM || die "virtkey did not stop on SIGTERM"
	"$HT" find -gone -timeout 10s || die "a stale hidraw node after SIGTERM"
	detail "restarted after SIGQUIT and SIGKILL on the same state: alice2's credential, the PIN and 8 retries intact; no stale device after SIGKILL or SIGTERM"
}

main() {
	scenario sanity 40
	scenario virtkey-start 45
	scenario fido2-token-list 30
	scenario fido2-token-info 30
	scenario fido2-set-pin 60
	scenario fido2-cred 90
	scenario fido2-assert 90
	scenario fido2-token-list-creds 60
	scenario fido2-token-update-user 60
	scenario fido2-token-delete 60
	scenario ssh-ed25519-sk-resident 60
	scenario ssh-ecdsa-sk 60
	scenario ssh-sign-verify 90
	scenario ssh-keygen-K 60
	scenario virtkey-cli-info 30
	scenario virtkey-cli-creds 45
	scenario client-killed 120
	scenario garbage-reports 90
	scenario device-recreated 120
	scenario goroutines 90
	scenario restart-state 120
}

dispatch "$@"

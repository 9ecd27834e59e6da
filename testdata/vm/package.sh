# package.sh — the VM harness's package group (one boot): virtkey's .deb,
# built on the host by scripts/package.sh into /vkshare/dist, is installed
# with dpkg -i into the guest (whose root is the host's, read-only, under a
# tmpfs overlay: the installation lands in the overlay) while no udev and
# no systemd run — as in a container or an image build. Then the guest
# starts the host's systemd-udevd so the packaged rule gives /dev/uhid to
# the group virtkey, and a non-root member of that group runs the
# installed /usr/bin/virtkey on /dev/uhid and uses it with libfido2's
# tools and virtkey's CLI. See lib.sh for the conventions; scenarios build
# on each other.
SELF=$0
. "$(dirname "$0")/lib.sh"

USR=vkuser
UHOME=/tmp/vkuser
STATE=$UHOME/state
RP=package.vktest.example
VKBIN=/usr/bin/virtkey
UDEVD=/lib/systemd/systemd-udevd
# The guest's root is a chroot (testdata/vm/init): without this udevadm
# ignores trigger and settle ("Running in chroot, ignoring request").
export SYSTEMD_IGNORE_CHROOT=1

# as_user CMD...: run CMD as $USR with its groups (virtkey), as a login
# would give them.
as_user() {
	setpriv --reuid="$USR" --regid="$USR" --init-groups \
		env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$UHOME" USER="$USR" LOGNAME="$USR" TERM=dumb "$@"
}

deb() { ls /vkshare/dist/virtkey_*.deb 2>/dev/null | head -n 1; }

# dpkg_logged ARGS...: dpkg, its output lines stamped with the seconds
# since it started (dpkg reads its database of the host's packages over
# 9p, and the man-db trigger runs: both are slow under TCG).
dpkg_logged() {
	echo "+ dpkg $*"
	_t0=$(now_ms)
	dpkg "$@" >"$WORK/dpkg.out" 2>&1 &
	_p=$!
	_seen=0
	while kill -0 $_p 2>/dev/null; do
		sleep 1
		_n=$(wc -l <"$WORK/dpkg.out")
		if [ "$_n" -gt "$_seen" ]; then
			sed -n "$((_seen + 1)),${_n}p" "$WORK/dpkg.out" | sed "s/^/[$(($(now_ms) - _t0)) ms] /"
			_seen=$_n
		fi
	done
	wait $_p
	_rc=$?
	sed -n "$((_seen + 1)),\$p" "$WORK/dpkg.out" | sed "s/^/[$(($(now_ms) - _t0)) ms] /"
	echo "dpkg exit $_rc after $(($(now_ms) - _t0)) ms"
	return $_rc
}

# node_perm FILE: "user:group mode" of a device node.
node_perm() { stat -c '%U:%G %a' "$1"; }

# ---- the installation ----

sc_install() {
	pkg=$(deb)
	[ -n "$pkg" ] || die "no virtkey_*.deb in /vkshare/dist: $(ls /vkshare/dist 2>&1 | tr '\n' ' ')"
	# What a container or image build has: no running udev or systemd.
	[ -S /run/udev/control ] && die "udev already runs"
	[ -d /run/systemd/system ] && die "systemd runs as init"
	pgrep -x systemd-udevd >/dev/null && die "systemd-udevd already runs"
	getent group virtkey && die "the group virtkey exists before the installation"
	before=$(node_perm /dev/uhid)
	# man-db's trigger would rebuild the index of every man page on the
	# host, over 9p under TCG: more than 6 minutes. Switched off here as
	# image builds do (man-db/auto-update false); man finds the page
	# without the index.
	rm -f /var/lib/man-db/auto-update
	t0=$(now_ms)
	dpkg_logged -i "$pkg" || die "dpkg -i failed (above)"
	ms=$(($(now_ms) - t0))
	[ "$(dpkg-query -W -f='${Status}' virtkey)" = "install ok installed" ] ||
		die "dpkg says: $(dpkg-query -W -f='${Status}' virtkey)"
	gid=$(getent group virtkey | cut -d: -f3)
	[ -n "$gid" ] || die "postinst did not create the group virtkey"
	[ "$gid" -lt 1000 ] || die "the group virtkey has gid $gid: not a system group"
	for f in $VKBIN /usr/lib/udev/rules.d/70-virtkey-uhid.rules /usr/lib/systemd/user/virtkey.service \
		/usr/lib/modules-load.d/virtkey.conf /usr/share/man/man1/virtkey.1.gz \
		/usr/share/bash-completion/completions/virtkey /usr/share/zsh/vendor-completions/_virtkey \
		/usr/share/fish/vendor_completions.d/virtkey.fish; do
		[ -s "$f" ] || die "$f is missing"
	done
	grep -q '^ExecStart=/usr/bin/virtkey ' /usr/lib/systemd/user/virtkey.service ||
		die "the packaged unit does not run /usr/bin/virtkey: $(grep ExecStart /usr/lib/systemd/user/virtkey.service)"
	# Without udev nothing changed /dev/uhid yet.
	[ "$(node_perm /dev/uhid)" = "$before" ] || die "/dev/uhid changed without udev: $before -> $(node_perm /dev/uhid)"
	ver=$("$VKBIN" version | head -n 1)
	detail "dpkg -i $(basename "$pkg") in $ms ms with no udev/systemd running: group virtkey (gid $gid) created;" \
		"/dev/uhid still $before; $ver"
}

sc_user() {
	run useradd --create-home --home-dir "$UHOME" --groups virtkey --shell /bin/sh "$USR" || die "useradd failed"
	id "$USR"
	id -nG "$USR" | grep -qw virtkey || die "$USR is not in the group virtkey"
	# Before udev applies the rule the user cannot create the key, and
	# both doctor and run say why.
	out=$(as_user "$VKBIN" doctor --presence auto --state-dir "$STATE" 2>&1) && die "doctor found no problem: $out"
	echo "$out"
	echo "$out" | grep -q '^PROBLEM  /dev/uhid cannot be opened for reading and writing by user vkuser' ||
		die "doctor does not name /dev/uhid: $out"
	out=$(as_user "$VKBIN" run --presence auto --state-dir "$STATE" 2>&1)
	rc=$?
	echo "$out"
	[ $rc = 1 ] || die "virtkey run as $USR without access to /dev/uhid: exit $rc, want 1"
	echo "$out" | grep -q "udev" || die "run's error does not point at the udev rule: $out"
	[ -e "$STATE" ] && die "the refused run created $STATE"
	detail "$USR ($(id -nG "$USR" | tr ' ' ,)); before udev: doctor and run (exit $rc) say /dev/uhid ($(node_perm /dev/uhid)) is not theirs"
}

# ---- udev applies the packaged rule ----

sc_udev() {
	[ -x "$UDEVD" ] || die "$UDEVD missing (Debian package udev on the host)"
	# The hidraw rule for sessions without a seat, commented out in the
	# packaged file, enabled as README says (a local rule).
	mkdir -p /etc/udev/rules.d
	sed -n 's/^#\(SUBSYSTEM=="hidraw".*\)$/\1/p' /usr/lib/udev/rules.d/70-virtkey-uhid.rules >/etc/udev/rules.d/71-virtkey-hidraw.rules
	cat /etc/udev/rules.d/71-virtkey-hidraw.rules
	grep -q 'GROUP="virtkey"' /etc/udev/rules.d/71-virtkey-hidraw.rules || die "no commented hidraw rule in the packaged rule file"
	t0=$(now_ms)
	run "$UDEVD" --daemon || die "systemd-udevd --daemon failed"
	i=0
	until [ -S /run/udev/control ]; do
		i=$((i + 1))
		[ $i -gt 100 ] && die "systemd-udevd did not open its control socket"
		sleep 0.1
	done
	run udevadm trigger --action=add --subsystem-match=misc --subsystem-match=hidraw || die "udevadm trigger failed"
	run udevadm settle --timeout=60 || die "udevadm settle timed out"
	perm=$(node_perm /dev/uhid)
	[ "$perm" = "root:virtkey 660" ] || die "/dev/uhid is $perm after udev, want root:virtkey 660"
	# Reinstalling with udev running takes postinst's other branch: it
	# reloads the rules.
	dpkg_logged -i "$(deb)" || die "dpkg -i (udev running) failed (above)"
	detail "systemd-udevd up, trigger+settle in $(($(now_ms) - t0)) ms: /dev/uhid $perm; reinstall with udev running: ok"
}

# ---- the key, run by a member of the group ----

sc_virtkey_start() {
	out=$(as_user "$VKBIN" doctor --presence auto --state-dir "$STATE" 2>&1) || die "doctor as $USR: $out"
	echo "$out"
	t0=$(now_ms)
	# The log file is opened here (root), the key runs as the user.
	GOTRACEBACK=all setsid sh -c 'echo $$ >"$0"; exec "$@"' "$WORK/virtkey.pid" \
		setpriv --reuid="$USR" --regid="$USR" --init-groups \
		env -i PATH=/usr/bin:/bin HOME="$UHOME" USER="$USR" \
		"$VKBIN" run --transport uhid --presence auto --reset-window 0 --state-dir "$STATE" --log-level debug \
		>>"$VKLOGFILE" 2>&1 </dev/null &
	node=$("$HT" find -timeout 30s) || {
		tail -n 30 "$VKLOGFILE"
		die "no hidraw node for virtkey within 30 s"
	}
	echo "$node" >"$WORK/dev"
	udevadm settle --timeout=30
	owner=$(ps -o user= -p "$(vk_pid)")
	[ "$owner" = "$USR" ] || die "virtkey runs as $owner, want $USR"
	perm=$(node_perm "$node")
	[ "$perm" = "root:virtkey 660" ] || die "$node is $perm, want root:virtkey 660 (the hidraw rule)"
	ls -la "$STATE"
	[ "$(stat -c %U "$STATE")" = "$USR" ] || die "$STATE does not belong to $USR"
	detail "doctor OK as $USR; /usr/bin/virtkey run as $USR: $node ($perm) after $(($(now_ms) - t0)) ms"
}

sc_fido2_token() {
	out=$(as_user fido2-token -L 2>&1) || die "fido2-token -L as $USR failed: $out"
	echo "$out"
	echo "$out" | grep -q "^$(dev): vendor=0x1209, product=0x7664" || die "fido2-token -L as $USR does not list $(dev): $out"
	out=$(as_user fido2-token -I "$(dev)" 2>&1) || die "fido2-token -I as $USR failed: $out"
	echo "$out"
	echo "$out" | grep -q "^version strings: .*FIDO_2_0" || die "no FIDO_2_0 in fido2-token -I"
	detail "as $USR: fido2-token -L lists $(dev); -I: $(echo "$out" | grep '^version strings')"
}

sc_fido2_cred() {
	cred_input "$WORK/carol.in" carol
	chmod 0644 "$WORK/carol.in"
	mkdir -p "$WORK/u" && chown "$USR" "$WORK/u"
	as_user fido2-cred -M -r -i "$WORK/carol.in" -o "$WORK/u/carol.cred" "$(dev)" es256 ||
		die "fido2-cred -M as $USR failed"
	as_user fido2-cred -V -i "$WORK/u/carol.cred" -o "$WORK/u/carol.pub" es256 ||
		die "fido2-cred -V rejected the credential"
	head -n 1 "$WORK/u/carol.pub" >"$WORK/u/carol.id"
	tail -n +2 "$WORK/u/carol.pub" >"$WORK/u/carol.pem"
	assert_input "$WORK/u/a.in" "$WORK/u/carol.id"
	as_user fido2-assert -G -p -i "$WORK/u/a.in" -o "$WORK/u/a.out" "$(dev)" || die "fido2-assert -G as $USR failed"
	as_user fido2-assert -V -p -i "$WORK/u/a.out" "$WORK/u/carol.pem" es256 || die "the assertion does not verify"
	detail "as $USR: a resident es256 credential (fido2-cred -M -r, verified with -V) and an assertion (fido2-assert -G, verified with -V)"
}

sc_virtkey_cli() {
	out=$(as_user "$VKBIN" --device "$(dev)" info 2>&1) || die "virtkey info as $USR failed: $out"
	echo "$out"
	echo "$out" | grep -q "FIDO_2" || die "no FIDO_2 in virtkey info"
	out=$(as_user env VIRTKEY_PIN=24680 "$VKBIN" --device "$(dev)" pin set 2>&1) || die "virtkey pin set as $USR: $out"
	out=$(as_user env VIRTKEY_PIN=24680 "$VKBIN" --device "$(dev)" creds list 2>&1) || die "virtkey creds list as $USR: $out"
	echo "$out"
	echo "$out" | grep -q "$RP" || die "carol's credential at $RP is not listed"
	detail "as $USR with the installed binary: virtkey info, pin set, creds list (lists $RP)"
}

# ---- what else the package installed ----

sc_man_completion() {
	page=$(as_user sh -c "MANPAGER=cat MANWIDTH=80 man virtkey" 2>&1) || die "man virtkey: $page"
	echo "$page" | head -n 20
	echo "$page" | grep -q "virtkey run" || die "the man page does not show virtkey run"
	out=$(as_user bash --norc -c '. /usr/share/bash-completion/completions/virtkey
COMP_WORDS=(virtkey cr); COMP_CWORD=1; _virtkey; echo "${COMPREPLY[*]}"') || die "bash completion: $out"
	[ "$out" = creds ] || die "bash completes 'virtkey cr' to '$out'"
	detail "man virtkey shows $(echo "$page" | wc -l) lines; bash completes 'virtkey cr' to $out"
}

# ---- removal ----

sc_remove() {
	vk_stop TERM || die "virtkey did not stop on SIGTERM"
	"$HT" find -gone -timeout 10s || die "a stale hidraw node after SIGTERM"
	dpkg_logged --purge virtkey || die "dpkg --purge failed (above)"
	[ -e $VKBIN ] && die "$VKBIN is still there"
	[ -e /usr/lib/udev/rules.d/70-virtkey-uhid.rules ] && die "the udev rule is still there"
	getent group virtkey >/dev/null || die "the group virtkey went with the package"
	udevadm control --exit 2>/dev/null
	grep -E 'level=(ERROR|WARN)' "$VKLOGFILE" | grep -v 'msg="presence: auto-approving' &&
		die "virtkey logged errors or warnings (above)"
	detail "virtkey stopped (SIGTERM), package purged with udev running; the group stays; no ERROR or WARN in virtkey's log"
}

main() {
	scenario install 180
	scenario user 60
	scenario udev 180
	scenario virtkey-start 60
	scenario fido2-token 45
	scenario fido2-cred 90
	scenario virtkey-cli 60
	scenario man-completion 90
	scenario remove 180
}

dispatch "$@"

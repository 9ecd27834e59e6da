# lib.sh — sourced by the VM harness's group scripts (tools.sh,
# chromium.sh), which run inside the guest (testdata/vm/init chroots into the
# host's root, read-only with a tmpfs overlay; the run's shared folder is
# /vkshare). POSIX sh: the guest runs the host's /bin/sh.
#
# A group script defines one function per scenario, sc_NAME (dashes in NAME
# become underscores), and a main() that calls `scenario NAME SECONDS` for
# each, in order. internal/vmtest reads those `scenario` lines to know which
# results to expect. Each scenario runs in its own process under
# timeout(1), with its output in $LOGS/NAME.log; it reports a one-line
# summary with `detail`, fails with `die MESSAGE` (or any non-zero exit) and
# skips with `skip MESSAGE`. The result goes to the console as
#   VKTEST NAME PASS|FAIL|SKIP SECONDSs DETAIL
# followed, on failure, by the tail of its log as "VKLOG NAME| ..." lines.

SELF=${SELF:-$0}
VKSHARE=${VKSHARE:-/vkshare}
VKGROUP=${VKGROUP:-tools}
BIN=$VKSHARE/bin
VK=$BIN/virtkey
HT=$BIN/hidtool
WORK=/tmp/vkwork
LOGS=$VKSHARE/logs/$VKGROUP
VKLOGFILE=$LOGS/virtkey.log
PIN=123456
export HOME=${HOME:-/tmp/home}
mkdir -p "$WORK" "$LOGS" "$HOME"

# ---- scenario bookkeeping ----

# detail TEXT... adds to the scenario's one-line summary.
detail() { printf '%s ' "$*" >>"$WORK/detail.$SCENARIO"; echo "detail: $*"; }

# die MESSAGE fails the scenario.
die() {
	detail "$*"
	echo "FAILED: $*"
	exit 1
}

# skip MESSAGE skips the scenario.
skip() {
	detail "$*"
	exit 77
}

# run CMD... echoes and runs a command.
run() {
	echo "+ $*"
	"$@"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# scenario NAME SECONDS runs sc_NAME in a new process under timeout(1).
scenario() {
	_name=$1
	_secs=$2
	_fn=sc_$(echo "$_name" | tr -- '-.' '__')
	echo "VKTEST-BEGIN $_name"
	rm -f "$WORK/detail.$_name"
	_t0=$(now_ms)
	timeout -k 5 "$_secs" sh "$SELF" --run "$_fn" "$_name" >"$LOGS/$_name.log" 2>&1 </dev/null
	_rc=$?
	_ms=$(($(now_ms) - _t0))
	_el=$(printf '%d.%03d' $((_ms / 1000)) $((_ms % 1000)))
	_d=$(tr '\n' ' ' <"$WORK/detail.$_name" 2>/dev/null)
	case $_rc in
	0) echo "VKTEST $_name PASS ${_el}s $_d" ;;
	77) echo "VKTEST $_name SKIP ${_el}s $_d" ;;
	124 | 137) echo "VKTEST $_name FAIL ${_el}s timed out after ${_secs}s; $_d" ;;
	*) echo "VKTEST $_name FAIL ${_el}s (exit $_rc) $_d" ;;
	esac
	if [ "$_rc" != 0 ] && [ "$_rc" != 77 ]; then
		tail -n 30 "$LOGS/$_name.log" | sed "s/^/VKLOG $_name| /"
		if [ -f "$VKLOGFILE" ]; then
			tail -n 15 "$VKLOGFILE" | sed "s/^/VKLOG $_name| virtkey.log: /"
		fi
	fi
}

# dispatch "$@" goes at the end of a group script: with --run FN NAME it
# runs one scenario function (the child process `scenario` starts), else
# the group's main.
dispatch() {
	if [ "$1" = --run ]; then
		SCENARIO=$3
		"$2"
		exit $?
	fi
	echo "VKGROUP $VKGROUP start uptime=$(cut -d' ' -f1 /proc/uptime)"
	main
	echo "VKGROUP $VKGROUP end uptime=$(cut -d' ' -f1 /proc/uptime)"
}

# ---- the key ----

# VK_RUN_ARGS: extra flags for `virtkey run` (the Chromium group adds
# --uv auto and --select-account newest).
VK_RUN_ARGS=${VK_RUN_ARGS:-}

# vk_start [STATE_DIR [LOG]] starts virtkey on /dev/uhid in its own session
# (so a scenario's timeout does not take it down), records its pid and
# waits for its hidraw node, which it writes to $WORK/dev.
vk_start() {
	_state=${1:-/tmp/vk}
	_log=${2:-$VKLOGFILE}
	_t0=$(now_ms)
	# shellcheck disable=SC2086
	GOTRACEBACK=all setsid sh -c 'echo $$ >"$0"; exec "$@"' "$WORK/virtkey.pid" \
		"$VK" run --transport uhid --presence auto --reset-window 0 --state-dir "$_state" \
		--log-level debug $VK_RUN_ARGS >>"$_log" 2>&1 </dev/null &
	if ! _dev=$("$HT" find -timeout 30s); then
		echo "--- $_log:"
		tail -n 30 "$_log"
		die "no hidraw node for virtkey within 30 s (see virtkey.log)"
	fi
	echo "$_dev" >"$WORK/dev"
	echo "virtkey pid $(cat "$WORK/virtkey.pid") on $_dev after $(($(now_ms) - _t0)) ms"
}

vk_pid() { cat "$WORK/virtkey.pid"; }
vk_alive() { kill -0 "$(vk_pid)" 2>/dev/null; }
dev() { cat "$WORK/dev"; }

# vk_stop SIGNAL waits up to 10 s for virtkey to exit after SIGNAL.
vk_stop() {
	_pid=$(vk_pid)
	kill "-$1" "$_pid" 2>/dev/null
	_i=0
	while kill -0 "$_pid" 2>/dev/null; do
		_i=$((_i + 1))
		[ $_i -gt 100 ] && return 1
		sleep 0.1
	done
	return 0
}

# pinrun CMD... runs CMD on a pty, answering its PIN prompts with $PIN.
pinrun() {
	echo "+ $* (PIN prompts answered on a pty)"
	"$HT" expect -pin "$PIN" -timeout 60s -- "$@"
}

b64rand() { head -c "$1" /dev/urandom | base64 -w0; echo; }

# cred_input FILE USER writes a fido2-cred -M input for USER at $RP: a
# random client data hash, the RP, the user name and a random user id.
cred_input() {
	{
		b64rand 32
		echo "$RP"
		echo "$2"
		b64rand 32
	} >"$1"
}

# assert_input FILE [IDFILE] writes a fido2-assert -G input at $RP: a
# random client data hash and, with IDFILE, the credential id in it.
assert_input() {
	{
		b64rand 32
		echo "$RP"
		[ -z "$2" ] || cat "$2"
	} >"$1"
}

# resident_make NAME ALG makes a resident credential for user NAME with
# fido2-cred -M -r, answering PIN prompts: $WORK/NAME.in, NAME.uid (the
# user id) and NAME.cred.
resident_make() {
	cred_input "$WORK/$1.in" "$1"
	sed -n 4p "$WORK/$1.in" >"$WORK/$1.uid"
	pinrun fido2-cred -M -r -v -i "$WORK/$1.in" -o "$WORK/$1.cred" "$(dev)" "$2" ||
		die "fido2-cred -M ($1, $2, resident) failed"
}

# resident_verify NAME ALG checks NAME's credential with fido2-cred -V and
# keeps its id and public key: $WORK/NAME.id, NAME.pem.
resident_verify() {
	run fido2-cred -V -v -i "$WORK/$1.cred" -o "$WORK/$1.pub" "$2" ||
		die "fido2-cred -V rejected $1's credential"
	head -1 "$WORK/$1.pub" >"$WORK/$1.id"
	tail -n +2 "$WORK/$1.pub" >"$WORK/$1.pem"
}

# spawn NAME CMD... starts CMD in its own session, its pid in
# $WORK/NAME.pid and its output in $LOGS/NAME.log.
spawn() {
	_name=$1
	shift
	setsid sh -c 'echo $$ >"$0"; exec "$@"' "$WORK/$_name.pid" "$@" >"$LOGS/$_name.log" 2>&1 </dev/null &
}

# await_start PATTERN FILE NAME WHAT waits up to 20 s for a line PATTERN in
# FILE, written by NAME (started with spawn); otherwise the scenario dies:
# WHAT did not start, with NAME's last log lines.
await_start() {
	_i=0
	until grep -q "$1" "$2" 2>/dev/null; do
		_i=$((_i + 1))
		[ $_i -gt 200 ] && die "$4 did not start: $(tail -n 5 "$LOGS/$3.log")"
		sleep 0.1
	done
}

# ---- browser groups (chromium.sh, firefox.sh) ----
# The page's RP server (internal/vmtest/rp) on loopback, reached by the
# browser as http://localhost:8080 (a secure context); its verdicts and the
# page's reports go to $RESULTS as "NAME PASS|FAIL detail" lines.
RP_ADDR=127.0.0.1:8080
RP_ORIGIN=http://localhost:8080
RESULTS=$WORK/rp.results

# browser_key_start starts virtkey (VK_RUN_ARGS gives it built-in UV) and
# checks that getInfo offers uv: both browsers need it headless.
browser_key_start() {
	_t0=$(now_ms)
	vk_start /tmp/vk
	_out=$(fido2-token -I "$(dev)") || die "fido2-token -I failed"
	echo "$_out"
	_opts=$(echo "$_out" | grep '^options:')
	echo "$_opts" | grep -Eq "[ ,]uv(,|$)" || die "getInfo does not offer built-in uv: $_opts"
	detail "$(dev) $(($(now_ms) - _t0)) ms after start; $_opts"
}

# rp_start [ARGS...] starts the RP server with extra ARGS and waits for it.
rp_start() {
	rm -f "$RESULTS"
	spawn rp "$BIN/rp" -listen "$RP_ADDR" -origin "$RP_ORIGIN" -results "$RESULTS" -timeout 10m "$@"
	await_start "^rp-ready PASS" "$RESULTS" rp "the RP server"
	detail "$(grep '^rp-ready' "$RESULTS" | cut -d' ' -f3-)"
}

# rp_await NAME PAGESTEP SECONDS BROWSER waits up to SECONDS for the RP's
# verdict NAME, or the page's report that step PAGESTEP failed, while
# BROWSER ($WORK/BROWSER.pid, $LOGS/BROWSER.log) runs. On PASS it sets
# AWAITED to the verdict's detail; otherwise the scenario dies, naming the
# key's last commands — they tell a key error from a browser that got its
# answer and then waits on a sheet headless mode cannot show (account
# chooser, PIN prompt).
rp_await() {
	_i=0
	while :; do
		_l=$(grep -E "^($1|page-$2) (PASS|FAIL)" "$RESULTS" 2>/dev/null | grep -v "^page-.* PASS" | head -n 1)
		[ -n "$_l" ] && break
		if grep -q "^page-done" "$RESULTS" 2>/dev/null; then
			_l=$(grep "^page-" "$RESULTS" | grep FAIL | head -n 1)
			[ -n "$_l" ] || _l="no $1 result before the page finished"
			break
		fi
		if ! kill -0 "$(cat "$WORK/$4.pid")" 2>/dev/null; then
			_l="$4 exited: $(tail -n 3 "$LOGS/$4.log" | tr '\n' ' ')"
			break
		fi
		_i=$((_i + 1))
		[ $_i -gt $(($3 * 5)) ] && die "no $1 result within $3 s"
		sleep 0.2
	done
	echo "$_l"
	cat "$RESULTS"
	case "$_l" in
	"$1 PASS"*) AWAITED=${_l#"$1" PASS } ;;
	*) die "$_l; the key's last commands: $(grep -o 'cmd=[A-Za-z]* status=[A-Z_]*' "$VKLOGFILE" | tail -n 4 | tr '\n' ' ')" ;;
	esac
}

# browser_loaded BROWSER SECONDS waits up to SECONDS for the page's
# "loaded" report while BROWSER runs, and prints it.
browser_loaded() {
	_i=0
	# The pid file appears once setsid's child runs.
	until [ -s "$WORK/$1.pid" ] || [ $_i -gt 50 ]; do
		_i=$((_i + 1))
		sleep 0.1
	done
	_i=0
	until grep -q "^page-loaded" "$RESULTS" 2>/dev/null; do
		if ! kill -0 "$(cat "$WORK/$1.pid" 2>/dev/null)" 2>/dev/null; then
			tail -n 30 "$LOGS/$1.log"
			die "$1 exited before the page loaded"
		fi
		_i=$((_i + 1))
		[ $_i -gt $(($2 * 5)) ] && die "the page did not load within $2 s"
		sleep 0.2
	done
	grep "^page-loaded" "$RESULTS"
}

# browser_stop BROWSER waits (20 s at most) for the page's "done", keeps
# the results in $LOGS, stops BROWSER — its whole process group: setsid
# made it a group leader, and its helper processes share the group — and
# the RP server, and checks that the key outlived the browser.
browser_stop() {
	_i=0
	until grep -q "^page-done" "$RESULTS" 2>/dev/null; do
		_i=$((_i + 1))
		[ $_i -gt 100 ] && break
		sleep 0.2
	done
	cp "$RESULTS" "$LOGS/rp.results" 2>/dev/null
	kill -TERM "-$(cat "$WORK/$1.pid")" 2>/dev/null # dash's kill takes no "--"
	kill -TERM "$(cat "$WORK/rp.pid")" 2>/dev/null
	sleep 2
	kill -KILL "-$(cat "$WORK/$1.pid")" 2>/dev/null
	vk_alive || die "virtkey died during the browser run"
	grep -q "^page-done" "$RESULTS" || die "the page never reported done"
}

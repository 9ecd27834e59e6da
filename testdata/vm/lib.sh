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

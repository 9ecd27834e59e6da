# powercut.sh — the guest side of the power-cut campaign (scripts/powercut.sh,
# internal/vmtest/powercut.go). Each boot: the host has attached a raw ext4
# image as /dev/vda (qemu cache=none) and forwards a UDP port on 127.0.0.1
# to 10.0.2.15:$PORT. This script mounts the disk (ext4 replays its journal
# if the last boot was cut), reports what it found, runs `virtkey doctor`
# (the store's full consistency check) on the state directory, then serves
# it with `virtkey run --transport udp` and reports ready. The host drives
# commands over UDP and kills qemu at a random moment: this boot never shuts
# down cleanly, and must not — the cut is the point.
#
# The guest writes back nothing on its own: the flusher threads are off and
# ext4 commits its journal only when asked (commit=600), so whatever virtkey
# did not fsync is still in the page cache at the cut and is lost. An
# unsynced canary file written each boot shows it: the next boot finds it
# empty or missing.
#
# Everything the host reads is a console line "VKPC <what> ...". POSIX sh:
# the guest runs the host's /bin/sh in the chroot testdata/vm/init made.
VKSHARE=${VKSHARE:-/vkshare}
VK=$VKSHARE/bin/virtkey
DISK=/dev/vda
MNT=/tmp/vkdisk
STATE=$MNT/state
ADDR=10.0.2.15
PORT=8111
LOGS=$VKSHARE/logs/powercut

say() { echo "VKPC $*"; }

# fail MESSAGE reports and waits for the host's cut; no clean shutdown.
fail() {
	say "fail $*"
	while :; do sleep 3600; done
}

mkdir -p "$LOGS" "$MNT"

# No background writeback: only fsync (and what it drags along) reaches the disk.
echo 0 >/proc/sys/vm/dirty_writeback_centisecs || fail "dirty_writeback_centisecs"
echo 360000 >/proc/sys/vm/dirty_expire_centisecs || fail "dirty_expire_centisecs"

ip link set eth0 up || fail "no eth0 (virtio-net)"
ip addr add "$ADDR/24" dev eth0 || fail "ip addr add $ADDR/24"

[ -b "$DISK" ] || fail "no $DISK (virtio-blk)"
mount -t ext4 -o commit=600 "$DISK" "$MNT" || fail "mount $DISK: $(dmesg | grep -i ext4 | tail -n 3 | tr '\n' ' ')"
say "mount $(grep " $MNT " /proc/mounts)"
if dmesg | grep -q 'EXT4-fs (vda): recovery complete'; then
	say "journal replayed"
else
	say "journal clean"
fi

# The last boot's canaries: written without fsync, so a real cut loses
# their content.
for f in "$MNT"/canary-*; do
	[ -e "$f" ] || continue
	say "canary-seen ${f##*/canary-} $(cat "$f" 2>/dev/null | tr -cd 'a-f0-9-')"
	rm -f "$f"
done

say "doctor $("$VK" doctor --transport udp --presence auto --state-dir "$STATE" --json 2>/dev/null | tr -d '\n')"

BOOT=$(cat /proc/sys/kernel/random/boot_id)
echo "=== boot $BOOT" >>"$LOGS/virtkey.log"
"$VK" run --transport udp --udp-listen "$ADDR:$PORT" --udp-allow-remote --udp-allow-any-user \
	--state-dir "$STATE" --presence auto --reset-window 0 --max-resident 0 \
	>>"$LOGS/virtkey.log" 2>&1 </dev/null &
VKPID=$!
i=0
until tail -n 20 "$LOGS/virtkey.log" | grep -q "virtkey serving"; do
	kill -0 $VKPID 2>/dev/null || fail "virtkey exited: $(tail -n 5 "$LOGS/virtkey.log" | tr '\n' ' ')"
	i=$((i + 1))
	[ $i -gt 600 ] && fail "virtkey did not serve within 60 s"
	sleep 0.1
done

echo "$BOOT" >"$MNT/canary-$BOOT"
say "canary-written $BOOT"

# Where state.db lives: the virtio disk, not a tmpfs or the overlay.
set -- $(df -P "$STATE/state.db" | tail -n 1)
say "ready $1 $6 $(stat -f -c %T "$STATE/state.db") uptime=$(cut -d' ' -f1 /proc/uptime)"

wait $VKPID
fail "virtkey exited with status $?: $(tail -n 5 "$LOGS/virtkey.log" | tr '\n' ' ')"

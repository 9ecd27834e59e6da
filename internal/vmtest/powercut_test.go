//go:build linux

package vmtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPowerCut is the power-cut campaign's short form (scripts/powercut.sh
// runs the full one): VIRTKEY_POWERCUT_CUTS cuts (default 3; about 20 s
// each, and about 30% of the starts after one are cut too), seed VIRTKEY_POWERCUT_SEED (default: the time, logged). It skips
// like TestVM (VIRTKEY_VM=0, -short, VIRTKEY_VM_GROUPS without
// "powercut") and, under CI=true, fails when qemu, busybox-static, the
// kernel or mkfs.ext4 is missing. Besides the campaign's invariants it
// checks that the cuts were power cuts: every boot after one replayed the
// ext4 journal, and the unsynced canary was lost.
func TestPowerCut(t *testing.T) {
	if selected := skipUnlessVM(t); len(selected) > 0 && !selected["powercut"] {
		t.Skipf("not in VIRTKEY_VM_GROUPS=%s", os.Getenv("VIRTKEY_VM_GROUPS"))
	}
	cuts, err := PowerCutCutsFromEnv(3)
	if err != nil {
		t.Fatal(err)
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("VIRTKEY_POWERCUT_SEED"); s != "" {
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("VIRTKEY_POWERCUT_SEED=%q: %v", s, err)
		}
	}
	share := t.TempDir()
	if d := os.Getenv("VIRTKEY_VM_KEEP"); d != "" {
		share, _ = filepath.Abs(filepath.Join(d, "powercut"))
		os.RemoveAll(share)
		t.Logf("VIRTKEY_VM_KEEP: virtkey.log and the consoles stay in %s/logs/powercut", share)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if dl, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(context.Background(), dl.Add(-30*time.Second))
	}
	defer cancel()
	t.Logf("seed %d (VIRTKEY_POWERCUT_SEED repeats it), %d cuts", seed, cuts)
	t0 := time.Now()
	rep, key, err := RunPowerCut(ctx, PowerCutOptions{
		Root: repoRoot(t), Share: share, Cuts: cuts, Seed: seed, StartCutRate: 0.3, Logf: t.Logf,
	})
	checkPrep(t, "power-cut campaign", err)
	t.Logf("in %v:\n%s", time.Since(t0).Round(time.Second), rep.Describe())
	for _, v := range rep.Violations {
		t.Error(v)
	}
	if rep.Kills != cuts {
		t.Errorf("%d cuts made, want %d", rep.Kills, cuts)
	}
	if rep.Kills+key.StartCuts != key.Boots-1 {
		t.Errorf("%d boots for %d cuts and %d start cuts", key.Boots, rep.Kills, key.StartCuts)
	}
	if key.Replayed != key.Boots-1 {
		t.Errorf("ext4 replayed its journal at %d of %d boots after a cut: a cut that is not a crash proves nothing", key.Replayed, key.Boots-1)
	}
	if key.CanaryLost == 0 {
		t.Errorf("the unsynced canary survived every cut (%d): the guest's page cache reached the disk, so the cuts prove nothing about durability", key.CanaryKept)
	}
	for _, r := range key.BootsAtReady {
		if !strings.HasPrefix(r, "/dev/vda ") {
			t.Errorf("state.db on %q, not the virtio disk", r)
		}
	}
}

// The guest script parses, and the console lines the host waits for are
// the ones it prints.
func TestPowerCutScript(t *testing.T) {
	path := filepath.Join("..", "..", "testdata", "vm", "powercut.sh")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`say "mount `, `say "journal replayed"`, `say "doctor `, `say "canary-written `, `say "canary-seen `, `say "ready `, `say "fail `} {
		if !strings.Contains(string(b), want) {
			t.Errorf("powercut.sh never prints %s", want)
		}
	}
	if out, err := exec.Command("sh", "-n", path).CombinedOutput(); err != nil {
		t.Errorf("sh -n powercut.sh: %v\n%s", err, out)
	}
}

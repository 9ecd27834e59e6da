//go:build linux

package vmtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/virtkey/virtkey/internal/vktest"
)

// group is one boot: a scenario script and the machine it needs.
type group struct {
	name     string
	script   string // under testdata/vm
	memoryMB int
	cpus     int
	timeout  time.Duration
	needs    []string // host programs the guest runs
	tpm      bool     // attach a fresh swtpm as the guest's TPM 2.0
	// prepare, if set, runs on the host before the boot: it builds what
	// the group needs into the shared folder (playwright_test.go: the
	// example's npm packages; package_test.go: the .deb).
	prepare func(t *testing.T, ctx context.Context, root, share string)
}

var groups = []group{
	{
		name: "tools", script: "tools.sh", memoryMB: 1024, cpus: 2, timeout: 12 * time.Minute,
		needs: []string{"fido2-token", "fido2-cred", "fido2-assert", "ssh-keygen", "setsid", "pkill", "base64"},
	},
	{
		name: "chromium", script: "chromium.sh", memoryMB: 2048, cpus: 2, timeout: 14 * time.Minute,
		needs: []string{"chromium", "fido2-token", "setsid"},
	},
	{
		// The Playwright example (examples/playwright) against the key's
		// control API; its node packages are installed on the host.
		name: "playwright", script: "playwright.sh", memoryMB: 2048, cpus: 2, timeout: 20 * time.Minute,
		needs: []string{"chromium", "node", "npm", "setsid"}, prepare: preparePlaywright,
	},
	{
		name: "firefox", script: "firefox.sh", memoryMB: 2048, cpus: 2, timeout: 20 * time.Minute,
		needs: []string{"firefox-esr", "fido2-token", "setsid"},
	},
	{
		name: "login", script: "login.sh", memoryMB: 1024, cpus: 2, timeout: 12 * time.Minute,
		needs: []string{"pamu2fcfg", "pamtester", "cryptsetup", "systemd-cryptenroll", "fido2-token", "setsid", "useradd"},
	},
	{
		// Boot.Machine gives it one vCPU when it boots the PVH vmlinux.
		name: "tpm", script: "tpm.sh", memoryMB: 1024, cpus: 2, timeout: 5 * time.Minute, tpm: true,
		needs: []string{"fido2-token", "fido2-cred", "fido2-assert", "setsid"},
	},
	{
		// The .deb installed with dpkg -i, used by a non-root member of
		// the group virtkey once the guest's udev applied its rule.
		name: "package", script: "package.sh", memoryMB: 1024, cpus: 2, timeout: 12 * time.Minute,
		needs:   []string{"dpkg", "udevadm", "useradd", "setpriv", "setsid", "pgrep", "man", "fido2-token", "fido2-cred", "fido2-assert"},
		prepare: prepareDeb,
	},
}

// skipOrFail skips (a laptop without qemu) or, under CI=true, fails.
func skipOrFail(t *testing.T, format string, a ...any) {
	t.Helper()
	vktest.MissingTool(t, fmt.Sprintf(format, a...)+" — the VM harness cannot run")
}

func checkPrep(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var envErr *EnvError
	if errors.As(err, &envErr) {
		skipOrFail(t, "%s: %v", what, err)
	}
	t.Fatalf("%s: %v", what, err)
}

// repoRoot is the module root (this package is internal/vmtest).
func repoRoot(t *testing.T) string {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if !fileExists(filepath.Join(root, "go.mod")) {
		t.Fatalf("no go.mod in %s", root)
	}
	return root
}

// skipUnlessVM skips a test that boots qemu on purpose: VIRTKEY_VM=0 (or
// skip), -short, a machine other than linux/amd64. It returns the groups
// VIRTKEY_VM_GROUPS selects (empty: all).
func skipUnlessVM(t *testing.T) map[string]bool {
	t.Helper()
	switch v := os.Getenv("VIRTKEY_VM"); {
	case v == "0" || v == "skip":
		t.Skip("VIRTKEY_VM=" + v)
	case testing.Short():
		t.Skip("-short: the VM harness boots qemu (minutes); scripts/vm-test.sh runs it alone")
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("the VM harness boots Debian's amd64 kernel with the host's root: linux/amd64 only, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	selected := map[string]bool{}
	if s := os.Getenv("VIRTKEY_VM_GROUPS"); s != "" {
		for _, g := range strings.Split(s, ",") {
			selected[strings.TrimSpace(g)] = true
		}
	}
	return selected
}

func TestVM(t *testing.T) {
	selected := skipUnlessVM(t)

	root := repoRoot(t)
	qemu, err := FindQemu()
	checkPrep(t, "qemu", err)
	busybox, err := FindBusybox()
	checkPrep(t, "busybox", err)
	cache, err := CacheDir()
	checkPrep(t, "cache", err)

	ctx, cancel := context.WithCancel(context.Background())
	if dl, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(context.Background(), dl.Add(-30*time.Second))
	}
	defer cancel()

	t0 := time.Now()
	k, err := PrepareKernel(ctx, cache, t.Logf)
	checkPrep(t, "kernel", err)
	initrd, err := BuildInitramfs(cache, k, filepath.Join(root, "testdata", "vm", "init"), busybox, t.Logf)
	checkPrep(t, "initramfs", err)
	t.Logf("kernel %s (%s %s), boot image %s, initramfs %s, ready in %v",
		k.Release, k.Package, k.Version, filepath.Base(k.BootImage()), filepath.Base(initrd), time.Since(t0).Round(time.Millisecond))

	share := shareDir(t)
	t0 = time.Now()
	if err := buildGuestFiles(ctx, root, share, guestPrograms...); err != nil {
		t.Fatalf("building the guest's programs: %v", err)
	}
	t.Logf("built virtkey, hidtool and rp into %s in %v", share, time.Since(t0).Round(time.Millisecond))

	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			if len(selected) > 0 && !selected[g.name] {
				t.Skipf("not in VIRTKEY_VM_GROUPS=%s", os.Getenv("VIRTKEY_VM_GROUPS"))
			}
			for _, p := range g.needs {
				if _, err := exec.LookPath(p); err != nil {
					skipOrFail(t, "the guest runs the host's %s, which is missing", p)
				}
			}
			if g.prepare != nil {
				g.prepare(t, ctx, root, share)
			}
			b := &Boot{
				Kernel: k, Initramfs: initrd, Share: share,
				Script:   "/vkshare/testdata/vm/" + g.script,
				Group:    g.name,
				MemoryMB: g.memoryMB, CPUs: g.cpus, Timeout: g.timeout,
				Console: filepath.Join(share, "logs", g.name+".console.log"),
			}
			if g.tpm {
				b.TPMSocket = startSwtpm(t, filepath.Join(share, "logs", g.name))
			}
			runGroup(t, ctx, g, b, qemu, filepath.Join(root, "testdata", "vm", g.script))
		})
	}
}

// startSwtpm starts a fresh swtpm for one boot, stopped (by its pid) and
// reaped when the test ends, and returns its control socket. Its log goes
// to logDir/swtpm.log, beside the guest's logs of that group. A missing
// swtpm skips the group, unless CI=true.
func startSwtpm(t *testing.T, logDir string) string {
	t.Helper()
	bin, err := FindSwtpm()
	if err != nil {
		skipOrFail(t, "the %s group attaches a software TPM: %v", path.Base(t.Name()), err)
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A short folder of its own: a unix socket path holds at most 107 bytes.
	dir, err := os.MkdirTemp("", "vkswtpm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sw, err := StartSwtpm(bin, dir, filepath.Join(logDir, "swtpm.log"))
	if err != nil {
		t.Fatalf("swtpm: %v", err)
	}
	t.Cleanup(func() {
		ended := sw.Exited()
		if err := sw.Stop(); err != nil {
			t.Errorf("stopping swtpm (pid %d): %v", sw.Pid(), err)
		}
		if !ended {
			t.Logf("swtpm (pid %d) was still running after the boot: stopped", sw.Pid())
		}
	})
	t.Logf("swtpm pid %d, control socket %s, fresh state in %s", sw.Pid(), sw.Socket, sw.State)
	return sw.Socket
}

// shareDir is the folder the guest sees as /vkshare: VIRTKEY_VM_KEEP=DIR
// keeps it (logs of every scenario, the consoles) for a look afterwards.
func shareDir(t *testing.T) string {
	if d := os.Getenv("VIRTKEY_VM_KEEP"); d != "" {
		d, _ = filepath.Abs(d)
		os.RemoveAll(d)
		if err := os.MkdirAll(filepath.Join(d, "logs"), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Logf("VIRTKEY_VM_KEEP: the guest's files and logs stay in %s", d)
		return d
	}
	d := t.TempDir()
	os.MkdirAll(filepath.Join(d, "logs"), 0o755)
	return d
}

// runGroup boots one group and reports each planned scenario as a
// subtest.
func runGroup(t *testing.T, ctx context.Context, g group, b *Boot, qemu, hostScript string) {
	planned, err := PlannedScenarios(hostScript)
	if err != nil {
		t.Fatal(err)
	}
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < b.Timeout {
			if left < time.Minute {
				t.Fatalf("only %v left before the test deadline: not booting (raise go test -timeout)", left.Round(time.Second))
			}
			b.Timeout = left
		}
	}
	res, err := b.Run(ctx, qemu)
	if err != nil {
		t.Fatalf("booting: %v", err)
	}
	cpus, kargs := b.Machine()
	machine := fmt.Sprintf("%d vCPU(s), %s", cpus, filepath.Base(b.Kernel.BootImage()))
	if b.TPMSocket != "" {
		machine += ", swtpm attached"
	}
	if len(kargs) > 0 {
		machine += ", " + strings.Join(kargs, " ")
	}
	t.Logf("boot %q (%s): %v wall (guest: init at %.1fs, root ready at %.1fs), %d of %d scenarios reported; console: %s",
		g.name, machine, res.Duration.Round(100*time.Millisecond), res.Uptime("init"), res.Uptime("root-ready"),
		len(res.Results), len(planned), b.Console)

	seen := map[string]bool{}
	for _, name := range planned {
		seen[name] = true
		t.Run(name, func(t *testing.T) { reportScenario(t, res, name) })
	}
	for _, r := range res.Results {
		if !seen[r.Name] {
			seen[r.Name] = true
			t.Run(r.Name, func(t *testing.T) { reportScenario(t, res, r.Name) })
		}
	}

	switch {
	case res.TimedOut:
		t.Errorf("the boot timed out after %v (timeout(1) killed qemu); console tail:\n%s", b.Timeout, tail(res.Console, 60))
	case res.BootFail != "":
		t.Errorf("the guest's init failed: %s; console tail:\n%s", res.BootFail, tail(res.Console, 60))
	case !res.Finished:
		t.Errorf("the guest did not reach its poweroff (qemu: %v); console tail:\n%s", res.ExitErr, tail(res.Console, 60))
	}
}

func reportScenario(t *testing.T, res *BootResult, name string) {
	r, ok := res.Result(name)
	if !ok {
		last := "none"
		if n := len(res.Began); n > 0 {
			last = res.Began[n-1]
		}
		t.Fatalf("not reported (last scenario begun: %s; boot timed out: %v)", last, res.TimedOut)
	}
	switch r.Status {
	case "PASS":
		t.Logf("PASS in %.1fs: %s", r.Seconds, r.Detail)
	case "SKIP":
		t.Skipf("skipped in the guest: %s", r.Detail)
	default:
		msg := fmt.Sprintf("FAIL in %.1fs: %s", r.Seconds, r.Detail)
		if logs := res.Logs[name]; len(logs) > 0 {
			msg += "\n  " + strings.Join(logs, "\n  ")
		}
		t.Error(msg)
	}
}

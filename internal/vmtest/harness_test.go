//go:build linux

package vmtest

// Tests of the harness itself that need no qemu: console parsing, the
// scenario plans, the cpio writer, and a boot that times out.

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtkey/virtkey/internal/vktest"
)

const sampleConsole = `[    0.000000] Linux version 6.1.0
VKBOOT init uptime=2.71 group=tools
VKBOOT root-ready uptime=4.02
VKGROUP tools start uptime=4.10
VKTEST-BEGIN sanity
VKTEST sanity PASS 2.603s kernel 6.1.0-56-amd64, 2 vCPUs
VKTEST-BEGIN fido2-cred
[   12.345678] some kernel warning
VKTEST fido2-cred FAIL 7.900s (exit 1) fido2-cred -M failed
VKLOG fido2-cred| + fido2-cred -M -r -v
VKLOG fido2-cred| virtkey.log: level=INFO msg=command cmd=makeCredential status=OK
VKTEST-BEGIN ssh-ecdsa-sk
VKTEST ssh-ecdsa-sk SKIP 0.100s no key
VKTEST-BEGIN hangs
VKBOOT script-exit 0 uptime=30.00
VKBOOT poweroff
`

func TestParseConsole(t *testing.T) {
	r := &BootResult{Console: sampleConsole}
	r.parse()
	if !r.Finished {
		t.Error("poweroff not seen")
	}
	want := []Result{
		{Name: "sanity", Status: "PASS", Seconds: 2.603, Detail: "kernel 6.1.0-56-amd64, 2 vCPUs"},
		{Name: "fido2-cred", Status: "FAIL", Seconds: 7.9, Detail: "(exit 1) fido2-cred -M failed"},
		{Name: "ssh-ecdsa-sk", Status: "SKIP", Seconds: 0.1, Detail: "no key"},
	}
	if len(r.Results) != len(want) {
		t.Fatalf("results %+v, want %+v", r.Results, want)
	}
	for i := range want {
		if r.Results[i] != want[i] {
			t.Errorf("result %d = %+v, want %+v", i, r.Results[i], want[i])
		}
	}
	if got := strings.Join(r.Began, ","); got != "sanity,fido2-cred,ssh-ecdsa-sk,hangs" {
		t.Errorf("began %s", got)
	}
	if got := r.Logs["fido2-cred"]; len(got) != 2 || got[0] != "+ fido2-cred -M -r -v" {
		t.Errorf("logs %q", got)
	}
	if _, ok := r.Result("hangs"); ok {
		t.Error("a scenario that never reported has a result")
	}
	if u := r.Uptime("root-ready"); u != 4.02 {
		t.Errorf("root-ready uptime %v", u)
	}
}

// Every planned scenario of every group has its function, and every
// function is planned.
func TestGroupScripts(t *testing.T) {
	fnRE := regexp.MustCompile(`(?m)^(sc_[A-Za-z0-9_]+)\(\)`)
	for _, g := range groups {
		path := filepath.Join("..", "..", "testdata", "vm", g.script)
		planned, err := PlannedScenarios(path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(path)
		fns := map[string]bool{}
		for _, m := range fnRE.FindAllStringSubmatch(string(b), -1) {
			fns[m[1]] = true
		}
		seen := map[string]bool{}
		for _, name := range planned {
			if seen[name] {
				t.Errorf("%s plans %s twice", g.script, name)
			}
			seen[name] = true
			fn := "sc_" + strings.NewReplacer("-", "_", ".", "_").Replace(name)
			if !fns[fn] {
				t.Errorf("%s plans %s but defines no %s()", g.script, name, fn)
			}
			delete(fns, fn)
		}
		for fn := range fns {
			t.Errorf("%s defines %s() but never runs it", g.script, fn)
		}
		if sh, err := exec.LookPath("sh"); err == nil {
			if out, err := exec.Command(sh, "-n", path).CombinedOutput(); err != nil {
				t.Errorf("sh -n %s: %v\n%s", g.script, err, out)
			}
		}
	}
}

func TestWriteNewc(t *testing.T) {
	cpio := vktest.RequireTool(t, "cpio", "cpio") // reads the archive back
	files := []initramfsFile{
		{name: "bin", mode: 0o040755},
		{name: "bin/busybox", mode: 0o100755, data: []byte("#!fake busybox\n")},
		{name: "bin/sh", mode: 0o120777, data: []byte("busybox")},
		{name: "dev", mode: 0o040755},
		{name: "dev/console", mode: 0o020600, rdev: [2]uint32{5, 1}},
		{name: "init", mode: 0o100755, data: []byte("odd length")},
	}
	var buf bytes.Buffer
	if err := writeNewc(&buf, files); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d is not 4-aligned", buf.Len())
	}
	cmd := exec.Command(cpio, "-itv", "--quiet")
	cmd.Stdin = bytes.NewReader(buf.Bytes())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -itv: %v\n%s", err, out)
	}
	for _, want := range []string{"bin/busybox", "bin/sh -> busybox", "dev/console", "init"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("cpio lists no %q:\n%s", want, out)
		}
	}
}

// A guest that never finishes: timeout(1) ends it and the result says so.
func TestBootTimeout(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "fake-qemu")
	script := "#!/bin/sh\necho 'VKBOOT init uptime=1.00 group=tools'\necho 'VKTEST-BEGIN sanity'\nexec sleep 60\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	b := &Boot{
		Kernel: &Kernel{Vmlinuz: "/nonexistent"}, Initramfs: "/nonexistent", Share: dir,
		Script: "/vkshare/x.sh", Group: "tools", Timeout: time.Second,
		Console: filepath.Join(dir, "console.log"),
	}
	t0 := time.Now()
	res, err := b.Run(context.Background(), fake)
	if err != nil {
		t.Fatal(err)
	}
	if !res.TimedOut || res.Finished {
		t.Errorf("TimedOut %v Finished %v, want a timed-out boot (err %v)", res.TimedOut, res.Finished, res.ExitErr)
	}
	if d := time.Since(t0); d > 20*time.Second {
		t.Errorf("the boot took %v to time out", d)
	}
	if len(res.Began) != 1 || res.Began[0] != "sanity" {
		t.Errorf("began %v", res.Began)
	}
}

func TestBootArgs(t *testing.T) {
	b := &Boot{Kernel: &Kernel{Vmlinuz: "/k/vmlinuz", Vmlinux: "/k/vmlinux"}, Initramfs: "/c/i.cpio.gz",
		Share: "/tmp/share", Script: "/vkshare/testdata/vm/tools.sh", Group: "tools"}
	args := strings.Join(b.Args(), " ")
	for _, want := range []string{
		"-accel tcg", "-smp 2", "-m 1024", "-kernel /k/vmlinux", "-initrd /c/i.cpio.gz", "-no-reboot",
		"vkscript=/vkshare/testdata/vm/tools.sh", "vkgroup=tools",
		"path=/,mount_tag=hostroot,security_model=none,readonly=on",
		"path=/tmp/share,mount_tag=vkshare",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("qemu args lack %q: %s", want, args)
		}
	}
	if strings.Contains(args, "enable-kvm") {
		t.Error("KVM requested; the machines have none")
	}
}

// The power-cut campaign's disk is a virtio-blk drive with cache=none (the
// guest's unflushed writes die with qemu), and its UDP forward listens on
// 127.0.0.1 only.
func TestBootArgsPowerCut(t *testing.T) {
	b := &Boot{Kernel: &Kernel{Vmlinuz: "/k/vmlinuz", Vmlinux: "/k/vmlinux"}, Initramfs: "/c/i.cpio.gz",
		Share: "/tmp/share", Script: "/vkshare/testdata/vm/powercut.sh", Group: "powercut", CPUs: 1,
		Disk: "/c/powercut-1/state.img", UDPForward: "127.0.0.1:40000-10.0.2.15:8111"}
	if err := b.check(); err != nil {
		t.Fatal(err)
	}
	args := b.Args()
	var drive, netdev string
	for i, a := range args[:len(args)-1] {
		switch a {
		case "-drive":
			drive = args[i+1]
		case "-netdev":
			netdev = args[i+1]
		}
	}
	opts := map[string]bool{}
	for _, o := range strings.Split(drive, ",") {
		opts[o] = true
	}
	for _, want := range []string{"cache=none", "format=raw", "file=/c/powercut-1/state.img", "id=vkdisk"} {
		if !opts[want] {
			t.Errorf("-drive %q lacks %s", drive, want)
		}
	}
	for o := range opts {
		if strings.HasPrefix(o, "cache=") && o != "cache=none" || strings.HasPrefix(o, "cache.") {
			t.Errorf("-drive %q: another cache mode %s", drive, o)
		}
	}
	joined := strings.Join(args, " ")
	for _, want := range []string{"-device virtio-blk-pci,drive=vkdisk", "-device virtio-net-pci,netdev=vknet", "-smp 1"} {
		if !strings.Contains(joined, want) {
			t.Errorf("qemu args lack %q: %s", want, joined)
		}
	}
	if !strings.Contains(netdev, "hostfwd=udp:127.0.0.1:40000-10.0.2.15:8111") || !strings.HasPrefix(netdev, "user,") {
		t.Errorf("-netdev %q: want user-mode networking forwarding UDP from 127.0.0.1:40000", netdev)
	}
	for _, bad := range []string{"0.0.0.0:40000-10.0.2.15:8111", ":40000-10.0.2.15:8111", "127.0.0.1:40000-10.0.2.15:8111,hostfwd=tcp::22-:22"} {
		b.UDPForward = bad
		if err := b.check(); err == nil {
			t.Errorf("UDP forward %q accepted", bad)
		}
	}
	b.UDPForward, b.Disk = "", "/c/my disk.img"
	if err := b.check(); err == nil {
		t.Error("a disk path with a space accepted")
	}
	b.Disk = ""
	if joined := strings.Join(b.Args(), " "); strings.Contains(joined, "-drive") || strings.Contains(joined, "-netdev") {
		t.Errorf("a boot without disk or forward: %s", joined)
	}
}

// With a TPM, a PVH boot runs without ACPI on one vCPU (docs/testing.md); a
// bzImage boot keeps both.
func TestBootArgsTPM(t *testing.T) {
	b := &Boot{Kernel: &Kernel{Vmlinuz: "/k/vmlinuz", Vmlinux: "/k/vmlinux"}, Initramfs: "/c/i.cpio.gz",
		Share: "/tmp/share", Script: "/vkshare/testdata/vm/tpm.sh", Group: "tpm", CPUs: 2,
		TPMSocket: "/tmp/vkswtpm-1/swtpm.sock"}
	args := strings.Join(b.Args(), " ")
	for _, want := range []string{
		"-smp 1", "-kernel /k/vmlinux", "acpi=off tpm_tis.force=1",
		"-chardev socket,id=chrtpm,path=/tmp/vkswtpm-1/swtpm.sock",
		"-tpmdev emulator,id=tpm0,chardev=chrtpm", "-device tpm-tis,tpmdev=tpm0,ppi=off",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("qemu args lack %q: %s", want, args)
		}
	}
	b.Kernel.Vmlinux = ""
	args = strings.Join(b.Args(), " ")
	if !strings.Contains(args, "-smp 2") || strings.Contains(args, "acpi=off") || !strings.Contains(args, "-device tpm-tis") {
		t.Errorf("a bzImage boot with a TPM: %s", args)
	}
	b.TPMSocket = ""
	b.Kernel.Vmlinux = "/k/vmlinux"
	args = strings.Join(b.Args(), " ")
	if strings.Contains(args, "tpmdev") || strings.Contains(args, "acpi=off") || !strings.Contains(args, "-smp 2") {
		t.Errorf("a boot without a TPM: %s", args)
	}
}

// swtpm starts with a control socket and stops by its pid.
func TestSwtpmStartStop(t *testing.T) {
	bin, err := FindSwtpm()
	if err != nil {
		vktest.MissingTool(t, err.Error())
	}
	dir := t.TempDir()
	sw, err := StartSwtpm(bin, dir, filepath.Join(dir, "swtpm.log"))
	if err != nil {
		t.Fatal(err)
	}
	if sw.Exited() {
		t.Fatal("swtpm exited at once")
	}
	pid := sw.Pid()
	if err := sw.Stop(); err != nil {
		t.Fatal(err)
	}
	if !sw.Exited() {
		t.Error("swtpm still running after Stop")
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("pid %d still exists after Stop (not reaped?)", pid)
	}
	if err := sw.Stop(); err != nil {
		t.Errorf("a second Stop: %v", err)
	}
}

//go:build linux

package vmtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/virtkey/virtkey/internal/crash"
	"github.com/virtkey/virtkey/internal/testkit"
)

// The power-cut campaign (scripts/powercut.sh; docs/testing.md): internal/
// crash's random command stream and invariant checks, with the key in a VM
// whose state directory is on a virtio disk (cache=none) and qemu killed with
// SIGKILL at random moments. The guest's page cache dies with qemu, so what
// the next boot finds is what virtkey made durable — unlike a kill -9 of the
// process, which leaves the page cache to the kernel.

// PowerCutGuestPort is the UDP port virtkey serves on in the guest, at
// 10.0.2.15 (testdata/vm/powercut.sh).
const PowerCutGuestPort = 8111

// PowerCutKey is a [crash.Key]: each Start boots qemu on Boot (which names
// the disk image; the UDP forward is added per boot on a free host port)
// and waits for testdata/vm/powercut.sh to report ready; Cut kills qemu.
type PowerCutKey struct {
	Qemu string
	Boot Boot   // the boot's template: Kernel, Initramfs, Share, Script, Disk, MemoryMB, CPUs
	Logs string // the boots' consoles go here, console-NNN.log
	// ReadyTimeout bounds a boot up to "ready" (default 3 minutes).
	ReadyTimeout time.Duration

	// StartCutRate is the probability (0..1) that a start after a cut
	// first cuts a boot while virtkey opens its state (Rand draws it and
	// the moment): the repairs a start makes must survive a cut too.
	StartCutRate float64
	Rand         *rand.Rand

	cmd    *exec.Cmd
	done   chan struct{} // the console reader is done
	mu     sync.Mutex
	tail   []string // the console's last lines
	canary string   // the unsynced canary the last boot wrote

	// Figures for the report.
	Boots        int
	StartCuts    int // boots cut while virtkey started
	Replayed     int // boots after a cut whose mount replayed the ext4 journal
	CanaryLost   int // cuts after which the unsynced canary's content was gone
	CanaryKept   int
	ReadyTimes   []time.Duration // qemu's start to "ready", each boot
	BootsAtReady []string        // the "ready" lines: device, mount point, file system
}

// vkpc is what a boot reported before ready.
type vkpc struct {
	check    error
	ready    string
	canary   string
	seen     map[string]string // canary-seen: id → content
	replayed bool
	mount    string
}

// doctorReport is `virtkey doctor --json`.
type doctorReport struct {
	Checks []struct {
		Status, Check, What string
	} `json:"checks"`
}

// errStartCut ends a boot that [PowerCutKey.Start] cuts while virtkey
// starts.
var errStartCut = errors.New("cut during the start")

// startCutWindow: a start cut falls uniformly in this long after the
// doctor's report, while virtkey opens its state (about 1–2 s under TCG).
const startCutWindow = 3 * time.Second

// Start implements [crash.Key]. With probability StartCutRate (after the
// first boot) it first cuts a boot at a random moment while virtkey opens
// the state, then boots again; the check it returns joins every boot's.
func (k *PowerCutKey) Start(ctx context.Context) (addr string, check error, err error) {
	var checks []error
	for {
		cutAt := time.Duration(-1)
		if k.Boots > 0 && k.Rand != nil && k.Rand.Float64() < k.StartCutRate {
			cutAt = time.Duration(k.Rand.Int64N(int64(startCutWindow)))
		}
		addr, r, err := k.boot(ctx, cutAt)
		if r != nil && r.check != nil {
			checks = append(checks, fmt.Errorf("boot %d: %w", k.Boots, r.check))
		}
		switch {
		case errors.Is(err, errStartCut):
			k.StartCuts++
			continue
		case err != nil:
			return "", nil, err
		}
		return addr, errors.Join(checks...), nil
	}
}

// boot boots the VM and waits for ready; with cutAt ≥ 0 it cuts qemu that
// long after the doctor's report and returns errStartCut.
func (k *PowerCutKey) boot(ctx context.Context, cutAt time.Duration) (string, *vkpc, error) {
	if k.cmd != nil {
		return "", nil, errors.New("powercut: the VM is running")
	}
	addr, err := testkit.FreeUDP()
	if err != nil {
		return "", nil, err
	}
	b := k.Boot
	b.UDPForward = fmt.Sprintf("%s-10.0.2.15:%d", addr, PowerCutGuestPort)
	k.Boots++
	b.Console = filepath.Join(k.Logs, fmt.Sprintf("console-%03d.log", k.Boots))
	if err := b.check(); err != nil {
		return "", nil, err
	}
	if b.Disk == "" {
		return "", nil, errors.New("powercut: no disk image")
	}
	console, err := os.Create(b.Console)
	if err != nil {
		return "", nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		console.Close()
		return "", nil, err
	}
	k.cmd = exec.Command(k.Qemu, b.Args()...)
	k.cmd.Stdout, k.cmd.Stderr = pw, pw
	// qemu dies with the campaign, whatever ends it.
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := time.Now()
	err = k.cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		console.Close()
		k.cmd = nil
		return "", nil, err
	}
	k.mu.Lock()
	k.tail = nil
	k.mu.Unlock()
	lines := make(chan string, 256)
	k.done = make(chan struct{})
	go k.readConsole(pr, console, lines)

	r, err := k.awaitReady(ctx, lines, cutAt)
	if err != nil && !errors.Is(err, errStartCut) {
		k.Cut()
		return "", nil, fmt.Errorf("boot %d: %v; console %s:\n%s", k.Boots, err, b.Console, k.Output())
	}
	if k.Boots > 1 {
		if r.replayed {
			k.Replayed++
		}
		if k.canary != "" {
			if r.seen[k.canary] == k.canary {
				k.CanaryKept++
			} else {
				k.CanaryLost++
			}
		}
	}
	k.canary = r.canary
	if err != nil {
		k.Cut()
		return "", r, err
	}
	k.ReadyTimes = append(k.ReadyTimes, time.Since(started))
	k.BootsAtReady = append(k.BootsAtReady, r.ready)
	return addr, r, nil
}

// readConsole copies qemu's console to the log file, keeps its tail and
// hands the VKPC lines to lines, which it closes at qemu's end.
func (k *PowerCutKey) readConsole(r io.ReadCloser, console *os.File, lines chan<- string) {
	defer close(k.done)
	defer r.Close()
	defer console.Close()
	defer close(lines)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		fmt.Fprintln(console, line)
		k.mu.Lock()
		k.tail = append(k.tail, line)
		if len(k.tail) > 40 {
			k.tail = k.tail[len(k.tail)-40:]
		}
		k.mu.Unlock()
		if strings.HasPrefix(line, "VKPC ") {
			select {
			case lines <- strings.TrimPrefix(line, "VKPC "):
			default: // nobody listens after ready
			}
		}
	}
}

// awaitReady reads the boot's reports up to "ready".
//
// With cutAt ≥ 0 it returns errStartCut that long after the doctor's
// report instead, whether or not ready came.
func (k *PowerCutKey) awaitReady(ctx context.Context, lines <-chan string, cutAt time.Duration) (*vkpc, error) {
	to := k.ReadyTimeout
	if to <= 0 {
		to = 3 * time.Minute
	}
	timer := time.NewTimer(to)
	defer timer.Stop()
	r := &vkpc{seen: map[string]string{}}
	sawDoctor := false
	var cut <-chan time.Time
	for {
		var line string
		var ok bool
		select {
		case line, ok = <-lines:
		case <-cut:
			return r, errStartCut
		case <-timer.C:
			return nil, fmt.Errorf("not ready within %v", to)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if !ok {
			return nil, errors.New("qemu exited before the guest was ready")
		}
		if r.ready != "" {
			continue // ready, waiting for the start cut
		}
		what, rest, _ := strings.Cut(line, " ")
		switch what {
		case "fail":
			return nil, fmt.Errorf("the guest failed: %s", rest)
		case "mount":
			// "/dev/vda /tmp/vkdisk ext4 rw,relatime,commit=600 0 0"
			f := strings.Fields(rest)
			if len(f) < 4 || f[0] != "/dev/vda" || f[2] != "ext4" {
				return nil, fmt.Errorf("the state's file system is not ext4 on /dev/vda: %q", rest)
			}
			r.mount = rest
		case "journal":
			r.replayed = rest == "replayed"
		case "canary-seen":
			id, content, _ := strings.Cut(rest, " ")
			r.seen[id] = content
		case "canary-written":
			r.canary = rest
		case "doctor":
			sawDoctor = true
			r.check = k.doctorVerdict(rest)
			if cutAt >= 0 {
				cut = time.After(cutAt)
			}
		case "ready":
			// "/dev/vda /tmp/vkdisk ext2/ext3": df and stat -f of state.db.
			if f := strings.Fields(rest); len(f) < 1 || f[0] != "/dev/vda" {
				return nil, fmt.Errorf("state.db is not on the virtio disk: %q", rest)
			}
			if !sawDoctor || r.mount == "" {
				return nil, errors.New("ready before the mount and the doctor's report")
			}
			r.ready = rest
			if cut == nil {
				return r, nil
			}
		}
	}
}

// doctorVerdict reads `virtkey doctor --json`: its state-dir and state-db
// checks must pass, and after the first boot the state-db check must have
// run (state.db exists).
func (k *PowerCutKey) doctorVerdict(js string) error {
	var d doctorReport
	if err := json.Unmarshal([]byte(js), &d); err != nil {
		return fmt.Errorf("virtkey doctor --json: %v: %q", err, js)
	}
	var problems []string
	checked := false
	for _, c := range d.Checks {
		if c.Check != "state-db" && c.Check != "state-dir" {
			continue
		}
		checked = checked || c.Check == "state-db" && c.Status == "OK"
		if c.Status != "OK" {
			problems = append(problems, fmt.Sprintf("%s %s: %s", c.Status, c.Check, c.What))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	if !checked && k.Boots > 1 {
		return errors.New("virtkey doctor ran no state-db check: state.db is missing")
	}
	return nil
}

// Cut implements [crash.Key]: SIGKILL to qemu, then the console's end.
func (k *PowerCutKey) Cut() {
	if k.cmd == nil {
		return
	}
	k.cmd.Process.Kill()
	k.cmd.Wait()
	<-k.done
	k.cmd = nil
}

// Stop implements [crash.Key]: the VM has nothing to keep, so it is cut.
func (k *PowerCutKey) Stop() { k.Cut() }

// Output implements [crash.Key]: the console's last lines.
func (k *PowerCutKey) Output() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return strings.Join(k.tail, "\n")
}

// Summary implements [crash.Summarizer].
func (k *PowerCutKey) Summary() []string {
	cuts := k.Boots - 1 // campaign cuts and start cuts
	var ready []time.Duration
	ready = append(ready, k.ReadyTimes...)
	slices.Sort(ready)
	med := time.Duration(0)
	if len(ready) > 0 {
		med = ready[len(ready)/2]
	}
	where := ""
	if len(k.BootsAtReady) > 0 {
		// "/dev/vda /tmp/vkdisk ext2/ext3 uptime=…": device, mount point, file system.
		if f := strings.Fields(k.BootsAtReady[0]); len(f) >= 3 {
			where = fmt.Sprintf(", state.db on %s at %s (%s)", f[0], f[1], f[2])
		}
	}
	return []string{
		fmt.Sprintf("%d boots (qemu's start to ready: median %.1f s)%s", k.Boots, med.Seconds(), where),
		fmt.Sprintf("%d more cuts while virtkey opened its state after a cut, each followed by another boot", k.StartCuts),
		fmt.Sprintf("ext4 replayed its journal at %d of %d boots after a cut", k.Replayed, cuts),
		fmt.Sprintf("an unsynced canary written at each boot was lost at %d of %d cuts (kept: %d)", k.CanaryLost, k.CanaryLost+k.CanaryKept, k.CanaryKept),
	}
}

// MakeDisk writes a fresh ext4 image of size MiB at path (a sparse raw
// file; mkfs.ext4 -F needs no root). Its folder must allow O_DIRECT, which
// qemu's cache=none uses (tmpfs does not).
func MakeDisk(ctx context.Context, path string, mib int) error {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		if mkfs, err = exec.LookPath("/usr/sbin/mkfs.ext4"); err != nil {
			return envErrorf("mkfs.ext4 is missing: install e2fsprogs")
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = f.Truncate(int64(mib) << 20)
	f.Close()
	if err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, mkfs, "-F", "-q", "-b", "4096", "-L", "vkstate", path).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4 %s: %v\n%s", path, err, out)
	}
	d, err := os.OpenFile(path, os.O_RDWR|syscall.O_DIRECT, 0)
	if err != nil {
		return envErrorf("%s cannot be opened with O_DIRECT (qemu's cache=none needs it; a tmpfs cannot): %v", filepath.Dir(path), err)
	}
	return d.Close()
}

// PowerCutOptions configure [RunPowerCut].
type PowerCutOptions struct {
	Root string // the module root: ./cmd/virtkey is built, testdata/vm read
	// Share is the guest's /vkshare (virtkey, the scripts, logs/powercut:
	// virtkey.log and each boot's console); "" a temporary folder,
	// removed at the end.
	Share    string
	Cuts     int
	Seed     uint64
	MaxDelay time.Duration // the longest run of commands before a cut (default 4 s)
	// StartCutRate: see [PowerCutKey.StartCutRate] (0: none).
	StartCutRate float64
	Progress     io.Writer // nil: nothing
	Logf         Logf      // nil: nothing
}

// RunPowerCut prepares the VM — kernel, initramfs, virtkey built for the
// guest, a fresh ext4 disk image (in the VM cache folder, which allows
// O_DIRECT more often than a temp folder does) — and runs internal/crash's
// campaign against a [PowerCutKey]. Problems with the machine (no qemu, no
// kernel) are [EnvError]s.
func RunPowerCut(ctx context.Context, o PowerCutOptions) (*crash.Report, *PowerCutKey, error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 4 * time.Second
	}
	qemu, err := FindQemu()
	if err != nil {
		return nil, nil, err
	}
	busybox, err := FindBusybox()
	if err != nil {
		return nil, nil, err
	}
	if !hostHasIP() {
		return nil, nil, envErrorf("ip is missing: install iproute2 (the guest configures its NIC with the host's ip)")
	}
	cache, err := CacheDir()
	if err != nil {
		return nil, nil, err
	}
	kern, err := PrepareKernel(ctx, cache, o.Logf)
	if err != nil {
		return nil, nil, err
	}
	initrd, err := BuildInitramfs(cache, kern, filepath.Join(o.Root, "testdata", "vm", "init"), busybox, o.Logf)
	if err != nil {
		return nil, nil, err
	}
	share := o.Share
	if share == "" {
		if share, err = os.MkdirTemp("", "vkpowercut-"); err != nil {
			return nil, nil, err
		}
		defer os.RemoveAll(share)
	}
	logs := filepath.Join(share, "logs", "powercut")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, nil, err
	}
	if err := buildGuestFiles(ctx, o.Root, share, "./cmd/virtkey"); err != nil {
		return nil, nil, err
	}
	diskDir, err := os.MkdirTemp(cache, "powercut-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(diskDir)
	disk := filepath.Join(diskDir, "state.img")
	if err := MakeDisk(ctx, disk, 256); err != nil {
		return nil, nil, err
	}
	o.Logf("powercut: kernel %s, initramfs %s, disk %s (ext4, cache=none), logs in %s", kern.Release, filepath.Base(initrd), disk, logs)
	key := &PowerCutKey{
		Qemu: qemu, Logs: logs,
		Boot: Boot{
			Kernel: kern, Initramfs: initrd, Share: share,
			Script: "/vkshare/testdata/vm/powercut.sh", Group: "powercut",
			MemoryMB: 512, CPUs: 1, Disk: disk,
		},
		StartCutRate: o.StartCutRate, Rand: rand.New(rand.NewPCG(o.Seed, 2)),
	}
	rep, err := crash.Run(ctx, crash.Options{
		Key: key, Kills: o.Cuts, Seed: o.Seed, MaxDelay: o.MaxDelay,
		Name: "powercut", Fault: "power cuts", Progress: o.Progress,
	})
	return rep, key, err
}

// hostHasIP: the guest runs the host's ip (iproute2), from its PATH with
// the sbin folders.
func hostHasIP() bool {
	if _, err := exec.LookPath("ip"); err == nil {
		return true
	}
	return fileExists("/usr/sbin/ip") || fileExists("/sbin/ip") || fileExists("/usr/bin/ip")
}

// PowerCutCutsFromEnv reads VIRTKEY_POWERCUT_CUTS (def when unset).
func PowerCutCutsFromEnv(def int) (int, error) {
	s := os.Getenv("VIRTKEY_POWERCUT_CUTS")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("VIRTKEY_POWERCUT_CUTS=%q: want a positive number", s)
	}
	return n, nil
}

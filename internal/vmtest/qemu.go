//go:build linux

package vmtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Boot is one qemu run.
type Boot struct {
	Kernel    *Kernel
	Initramfs string
	Share     string        // host folder mounted read-write at /vkshare in the guest
	Script    string        // guest path of the scenario script, e.g. /vkshare/testdata/vm/tools.sh
	Group     string        // the group name handed to the script (VKGROUP)
	MemoryMB  int           // guest memory
	CPUs      int           // vCPUs
	Timeout   time.Duration // the whole boot, enforced by timeout(1)
	Console   string        // host file receiving the serial console
	// TPMSocket, if set, is the control socket of a host swtpm (see
	// [StartSwtpm]) attached to the guest as a TPM 2.0 TIS device.
	TPMSocket string
	// Disk, if set, is a raw image attached as a virtio-blk disk (/dev/vda
	// in the guest) with cache=none: qemu writes it with O_DIRECT, past the
	// host's page cache, and shows the guest a volatile write cache that
	// only the guest's flushes empty. Killing qemu then loses what the
	// guest had not written out — a power cut (the power-cut campaign).
	Disk string
	// UDPForward, if set, gives the guest a virtio-net NIC (eth0) on qemu's
	// user-mode network and forwards UDP datagrams: qemu's hostfwd rule
	// without "udp:", "127.0.0.1:HOSTPORT-10.0.2.15:GUESTPORT". The host
	// side must be a loopback address; the guest configures 10.0.2.15/24
	// itself. (restrict=on, which would cut the guest off from the
	// outside, drops the guest's answers to forwarded UDP: measured with
	// qemu 7.2, the key never answered.)
	UDPForward string
}

// BootResult is what a boot left behind.
type BootResult struct {
	Console  string        // the whole serial console
	Duration time.Duration // wall time of the qemu process
	TimedOut bool          // timeout(1) killed qemu
	ExitErr  error         // qemu's exit status, if not 0
	Results  []Result      // the VKTEST lines, in order
	Began    []string      // scenarios that printed VKTEST-BEGIN, in order
	Logs     map[string][]string
	Finished bool // the init reached its poweroff
	BootFail string
}

// Result is one "VKTEST name STATUS detail" line.
type Result struct {
	Name, Status, Detail string
	Seconds              float64
}

// FindQemu returns qemu-system-x86_64.
func FindQemu() (string, error) {
	for _, n := range []string{"qemu-system-x86_64"} {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", envErrorf("qemu-system-x86_64 is missing: install qemu-system-x86")
}

// Args are qemu's arguments for b (docs/testing.md: TCG, PVH vmlinux when
// available, the host root read-only over 9p, the share read-write). The
// guest ends with reboot -f, which -no-reboot turns into qemu's exit.
func (b *Boot) Args() []string {
	cpus, kernelArgs := b.Machine()
	mem := b.MemoryMB
	if mem <= 0 {
		mem = 1024
	}
	appendLine := strings.Join(append([]string{
		"console=ttyS0", "panic=-1", "loglevel=4",
		"vkscript=" + b.Script, "vkgroup=" + b.Group,
	}, kernelArgs...), " ")
	args := []string{
		"-accel", "tcg", "-M", "pc", "-cpu", "max",
		"-smp", strconv.Itoa(cpus), "-m", strconv.Itoa(mem),
		"-nodefaults", "-no-user-config", "-display", "none",
		"-serial", "stdio", "-no-reboot",
		"-kernel", b.Kernel.BootImage(), "-initrd", b.Initramfs,
		"-append", appendLine,
		"-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
		"-virtfs", "local,path=" + b.Share + ",mount_tag=vkshare,security_model=none,multidevs=remap",
	}
	if b.TPMSocket != "" {
		args = append(args, tpmQemuArgs(b.TPMSocket)...)
	}
	if b.Disk != "" {
		args = append(args,
			"-drive", "if=none,id=vkdisk,format=raw,cache=none,aio=threads,file="+b.Disk,
			"-device", "virtio-blk-pci,drive=vkdisk")
	}
	if b.UDPForward != "" {
		args = append(args,
			"-netdev", "user,id=vknet,restrict=off,hostfwd=udp:"+b.UDPForward,
			"-device", "virtio-net-pci,netdev=vknet")
	}
	return args
}

// check refuses what qemu's arguments cannot carry: commas and spaces in
// the paths (qemu's option syntax), a UDP forward that is not bound to
// 127.0.0.1.
func (b *Boot) check() error {
	if strings.ContainsAny(b.Share, ", ") {
		return fmt.Errorf("share folder %q: qemu -virtfs paths cannot hold commas or spaces", b.Share)
	}
	if strings.ContainsAny(b.Disk, ", ") {
		return fmt.Errorf("disk image %q: qemu -drive paths cannot hold commas or spaces", b.Disk)
	}
	if b.UDPForward != "" && !udpForwardRE.MatchString(b.UDPForward) {
		return fmt.Errorf("UDP forward %q: want 127.0.0.1:HOSTPORT-GUESTADDR:GUESTPORT", b.UDPForward)
	}
	return nil
}

var udpForwardRE = regexp.MustCompile(`^127\.0\.0\.1:[0-9]+-[0-9.]+:[0-9]+$`)

// Machine returns the vCPUs the guest gets and the kernel parameters the
// boot needs beyond the harness's own. With a TPM attached, a PVH boot
// (the ELF vmlinux) on qemu 7.2 finds corrupt ACPI tables: no TPM and one
// CPU (docs/testing.md). So the guest then runs without ACPI, the TIS driver
// probes the TPM at its fixed address (tpm_tis.force=1), and without ACPI's
// MADT the kernel brings up one vCPU only — asked for outright. Booting the
// compressed bzImage instead keeps ACPI and both vCPUs, but measured on 2
// host cores the TPM group took 80 s that way against 51 s with PVH on one
// vCPU (~3 s of in-guest decompression, and slower process starts).
func (b *Boot) Machine() (cpus int, kernelArgs []string) {
	cpus = b.CPUs
	if cpus <= 0 {
		cpus = 2
	}
	if b.TPMSocket != "" && b.Kernel.Vmlinux != "" && b.Kernel.BootImage() == b.Kernel.Vmlinux {
		return 1, []string{"acpi=off", "tpm_tis.force=1"}
	}
	return cpus, nil
}

// Run boots the guest under timeout(1) and parses its console.
func (b *Boot) Run(ctx context.Context, qemu string) (*BootResult, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	to, err := exec.LookPath("timeout")
	if err != nil {
		return nil, envErrorf("timeout(1) is missing (coreutils)")
	}
	secs := int(b.Timeout.Seconds())
	if secs <= 0 {
		secs = 300
	}
	args := append([]string{"--kill-after=10", strconv.Itoa(secs), qemu}, b.Args()...)
	cmd := exec.CommandContext(ctx, to, args...)
	cmd.WaitDelay = 20 * time.Second
	out, err := os.Create(b.Console)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.Stdin = nil
	t0 := time.Now()
	runErr := cmd.Run()
	res := &BootResult{Duration: time.Since(t0)}
	if runErr != nil {
		res.ExitErr = runErr
		var ee *exec.ExitError
		if errors.As(runErr, &ee) && (ee.ExitCode() == 124 || ee.ExitCode() == 137) {
			res.TimedOut = true
		}
		if ctx.Err() != nil {
			res.TimedOut = true
		}
	}
	console, err := os.ReadFile(b.Console)
	if err != nil {
		return nil, err
	}
	res.Console = string(console)
	res.parse()
	return res, nil
}

var (
	resultRE = regexp.MustCompile(`VKTEST ([A-Za-z0-9_.+-]+) (PASS|FAIL|SKIP)(?: ([0-9.]+)s)?(?: (.*))?$`)
	beginRE  = regexp.MustCompile(`VKTEST-BEGIN ([A-Za-z0-9_.+-]+)`)
	logRE    = regexp.MustCompile(`VKLOG ([A-Za-z0-9_.+-]+)\| ?(.*)$`)
	bootRE   = regexp.MustCompile(`VKBOOT FAIL (.*)$`)
)

func (r *BootResult) parse() {
	r.Logs = map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(r.Console))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		switch {
		case resultRE.MatchString(line):
			m := resultRE.FindStringSubmatch(line)
			secs, _ := strconv.ParseFloat(m[3], 64)
			r.Results = append(r.Results, Result{Name: m[1], Status: m[2], Seconds: secs, Detail: m[4]})
		case beginRE.MatchString(line):
			r.Began = append(r.Began, beginRE.FindStringSubmatch(line)[1])
		case logRE.MatchString(line):
			m := logRE.FindStringSubmatch(line)
			r.Logs[m[1]] = append(r.Logs[m[1]], m[2])
		case bootRE.MatchString(line):
			r.BootFail = bootRE.FindStringSubmatch(line)[1]
		case strings.Contains(line, "VKBOOT poweroff"):
			r.Finished = true
		}
	}
}

// Result returns the last result reported for scenario name.
func (r *BootResult) Result(name string) (Result, bool) {
	for i := len(r.Results) - 1; i >= 0; i-- {
		if r.Results[i].Name == name {
			return r.Results[i], true
		}
	}
	return Result{}, false
}

// Uptime returns the guest uptime printed on the VKBOOT line that
// contains marker (e.g. "root-ready"), or -1.
func (r *BootResult) Uptime(marker string) float64 {
	re := regexp.MustCompile(`VKBOOT ` + regexp.QuoteMeta(marker) + `.*uptime=([0-9.]+)`)
	m := re.FindStringSubmatch(r.Console)
	if m == nil {
		return -1
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	return f
}

var scenarioRE = regexp.MustCompile(`(?m)^\s*scenario\s+([A-Za-z0-9_.+-]+)\s`)

// PlannedScenarios lists the scenarios a group script runs: its
// `scenario NAME SECONDS` lines, in order.
func PlannedScenarios(script string) ([]string, error) {
	b, err := os.ReadFile(script)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, m := range scenarioRE.FindAllStringSubmatch(string(b), -1) {
		names = append(names, m[1])
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s plans no scenarios", filepath.Base(script))
	}
	return names, nil
}

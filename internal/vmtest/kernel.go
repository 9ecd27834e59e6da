//go:build linux

package vmtest

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// EnvError is a problem with the machine rather than with virtkey: a tool
// that is not installed, a kernel that cannot be downloaded. TestVM skips
// on it, unless CI=true.
type EnvError struct{ Err error }

func (e *EnvError) Error() string { return e.Err.Error() }
func (e *EnvError) Unwrap() error { return e.Err }

func envErrorf(format string, a ...any) error { return &EnvError{fmt.Errorf(format, a...)} }

// Modules are the kernel modules the guest loads, in load order
// (docs/testing.md): hidraw is built into hid.ko and appears only once hid-generic binds
// the uhid device; 9p and overlayfs carry the host root; loop, device-mapper,
// dm-crypt and the crypto the kernel does for cryptsetup (AF_ALG skcipher
// for the LUKS2 key slots, xts over ecb(aes) for the volume) let the login
// group unlock a LUKS2 image. The guest cannot load modules on demand (its
// /lib/modules is the host's), so xts's soft dependency ecb is named too.
// The power-cut campaign's disk and network come last: virtio-blk and ext4
// (with jbd2, mbcache, crc16, and crc32c_generic, which ext4 and jbd2 ask the
// crypto API for at mount time), and virtio-net for the UDP port qemu
// forwards.
var Modules = []string{
	"kernel/drivers/hid/hid.ko",
	"kernel/drivers/hid/uhid.ko",
	"kernel/drivers/hid/hid-generic.ko",
	"kernel/fs/netfs/netfs.ko",
	"kernel/fs/fscache/fscache.ko",
	"kernel/net/9p/9pnet.ko",
	"kernel/fs/9p/9p.ko",
	"kernel/drivers/virtio/virtio_ring.ko",
	"kernel/drivers/virtio/virtio.ko",
	"kernel/net/9p/9pnet_virtio.ko",
	"kernel/drivers/virtio/virtio_pci_modern_dev.ko",
	"kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
	"kernel/drivers/virtio/virtio_pci.ko",
	"kernel/fs/overlayfs/overlay.ko",
	"kernel/drivers/block/loop.ko",
	"kernel/drivers/md/dm-mod.ko",
	"kernel/drivers/md/dm-crypt.ko",
	"kernel/crypto/af_alg.ko",
	"kernel/crypto/algif_skcipher.ko",
	"kernel/crypto/ecb.ko",
	"kernel/crypto/xts.ko",
	"kernel/drivers/block/virtio_blk.ko",
	"kernel/net/core/failover.ko",
	"kernel/drivers/net/net_failover.ko",
	"kernel/drivers/net/virtio_net.ko",
	"kernel/lib/crc16.ko",
	"kernel/crypto/crc32c_generic.ko",
	"kernel/fs/mbcache.ko",
	"kernel/fs/jbd2/jbd2.ko",
	"kernel/fs/ext4/ext4.ko",
}

// kernelFiles describe what is unpacked from the kernel package besides
// the modules: the boot image and what depmod reads.
var kernelMetaFiles = []string{"modules.order", "modules.builtin", "modules.builtin.modinfo"}

// Kernel is an unpacked kernel in the cache.
type Kernel struct {
	Package string // Debian package, e.g. linux-image-6.1.0-56-amd64
	Version string // its Debian version, e.g. 6.1.192-2
	Release string // the kernel release (uname -r), e.g. 6.1.0-56-amd64
	Dir     string // cache folder: boot/, lib/modules/RELEASE/
	Vmlinuz string // the bzImage
	Vmlinux string // the uncompressed ELF with a PVH entry, or "" (boot Vmlinuz)
}

// ModulePath is where module m (an entry of [Modules]) was unpacked.
func (k *Kernel) ModulePath(m string) string {
	return filepath.Join(k.Dir, "lib", "modules", k.Release, m)
}

// BootImage is the image qemu boots with -kernel: the PVH vmlinux when
// there is one (saves the in-guest decompression, ~5 s under TCG).
func (k *Kernel) BootImage() string {
	if k.Vmlinux != "" {
		return k.Vmlinux
	}
	return k.Vmlinuz
}

// CacheDir is the harness's cache folder.
func CacheDir() (string, error) {
	if d := os.Getenv("VIRTKEY_VM_CACHE"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "virtkey-vm"), nil
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "virtkey-vm"), nil
	}
	// No $HOME (some CI runners): a per-user folder under the temp dir.
	return filepath.Join(os.TempDir(), fmt.Sprintf("virtkey-vm-cache-%d", os.Getuid())), nil
}

// lockDir takes an exclusive flock on dir/.lock (two test processes
// preparing the same cache wait for each other) and returns the unlock.
func lockDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// Logf receives progress lines.
type Logf func(format string, a ...any)

// PrepareKernel finds the kernel package (VIRTKEY_VM_KERNEL_DEB names a
// .deb to use instead), and downloads and unpacks it into the cache unless
// it already is there.
func PrepareKernel(ctx context.Context, cache string, logf Logf) (*Kernel, error) {
	unlock, err := lockDir(cache)
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", cache, err)
	}
	defer unlock()

	if deb := os.Getenv("VIRTKEY_VM_KERNEL_DEB"); deb != "" {
		pkg, ver, err := debIdentity(ctx, deb)
		if err != nil {
			return nil, err
		}
		return unpackKernel(ctx, cache, pkg, ver, deb, logf)
	}

	pkg, ver, err := resolveKernelPackage(ctx, logf)
	if err != nil {
		// No apt metadata (offline laptop): any kernel already cached will do.
		if k := newestCachedKernel(cache); k != nil {
			logf("vmtest: %v; using the cached %s %s", err, k.Package, k.Version)
			return k, nil
		}
		return nil, err
	}
	dir := kernelDir(cache, pkg, ver)
	if k, err := loadKernel(dir); err == nil {
		return k, nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return nil, envErrorf("the kernel %s %s is not cached and apt-get is missing to download it", pkg, ver)
	}
	dl, err := os.MkdirTemp(cache, "download-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dl)
	// apt-get download as root drops to the _apt user when it can write
	// the folder; let it, to avoid apt's "unsandboxed" warning.
	os.Chmod(dl, 0o777)
	logf("vmtest: apt-get download %s=%s", pkg, ver)
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg+"="+ver)
	cmd.Dir = dl
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, envErrorf("apt-get download %s=%s: %v\n%s", pkg, ver, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != 1 {
		return nil, envErrorf("apt-get download %s=%s left %d .deb files", pkg, ver, len(debs))
	}
	logf("vmtest: downloaded %s in %v", filepath.Base(debs[0]), time.Since(t0).Round(time.Millisecond))
	return unpackKernel(ctx, cache, pkg, ver, debs[0], logf)
}

func kernelDir(cache, pkg, ver string) string {
	return filepath.Join(cache, "kernel", pkg+"_"+strings.ReplaceAll(ver, ":", "%3a"))
}

var dependsRE = regexp.MustCompile(`(?m)^\s*Depends:\s*(linux-image-[0-9][^\s]*)`)

// resolveKernelPackage asks apt which versioned kernel package
// linux-image-amd64 stands for, and its candidate version; it runs
// apt-get update once (as root) when apt knows nothing yet.
func resolveKernelPackage(ctx context.Context, logf Logf) (pkg, ver string, err error) {
	if _, err := exec.LookPath("apt-cache"); err != nil {
		return "", "", envErrorf("apt-cache is missing (not a Debian machine?): cannot find the kernel; set VIRTKEY_VM_KERNEL_DEB to a linux-image .deb")
	}
	meta := "linux-image-amd64"
	for attempt := 0; ; attempt++ {
		pkg, ver, err = aptCandidate(ctx, meta)
		if err == nil {
			return pkg, ver, nil
		}
		if attempt > 0 || os.Geteuid() != 0 {
			return "", "", err
		}
		logf("vmtest: %v; running apt-get update", err)
		out, uerr := exec.CommandContext(ctx, "apt-get", "update", "-q").CombinedOutput()
		if uerr != nil {
			return "", "", envErrorf("apt-get update: %v\n%s", uerr, tail(string(out), 20))
		}
	}
}

func aptCandidate(ctx context.Context, meta string) (pkg, ver string, err error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", meta).CombinedOutput()
	m := dependsRE.FindSubmatch(out)
	if err != nil || m == nil {
		return "", "", envErrorf("apt-cache depends %s: no linux-image package (%v): %s", meta, err, strings.TrimSpace(string(out)))
	}
	pkg = string(m[1])
	out, err = exec.CommandContext(ctx, "apt-cache", "policy", pkg).CombinedOutput()
	cm := regexp.MustCompile(`(?m)^\s*Candidate:\s*(\S+)`).FindSubmatch(out)
	if err != nil || cm == nil || string(cm[1]) == "(none)" {
		return "", "", envErrorf("apt-cache policy %s: no candidate version (%v): %s", pkg, err, strings.TrimSpace(string(out)))
	}
	return pkg, string(cm[1]), nil
}

func debIdentity(ctx context.Context, deb string) (pkg, ver string, err error) {
	out, err := exec.CommandContext(ctx, "dpkg-deb", "--show", "--showformat=${Package} ${Version}", deb).Output()
	if err != nil {
		return "", "", envErrorf("dpkg-deb --show %s: %v", deb, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return "", "", fmt.Errorf("dpkg-deb --show %s: %q", deb, out)
	}
	return f[0], f[1], nil
}

// newestCachedKernel returns the most recently unpacked complete kernel.
func newestCachedKernel(cache string) *Kernel {
	dirs, _ := filepath.Glob(filepath.Join(cache, "kernel", "*"))
	var best *Kernel
	var bestTime time.Time
	for _, d := range dirs {
		k, err := loadKernel(d)
		if err != nil {
			continue
		}
		fi, err := os.Stat(filepath.Join(d, "COMPLETE"))
		if err == nil && (best == nil || fi.ModTime().After(bestTime)) {
			best, bestTime = k, fi.ModTime()
		}
	}
	return best
}

// loadKernel reads a complete unpacked kernel folder (it has COMPLETE,
// written last, holding "package version release").
func loadKernel(dir string) (*Kernel, error) {
	b, err := os.ReadFile(filepath.Join(dir, "COMPLETE"))
	if err != nil {
		return nil, err
	}
	f := strings.Fields(string(b))
	if len(f) != 3 {
		return nil, fmt.Errorf("%s/COMPLETE: %q", dir, b)
	}
	k := &Kernel{Package: f[0], Version: f[1], Release: f[2], Dir: dir,
		Vmlinuz: filepath.Join(dir, "boot", "vmlinuz-"+f[2])}
	if _, err := os.Stat(k.Vmlinuz); err != nil {
		return nil, err
	}
	if v := filepath.Join(dir, "boot", "vmlinux-"+f[2]); fileExists(v) {
		k.Vmlinux = v
	}
	for _, m := range Modules {
		if _, err := os.Stat(k.ModulePath(m)); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// unpackKernel extracts the boot image and the modules the guest needs
// from deb into the cache (the whole package is ~400 MB unpacked; this is
// ~12 MB), runs depmod over them and cuts out the PVH vmlinux.
func unpackKernel(ctx context.Context, cache, pkg, ver, deb string, logf Logf) (*Kernel, error) {
	dir := kernelDir(cache, pkg, ver)
	if k, err := loadKernel(dir); err == nil {
		return k, nil
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		return nil, envErrorf("dpkg-deb is missing: cannot unpack %s", deb)
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, envErrorf("dpkg-deb: %v", err)
	}
	release, err := extractKernelFiles(stdout, tmp)
	io.Copy(io.Discard, stdout)
	werr := cmd.Wait()
	if err != nil {
		return nil, fmt.Errorf("unpacking %s: %w", deb, err)
	}
	if werr != nil {
		return nil, fmt.Errorf("dpkg-deb --fsys-tarfile %s: %v: %s", deb, werr, stderr.String())
	}
	k := &Kernel{Package: pkg, Version: ver, Release: release, Dir: dir,
		Vmlinuz: filepath.Join(dir, "boot", "vmlinuz-"+release)}
	for _, m := range Modules {
		if !fileExists(filepath.Join(tmp, "lib", "modules", release, m)) {
			return nil, fmt.Errorf("%s has no %s", deb, m)
		}
	}

	if _, err := exec.LookPath("depmod"); err == nil {
		if out, err := exec.CommandContext(ctx, "depmod", "-b", tmp, release).CombinedOutput(); err != nil {
			logf("vmtest: depmod -b %s %s: %v: %s (the guest insmods by path; continuing)", tmp, release, err, out)
		}
	} else {
		logf("vmtest: depmod (kmod) is missing; the guest insmods by path, continuing without modules.dep")
	}

	vmlinuz := filepath.Join(tmp, "boot", "vmlinuz-"+release)
	vmlinux := filepath.Join(tmp, "boot", "vmlinux-"+release)
	if err := extractVmlinux(ctx, vmlinuz, vmlinux); err != nil {
		logf("vmtest: no PVH vmlinux (%v); booting the bzImage", err)
		os.Remove(vmlinux)
	}
	if err := os.WriteFile(filepath.Join(tmp, "COMPLETE"), []byte(pkg+" "+ver+" "+release+"\n"), 0o644); err != nil {
		return nil, err
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	k, err = loadKernel(dir)
	if err != nil {
		return nil, err
	}
	logf("vmtest: unpacked kernel %s (%s) into %s (PVH vmlinux: %v)", release, ver, dir, k.Vmlinux != "")
	return k, nil
}

// extractKernelFiles reads the package's data tar and writes the boot
// image, the [Modules] and depmod's inputs under dst. It returns the
// kernel release.
func extractKernelFiles(r io.Reader, dst string) (string, error) {
	want := map[string]bool{}
	for _, m := range Modules {
		want[m] = true
	}
	for _, m := range kernelMetaFiles {
		want[m] = true
	}
	release := ""
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := strings.TrimPrefix(h.Name, "./")
		var out string
		switch {
		case strings.HasPrefix(name, "boot/vmlinuz-"):
			r := strings.TrimPrefix(name, "boot/vmlinuz-")
			if release != "" && release != r {
				return "", fmt.Errorf("two kernels: %s and %s", release, r)
			}
			release = r
			out = filepath.Join(dst, name)
		case strings.HasPrefix(name, "lib/modules/"), strings.HasPrefix(name, "usr/lib/modules/"):
			rest := name[strings.Index(name, "lib/modules/")+len("lib/modules/"):]
			rel, file, ok := strings.Cut(rest, "/")
			if !ok || !want[file] {
				continue
			}
			out = filepath.Join(dst, "lib", "modules", rel, file)
		default:
			continue
		}
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return "", err
		}
		f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", err
		}
	}
	if release == "" {
		return "", errors.New("no boot/vmlinuz-* in the package")
	}
	return release, nil
}

// extractVmlinux cuts the compressed kernel out of a bzImage (its setup
// header's payload_offset and payload_length, boot protocol ≥ 2.08),
// decompresses it (xz, as Debian builds it) and checks that the ELF has
// a PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY), which qemu -kernel needs
// to boot an ELF.
func extractVmlinux(ctx context.Context, bzImage, out string) error {
	b, err := os.ReadFile(bzImage)
	if err != nil {
		return err
	}
	if len(b) < 0x250 || string(b[0x202:0x206]) != "HdrS" {
		return errors.New("not a bzImage")
	}
	setupSects := int(b[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	off := int(binary.LittleEndian.Uint32(b[0x248:]))
	n := int(binary.LittleEndian.Uint32(b[0x24c:]))
	start := (setupSects+1)*512 + off
	if start < 0 || n <= 0 || start+n > len(b) {
		return fmt.Errorf("payload %d+%d outside the %d-byte image", start, n, len(b))
	}
	payload := b[start : start+n]
	var dec []string
	switch {
	case bytes.HasPrefix(payload, []byte("\xfd7zXZ\x00")):
		if p, err := exec.LookPath("xz"); err == nil {
			dec = []string{p, "-dc", "--single-stream"}
		} else if p, err := exec.LookPath("busybox"); err == nil {
			dec = []string{p, "xzcat"}
		} else {
			return errors.New("neither xz nor busybox to decompress the xz kernel")
		}
	case bytes.HasPrefix(payload, []byte("\x1f\x8b")):
		dec = []string{"gzip", "-dc"}
	case bytes.HasPrefix(payload, []byte("\x28\xb5\x2f\xfd")):
		dec = []string{"zstd", "-dc"}
	default:
		return fmt.Errorf("unknown kernel compression % x", payload[:min(6, len(payload))])
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, dec[0], dec[1:]...)
	cmd.Stdin = bytes.NewReader(payload)
	cmd.Stdout = f
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	// xz may complain about the size word the kernel appends after the
	// stream; what counts is a complete ELF with a PVH note.
	ok, perr := hasPVHNote(out)
	if perr != nil {
		return fmt.Errorf("%s: %v (%v %s)", strings.Join(dec, " "), perr, err, stderr.String())
	}
	if !ok {
		return errors.New("the vmlinux has no PVH entry note")
	}
	return nil
}

// hasPVHNote reports whether an ELF kernel has a Xen
// XEN_ELFNOTE_PHYS32_ENTRY (18) note, the PVH boot entry.
func hasPVHNote(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data, err := io.ReadAll(p.Open())
		if err != nil {
			return false, err
		}
		for len(data) >= 12 {
			nsz := int(binary.LittleEndian.Uint32(data[0:]))
			dsz := int(binary.LittleEndian.Uint32(data[4:]))
			typ := binary.LittleEndian.Uint32(data[8:])
			pad := func(x int) int { return (x + 3) &^ 3 }
			if 12+pad(nsz)+pad(dsz) > len(data) {
				break
			}
			name := string(bytes.TrimRight(data[12:12+nsz], "\x00"))
			if name == "Xen" && typ == 18 {
				return true, nil
			}
			data = data[12+pad(nsz)+pad(dsz):]
		}
	}
	return false, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

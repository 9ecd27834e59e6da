//go:build linux

package vmtest

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// initramfsFormat changes when the layout written by BuildInitramfs does,
// so stale cached images are not reused.
const initramfsFormat = "virtkey-vm-initramfs-1"

// FindBusybox returns a statically linked busybox (Debian's
// busybox-static installs /bin/busybox; the dynamically linked `busybox`
// package cannot run from an initramfs without its libraries).
func FindBusybox() (string, error) {
	cands := []string{os.Getenv("VIRTKEY_VM_BUSYBOX"), "/bin/busybox", "/usr/bin/busybox"}
	if p, err := exec.LookPath("busybox"); err == nil {
		cands = append(cands, p)
	}
	var bad []string
	for _, c := range cands {
		if c == "" || !fileExists(c) {
			continue
		}
		if static, err := isStatic(c); err != nil || !static {
			bad = append(bad, c)
			continue
		}
		return c, nil
	}
	if len(bad) > 0 {
		return "", envErrorf("busybox at %s is not statically linked: install busybox-static", strings.Join(bad, ", "))
	}
	return "", envErrorf("busybox is missing: install busybox-static")
}

func isStatic(p string) (bool, error) {
	f, err := elf.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, pr := range f.Progs {
		if pr.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}

// initramfsFile is one entry of the image.
type initramfsFile struct {
	name string // path inside the image, no leading slash
	mode uint32 // full st_mode (type and permissions)
	data []byte // content of regular files and symlink targets
	rdev [2]uint32
}

// BuildInitramfs returns the cached initramfs for kernel k with init
// script initScript (testdata/vm/init), building it if needed. Its name
// carries a hash of everything that goes in.
func BuildInitramfs(cache string, k *Kernel, initScript, busybox string, logf Logf) (string, error) {
	initData, err := os.ReadFile(initScript)
	if err != nil {
		return "", err
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return "", err
	}
	var list strings.Builder
	files := []initramfsFile{
		{name: "bin", mode: 0o040755},
		{name: "dev", mode: 0o040755},
		{name: "dev/console", mode: 0o020600, rdev: [2]uint32{5, 1}},
		{name: "dev/null", mode: 0o020666, rdev: [2]uint32{1, 3}},
		{name: "proc", mode: 0o040755},
		{name: "sys", mode: 0o040755},
		{name: "tmp", mode: 0o041777},
		{name: "lib", mode: 0o040755},
		{name: "lib/modules", mode: 0o040755},
		{name: "bin/busybox", mode: 0o100755, data: bb},
		{name: "bin/sh", mode: 0o120777, data: []byte("busybox")},
		{name: "init", mode: 0o100755, data: initData},
	}
	for _, m := range Modules {
		b, err := os.ReadFile(k.ModulePath(m))
		if err != nil {
			return "", err
		}
		base := path.Base(m)
		files = append(files, initramfsFile{name: "lib/modules/" + base, mode: 0o100644, data: b})
		list.WriteString(base + "\n")
	}
	files = append(files, initramfsFile{name: "modules.list", mode: 0o100644, data: []byte(list.String())})

	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s %s %s\n", initramfsFormat, k.Package, k.Version, k.Release)
	for _, f := range files {
		fmt.Fprintf(h, "%s %o %d %d:%d\n", f.name, f.mode, len(f.data), f.rdev[0], f.rdev[1])
		h.Write(f.data)
	}
	sum := hex.EncodeToString(h.Sum(nil))[:16]
	out := filepath.Join(cache, "initramfs", fmt.Sprintf("initramfs-%s-%s.cpio.gz", k.Release, sum))
	if fileExists(out) {
		return out, nil
	}
	unlock, err := lockDir(cache)
	if err != nil {
		return "", err
	}
	defer unlock()
	if fileExists(out) {
		return out, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err := writeNewc(zw, files); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	logf("vmtest: built %s (%d bytes)", out, buf.Len())
	return out, nil
}

// writeNewc writes files as a "newc" (SVR4, no CRC) cpio archive, the
// format the kernel unpacks into its rootfs.
func writeNewc(w io.Writer, files []initramfsFile) error {
	ino := uint32(1)
	entry := func(f initramfsFile) error {
		name := f.name + "\x00"
		hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, f.mode, 0, 0, 1, 0, len(f.data), 0, 0, f.rdev[0], f.rdev[1], len(name), 0)
		ino++
		var b bytes.Buffer
		b.WriteString(hdr)
		b.WriteString(name)
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
		b.Write(f.data)
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
		_, err := w.Write(b.Bytes())
		return err
	}
	for _, f := range files {
		if err := entry(f); err != nil {
			return err
		}
	}
	return entry(initramfsFile{name: "TRAILER!!!"})
}

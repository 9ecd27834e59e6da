package hidraw

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// FIDOUsagePage is the HID usage page of FIDO authenticators (CTAP 2.1
// §11.2.8.1 "HID report descriptor and device discovery").
const FIDOUsagePage = 0xF1D0

// sysClassHidraw is where the kernel lists hidraw devices.
const sysClassHidraw = "/sys/class/hidraw"

// Find lists the hidraw devices whose report descriptor declares the FIDO
// usage page, sorted by path. No hidraw support (no /sys/class/hidraw) is
// no devices, not an error. The /dev node of a device just plugged in may
// not exist yet.
func Find() ([]Info, error) {
	return findIn(sysClassHidraw)
}

func findIn(sysDir string) ([]Info, error) {
	entries, err := os.ReadDir(sysDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, e := range entries {
		dir := filepath.Join(sysDir, e.Name(), "device")
		desc, err := os.ReadFile(filepath.Join(dir, "report_descriptor"))
		if err != nil || !hasUsagePage(desc, FIDOUsagePage) {
			continue
		}
		info := Info{Path: "/dev/" + e.Name()}
		info.Name, info.Serial = uevent(filepath.Join(dir, "uevent"))
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// hasUsagePage walks the short items of a HID report descriptor (HID 1.11
// §6.2.2.2) and reports whether a Usage Page item (global, tag 0) has the
// given value. Long items are skipped; a truncated descriptor ends the walk.
func hasUsagePage(desc []byte, page uint32) bool {
	for i := 0; i < len(desc); {
		prefix := desc[i]
		if prefix == 0xFE { // long item: 0xFE, size, tag, data
			if i+1 >= len(desc) {
				return false
			}
			i += 3 + int(desc[i+1])
			continue
		}
		size := int(prefix & 0x03)
		if size == 3 {
			size = 4
		}
		if i+1+size > len(desc) {
			return false
		}
		if prefix&0xFC == 0x04 { // Usage Page: tag 0, type global (1)
			var v uint32
			for j := size - 1; j >= 0; j-- {
				v = v<<8 | uint32(desc[i+1+j]) // little-endian
			}
			if v == page {
				return true
			}
		}
		i += 1 + size
	}
	return false
}

// uevent reads HID_NAME and HID_UNIQ from a uevent file ("" if absent).
func uevent(path string) (name, uniq string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", ""
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "HID_NAME="); ok {
			name = v
		}
		if v, ok := strings.CutPrefix(sc.Text(), "HID_UNIQ="); ok {
			uniq = v
		}
	}
	return name, uniq
}

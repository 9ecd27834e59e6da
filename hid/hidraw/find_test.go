package hidraw

import (
	"os"
	"path/filepath"
	"testing"
)

// A FIDO report descriptor (CTAP 2.1 §11.2.8.1) and a keyboard's.
var (
	fidoDescriptor = []byte{
		0x06, 0xD0, 0xF1, // Usage Page (FIDO Alliance)
		0x09, 0x01, // Usage (CTAPHID)
		0xA1, 0x01, // Collection (Application)
		0x09, 0x20, 0x15, 0x00, 0x26, 0xFF, 0x00, 0x75, 0x08, 0x95, 0x40, 0x81, 0x02,
		0x09, 0x21, 0x15, 0x00, 0x26, 0xFF, 0x00, 0x75, 0x08, 0x95, 0x40, 0x91, 0x02,
		0xC0,
	}
	keyboardDescriptor = []byte{0x05, 0x01, 0x09, 0x06, 0xA1, 0x01, 0x05, 0x07, 0x19, 0xE0, 0x29, 0xE7, 0xC0}
)

func TestHasUsagePage(t *testing.T) {
	t.Parallel()
	if !hasUsagePage(fidoDescriptor, FIDOUsagePage) {
		t.Error("FIDO descriptor not recognised")
	}
	if hasUsagePage(keyboardDescriptor, FIDOUsagePage) {
		t.Error("keyboard taken for a FIDO key")
	}
	// A long item before the usage page is skipped; truncation is safe.
	long := append([]byte{0xFE, 0x02, 0x10, 0xAA, 0xBB}, fidoDescriptor...)
	if !hasUsagePage(long, FIDOUsagePage) {
		t.Error("long item not skipped")
	}
	for i := range fidoDescriptor {
		hasUsagePage(fidoDescriptor[:i], FIDOUsagePage)
	}
	if hasUsagePage(fidoDescriptor[:2], FIDOUsagePage) {
		t.Error("truncated usage page accepted")
	}
}

func TestFind(t *testing.T) {
	t.Parallel()
	sys := t.TempDir()
	add := func(name string, desc []byte, uevent string) {
		dir := filepath.Join(sys, name, "device")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "report_descriptor"), desc, 0o644)
		os.WriteFile(filepath.Join(dir, "uevent"), []byte(uevent), 0o644)
	}
	add("hidraw0", keyboardDescriptor, "HID_NAME=Some Keyboard\n")
	add("hidraw3", fidoDescriptor, "DRIVER=hid-generic\nHID_NAME=virtkey FIDO2\nHID_ID=0003:00001209:0000F1D0\nHID_UNIQ=0123abcd\n")
	got, err := findIn(sys)
	if err != nil || len(got) != 1 || got[0] != (Info{Path: "/dev/hidraw3", Name: "virtkey FIDO2", Serial: "0123abcd"}) {
		t.Fatalf("found %+v, %v", got, err)
	}
	add("hidraw5", fidoDescriptor, "")
	got, _ = findIn(sys)
	if len(got) != 2 || got[1] != (Info{Path: "/dev/hidraw5"}) {
		t.Errorf("found %+v", got)
	}
	if got, err := findIn(filepath.Join(sys, "absent")); err != nil || got != nil {
		t.Errorf("no sysfs dir: %v, %v", got, err)
	}
}

// FuzzHasUsagePage: any descriptor is walked without a panic, and a FIDO
// usage page item in front is always found.
func FuzzHasUsagePage(f *testing.F) {
	f.Add(fidoDescriptor)
	f.Add(keyboardDescriptor)
	f.Add([]byte{0xFE, 0xFF})
	f.Fuzz(func(t *testing.T, desc []byte) {
		hasUsagePage(desc, FIDOUsagePage)
		if !hasUsagePage(append([]byte{0x06, 0xD0, 0xF1}, desc...), FIDOUsagePage) {
			t.Fatal("leading FIDO usage page not found")
		}
	})
}

//go:build linux

package main

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
	if !hasUsagePage(fidoDescriptor, fidoUsagePage) {
		t.Error("FIDO descriptor not recognised")
	}
	if hasUsagePage(keyboardDescriptor, fidoUsagePage) {
		t.Error("keyboard taken for a FIDO key")
	}
	// A long item before the usage page is skipped; truncation is safe.
	long := append([]byte{0xFE, 0x02, 0x10, 0xAA, 0xBB}, fidoDescriptor...)
	if !hasUsagePage(long, fidoUsagePage) {
		t.Error("long item not skipped")
	}
	for i := range fidoDescriptor {
		hasUsagePage(fidoDescriptor[:i], fidoUsagePage)
	}
	if hasUsagePage(fidoDescriptor[:2], fidoUsagePage) {
		t.Error("truncated usage page accepted")
	}
}

func TestFindFIDOHidraw(t *testing.T) {
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
	add("hidraw3", fidoDescriptor, "DRIVER=hid-generic\nHID_NAME=virtkey FIDO2\nHID_ID=0003:00001209:0000F1D0\n")
	got, err := findFIDOHidrawIn(sys)
	if err != nil || len(got) != 1 || got[0] != (hidrawDevice{Path: "/dev/hidraw3", Name: "virtkey FIDO2"}) {
		t.Fatalf("found %+v, %v", got, err)
	}
	add("hidraw5", fidoDescriptor, "")
	got, _ = findFIDOHidrawIn(sys)
	if len(got) != 2 || got[1].Path != "/dev/hidraw5" {
		t.Errorf("found %+v", got)
	}
	if got, err := findFIDOHidrawIn(filepath.Join(sys, "absent")); err != nil || got != nil {
		t.Errorf("no sysfs dir: %v, %v", got, err)
	}
}

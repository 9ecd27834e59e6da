package server

import (
	"os"

	"github.com/virtkey/virtkey/internal/doctor"
)

// uhidUsable fails with doctor's advice when the uhid device cannot be
// opened, so that run says so before it creates any state. Opening the
// node alone creates no device.
func uhidUsable(path string) error {
	fd, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return doctor.UHIDError(path, err)
	}
	return fd.Close()
}

// bcdVersion renders the firmware version as a USB bcdDevice: 1.2.3 →
// 0x0123.
func bcdVersion(v [3]byte) uint32 {
	return uint32(v[0])<<8 | uint32(v[1]&0xF)<<4 | uint32(v[2]&0xF)
}

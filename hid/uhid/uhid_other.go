//go:build !linux

package uhid

import (
	"context"
	"errors"
)

// ErrUnsupported is returned by Open on systems without uhid (anything but
// Linux).
var ErrUnsupported = errors.New("uhid: /dev/uhid exists only on Linux; use the UDP transport")

// ErrClosed is returned by Device methods after Close.
var ErrClosed = errors.New("uhid: device closed")

// Device is a FIDO HID device created through /dev/uhid. On this system
// Open always fails, so no Device exists; the methods are there so that
// code using the package builds everywhere.
type Device struct{}

// Open fails with ErrUnsupported: uhid is a Linux interface.
func Open(opts Options) (*Device, error) { return nil, ErrUnsupported }

// Serial returns the device's serial.
func (d *Device) Serial() string { return "" }

// ReadReport fails with ErrUnsupported.
func (d *Device) ReadReport(ctx context.Context) ([]byte, error) { return nil, ErrUnsupported }

// WriteReport fails with ErrUnsupported.
func (d *Device) WriteReport(report []byte) error { return ErrUnsupported }

// Recreate fails with ErrUnsupported.
func (d *Device) Recreate(unplugged func()) error { return ErrUnsupported }

// Close does nothing.
func (d *Device) Close() error { return nil }

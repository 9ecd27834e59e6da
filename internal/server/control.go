package server

import (
	"context"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/hid/hidraw"
)

// ControlHooks hand a key to the test-automation control plane (package
// control; cmd/virtkey/control.go wires them). Zero hooks change nothing.
type ControlHooks struct {
	// Presence, if set, wraps the provider --presence chose (named name):
	// the control plane's queue answers, asking it when no mode is set.
	Presence func(p ctap2.Presence, name string) ctap2.Presence
	// Observer is told what clients did.
	Observer ctap2.Observer
}

func (h ControlHooks) presence(p ctap2.Presence, name string) ctap2.Presence {
	if h.Presence == nil {
		return p
	}
	return h.Presence(p, name)
}

// UVMode is the built-in UV mode --uv selects.
func (c *Config) UVMode() ctap2.UVMode { return c.uvMode() }

// The methods below make a Key the control plane's device (control/vkey.Device).

// Attach is "udp" or "uhid".
func (k *Key) Attach() string {
	if k.udp != nil {
		return "udp"
	}
	return "uhid"
}

// UDPAddr is the bound UDP address ("" with uhid).
func (k *Key) UDPAddr() string { return k.Addr() }

// HIDRaw is the key's /dev/hidraw node, found in sysfs by the device's
// serial (HID_UNIQ); "" over UDP or before the kernel made it.
func (k *Key) HIDRaw() string {
	if k.dev == nil {
		return ""
	}
	infos, _ := hidraw.Find()
	for _, in := range infos {
		if in.Serial == k.dev.Serial() {
			return in.Path
		}
	}
	return ""
}

// Replug power-cycles the key ([Key.PowerCycle]).
func (k *Key) Replug(context.Context) error { return k.PowerCycle() }

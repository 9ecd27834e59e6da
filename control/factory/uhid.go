package factory

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/virtkey/virtkey/control"
	"github.com/virtkey/virtkey/hid"
	"github.com/virtkey/virtkey/hid/hidraw"
	"github.com/virtkey/virtkey/hid/uhid"
)

// uhidDevice serves a key as a USB HID device through /dev/uhid.
type uhidDevice struct {
	dev    *uhid.Device
	srv    *hid.Server
	cancel context.CancelFunc
	done   chan error

	mu     sync.Mutex
	hidraw string
}

func startUHID(o uhid.Options, h hid.Handler, opts *hid.Options) (*uhidDevice, error) {
	if o.Name == "" {
		o.Name = "virtkey FIDO2 security key"
	}
	o.Serial = "" // each key its own
	dev, err := uhid.Open(o)
	if err != nil {
		return nil, err
	}
	d := &uhidDevice{dev: dev, srv: hid.NewServer(dev, h, opts), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go func() { d.done <- d.srv.Run(ctx) }()
	d.findHidraw(2 * time.Second)
	return d, nil
}

// findHidraw waits up to d for the kernel's /dev/hidrawN of this device
// (found by its serial, HID_UNIQ, in sysfs).
func (d *uhidDevice) findHidraw(wait time.Duration) {
	deadline := time.Now().Add(wait)
	for {
		if n := hidrawOf(d.dev.Serial()); n != "" {
			d.mu.Lock()
			d.hidraw = n
			d.mu.Unlock()
			return
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hidrawOf(serial string) string {
	infos, _ := hidraw.Find()
	for _, in := range infos {
		if in.Serial == serial {
			return in.Path
		}
	}
	return ""
}

func (d *uhidDevice) Attach() string  { return control.AttachUHID }
func (d *uhidDevice) UDPAddr() string { return "" }
func (d *uhidDevice) HIDRaw() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hidraw
}

func (d *uhidDevice) Replug(context.Context) error {
	if err := d.dev.Recreate(d.srv.PowerCycle); err != nil {
		return err
	}
	d.mu.Lock()
	d.hidraw = ""
	d.mu.Unlock()
	d.findHidraw(2 * time.Second)
	return nil
}

func (d *uhidDevice) stop() error {
	d.cancel()
	err := <-d.done
	return errors.Join(err, d.dev.Close())
}

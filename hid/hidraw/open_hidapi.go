//go:build linux && hidraw && cgo

package hidraw

import (
	"context"
	"fmt"

	bhid "github.com/bearsh/hid"

	"github.com/virtkey/virtkey/hid"
)

// Open opens a hidraw node through github.com/bearsh/hid built with its
// hidraw backend (hidapi's linux/hid.c; needs cgo and libudev). Its paths
// are the /dev/hidrawN nodes themselves.
func Open(path string) (Device, error) {
	d, err := bhid.OpenByPath(path)
	if err != nil {
		return nil, err
	}
	return &hidapiDevice{d: d}, nil
}

// hidapiDevice is a hid.ReportDevice on a bearsh/hid device. hidapi has no
// cancellable read, so ReadReport polls with a short timeout to notice ctx.
type hidapiDevice struct {
	d *bhid.Device
}

// pollMillis is how long one hidapi read waits before ctx is checked again.
const pollMillis = 100

func (h *hidapiDevice) ReadReport(ctx context.Context) ([]byte, error) {
	buf := make([]byte, hid.ReportSize)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := h.d.ReadTimeout(buf, pollMillis)
		if err != nil {
			return nil, fmt.Errorf("hidraw: %w", err)
		}
		if n >= hid.ReportSize {
			return buf[:hid.ReportSize], nil
		}
	}
}

func (h *hidapiDevice) WriteReport(report []byte) error { return writeReport(h.d, report) }

func (h *hidapiDevice) Close() error { return h.d.Close() }

//go:build linux && !(hidraw && cgo)

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/virtkey/virtkey/hid"
)

// openHidraw opens a hidraw node directly (the default build, no cgo): a
// FIDO key has no report IDs, so a read returns one 64-byte input report
// and a write takes a zero report-ID byte followed by the 64-byte output
// report. Build with -tags hidraw (and cgo, libudev) to go through
// github.com/bearsh/hid's hidapi hidraw backend instead.
func openHidraw(path string) (reportDevice, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return &hidrawFile{f: f}, nil
}

// hidrawFile is a hid.ReportDevice on an open /dev/hidrawN. The kernel's
// hidraw driver supports poll, so the file is in Go's poller and read
// deadlines interrupt a blocked read when ctx ends.
type hidrawFile struct {
	f *os.File
}

func (h *hidrawFile) ReadReport(ctx context.Context) ([]byte, error) {
	stop := context.AfterFunc(ctx, func() { h.f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, hid.ReportSize+1)
	for {
		n, err := h.f.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				h.f.SetReadDeadline(time.Time{})
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("hidraw: %w", err)
		}
		if n >= hid.ReportSize {
			return buf[:hid.ReportSize], nil
		}
		// A short report is not CTAPHID: skip it.
	}
}

func (h *hidrawFile) WriteReport(report []byte) error {
	if len(report) > hid.ReportSize {
		return errors.New("hidraw: report longer than 64 bytes")
	}
	buf := make([]byte, 1+hid.ReportSize) // report ID 0, then the report
	copy(buf[1:], report)
	if _, err := h.f.Write(buf); err != nil {
		return fmt.Errorf("hidraw: %w", err)
	}
	return nil
}

func (h *hidrawFile) Close() error { return h.f.Close() }

//go:build linux

package hidraw

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/virtkey/virtkey/hid"
)

// File is a hidraw node opened directly: an [hid.ReportDevice].
// ReadReport must not be called concurrently with itself.
type File struct {
	f *os.File
}

// OpenFile opens the hidraw node at path directly, whatever the build's
// backend.
func OpenFile(path string) (*File, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return &File{f: f}, nil
}

// ReadReport returns the next 64-byte input report, skipping shorter ones
// (not CTAPHID). It returns ctx's error when ctx ends first.
func (h *File) ReadReport(ctx context.Context) ([]byte, error) {
	// When ctx ends, a deadline in the past wakes the blocked read. It is
	// cleared before returning, once the function setting it has finished,
	// so that it cannot fail the next read.
	woken := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		h.f.SetReadDeadline(time.Unix(1, 0))
		close(woken)
	})
	defer func() {
		if !stop() {
			<-woken
			h.f.SetReadDeadline(time.Time{})
		}
	}()
	buf := make([]byte, hid.ReportSize+1)
	for {
		n, err := h.f.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("hidraw: %w", err)
		}
		if n >= hid.ReportSize {
			return buf[:hid.ReportSize], nil
		}
	}
}

// WriteReport writes one output report: report ID 0, then the report
// zero-padded to 64 bytes.
func (h *File) WriteReport(report []byte) error { return writeReport(h.f, report) }

// Write writes p to the node as it is (a report ID byte first), for tests
// that send malformed reports; [File.WriteReport] is the usual way.
func (h *File) Write(p []byte) (int, error) { return h.f.Write(p) }

// Close closes the node.
func (h *File) Close() error { return h.f.Close() }

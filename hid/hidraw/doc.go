// Package hidraw is the host side of a FIDO security key on Linux: it finds
// the hidraw nodes whose report descriptor declares the FIDO usage page
// ([Find]) and opens one as an [hid.ReportDevice] ([Open]), beside the
// device-side transports hid/uhid and hid/udp.
//
// # Backends
//
// The default build opens the node directly ([File]): a FIDO key has no
// report IDs, so a read returns one 64-byte input report and a write takes
// a zero report-ID byte followed by the 64-byte output report. The kernel's
// hidraw driver supports poll, so the file sits in Go's poller and a read
// returns when its context ends.
//
// Built with -tags hidraw (and cgo, libudev), [Open] goes through
// github.com/bearsh/hid's hidapi hidraw backend instead; hidapi has no
// cancellable read, so a read polls in 100 ms steps to notice its context.
// [OpenFile] always opens the node directly.
//
// Elsewhere than Linux there are no hidraw nodes: [Find] finds none and
// [Open] fails.
package hidraw

import (
	"errors"
	"fmt"
	"io"

	"github.com/virtkey/virtkey/hid"
)

// Device is an open hidraw node.
type Device interface {
	hid.ReportDevice
	io.Closer
}

// Info describes a FIDO hidraw node.
type Info struct {
	Path   string // /dev/hidrawN
	Name   string // HID_NAME, may be empty
	Serial string // HID_UNIQ, may be empty
}

// writeReport writes one output report to a hidraw node (or hidapi
// device): report ID 0 (a FIDO key has no report IDs), then the report
// zero-padded to 64 bytes.
func writeReport(w io.Writer, report []byte) error {
	if len(report) > hid.ReportSize {
		return errors.New("hidraw: report longer than 64 bytes")
	}
	buf := make([]byte, 1+hid.ReportSize)
	copy(buf[1:], report)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("hidraw: %w", err)
	}
	return nil
}

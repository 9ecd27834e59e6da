//go:build linux

package uhid

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// aLongTimeAgo is a read deadline in the past: setting it wakes a blocked
// read.
var aLongTimeAgo = time.Unix(1, 0)

// Device is a FIDO HID device created through /dev/uhid. It is an
// hid.ReportDevice: give it to hid.NewServer.
//
// ReadReport must not be called concurrently with itself; WriteReport,
// Recreate and Close may be called from any goroutine.
type Device struct {
	f      *os.File
	log    *slog.Logger
	serial string
	create []byte // the UHID_CREATE2 event, for Recreate

	rbuf []byte // ReadReport's event buffer

	// unstarted counts CREATE2 events whose START has not been read yet.
	// While it is positive, OUTPUT events belong to a device being
	// re-created and are dropped (see Recreate).
	unstarted atomic.Int32

	recreateMu sync.Mutex // one Recreate at a time

	wmu     sync.Mutex // serialises writes and guards the fields below
	closed  bool
	created bool // between a successful CREATE2 and DESTROY
}

// Open creates the device: it opens the uhid character device and writes
// UHID_CREATE2 with the FIDO report descriptor, bus USB and the identity in
// opts. The kernel then binds hid-generic to it and a /dev/hidraw node
// appears. Close destroys it; so does the end of the process, crash or
// not, since the kernel destroys a uhid device when its file is closed.
//
// Errors from opening the file wrap the *os.PathError, so
// errors.Is(err, fs.ErrNotExist) and fs.ErrPermission tell the usual
// causes apart (module not loaded; no access).
func Open(opts Options) (*Device, error) {
	o := opts.withDefaults()
	create, err := o.createEvent()
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(o.Path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("uhid: %w", err)
	}
	return newDevice(f, o, create)
}

// newDevice creates the device on f, which is /dev/uhid or, in tests, one
// end of a SOCK_SEQPACKET socket pair standing in for the kernel. o has
// its defaults applied. newDevice owns f: it closes it on failure.
func newDevice(f *os.File, o Options, create []byte) (*Device, error) {
	// ReadReport honours its context by moving the read deadline, which
	// needs f in Go's poller; /dev/uhid supports poll, so it is.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, fmt.Errorf("uhid: %s does not support read deadlines: %w", f.Name(), err)
	}
	d := &Device{
		f:      f,
		log:    o.Logger,
		serial: o.Serial,
		create: create,
		rbuf:   make([]byte, eventSize),
	}
	d.unstarted.Store(1)
	d.wmu.Lock()
	err := d.writeLocked(create)
	d.created = err == nil
	d.wmu.Unlock()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("uhid: creating the device: %w", err)
	}
	d.log.Debug("uhid device created", "name", o.Name, "serial", o.Serial,
		"vid", fmt.Sprintf("%04x", o.VendorID), "pid", fmt.Sprintf("%04x", o.ProductID))
	return d, nil
}

// Serial returns the device's serial (HID_UNIQ).
func (d *Device) Serial() string { return d.serial }

// ReadReport returns the next 64-byte output report a client wrote, with
// the report number stripped. It handles the other events on the way:
// START, STOP, OPEN and CLOSE are logged; GET_REPORT and SET_REPORT (FIDO
// uses no feature reports) are answered with EIO; malformed output is
// dropped. It returns ctx.Err() when ctx ends, and an error when the
// device is closed or fails.
func (d *Device) ReadReport(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.f.SetReadDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { d.f.SetReadDeadline(aLongTimeAgo) })
	defer stop()
	for {
		n, err := d.f.Read(d.rbuf)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, os.ErrDeadlineExceeded):
			// A deadline left over from an earlier, cancelled call. Clearing
			// it could also clear this ctx's wake-up if ctx was cancelled
			// meanwhile, so look at ctx again before reading on.
			d.f.SetReadDeadline(time.Time{})
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			continue
		case errors.Is(err, io.EOF):
			return nil, errors.New("uhid: device file returned end of file")
		default:
			return nil, fmt.Errorf("uhid: %w", err)
		}
		if r := d.handle(d.rbuf[:n]); r != nil {
			return r, nil
		}
	}
}

// ReadPending is ReadReport for an output report the kernel has queued
// already: it handles the events before it and returns without waiting;
// ok is false when no report is queued ([hid.PendingReader]; the address
// is always the zero one).
func (d *Device) ReadPending() ([]byte, netip.AddrPort, bool, error) {
	rc, err := d.f.SyscallConn()
	if err != nil {
		return nil, netip.AddrPort{}, false, fmt.Errorf("uhid: %w", err)
	}
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, rerr = syscall.Read(int(fd), d.rbuf)
			return true // one try
		})
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(rerr, syscall.EAGAIN), errors.Is(rerr, syscall.EINTR):
			return nil, netip.AddrPort{}, false, nil
		case err != nil:
			return nil, netip.AddrPort{}, false, fmt.Errorf("uhid: %w", err)
		case rerr != nil:
			return nil, netip.AddrPort{}, false, fmt.Errorf("uhid: %w", rerr)
		case n == 0:
			return nil, netip.AddrPort{}, false, errors.New("uhid: device file returned end of file")
		}
		if r := d.handle(d.rbuf[:n]); r != nil {
			return r, netip.AddrPort{}, true, nil
		}
	}
}

// handle processes one event and returns the report it carries, if any.
func (d *Device) handle(b []byte) []byte {
	ev, err := decodeEvent(b)
	if err != nil {
		d.log.Warn("uhid: bad event from the kernel", "len", len(b), "err", err)
		return nil
	}
	switch ev.typ {
	case evStart:
		for {
			n := d.unstarted.Load()
			if n <= 0 || d.unstarted.CompareAndSwap(n, n-1) {
				break
			}
		}
		d.log.Debug("uhid start: the kernel bound a driver", "dev_flags", ev.devFlags)
	case evStop:
		d.log.Debug("uhid stop: the driver was unbound")
	case evOpen:
		d.log.Debug("uhid open: a client opened the device")
	case evClose:
		// The last client went away, possibly mid-transaction. The
		// CTAPHID server keeps its state per channel and times out a
		// partial message by itself, so there is nothing to do.
		d.log.Debug("uhid close: the last client closed the device")
	case evOutput:
		if d.unstarted.Load() > 0 {
			d.log.Debug("uhid: dropping output of a device being re-created", "len", len(ev.data))
			return nil
		}
		r, err := outputToReport(ev.rtype, ev.data)
		if err != nil {
			d.log.Debug("uhid: dropping output", "err", err)
			return nil
		}
		return r
	case evGetReport:
		d.log.Debug("uhid get_report: answering EIO", "id", ev.id, "rnum", ev.rnum, "rtype", ev.rtype)
		d.reply(encodeGetReportReply(ev.id, errnoEIO))
	case evSetReport:
		d.log.Debug("uhid set_report: answering EIO", "id", ev.id, "rnum", ev.rnum, "rtype", ev.rtype, "len", len(ev.data))
		d.reply(encodeSetReportReply(ev.id, errnoEIO))
	default:
		d.log.Debug("uhid: ignoring event", "type", ev.typ.String())
	}
	return nil
}

// reply writes a GET/SET_REPORT reply. A failure is only logged: the
// kernel gives up waiting for the reply after a few seconds by itself.
func (d *Device) reply(ev []byte) {
	if err := d.write(ev, false); err != nil {
		d.log.Debug("uhid: writing a report reply failed", "err", err)
	}
}

// ErrClosed is returned by Device methods after Close.
var ErrClosed = errors.New("uhid: device closed")

// errUnplugged is returned by WriteReport while Recreate has the device
// destroyed.
var errUnplugged = errors.New("uhid: device is being re-created")

// WriteReport sends one input report (at most 64 bytes, zero-padded to
// 64) to the clients as UHID_INPUT2.
func (d *Device) WriteReport(report []byte) error {
	if len(report) > reportSize {
		return fmt.Errorf("uhid: report of %d bytes, want at most %d", len(report), reportSize)
	}
	r := make([]byte, reportSize)
	copy(r, report)
	return d.write(encodeInput2(r), true)
}

// write writes one event. If needCreated, it fails with errUnplugged while
// the device is destroyed.
func (d *Device) write(ev []byte, needCreated bool) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	switch {
	case d.closed:
		return ErrClosed
	case needCreated && !d.created:
		return errUnplugged
	}
	return d.writeLocked(ev)
}

// writeLocked writes one whole event; d.wmu must be held. The kernel takes
// an event in one write or fails it.
func (d *Device) writeLocked(ev []byte) error {
	n, err := d.f.Write(ev)
	if err != nil {
		return fmt.Errorf("uhid: writing %s: %w", eventType(ne.Uint32(ev)), err)
	}
	if n != len(ev) {
		return fmt.Errorf("uhid: short write of %s (%d of %d bytes)", eventType(ne.Uint32(ev)), n, len(ev))
	}
	return nil
}

// Recreate unplugs the device and plugs it in again, as pulling a USB key
// out and putting it back would: it writes UHID_DESTROY (the hidraw node
// goes away and clients' reads fail), calls unplugged if it is not nil,
// and writes UHID_CREATE2 with the same identity and serial. Pass the
// CTAPHID server's PowerCycle as unplugged so that volatile state is
// dropped while no client can reach the device.
//
// Output reports still queued from the old device are dropped: nothing
// written before the unplug reaches ReadReport afterwards. While the device
// is unplugged WriteReport fails. If re-creating fails, the Device is
// closed (ReadReport then fails too) and the error returned.
func (d *Device) Recreate(unplugged func()) error {
	d.recreateMu.Lock()
	defer d.recreateMu.Unlock()

	d.unstarted.Add(1) // from here until the new START, drop output
	d.wmu.Lock()
	if d.closed {
		d.wmu.Unlock()
		return ErrClosed
	}
	err := d.writeLocked(encodeDestroy())
	d.created = false
	d.wmu.Unlock()
	if err != nil {
		d.Close()
		return fmt.Errorf("uhid: re-creating the device: %w", err)
	}
	d.log.Debug("uhid device destroyed for re-creation")

	if unplugged != nil {
		unplugged()
	}

	d.wmu.Lock()
	if d.closed {
		d.wmu.Unlock()
		return ErrClosed
	}
	err = d.writeLocked(d.create)
	d.created = err == nil
	d.wmu.Unlock()
	if err != nil {
		d.Close()
		return fmt.Errorf("uhid: re-creating the device: %w", err)
	}
	d.log.Debug("uhid device re-created", "serial", d.serial)
	return nil
}

// Close destroys the device (UHID_DESTROY) and closes the file, which
// would destroy it anyway. A blocked ReadReport returns an error. Close is
// idempotent.
func (d *Device) Close() error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var err error
	if d.created {
		d.created = false
		err = d.writeLocked(encodeDestroy())
	}
	return errors.Join(err, d.f.Close())
}

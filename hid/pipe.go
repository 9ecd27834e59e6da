package hid

import (
	"context"
	"errors"
	"net/netip"
	"sync"
)

// ErrClosed is returned by [PipeEnd] methods once either end is closed.
var ErrClosed = errors.New("hid: device closed")

// pipeBuffer is how many reports each direction of a Pipe holds before
// WriteReport blocks: enough for two maximum-size messages.
const pipeBuffer = 2 * (MaxSeq + 2)

// PipeEnd is one end of an in-memory report pipe made by [Pipe]. It is a
// [ReportDevice]; its methods are safe for concurrent use.
type PipeEnd struct {
	in   <-chan []byte
	out  chan<- []byte
	done chan struct{}
	once *sync.Once
}

// Pipe returns the two ends of an in-memory HID link: give device to a
// [Server] and host to a [Client] (or drive it by hand in tests). Reports
// written to one end are read from the other in order. Each direction
// buffers a few hundred reports; a writer blocks beyond that until the
// other side reads. Closing either end closes both.
func Pipe() (device, host *PipeEnd) {
	toDev := make(chan []byte, pipeBuffer)
	toHost := make(chan []byte, pipeBuffer)
	done := make(chan struct{})
	once := new(sync.Once)
	device = &PipeEnd{in: toDev, out: toHost, done: done, once: once}
	host = &PipeEnd{in: toHost, out: toDev, done: done, once: once}
	return device, host
}

// ReadReport returns the next report written to the other end. It returns
// [ErrClosed] once the pipe is closed and ctx's error when ctx ends first.
func (p *PipeEnd) ReadReport(ctx context.Context) ([]byte, error) {
	select {
	case <-p.done:
		return nil, ErrClosed
	default:
	}
	select {
	case r := <-p.in:
		return r, nil
	case <-p.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

var _ PendingReader = (*PipeEnd)(nil)

// ReadPending returns the next report written to the other end if there
// is one ([PendingReader]); the address is always the zero one.
func (p *PipeEnd) ReadPending() ([]byte, netip.AddrPort, bool, error) {
	select {
	case <-p.done:
		return nil, netip.AddrPort{}, false, ErrClosed
	default:
	}
	select {
	case r := <-p.in:
		return r, netip.AddrPort{}, true, nil
	default:
		return nil, netip.AddrPort{}, false, nil
	}
}

// WriteReport sends a copy of report, zero-padded to [ReportSize] as a HID
// report is, to the other end. A report longer than ReportSize is an
// error.
func (p *PipeEnd) WriteReport(report []byte) error {
	if len(report) > ReportSize {
		return errors.New("hid: report longer than 64 bytes")
	}
	r := make([]byte, ReportSize)
	copy(r, report)
	select {
	case <-p.done:
		return ErrClosed
	default:
	}
	select {
	case p.out <- r:
		return nil
	case <-p.done:
		return ErrClosed
	}
}

// Close closes both ends. Pending and later reads and writes return
// [ErrClosed]. Close is idempotent and always returns nil.
func (p *PipeEnd) Close() error {
	p.once.Do(func() { close(p.done) })
	return nil
}

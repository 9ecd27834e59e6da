package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/hid"
)

// Conn carries one CTAP2 message (command byte ‖ CBOR parameters) to an
// authenticator and returns its answer (status byte ‖ optional CBOR). A
// [hid.Client] is a Conn; so is anything that wraps
// ctap2.Authenticator.HandleCBOR.
type Conn interface {
	CBOR(ctx context.Context, req []byte) ([]byte, error)
}

// Options configure a [Device].
type Options struct {
	// OnKeepalive, if set, is called with the status byte of each CTAPHID
	// KEEPALIVE (hid.StatusUPNeeded: "touch the key"). Used by [Open] only.
	OnKeepalive func(status byte)

	// Timeout, if positive, bounds each command (a touch included).
	Timeout time.Duration
}

// Device is a CTAP2 authenticator seen from the host. Its methods run one
// command at a time; a Device is safe for concurrent use but serializes
// its commands.
type Device struct {
	conn    Conn
	timeout time.Duration
	hidInfo *hid.DeviceInfo

	mu       sync.Mutex // one command at a time; guards the fields below
	info     *ctap2.GetInfoResponse
	protocol ctap2.PINProtocol // nil: choose from getInfo
}

// New returns a Device on conn. opts may be nil.
func New(conn Conn, opts *Options) *Device {
	d := &Device{conn: conn}
	if opts != nil {
		d.timeout = opts.Timeout
	}
	return d
}

// Open sets up CTAPHID on a report device: it allocates a channel with
// CTAPHID_INIT (bounded by ctx) and checks that the device speaks CTAP2
// (the CBOR capability). The caller keeps ownership of dev and closes it.
func Open(ctx context.Context, dev hid.ReportDevice, opts *Options) (*Device, error) {
	c := hid.NewClient(dev)
	if opts != nil {
		c.OnKeepalive = opts.OnKeepalive
	}
	if err := c.Init(ctx); err != nil {
		return nil, err
	}
	info := c.Info()
	if info.Capabilities&hid.CapCBOR == 0 {
		return nil, errors.New("device does not speak CTAP2 (no CBOR capability): a U2F-only key")
	}
	d := New(c, opts)
	d.hidInfo = &info
	return d, nil
}

// HIDInfo returns what the device reported in CTAPHID_INIT; ok is false
// when the Device was not made by [Open].
func (d *Device) HIDInfo() (info hid.DeviceInfo, ok bool) {
	if d.hidInfo == nil {
		return hid.DeviceInfo{}, false
	}
	return *d.hidInfo, true
}

// Transact sends command cmd with params and returns the status and the
// CBOR response (possibly empty). params may be nil (no parameters), a
// [RawMessage] (sent as is) or any value the CTAP2 canonical encoder takes
// (a struct with keyasint tags, a map[int]any). err is set only when the
// exchange itself failed (encoding, transport, a malformed answer); a CTAP
// error is a non-zero status with a nil err.
func (d *Device) Transact(ctx context.Context, cmd byte, params any) (ctap2.StatusCode, []byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.transact(ctx, cmd, params)
}

func (d *Device) transact(ctx context.Context, cmd byte, params any) (ctap2.StatusCode, []byte, error) {
	req := []byte{cmd}
	if params != nil {
		p, err := encode(params)
		if err != nil {
			return 0, nil, fmt.Errorf("encoding request: %w", err)
		}
		req = append(req, p...)
	}
	if d.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.timeout)
		defer cancel()
	}
	resp, err := d.conn.CBOR(ctx, req)
	if err != nil {
		return 0, nil, err
	}
	if len(resp) == 0 {
		return 0, nil, errors.New("empty CTAP2 answer (no status byte)")
	}
	return ctap2.StatusCode(resp[0]), resp[1:], nil
}

// call runs one command with d.mu held: a non-zero status becomes an error
// naming op, and a response map is decoded into out (if not nil).
func (d *Device) call(ctx context.Context, op string, cmd byte, params, out any) error {
	st, resp, err := d.transact(ctx, cmd, params)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if st != ctap2.StatusOK {
		return fmt.Errorf("%s: %w", op, st)
	}
	if out != nil {
		if err := decode(resp, out); err != nil {
			return fmt.Errorf("%s: malformed response: %w", op, err)
		}
	}
	return nil
}

// GetInfo asks the authenticator what it supports (authenticatorGetInfo,
// CTAP 2.1 §6.4) and remembers the answer for the choices described in the
// package documentation.
func (d *Device) GetInfo(ctx context.Context) (*ctap2.GetInfoResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.getInfo(ctx)
}

func (d *Device) getInfo(ctx context.Context) (*ctap2.GetInfoResponse, error) {
	var info ctap2.GetInfoResponse
	if err := d.call(ctx, "getInfo", ctap2.CmdGetInfo, nil, &info); err != nil {
		return nil, err
	}
	d.info = &info
	return &info, nil
}

// CachedInfo returns the getInfo answer remembered from the last call of
// [Device.GetInfo] (or of any helper that needed it), asking the
// authenticator only the first time.
func (d *Device) CachedInfo(ctx context.Context) (*ctap2.GetInfoResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cachedInfo(ctx)
}

func (d *Device) cachedInfo(ctx context.Context) (*ctap2.GetInfoResponse, error) {
	if d.info != nil {
		return d.info, nil
	}
	return d.getInfo(ctx)
}

// Option reports an option of the remembered getInfo: value, and whether
// the authenticator listed it at all.
func Option(info *ctap2.GetInfoResponse, name string) (value, present bool) {
	if info == nil {
		return false, false
	}
	value, present = info.Options[name]
	return value, present
}

// Reset erases every credential, the PIN and the configuration
// (authenticatorReset, CTAP 2.1 §6.6). The authenticator asks for a touch
// and may refuse (NOT_ALLOWED) later than 10 s after power-up.
func (d *Device) Reset(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	err := d.call(ctx, "reset", ctap2.CmdReset, nil, nil)
	d.info = nil // options (clientPin, alwaysUv) changed
	return err
}

// Selection waits for the user to touch this authenticator
// (authenticatorSelection, CTAP 2.1 §6.9).
func (d *Device) Selection(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.call(ctx, "selection", ctap2.CmdSelection, nil, nil)
}

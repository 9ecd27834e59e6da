package hid

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// cancelGrace is how long a cancelled CBOR or MSG request waits for the
// device's final answer after sending CTAPHID_CANCEL, so that the channel
// is idle again when the call returns.
const cancelGrace = time.Second

// DeviceInfo is what a device reports in its CTAPHID_INIT response.
type DeviceInfo struct {
	Protocol     byte    // CTAPHID protocol version (2)
	Version      [3]byte // device major, minor, build
	Capabilities byte    // CapWink | CapLock | CapCBOR | CapNMSG flags
}

// Client is the host side of CTAPHID over a [ReportDevice]: it frames
// requests, reassembles answers on its channel (ignoring other channels),
// follows KEEPALIVE and turns CTAPHID_ERROR into an [ErrorCode].
//
// A Client runs one transaction at a time; only [Client.Cancel] may be
// called concurrently with a transaction. For raw control in tests, use
// [Client.Send], [Client.WriteReport] and [Client.Receive].
type Client struct {
	dev  ReportDevice
	wmu  sync.Mutex // keeps the reports of one message together
	cid  atomic.Uint32
	info DeviceInfo

	// OnKeepalive, if set, is called with the status byte of every
	// KEEPALIVE received while waiting for an answer (for example to ask
	// the user to touch the key on [StatusUPNeeded]). Set it before use.
	OnKeepalive func(status byte)
}

// NewClient returns a Client on dev. Call [Client.Init] (or
// [Client.SetCID]) before anything else: until then the channel is the
// broadcast CID, on which the device accepts only INIT.
func NewClient(dev ReportDevice) *Client {
	c := &Client{dev: dev}
	c.cid.Store(BroadcastCID)
	return c
}

// CID returns the channel the client uses.
func (c *Client) CID() uint32 { return c.cid.Load() }

// SetCID makes the client use cid without CTAPHID_INIT (a device accepts
// any channel other than 0 and broadcast), or an invalid one on purpose.
func (c *Client) SetCID(cid uint32) { c.cid.Store(cid) }

// Info returns what the device reported in the last successful Init.
func (c *Client) Info() DeviceInfo { return c.info }

// Init allocates a channel: it sends CTAPHID_INIT with a random nonce on
// the broadcast CID, waits for the answer carrying that nonce (answers to
// other hosts' nonces are skipped), and adopts the channel it names.
func (c *Client) Init(ctx context.Context) error {
	var nonce [initNonceSize]byte
	rand.Read(nonce[:])
	if err := c.Send(BroadcastCID, CmdInit, nonce[:]); err != nil {
		return fmt.Errorf("hid: INIT: %w", err)
	}
	for {
		m, err := c.Receive(ctx, BroadcastCID)
		if err != nil {
			return fmt.Errorf("hid: INIT: %w", err)
		}
		switch {
		case m.Cmd == CmdError:
			return fmt.Errorf("hid: INIT: %w", errorOf(m))
		case m.Cmd != CmdInit || len(m.Payload) < initRespSize || !bytes.Equal(m.Payload[:initNonceSize], nonce[:]):
			continue // someone else's INIT
		}
		p := m.Payload
		cid := binary.BigEndian.Uint32(p[8:12])
		if cid == 0 || cid == BroadcastCID {
			return fmt.Errorf("hid: INIT: device assigned invalid channel %08X", cid)
		}
		c.cid.Store(cid)
		c.info = DeviceInfo{Protocol: p[12], Version: [3]byte{p[13], p[14], p[15]}, Capabilities: p[16]}
		return nil
	}
}

// Ping sends CTAPHID_PING with data and returns the echo.
func (c *Client) Ping(ctx context.Context, data []byte) ([]byte, error) {
	return c.Transact(ctx, CmdPing, data)
}

// Wink sends CTAPHID_WINK.
func (c *Client) Wink(ctx context.Context) error {
	_, err := c.Transact(ctx, CmdWink, nil)
	return err
}

// Lock sends CTAPHID_LOCK: the device serves only this channel for the
// given seconds (at most 10); 0 releases the lock.
func (c *Client) Lock(ctx context.Context, seconds byte) error {
	_, err := c.Transact(ctx, CmdLock, []byte{seconds})
	return err
}

// CBOR sends a CTAPHID_CBOR request (command byte ‖ CBOR parameters) and
// returns the answer (status byte ‖ optional CBOR). If ctx ends first it
// sends CTAPHID_CANCEL, waits briefly for the device's final answer so the
// channel is idle again, and returns ctx's error.
func (c *Client) CBOR(ctx context.Context, req []byte) ([]byte, error) {
	return c.Transact(ctx, CmdCBOR, req)
}

// MSG sends a CTAP1/U2F APDU in CTAPHID_MSG and returns the response APDU;
// cancellation works as for [Client.CBOR].
func (c *Client) MSG(ctx context.Context, apdu []byte) ([]byte, error) {
	return c.Transact(ctx, CmdMsg, apdu)
}

// Cancel sends CTAPHID_CANCEL on the client's channel. The device does not
// answer it; the pending request ends with CTAP2_ERR_KEEPALIVE_CANCEL.
func (c *Client) Cancel() error {
	return c.Send(c.CID(), CmdCancel, nil)
}

// Transact sends cmd with payload on the client's channel and returns the
// payload of the answer with the same command. KEEPALIVE packets are
// passed to OnKeepalive; a CTAPHID_ERROR answer is returned as a wrapped
// [ErrorCode]. For CBOR and MSG, ending ctx cancels the request as
// described at [Client.CBOR].
func (c *Client) Transact(ctx context.Context, cmd byte, payload []byte) ([]byte, error) {
	cmd |= 0x80
	cid := c.CID()
	if err := c.Send(cid, cmd, payload); err != nil {
		return nil, fmt.Errorf("hid: %s: %w", cmdName(cmd), err)
	}
	resp, err := c.await(ctx, cid, cmd)
	if err == nil || ctx.Err() == nil || (cmd != CmdCBOR && cmd != CmdMsg) {
		return resp, err
	}
	// Cancelled: tell the device, then let it finish on its own terms.
	if cerr := c.Send(cid, CmdCancel, nil); cerr == nil {
		wctx, stop := context.WithTimeout(context.WithoutCancel(ctx), cancelGrace)
		c.await(wctx, cid, cmd)
		stop()
	}
	return nil, err
}

// await waits for the answer to cmd on cid.
func (c *Client) await(ctx context.Context, cid uint32, cmd byte) ([]byte, error) {
	for {
		m, err := c.Receive(ctx, cid)
		if err != nil {
			return nil, fmt.Errorf("hid: %s: %w", cmdName(cmd), err)
		}
		switch m.Cmd {
		case cmd:
			return m.Payload, nil
		case CmdKeepalive:
			if c.OnKeepalive != nil && len(m.Payload) > 0 {
				c.OnKeepalive(m.Payload[0])
			}
		case CmdError:
			return nil, fmt.Errorf("hid: %s: %w", cmdName(cmd), errorOf(m))
		default:
			// An answer to something else (a late reply): skip it.
		}
	}
}

// Send fragments and writes one message on any channel, cid and cmd
// included as given (bit 7 of cmd is set).
func (c *Client) Send(cid uint32, cmd byte, payload []byte) error {
	frags := Fragment(cid, cmd, payload)
	if frags == nil {
		return fmt.Errorf("message of %d bytes exceeds %d: %w", len(payload), MaxMessageSize, ErrInvalidLen)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for _, r := range frags {
		if err := c.dev.WriteReport(r); err != nil {
			return err
		}
	}
	return nil
}

// WriteReport writes one raw report, for tests that need malformed input.
func (c *Client) WriteReport(report []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.dev.WriteReport(report)
}

// Receive reads reports until one complete message arrives on cid and
// returns it, whatever its command (KEEPALIVE and ERROR included). Reports
// on other channels and stray continuation packets are skipped; an init
// packet in the middle of a message starts over.
func (c *Client) Receive(ctx context.Context, cid uint32) (*Message, error) {
	var a Assembler
	for {
		r, err := c.dev.ReadReport(ctx)
		if err != nil {
			return nil, err
		}
		p := parsePacket(r)
		if p.cid != cid {
			continue
		}
		m, err := a.Feed(r)
		if errors.Is(err, ErrInvalidSeq) && p.init {
			m, err = a.Feed(r) // the assembler reset itself: start over
		}
		switch {
		case errors.Is(err, ErrInvalidSeq):
			continue // stray continuation packet
		case err != nil:
			return nil, fmt.Errorf("malformed answer: %w", err)
		case m != nil:
			return m, nil
		}
	}
}

// errorOf turns an ERROR message into its code.
func errorOf(m *Message) ErrorCode {
	if len(m.Payload) == 0 {
		return ErrOther
	}
	return ErrorCode(m.Payload[0])
}

// cmdName names a command byte for errors.
func cmdName(cmd byte) string {
	switch cmd {
	case CmdPing:
		return "PING"
	case CmdMsg:
		return "MSG"
	case CmdLock:
		return "LOCK"
	case CmdInit:
		return "INIT"
	case CmdWink:
		return "WINK"
	case CmdCBOR:
		return "CBOR"
	case CmdCancel:
		return "CANCEL"
	case CmdKeepalive:
		return "KEEPALIVE"
	case CmdError:
		return "ERROR"
	}
	return fmt.Sprintf("command 0x%02X", cmd)
}

// Package hid implements CTAPHID, the USB HID binding of CTAP (CTAP 2.1
// §11.2 "USB Human Interface Device (USB HID)"), for both ends of the
// link: a device-side [Server] that dispatches complete messages to a
// [Handler] (ctap2.Authenticator), and a host-side [Client] for tests, the
// CLI and library users. Transports plug in through [ReportDevice]; this
// package ships an in-memory [Pipe], and hid/udp a SoloKeys-compatible UDP
// transport. The package imports only the standard library and never ctap2.
//
// # Framing
//
// A message is a channel identifier (CID), a command byte and up to
// [MaxMessageSize] (7609) bytes, carried in 64-byte reports: one init
// packet (CID | CMD | BCNTH | BCNTL | 57 bytes) and up to 128 continuation
// packets (CID | SEQ | 59 bytes), zero-padded. [Fragment] splits a message
// and the pure [Assembler] state machine puts it back together, checking
// SEQ order, BCNT and init-versus-continuation; it never panics on any
// input, short reports included (they read as zero-padded).
//
// # Server rules
//
// The [Server] follows the spec and what real clients and conformance
// suites rely on:
//
//   - Any CID other than 0 and [BroadcastCID] is accepted without prior
//     allocation. CID 0 → ERR_INVALID_CHANNEL; on the broadcast CID only
//     INIT is allowed, anything else → ERR_INVALID_CHANNEL.
//   - On a transport with several hosts ([SourceDevice]: UDP) a channel
//     belongs to the host that allocated it, or that used the CID first;
//     any report from another host on it, CANCEL and INIT included, gets
//     ERR_INVALID_CHANNEL and touches nothing. Every answer — INIT,
//     KEEPALIVE, errors, MSG_TIMEOUT — goes to the host whose request it
//     answers. The table holds [Options.MaxChannels] (4096) channels; a new
//     one evicts the channel idle longest that is not receiving, answering
//     or holding the lock.
//   - INIT on the broadcast CID allocates a fresh random CID (never 0 or
//     broadcast) and answers on the broadcast CID with
//     nonce | CID | 2 | major | minor | build | capabilities. INIT on any
//     other CID resynchronises that channel — its request in flight is
//     cancelled and its answer dropped, its partial message discarded — and
//     is answered on it. INIT is answered even while another channel is
//     busy. An INIT payload other than 8 bytes → ERR_INVALID_LEN.
//   - One transaction at a time per device. While a message is being
//     received or a request is running, an init packet on another CID gets
//     ERR_CHANNEL_BUSY as soon as it is read; continuation packets on other CIDs are
//     ignored. A new init packet (other than INIT) on the receiving CID, or
//     a skipped SEQ → ERR_INVALID_SEQ. BCNT > 7609 → ERR_INVALID_LEN. An
//     incomplete message gets ERR_MSG_TIMEOUT [Options.MsgTimeout] (500 ms)
//     after its last packet.
//   - PING echoes. CBOR and MSG with an empty payload → ERR_INVALID_LEN.
//     MSG → ERR_INVALID_CMD unless the handler implements [MsgHandler]
//     (without it the NMSG capability is set). WINK answers empty and calls
//     [Winker]. LOCK takes one byte of seconds (0 releases, at most 10,
//     else ERR_INVALID_PAR); while it holds, init packets on every other
//     CID, broadcast INIT included, get ERR_LOCK_REQUIRED (CANCEL is
//     dropped). Unknown commands → ERR_INVALID_CMD. Capabilities
//     are WINK | LOCK | CBOR (| NMSG).
//   - CBOR and MSG run the handler on the goroutine that read the request
//     (no hand-off for a quick answer); if it is still running 10 ms later
//     (or one keepalive interval, if shorter), another goroutine takes over
//     reading, so reports are never left unread longer. Reports that
//     arrived while a quicker handler ran are read when it returns, before
//     its answer, so that they meet the request still running, on a device
//     that is a [PendingReader] (UDP, uhid, [Pipe]); on another device,
//     after it. KEEPALIVE goes out every
//     [Options.KeepaliveInterval] (100 ms) carrying the status the handler
//     last set through its keepalive callback ([StatusProcessing] until
//     set, [StatusUPNeeded] while waiting for the user). CANCEL on the busy
//     CID cancels the handler's context and is not answered; the handler
//     answers the request itself, normally with CTAP2_ERR_KEEPALIVE_CANCEL.
//     CANCEL is never answered, whatever the state.
//   - [Server.PowerCycle] cancels everything in flight, waits for the
//     handlers, drops the partial message, the lock and the channels, and
//     calls the handler's [PowerCycler] method.
//
// All writes to the device are serialised, so KEEPALIVE and response
// packets never interleave within a message.
//
// # Logging
//
// The [Options.Logger] gets CIDs, command names, error codes and payload
// lengths at debug level, never payloads: they carry PINs and secrets.
//
// # Wiring
//
//	dev, host := hid.Pipe()
//	srv := hid.NewServer(dev, authenticator, &hid.Options{Logger: logger})
//	go srv.Run(ctx)
//	c := hid.NewClient(host)
//	if err := c.Init(ctx); err != nil { ... }
//	resp, err := c.CBOR(ctx, []byte{0x04}) // authenticatorGetInfo
package hid

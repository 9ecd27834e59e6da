// Package factory makes the keys of POST /v1/keys: each the stack
// `virtkey run` serves (ctap2, the store, the software key store, a CTAPHID
// server on a UDP socket or a uhid device) behind a [vkey.Key]. It is apart
// from vkey so that in-process users of vkey (package inproc) need no
// transport.
package factory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/virtkey/virtkey/control"
	"github.com/virtkey/virtkey/control/vkey"
	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/hid"
	"github.com/virtkey/virtkey/hid/udp"
	"github.com/virtkey/virtkey/hid/uhid"
	"github.com/virtkey/virtkey/internal/statedir"
	"github.com/virtkey/virtkey/store"
	"github.com/virtkey/virtkey/tpmkeys"
)

// Options configure the keys POST /v1/keys makes. Those keys use
// the software key store.
type Options struct {
	Logger *slog.Logger
	// AllowExport lets private keys cross on keys with a persistent state
	// directory (ephemeral keys always allow it).
	AllowExport bool
	// SelectNewestAccount: the key picks the newest of several passkeys
	// itself (`--select-account newest`, for headless browsers).
	SelectNewestAccount bool
	// PresenceTimeout bounds a presence prompt (default 30 s).
	PresenceTimeout time.Duration
	// Version is the firmware version CTAPHID_INIT reports.
	Version [3]byte
	// UHID configures uhid devices (name, USB ids).
	UHID uhid.Options
	// Configure, if set, adjusts each authenticator's configuration.
	Configure func(*ctap2.Config)
}

// Factory makes keys; it implements control.KeyFactory.
type Factory struct{ opts Options }

// New returns a factory.
func New(opts Options) *Factory {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Factory{opts: opts}
}

var _ control.KeyFactory = (*Factory)(nil)

// extensionNames maps WebDriver's extension names onto getInfo's.
var extensionNames = map[string]string{"largeBlob": "largeBlobKey", "prf": "hmac-secret"}

// NewKey implements control.KeyFactory.
func (f *Factory) NewKey(ctx context.Context, cfg control.KeyConfig) (control.Key, func() error, error) {
	switch cfg.Protocol {
	case control.ProtocolCTAP21, control.ProtocolCTAP2:
	default:
		return nil, nil, control.BadRequest("protocol %q: virtkey keys speak CTAP 2.1 (and CTAP 2.0 and U2F with it); a U2F-only key is not available", cfg.Protocol)
	}
	if cfg.HasResidentKey != nil && !*cfg.HasResidentKey {
		return nil, nil, control.BadRequest("hasResidentKey false: virtkey keys always store discoverable credentials")
	}
	uv := ctap2.UVAuto
	switch {
	case cfg.HasUserVerification != nil && !*cfg.HasUserVerification:
		uv = ctap2.UVNone
	case cfg.IsUserVerified != nil && !*cfg.IsUserVerified:
		uv = ctap2.UVDeny
	}
	if cfg.DefaultBackupState && !cfg.DefaultBackupEligibility {
		return nil, nil, control.BadRequest("defaultBackupState needs defaultBackupEligibility")
	}

	s := &stack{log: f.opts.Logger}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()
	if cfg.StateDir == "" {
		d, err := os.MkdirTemp("", "virtkey-key-")
		if err != nil {
			return nil, nil, err
		}
		s.dir, s.tempDir = d, true
	} else {
		if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
			return nil, nil, control.BadRequest("stateDir: %v", err)
		}
		s.dir = cfg.StateDir
	}
	// The state as `virtkey run --state-dir` opens it (internal/statedir):
	// owner and modes checked, state.db bound to the key store and checked
	// against its rollback reference, so a stateDir moves between the API
	// and `virtkey run` and a copied-back state.db is refused by both.
	var err error
	if s.db, err = statedir.OpenStore(s.dir, f.opts.Logger); err != nil {
		if errors.Is(err, store.ErrLocked) {
			return nil, nil, fmt.Errorf("stateDir %s is in use by another key: %w", s.dir, control.ErrConflict)
		}
		return nil, nil, control.BadRequest("stateDir: %v", err)
	}
	soft, err := tpmkeys.OpenSoftware(s.dir)
	if err != nil {
		return nil, nil, err
	}
	keys, err := statedir.Bind(ctx, s.dir, s.db, soft, statedir.Options{AcceptRollback: cfg.AcceptRollback})
	if err != nil {
		return nil, nil, control.BadRequest("stateDir: %v", err)
	}
	c := vkey.NewControls(cfg.Presence, nil, "")
	acfg := ctap2.Config{
		KeyStore: keys, Store: s.db, Presence: c.Presence(), Observer: c.Observer(), Logger: f.opts.Logger,
		UV: uv, SelectNewestAccount: f.opts.SelectNewestAccount, PresenceTimeout: f.opts.PresenceTimeout,
		BackupEligible: cfg.DefaultBackupEligibility, BackupState: cfg.DefaultBackupState,
		FirmwareVersion: uint32(f.opts.Version[0])<<16 | uint32(f.opts.Version[1])<<8 | uint32(f.opts.Version[2]),
	}
	if f.opts.Configure != nil {
		f.opts.Configure(&acfg)
	}
	auth, err := ctap2.New(acfg)
	if err != nil {
		return nil, nil, err
	}
	info, err := auth.Info()
	if err != nil {
		return nil, nil, err
	}
	for _, e := range cfg.Extensions {
		name := e
		if n, ok := extensionNames[e]; ok {
			name = n
		}
		if !slices.Contains(info.Extensions, name) {
			return nil, nil, control.BadRequest("extension %q: this key supports %v", e, info.Extensions)
		}
	}
	hopts := &hid.Options{Logger: f.opts.Logger, Version: f.opts.Version}
	switch cfg.Attach {
	case control.AttachUDP:
		s.dev, err = startUDP(cfg.UDPListen, auth, hopts)
	case control.AttachUHID:
		s.dev, err = startUHID(f.opts.UHID, auth, hopts)
	}
	if err != nil {
		return nil, nil, err
	}
	k, err := c.Key(vkey.KeyOptions{
		Auth: auth, Device: s.dev, Protocol: cfg.Protocol, Transport: cfg.Transport, UV: uv,
		BackupEligible: cfg.DefaultBackupEligibility, BackupState: cfg.DefaultBackupState,
		StateDir: s.dir, Ephemeral: s.tempDir, KeyStore: "software", ExportAllowed: s.tempDir || f.opts.AllowExport,
	})
	if err != nil {
		return nil, nil, err
	}
	s.key = k
	ok = true
	return k, s.close, nil
}

// stack is what a factory-made key owns.
type stack struct {
	log     *slog.Logger
	dir     string
	tempDir bool
	db      *store.DB
	dev     device
	key     *vkey.Key
	once    sync.Once
	err     error
}

// device is a vkey.Device the factory started and stops.
type device interface {
	vkey.Device
	stop() error
}

// close unplugs the key: presence waits are answered, the transport and
// its goroutines stop, the store closes, an ephemeral directory goes.
func (s *stack) close() error {
	s.once.Do(func() {
		if s.key != nil {
			s.key.ReleasePresence()
		}
		if s.dev != nil {
			s.err = s.dev.stop()
		}
		if s.db != nil {
			s.err = errors.Join(s.err, s.db.Close())
		}
		if s.tempDir {
			s.err = errors.Join(s.err, os.RemoveAll(s.dir))
		}
	})
	return s.err
}

// udpDevice serves a key on a UDP socket.
type udpDevice struct {
	conn   *udp.Conn
	srv    *hid.Server
	cancel context.CancelFunc
	done   chan error
}

func startUDP(addr string, h hid.Handler, opts *hid.Options) (*udpDevice, error) {
	conn, err := udp.Listen(addr)
	if err != nil {
		return nil, control.BadRequest("udpListen %q: %v", addr, err)
	}
	d := &udpDevice{conn: conn, srv: hid.NewServer(conn, h, opts), done: make(chan error, 1)}
	conn.OnReboot(d.srv.PowerCycle)
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go func() { d.done <- d.srv.Run(ctx) }()
	return d, nil
}

func (d *udpDevice) Attach() string  { return control.AttachUDP }
func (d *udpDevice) UDPAddr() string { return d.conn.Addr().String() }
func (d *udpDevice) HIDRaw() string  { return "" }
func (d *udpDevice) Replug(context.Context) error {
	d.srv.PowerCycle()
	return nil
}

func (d *udpDevice) stop() error {
	d.cancel()
	err := <-d.done
	return errors.Join(err, d.conn.Close())
}

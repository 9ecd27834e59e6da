// Package inproc runs a complete virtual key inside the calling process,
// with no sockets and no devices: for Go test suites and library users.
//
// A [Key] is the same stack `virtkey run` serves — the software key store,
// the durable store, ctap2 and the CTAPHID server — connected to an
// in-memory HID pipe. Drive it with CTAPHID reports through [Key.Device]
// (or the ready [Key.Client]), or with CTAP messages through
// [Key.Authenticator].
//
//	k, err := inproc.New(inproc.Options{})
//	defer k.Close()
//	c, err := k.Client(ctx)
//	resp, err := c.CBOR(ctx, []byte{0x04}) // authenticatorGetInfo
package inproc

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"

	"github.com/virtkey/virtkey/control/vkey"
	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/hid"
	"github.com/virtkey/virtkey/internal/statedir"
	"github.com/virtkey/virtkey/store"
	"github.com/virtkey/virtkey/tpmkeys"
)

// Options configure a [Key]. The zero value gives a key with a temporary
// state directory, automatic user presence and no built-in UV.
type Options struct {
	// Dir is the state directory; "" makes a temporary one, removed by Close.
	Dir string
	// Presence confirms user presence; nil approves at once.
	Presence ctap2.Presence
	// UV selects built-in user verification.
	UV ctap2.UVMode
	// Logger receives the key's logs; nil discards them.
	Logger *slog.Logger
	// Configure, if set, may adjust the authenticator's configuration
	// (AAGUID, reset window, limits …) before it is built.
	Configure func(*ctap2.Config)
}

// Key is a running in-process virtual key.
type Key struct {
	// Authenticator answers CTAP messages directly (Transact, HandleCBOR).
	Authenticator *ctap2.Authenticator

	dir     string
	tempDir bool
	db      *store.DB
	server  *hid.Server
	host    *hid.PipeEnd
	dev     *hid.PipeEnd
	cancel  context.CancelFunc
	done    chan error
	once    sync.Once
	// control is the key's control-plane view (control.go).
	controls *vkey.Controls
	control  *vkey.Key
}

// New starts a key.
func New(opts Options) (*Key, error) {
	k := &Key{dir: opts.Dir}
	if k.dir == "" {
		d, err := os.MkdirTemp("", "virtkey-inproc-")
		if err != nil {
			return nil, err
		}
		k.dir, k.tempDir = d, true
	}
	fail := func(err error) (*Key, error) {
		if k.db != nil {
			k.db.Close()
		}
		if k.tempDir {
			os.RemoveAll(k.dir)
		}
		return nil, err
	}
	// The same state as virtkey run's: a checked directory, a store bound
	// to the key store, with its rollback reference.
	var err error
	k.db, err = statedir.OpenStore(k.dir, opts.Logger)
	if err != nil {
		return fail(err)
	}
	soft, err := tpmkeys.OpenSoftware(k.dir)
	if err != nil {
		return fail(err)
	}
	keys, err := statedir.Bind(context.Background(), k.dir, k.db, soft, statedir.Options{})
	if err != nil {
		return fail(err)
	}
	k.controls = newControls(opts.Presence)
	cfg := ctap2.Config{
		KeyStore: keys, Store: k.db, Presence: k.controls.Presence(), Observer: k.controls.Observer(),
		Logger: opts.Logger, UV: opts.UV, ResetWindow: 0,
	}
	if opts.Configure != nil {
		opts.Configure(&cfg)
	}
	k.Authenticator, err = ctap2.New(cfg)
	if err != nil {
		return fail(err)
	}
	k.dev, k.host = hid.Pipe()
	k.server = hid.NewServer(k.dev, k.Authenticator, &hid.Options{Logger: opts.Logger})
	ctx, cancel := context.WithCancel(context.Background())
	k.cancel, k.done = cancel, make(chan error, 1)
	go func() { k.done <- k.server.Run(ctx) }()
	if k.control, err = k.newControl(cfg); err != nil {
		k.Close()
		return nil, err
	}
	return k, nil
}

// Dir is the key's state directory.
func (k *Key) Dir() string { return k.dir }

// Device is the host end of the key's HID link: 64-byte CTAPHID reports.
func (k *Key) Device() hid.ReportDevice { return k.host }

// Client returns a CTAPHID client on the key, with a channel allocated.
// Use one client at a time per key, like one USB host.
func (k *Key) Client(ctx context.Context) (*hid.Client, error) {
	c := hid.NewClient(k.host)
	if err := c.Init(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// PowerCycle simulates unplugging and replugging the key.
func (k *Key) PowerCycle() { k.server.PowerCycle() }

// Close stops the key, closes its store and removes a temporary state
// directory.
func (k *Key) Close() error {
	var err error
	k.once.Do(func() {
		k.cancel()
		k.host.Close()
		if e := <-k.done; e != nil && !errors.Is(e, context.Canceled) && !errors.Is(e, hid.ErrClosed) {
			err = e
		}
		err = errors.Join(err, k.db.Close())
		if k.tempDir {
			err = errors.Join(err, os.RemoveAll(k.dir))
		}
	})
	return err
}

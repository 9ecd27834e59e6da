package main

// The test-automation control plane of `virtkey run` (--control): the
// wiring that hands the default key to package control. Everything else
// lives in control (HTTP, JSON, registry) and control/vkey (the keys).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"

	"github.com/virtkey/virtkey/control"
	"github.com/virtkey/virtkey/control/vkey"
	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/hid/uhid"
)

// controlFlags are run's control-plane flags.
type controlFlags struct {
	addr, tokenFile          string
	allowRemote, allowExport bool
}

func (c *controlFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "control", "", "serve the test-automation control API (HTTP+JSON, /v1) on unix:PATH (socket 0600 in a private directory) or tcp:HOST:PORT (needs --control-token-file); without it nothing listens")
	fs.StringVar(&c.tokenFile, "control-token-file", "", "file holding the bearer token every control request must carry (required with --control tcp:...)")
	fs.BoolVar(&c.allowRemote, "control-allow-remote", false, "let --control tcp: listen on a non-loopback address (a container's published port); anyone with the token drives the key")
	fs.BoolVar(&c.allowExport, "control-allow-export", false, "let private keys leave and enter this key's persistent state through the control API (keys added through the API with an ephemeral state always allow it)")
}

// profiles are run's presets; explicit flags win over them.
var profiles = map[string][][2]string{
	// Headless browsers: no prompt anyone could answer, built-in UV that
	// verifies, the key picks the account, reset any time.
	"browser-test": {{"presence", "auto"}, {"uv", "auto"}, {"select-account", "newest"}, {"reset-window", "0"}},
}

// applyProfile sets the flags of profile name that were not given.
func applyProfile(fs *flag.FlagSet, name string) error {
	if name == "" {
		return nil
	}
	p, ok := profiles[name]
	if !ok {
		return fmt.Errorf("--profile %q: want browser-test", name)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, kv := range p {
		if !given[kv[0]] {
			if err := fs.Set(kv[0], kv[1]); err != nil {
				return err
			}
		}
	}
	return nil
}

// controlPlane is run's control API. A nil *controlPlane (no --control)
// changes nothing.
type controlPlane struct {
	f        *runFlags
	log      *slog.Logger
	ln       *control.Listener
	srv      *control.Server
	controls *vkey.Controls
}

// newControlPlane binds the control endpoint (so that a bad address fails
// before any state is made) and wraps pres in the key's presence queue.
func newControlPlane(f *runFlags, pres ctap2.Presence, log *slog.Logger) (*controlPlane, error) {
	if f.control.addr == "" {
		if f.control.tokenFile != "" || f.control.allowRemote || f.control.allowExport {
			return nil, errors.New("--control-token-file, --control-allow-remote and --control-allow-export need --control")
		}
		return nil, nil
	}
	ln, err := control.Listen(control.ListenConfig{
		Address: f.control.addr, TokenFile: f.control.tokenFile, AllowRemote: f.control.allowRemote, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("--control: %w", err)
	}
	var mode control.PresenceMode
	if f.presence == "auto" {
		mode = control.PresenceAuto
	}
	factory := vkey.NewFactory(vkey.FactoryOptions{
		Logger: log, AllowExport: f.control.allowExport, SelectNewestAccount: f.selectAccount == "newest",
		Version: version,
		UHID:    uhid.Options{Name: f.name, VendorID: uint16(f.vid), ProductID: uint16(f.pid), Version: bcdVersion(version), Logger: log},
	})
	return &controlPlane{
		f: f, log: log, ln: ln,
		srv:      control.NewServer(control.Options{Factory: factory, Logger: log}),
		controls: vkey.NewControls(mode, pres, f.presence),
	}, nil
}

// presence is the provider the authenticator gets.
func (cp *controlPlane) presence(p ctap2.Presence) ctap2.Presence {
	if cp == nil {
		return p
	}
	return cp.controls.Presence()
}

// observer is the authenticator's observer (nil without --control).
func (cp *controlPlane) observer() ctap2.Observer {
	if cp == nil {
		return nil
	}
	return cp.controls.Observer()
}

// serve registers the default key and serves the API until ctx ends; the
// returned function stops it (keys added through the API are unplugged).
func (cp *controlPlane) serve(ctx context.Context, auth *ctap2.Authenticator, dev vkey.Device, uv ctap2.UVMode) (stop func(), err error) {
	if cp == nil {
		return func() {}, nil
	}
	ks := "software"
	if strings.HasPrefix(cp.f.keystore, "tpm") {
		ks = "tpm"
	}
	k, err := cp.controls.Key(vkey.KeyOptions{
		Auth: auth, Device: dev, UV: uv, StateDir: cp.f.stateDir, KeyStore: ks, ExportAllowed: cp.f.control.allowExport,
	})
	if err != nil {
		cp.close()
		return nil, err
	}
	if err := cp.srv.AddKey(control.DefaultKeyID, k, nil); err != nil {
		cp.close()
		return nil, err
	}
	if cp.f.control.allowExport {
		cp.log.Warn("the control API may read and write private keys of this key's state (--control-allow-export)")
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cp.srv.Serve(sctx, cp.ln) }()
	cp.log.Info("control API serving", "addr", cp.ln.URL())
	return func() {
		cancel()
		if err := <-done; err != nil {
			cp.log.Warn("control API", "err", err)
		}
		if err := cp.srv.Close(); err != nil {
			cp.log.Warn("control API: closing keys", "err", err)
		}
	}, nil
}

// close releases the endpoint when run fails before serving.
func (cp *controlPlane) close() {
	if cp != nil {
		cp.ln.Close()
		cp.srv.Close()
	}
}

package main

// The test-automation control plane of `virtkey run` (--control) and
// `virtkey ctl`: the wiring that hands the default key to package control.
// Everything else lives in control (HTTP, JSON, registry), control/vkey
// (the keys) and control/ctl (the CLI client).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"

	"github.com/virtkey/virtkey/control"
	"github.com/virtkey/virtkey/control/ctl"
	"github.com/virtkey/virtkey/control/factory"
	"github.com/virtkey/virtkey/control/vkey"
	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/hid/uhid"
	"github.com/virtkey/virtkey/internal/cli"
	"github.com/virtkey/virtkey/internal/server"
)

// runCtl is "virtkey ctl".
func runCtl(ctx context.Context, e *env, args []string) error {
	err := ctl.Run(ctx, args, e.Stdout, e.Stderr)
	if errors.Is(err, ctl.ErrUsage) {
		return cli.ErrUsage
	}
	return err
}

// controlFlags are run's control-plane flags.
type controlFlags struct {
	addr, tokenFile          string
	allowRemote, allowExport bool
	profile                  string
}

func (c *controlFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "control", "", "serve the test-automation control API (HTTP+JSON, /v1) on unix:PATH (socket 0600 in a private directory) or tcp:HOST:PORT (needs --control-token-file); without it nothing listens")
	fs.StringVar(&c.tokenFile, "control-token-file", "", "file holding the bearer token every control request must carry (required with --control tcp:...)")
	fs.BoolVar(&c.allowRemote, "control-allow-remote", false, "let --control tcp: listen on a non-loopback address (a container's published port); anyone with the token drives the key")
	fs.BoolVar(&c.allowExport, "control-allow-export", false, "let private keys leave and enter this key's persistent state through the control API (keys added through the API with an ephemeral state always allow it)")
	fs.StringVar(&c.profile, "profile", "", "preset for a use: browser-test (= --presence auto --uv auto --select-account newest --reset-window 0, for headless browsers); flags given explicitly win")
}

// profiles are run's presets; explicit flags win over them.
var profiles = map[string][]string{
	// Headless browsers: no prompt anyone could answer, built-in UV that
	// verifies, the key picks the account, reset any time.
	"browser-test": {"--presence", "auto", "--uv", "auto", "--select-account", "newest", "--reset-window", "0"},
}

// withProfile puts the flags of the --profile in args before args, so
// that flags given explicitly (later) win.
func withProfile(args []string) ([]string, error) {
	for i, a := range args {
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "profile" {
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return args, nil // the flag parser reports it
			}
			val = args[i+1]
		}
		p, ok := profiles[val]
		if !ok {
			return nil, cli.Usagef("--profile %q: want browser-test", val)
		}
		return append(append([]string{}, p...), args...), nil
	}
	return args, nil
}

// controlPlane is run's control API. A nil *controlPlane (no --control)
// changes nothing.
type controlPlane struct {
	f        controlFlags
	cfg      *server.Config
	log      *slog.Logger
	ln       *control.Listener
	srv      *control.Server
	controls *vkey.Controls
}

// newControlPlane binds the control endpoint (so that a bad address fails
// before any state is made) and hooks the key's presence and events.
func newControlPlane(f controlFlags, cfg *server.Config, log *slog.Logger) (*controlPlane, error) {
	if f.addr == "" {
		if f.tokenFile != "" || f.allowRemote || f.allowExport {
			return nil, cli.Usagef("--control-token-file, --control-allow-remote and --control-allow-export need --control")
		}
		return nil, nil
	}
	ln, err := control.Listen(control.ListenConfig{
		Address: f.addr, TokenFile: f.tokenFile, AllowRemote: f.allowRemote, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("--control: %w", err)
	}
	var mode control.PresenceMode
	if cfg.Presence == "auto" {
		mode = control.PresenceAuto
	}
	v := server.FirmwareVersion()
	factory := factory.New(factory.Options{
		Logger: log, AllowExport: f.allowExport, SelectNewestAccount: cfg.SelectAccount == "newest", Version: v,
		UHID: uhid.Options{Name: cfg.Name, VendorID: uint16(cfg.VID), ProductID: uint16(cfg.PID), Logger: log},
	})
	cp := &controlPlane{
		f: f, cfg: cfg, log: log, ln: ln,
		srv:      control.NewServer(control.Options{Factory: factory, Logger: log}),
		controls: vkey.NewControls(mode, nil, ""),
	}
	cfg.Control = server.ControlHooks{
		Presence: func(p ctap2.Presence, name string) ctap2.Presence {
			cp.controls.SetFallback(p, name)
			return cp.controls.Presence()
		},
		Observer: cp.controls.Observer(),
	}
	return cp, nil
}

// serve registers the default key and serves the API until ctx ends; the
// returned function stops it (keys added through the API are unplugged).
func (cp *controlPlane) serve(ctx context.Context, key *server.Key) (stop func(), err error) {
	if cp == nil {
		return func() {}, nil
	}
	ks := "software"
	if strings.HasPrefix(cp.cfg.Keystore, "tpm") {
		ks = "tpm"
	}
	k, err := cp.controls.Key(vkey.KeyOptions{
		Auth: key.Authenticator(), Device: key, UV: cp.cfg.UVMode(), StateDir: cp.cfg.StateDir,
		KeyStore: ks, ExportAllowed: cp.f.allowExport,
	})
	if err != nil {
		return nil, err
	}
	if err := cp.srv.AddKey(control.DefaultKeyID, k, nil); err != nil {
		return nil, err
	}
	if cp.f.allowExport {
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

// close releases the endpoint (after serve's stop, or when run fails
// before serving).
func (cp *controlPlane) close() {
	if cp != nil {
		cp.ln.Close()
		cp.srv.Close()
	}
}

// Package server builds and runs a virtual key from a [Config]: the wiring
// of "virtkey run" (presence provider, key custody, attestation, state
// store, authenticator, transport), reusable by anything that serves more
// keys with the same wiring (the control plane's POST /v1/keys).
//
//	cfg := server.Default()
//	cfg.RegisterFlags(fs)           // or set the fields
//	... parse ...
//	if err := cfg.Validate(); err != nil { ... }   // no side effect
//	key, err := server.New(ctx, cfg, logger)      // creates state, binds the transport
//	if err != nil { ... }
//	defer key.Close()
//	return key.Run(ctx)
//
// # Order of work
//
// [New] validates the whole Config, then checks what the machine must
// offer (the presence provider, /dev/uhid, the TPM) and binds the UDP
// socket, and
// only then creates the state directory, the attestation CA, the key store
// and the store. A bad flag, a missing /dev/uhid or a busy UDP port leaves
// no state behind. The uhid device itself is created last, when the
// authenticator can answer.
//
// The package has no globals, parses no flags of its own and never exits
// the process; signals are the caller's (cmd/virtkey maps SIGUSR1 to
// [Key.PowerCycle]).
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/hid"
	"github.com/virtkey/virtkey/hid/udp"
	"github.com/virtkey/virtkey/hid/uhid"
	"github.com/virtkey/virtkey/internal/doctor"
	"github.com/virtkey/virtkey/internal/statedir"
)

// FirmwareVersion is virtkey's firmware version: getInfo reports it as
// firmwareVersion (major<<16 | minor<<8 | patch), CTAPHID_INIT as its
// device version, uhid as bcdDevice.
func FirmwareVersion() [3]byte { return [3]byte{0, 1, 0} }

// Key is a running virtual key: an authenticator with its state, served by
// a CTAPHID server on one transport.
type Key struct {
	cfg  Config
	log  *slog.Logger
	auth *ctap2.Authenticator
	srv  *hid.Server
	udp  *udp.Conn    // --transport udp
	dev  *uhid.Device // --transport uhid
	// closers release what New opened, in reverse order.
	closers []func()
}

// New builds a key from cfg (see the package documentation for the order
// of work). log may be nil. On error nothing stays open. The caller must
// [Key.Close] the key.
func New(ctx context.Context, cfg Config, log *slog.Logger) (_ *Key, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &Key{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			k.Close()
		}
	}()

	// What the machine must offer, and the transport's address: nothing
	// is created yet.
	pres, release, err := newPresence(&k.cfg, log)
	if err != nil {
		return nil, err
	}
	k.closers = append(k.closers, release)
	switch cfg.Transport {
	case "udp":
		uids, _ := cfg.udpAllowUIDs() // validated
		lc := &udp.ListenConfig{AllowUIDs: uids, AllowAnyUser: cfg.UDPAllowAnyUser, AllowRemote: cfg.UDPAllowRemote, Logger: log}
		conn, err := lc.Listen(cfg.UDPListen)
		if errors.Is(err, udp.ErrNotLoopback) {
			return nil, fmt.Errorf("--udp-listen %s: %w", cfg.UDPListen, err)
		}
		if err != nil {
			return nil, fmt.Errorf("--udp-listen %s: %w (is another key serving there?)", cfg.UDPListen, err)
		}
		k.udp = conn
		k.closers = append(k.closers, func() { conn.Close() })
	case "uhid":
		if err := uhidUsable(cfg.Host.uhidPath()); err != nil {
			return nil, err
		}
	}
	if cfg.Keystore != KeystoreSoftware {
		if err := k.cfg.tpmReachable(); err != nil {
			return nil, err
		}
	}

	// The state.
	if cfg.UV == "auto" {
		log.Warn("built-in user verification auto-approves (--uv auto): for testing only")
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	db, err := statedir.OpenStore(cfg.StateDir, log)
	if err != nil {
		return nil, err
	}
	k.closers = append(k.closers, func() { db.Close() })
	aaguid, _ := cfg.aaguid() // validated
	keys, closeKeys, err := openKeyStore(ctx, &k.cfg, log)
	if err != nil {
		return nil, err
	}
	k.closers = append(k.closers, closeKeys)
	sealer, err := keys.DeviceSealer(ctx)
	if err != nil {
		return nil, err
	}
	att, err := loadAttestation(&k.cfg, aaguid, sealer, log)
	if err != nil {
		return nil, err
	}
	bound, err := statedir.Bind(ctx, cfg.StateDir, db, keys, statedir.Options{AcceptRollback: cfg.AcceptRollback})
	if err != nil {
		return nil, err
	}
	v := FirmwareVersion()
	k.auth, err = ctap2.New(ctap2.Config{
		KeyStore: bound, Store: db, Presence: cfg.Control.presence(pres, cfg.Presence), Observer: cfg.Control.Observer,
		Logger: log, AAGUID: aaguid, UV: cfg.uvMode(),
		ResetWindow: cfg.ResetWindow, MaxResidentCredentials: maxResident(cfg.MaxResident),
		Attestation: att.mode, Batch: att.batch, Enterprise: att.enterprise, EnterpriseRPIDs: att.enterpriseRPIDs,
		SelectNewestAccount: cfg.SelectAccount == "newest",
		FirmwareVersion:     uint32(v[0])<<16 | uint32(v[1])<<8 | uint32(v[2]),
	})
	if err != nil {
		return nil, err
	}

	// Attach.
	opts := &hid.Options{Logger: log, Version: v}
	if k.udp != nil {
		k.srv = hid.NewServer(k.udp, k.auth, opts)
		k.udp.OnReboot(k.srv.PowerCycle)
		return k, nil
	}
	path := cfg.Host.uhidPath()
	k.dev, err = uhid.Open(uhid.Options{
		Path: path, Name: cfg.Name, VendorID: uint16(cfg.VID), ProductID: uint16(cfg.PID),
		Version: bcdVersion(v), Logger: log,
	})
	if err != nil {
		return nil, doctor.UHIDError(path, err)
	}
	dev := k.dev
	k.closers = append(k.closers, func() {
		if err := dev.Close(); err != nil {
			log.Warn("destroying the uhid device", "err", err)
		}
	})
	k.srv = hid.NewServer(dev, k.auth, opts)
	return k, nil
}

// Authenticator is the key's authenticator.
func (k *Key) Authenticator() *ctap2.Authenticator { return k.auth }

// Addr is the UDP address the key serves on ("" with uhid).
func (k *Key) Addr() string {
	if k.udp == nil {
		return ""
	}
	return k.udp.Addr().String()
}

// Run serves the key until ctx ends (it returns nil) or the transport
// fails.
func (k *Key) Run(ctx context.Context) error {
	if k.udp != nil {
		k.log.Info("virtkey serving", "transport", "udp", "listen", k.Addr(), "state", k.cfg.StateDir)
	} else {
		k.log.Info("virtkey serving", "transport", "uhid", "name", k.cfg.Name,
			"vid", fmt.Sprintf("%04x", k.cfg.VID), "pid", fmt.Sprintf("%04x", k.cfg.PID),
			"serial", k.dev.Serial(), "state", k.cfg.StateDir)
	}
	err := k.srv.Run(ctx)
	if ctx.Err() != nil {
		k.log.Info("virtkey stopped")
		return nil
	}
	return err
}

// PowerCycle simulates unplugging the key and plugging it in again: the
// authenticator drops its volatile state (tokens, key agreement, the
// consecutive-wrong-PIN count). With uhid the device is destroyed and
// created anew, as a host sees a real key being replugged; over UDP it is
// what the magic reboot datagram does. It may be called while Run runs.
func (k *Key) PowerCycle() error {
	if k.dev != nil {
		k.log.Info("re-creating the uhid device (power cycle)")
		return k.dev.Recreate(k.srv.PowerCycle)
	}
	k.log.Info("power cycle")
	k.srv.PowerCycle()
	return nil
}

// Close releases everything New opened: the transport (destroying the
// uhid device), the store, the key store and the presence provider.
func (k *Key) Close() error {
	for i := len(k.closers) - 1; i >= 0; i-- {
		k.closers[i]()
	}
	k.closers = nil
	return nil
}

// Doctor checks what this Config needs of the machine (see
// internal/doctor).
func (c *Config) Doctor(ctx context.Context) []doctor.Check {
	return doctor.Run(ctx, doctor.Setup{
		Transport: c.Transport, Keystore: c.Keystore, StateDir: c.StateDir, TPM: c.TPM, Presence: c.Presence,
		UHIDPath: c.Host.UHID, TTYPath: c.Host.TTY, TPMDevices: c.Host.TPMDevices,
	})
}

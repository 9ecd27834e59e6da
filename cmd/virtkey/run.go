package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/virtkey/virtkey/control/vkey"
	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/hid"
	"github.com/virtkey/virtkey/hid/udp"
	"github.com/virtkey/virtkey/store"
)

// version is the firmware version reported by getInfo and CTAPHID_INIT.
var version = [3]byte{0, 1, 0}

type runFlags struct {
	transport      string
	udpListen      string
	stateDir       string
	presence       string
	resetWindow    time.Duration
	logLevel       string
	aaguid         string
	attestation    string
	passphraseFile string
	maxResident    int
	uv             string
	keystore       string
	tpm            string
	vid, pid       uint
	name           string
	selectAccount  string

	// A user-supplied batch attestation identity, and the RP IDs that get
	// vendor-facilitated enterprise attestation (cmd/virtkey/attestation.go).
	attestationKey, attestationCert string
	enterpriseRPs                   rpList

	// The test-automation control plane (cmd/virtkey/control.go).
	control controlFlags
	profile string
}

func parseRunFlags(args []string, stderr io.Writer) (*runFlags, error) {
	f := &runFlags{}
	fs := flag.NewFlagSet("virtkey run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.transport, "transport", "uhid", "how the key is attached: uhid (a USB security key through /dev/uhid, which must be writable: see contrib/udev) or udp (CTAPHID reports over UDP on --udp-listen, for python-fido2, the virtkey CLI and tests)")
	fs.StringVar(&f.udpListen, "udp-listen", "127.0.0.1:8111", "UDP address to serve CTAPHID reports on (SoloKeys simulation compatible)")
	fs.StringVar(&f.stateDir, "state-dir", defaultStateDir(), "directory holding the key's state (created 0700)")
	fs.StringVar(&f.presence, "presence", "terminal", "how the user approves a request: terminal (ask on the controlling terminal), pinentry (a pinentry dialog; PINENTRY_PROGRAM, else pinentry), notify (a desktop notification with Allow/Deny over the session D-Bus) or auto (approve everything; testing only)")
	fs.DurationVar(&f.resetWindow, "reset-window", 10*time.Second, "authenticatorReset is allowed only this long after power-up; 0 = always")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.aaguid, "aaguid", "", "AAGUID to report (32 hex digits, dashes allowed); default virtkey's own")
	fs.StringVar(&f.attestation, "attestation", "batch", "default attestation: batch (packed, signed by the batch key under virtkey's own CA in <state-dir>/attestation, or --attestation-key), self (packed, signed by the credential) or none")
	fs.StringVar(&f.attestationKey, "attestation-key", "", "batch attestation private key (PEM: PKCS#8, EC or RSA) to use instead of the generated one; needs --attestation-cert")
	fs.StringVar(&f.attestationCert, "attestation-cert", "", "PEM certificate chain of --attestation-key, attestation certificate first")
	fs.Var(&f.enterpriseRPs, "enterprise-rp", "RP ID that gets vendor-facilitated enterprise attestation once enabled with authenticatorConfig (repeatable)")
	fs.StringVar(&f.passphraseFile, "passphrase-file", "", "derive the master key from the passphrase in this file (argon2id) instead of a key file; VIRTKEY_PASSPHRASE works too")
	fs.IntVar(&f.maxResident, "max-resident", 256, "maximum number of discoverable credentials")
	fs.StringVar(&f.uv, "uv", "none", "built-in user verification for testing: none, auto (the user always verifies) or deny (always fails, counting uvRetries)")
	fs.StringVar(&f.keystore, "keystore", "software", "key custody: software (keys wrapped by a master key in the state dir), tpm (ES256 keys inside the TPM) or tpm+eddsa (also EdDSA, software keys wrapped by the TPM-sealed master key)")
	fs.StringVar(&f.tpm, "tpm", "", "TPM to use with --keystore tpm: a device path (default /dev/tpmrm0, then /dev/tpm0) or tcp://127.0.0.1:PORT (swtpm)")
	fs.UintVar(&f.vid, "vid", 0x1209, "USB vendor id of the uhid device")
	fs.UintVar(&f.pid, "pid", 0x7664, "USB product id of the uhid device")
	fs.StringVar(&f.selectAccount, "select-account", "platform", "several passkeys for one site: platform (numberOfCredentials + getNextAssertion; the client chooses) or newest (the key picks the newest itself and marks it userSelected, for headless browsers)")
	fs.StringVar(&f.name, "name", "virtkey FIDO2 security key", "device name of the uhid device")
	f.control.register(fs)
	fs.StringVar(&f.profile, "profile", "", "preset for a use: browser-test (= --presence auto --uv auto --select-account newest --reset-window 0, for headless browsers); explicit flags win")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: virtkey run [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errUsage
		}
		return nil, errUsage
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "virtkey run: unexpected argument %q\n", fs.Arg(0))
		return nil, errUsage
	}
	if err := applyProfile(fs, f.profile); err != nil {
		return nil, err
	}
	return f, nil
}

// defaultStateDir is $XDG_STATE_HOME/virtkey, else ~/.local/state/virtkey.
func defaultStateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "virtkey")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "virtkey")
	}
	return "virtkey-state"
}

func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func parseAAGUID(s string) ([16]byte, error) {
	var out [16]byte
	if s == "" {
		return out, nil
	}
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		return out, fmt.Errorf("--aaguid %q: want 16 bytes in hex", s)
	}
	copy(out[:], b)
	return out, nil
}

// runKey serves a virtual key until ctx ends.
func runKey(ctx context.Context, args []string, stderr io.Writer) error {
	f, err := parseRunFlags(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(f.logLevel, stderr)
	if err != nil {
		return err
	}
	aaguid, err := parseAAGUID(f.aaguid)
	if err != nil {
		return err
	}
	pres, closePresence, err := newPresence(f, log)
	if err != nil {
		return err
	}
	defer closePresence()
	switch f.transport {
	case "udp":
	case "uhid":
		if err := uhidUsable(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("--transport %q: want udp or uhid", f.transport)
	}

	if err := os.MkdirAll(f.stateDir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	att, err := loadAttestation(f, aaguid, log)
	if err != nil {
		return err
	}
	var uv ctap2.UVMode
	switch f.uv {
	case "none":
		uv = ctap2.UVNone
	case "auto":
		uv = ctap2.UVAuto
		log.Warn("built-in user verification auto-approves (--uv auto): for testing only")
	case "deny":
		uv = ctap2.UVDeny
	default:
		return fmt.Errorf("--uv %q: want none, auto or deny", f.uv)
	}
	if f.selectAccount != "platform" && f.selectAccount != "newest" {
		return fmt.Errorf("--select-account %q: want platform or newest", f.selectAccount)
	}
	cp, err := newControlPlane(f, pres, log)
	if err != nil {
		return err
	}
	defer cp.close()
	keys, closeKeys, err := openKeyStore(ctx, f, log)
	if err != nil {
		return err
	}
	defer closeKeys()
	db, err := store.Open(filepath.Join(f.stateDir, "state.db"))
	if err != nil {
		return err
	}
	defer db.Close()

	auth, err := ctap2.New(ctap2.Config{
		KeyStore: keys, Store: db, Presence: cp.presence(pres), Observer: cp.observer(), Logger: log, AAGUID: aaguid, UV: uv,
		ResetWindow: f.resetWindow, MaxResidentCredentials: f.maxResident,
		Attestation: att.mode, Batch: att.batch, Enterprise: att.enterprise, EnterpriseRPIDs: att.enterpriseRPIDs,
		SelectNewestAccount: f.selectAccount == "newest",
		FirmwareVersion:     uint32(version[0])<<16 | uint32(version[1])<<8 | uint32(version[2]),
	})
	if err != nil {
		return err
	}
	if f.transport == "uhid" {
		return serveUHID(ctx, f, auth, log, cp, uv)
	}
	return serveUDP(ctx, f, auth, log, cp, uv)
}

// serveUDP serves the key on a UDP socket until ctx ends.
func serveUDP(ctx context.Context, f *runFlags, auth *ctap2.Authenticator, log *slog.Logger, cp *controlPlane, uv ctap2.UVMode) error {
	conn, err := udp.Listen(f.udpListen)
	if err != nil {
		return err
	}
	defer conn.Close()
	srv := hid.NewServer(conn, auth, &hid.Options{Logger: log, Version: version})
	conn.OnReboot(srv.PowerCycle)
	stopControl, err := cp.serve(ctx, auth, vkey.UDPDevice(conn, srv), uv)
	if err != nil {
		return err
	}
	defer stopControl()
	log.Info("virtkey serving", "transport", "udp", "listen", conn.Addr().String(), "state", f.stateDir)
	err = srv.Run(ctx)
	if ctx.Err() != nil {
		log.Info("virtkey stopped")
		return nil
	}
	return err
}

func readPassphrase(file string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--passphrase-file: %w", err)
		}
		return []byte(strings.TrimRight(string(b), "\r\n")), nil
	}
	if p := os.Getenv("VIRTKEY_PASSPHRASE"); p != "" {
		return []byte(p), nil
	}
	return nil, nil
}

package server

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/hid/uhid"
	"github.com/virtkey/virtkey/internal/cli"
	"github.com/virtkey/virtkey/tpmkeys"
)

// Config is everything "virtkey run" is told: one field per flag, plus
// where the machine's device files are ([Host]). [Default] gives run's
// defaults; [Config.RegisterFlags] binds the fields to flags;
// [Config.Validate] checks every value before anything is created.
type Config struct {
	Transport string // uhid or udp
	UDPListen string
	// UDPAllowUIDs are served over UDP besides the user running virtkey and
	// root (decimal user ids); UDPAllowAnyUser serves everyone;
	// UDPAllowRemote permits a non-loopback UDPListen.
	UDPAllowUIDs    []string
	UDPAllowAnyUser bool
	UDPAllowRemote  bool
	Name            string // uhid device name
	VID, PID        uint   // uhid USB ids
	StateDir        string
	// AcceptRollback starts with a state.db that its rollback reference
	// says is not the newest (restored from a backup on purpose).
	AcceptRollback bool
	Keystore       string // software, tpm or tpm+eddsa
	TPM            string
	// PassphraseFile holds the passphrase of a software key store; empty:
	// $VIRTKEY_PASSPHRASE, else a key file.
	PassphraseFile string
	Presence       string // terminal, pinentry, notify or auto
	UV             string // none, auto or deny
	SelectAccount  string // platform or newest
	ResetWindow    time.Duration
	MaxResident    int
	Attestation    string // batch, self or none
	// AttestationKey and AttestationCert are a user-supplied batch
	// attestation identity.
	AttestationKey, AttestationCert string
	// EnterpriseRPs get vendor-facilitated enterprise attestation.
	EnterpriseRPs []string
	AAGUID        string // hex; empty: virtkey's own
	LogLevel      string

	// Host says where the machine's device files are; zero fields are the
	// real ones. Not a flag: tests point it elsewhere.
	Host Host
	// Control hands the key to the control plane (control.go). Not a flag.
	Control ControlHooks
}

// Host names the device files the key and doctor use.
type Host struct {
	UHID       string   // the uhid device; empty: /dev/uhid
	TTY        string   // the controlling terminal of --presence terminal; empty: /dev/tty
	TPMDevices []string // tried in order with --keystore tpm and no --tpm; nil: /dev/tpmrm0, /dev/tpm0
}

func (h Host) uhidPath() string {
	if h.UHID == "" {
		return uhid.DefaultPath
	}
	return h.UHID
}

func (h Host) ttyPath() string {
	if h.TTY == "" {
		return "/dev/tty"
	}
	return h.TTY
}

// Default is run's configuration when no flag is given.
func Default() Config {
	return Config{
		Transport:     "uhid",
		UDPListen:     "127.0.0.1:8111",
		Name:          uhid.DefaultName,
		VID:           uhid.DefaultVendorID,
		PID:           uhid.DefaultProductID,
		StateDir:      DefaultStateDir(),
		Keystore:      KeystoreSoftware,
		Presence:      "terminal",
		UV:            "none",
		SelectAccount: "platform",
		ResetWindow:   10 * time.Second,
		MaxResident:   256,
		Attestation:   "batch",
		LogLevel:      "info",
	}
}

// Values of --keystore.
const (
	KeystoreSoftware = "software"
	// KeystoreTPM keeps every credential key in the TPM: ES256 only.
	KeystoreTPM = "tpm"
	// KeystoreTPMEdDSA also offers EdDSA, as Ed25519 keys wrapped under the
	// TPM-sealed master key (TPMs cannot hold Ed25519 keys).
	KeystoreTPMEdDSA = "tpm+eddsa"
)

// DefaultStateDir is $XDG_STATE_HOME/virtkey, else ~/.local/state/virtkey.
func DefaultStateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "virtkey")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "virtkey")
	}
	return "virtkey-state"
}

// configFlag is one flag of run: its field, its help, and what it accepts.
type configFlag struct {
	name  string
	ptr   any // *string, *bool, *uint, *int, *time.Duration or *[]string
	usage string
	// values, when set, are the only values a string flag accepts.
	values []string
	// check, when set, validates the field (after values).
	check func() error
}

// flags lists run's flags in the order "virtkey run -h" shows them and
// [Config.Validate] checks them: the order a user reads a command line in,
// what is attached first. Adding a flag is one line here (and a field).
func (c *Config) flags() []configFlag {
	return []configFlag{
		{"transport", &c.Transport, "how the key is attached: uhid (a USB security key through /dev/uhid, which must be writable: see contrib/udev) or udp (CTAPHID reports over UDP on --udp-listen, for python-fido2, the virtkey CLI and tests)", []string{"udp", "uhid"}, nil},
		{"udp-listen", &c.UDPListen, "UDP address to serve CTAPHID reports on (SoloKeys simulation compatible)", nil, c.checkUDPListen},
		{"udp-allow-uid", &c.UDPAllowUIDs, "also serve UDP datagrams of this user id (repeatable); by default only the user running virtkey and root are served", nil, c.checkUDPAllowUIDs},
		{"udp-allow-any-user", &c.UDPAllowAnyUser, "serve every UDP datagram, whichever user or host sent it (other hosts need this)", nil, nil},
		{"udp-allow-remote", &c.UDPAllowRemote, "allow a non-loopback --udp-listen address (logs a warning)", nil, nil},
		{"name", &c.Name, "device name of the uhid device", nil, c.checkName},
		{"vid", &c.VID, "USB vendor id of the uhid device", nil, c.checkUSBIDs},
		{"pid", &c.PID, "USB product id of the uhid device", nil, nil},
		{"state-dir", &c.StateDir, "directory holding the key's state (created 0700)", nil, c.checkStateDir},
		{"accept-rollback", &c.AcceptRollback, "start with a state.db that its rollback reference says is not the newest (restored from an older backup on purpose): the PIN retries, PIN and passkeys of that copy come back", nil, nil},
		{"keystore", &c.Keystore, "key custody: software (keys wrapped by a master key in the state dir), tpm (ES256 keys inside the TPM) or tpm+eddsa (also EdDSA, software keys wrapped by the TPM-sealed master key)", []string{KeystoreSoftware, KeystoreTPM, KeystoreTPMEdDSA}, nil},
		{"tpm", &c.TPM, "TPM to use with --keystore tpm: a device path (default /dev/tpmrm0, then /dev/tpm0) or tcp://127.0.0.1:PORT (swtpm)", nil, c.checkTPM},
		{"passphrase-file", &c.PassphraseFile, "derive the master key from the passphrase in this file (argon2id) instead of a key file; VIRTKEY_PASSPHRASE works too", nil, c.checkPassphraseFile},
		{"presence", &c.Presence, "how the user approves a request: terminal (ask on the controlling terminal), pinentry (a pinentry dialog; PINENTRY_PROGRAM, else pinentry), notify (a desktop notification with Allow/Deny over the session D-Bus) or auto (approve everything; testing only)", []string{"auto", "terminal", "pinentry", "notify"}, nil},
		{"uv", &c.UV, "built-in user verification for testing: none, auto (the user always verifies) or deny (always fails, counting uvRetries)", []string{"none", "auto", "deny"}, nil},
		{"select-account", &c.SelectAccount, "several passkeys for one site: platform (numberOfCredentials + getNextAssertion; the client chooses) or newest (the key picks the newest itself and marks it userSelected, for headless browsers)", []string{"platform", "newest"}, nil},
		{"reset-window", &c.ResetWindow, "authenticatorReset is allowed only this long after power-up; 0 = always", nil, c.checkResetWindow},
		{"max-resident", &c.MaxResident, "maximum number of discoverable credentials; 0 = no limit but the state directory's free space", nil, c.checkMaxResident},
		{"attestation", &c.Attestation, "default attestation: batch (packed, signed by the batch key under virtkey's own CA in <state-dir>/attestation, or --attestation-key), self (packed, signed by the credential) or none", []string{"batch", "self", "none"}, nil},
		{"attestation-key", &c.AttestationKey, "batch attestation private key (PEM: PKCS#8, EC or RSA) to use instead of the generated one; needs --attestation-cert", nil, c.checkAttestationFiles},
		{"attestation-cert", &c.AttestationCert, "PEM certificate chain of --attestation-key, attestation certificate first", nil, nil},
		{"enterprise-rp", &c.EnterpriseRPs, "RP ID that gets vendor-facilitated enterprise attestation once enabled with authenticatorConfig (repeatable)", nil, nil},
		{"aaguid", &c.AAGUID, "AAGUID to report (32 hex digits, dashes allowed); default virtkey's own", nil, c.checkAAGUID},
		{"log-level", &c.LogLevel, "log level: debug, info, warn or error", nil, c.checkLogLevel},
	}
}

// RegisterFlags defines run's flags on fs, bound to c's fields with c's
// values as defaults: all of them, or only those named.
func (c *Config) RegisterFlags(fs *flag.FlagSet, names ...string) {
	for _, f := range c.flags() {
		if len(names) > 0 && !slices.Contains(names, f.name) {
			continue
		}
		switch p := f.ptr.(type) {
		case *string:
			fs.StringVar(p, f.name, *p, f.usage)
		case *bool:
			fs.BoolVar(p, f.name, *p, f.usage)
		case *uint:
			fs.UintVar(p, f.name, *p, f.usage)
		case *int:
			fs.IntVar(p, f.name, *p, f.usage)
		case *time.Duration:
			fs.DurationVar(p, f.name, *p, f.usage)
		case *[]string:
			fs.Var((*cli.StringList)(p), f.name, f.usage)
		default:
			panic(fmt.Sprintf("server: flag --%s has a field of type %T", f.name, f.ptr))
		}
	}
}

// FlagNames are the names of run's flags in the order of [Config.RegisterFlags]'
// help ("virtkey run -h").
func (c *Config) FlagNames() []string {
	var out []string
	for _, f := range c.flags() {
		out = append(out, f.name)
	}
	return out
}

// Validate checks every field, in the order of the flags, and returns the
// first problem as "--flag value: what it wants". It has no side effect:
// run calls it before it opens, binds or creates anything.
func (c *Config) Validate() error {
	for _, f := range c.flags() {
		if f.values != nil {
			if v := *f.ptr.(*string); !slices.Contains(f.values, v) {
				return fmt.Errorf("--%s %q: want %s", f.name, v, cli.OrList(f.values))
			}
		}
		if f.check != nil {
			if err := f.check(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *Config) checkUDPListen() error {
	if c.Transport != "udp" {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.UDPListen); err != nil {
		return fmt.Errorf("--udp-listen %q: want HOST:PORT", c.UDPListen)
	}
	return nil
}

func (c *Config) checkUDPAllowUIDs() error {
	_, err := c.udpAllowUIDs()
	return err
}

// udpAllowUIDs parses UDPAllowUIDs.
func (c *Config) udpAllowUIDs() ([]uint32, error) {
	var uids []uint32
	for _, s := range c.UDPAllowUIDs {
		uid, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--udp-allow-uid %q: want a numeric user id", s)
		}
		uids = append(uids, uint32(uid))
	}
	return uids, nil
}

func (c *Config) checkName() error {
	if c.Transport == "uhid" && (c.Name == "" || len(c.Name) > 127 || strings.ContainsRune(c.Name, 0)) {
		return fmt.Errorf("--name %q: want 1 to 127 bytes of text", c.Name)
	}
	return nil
}

func (c *Config) checkUSBIDs() error {
	if c.Transport == "uhid" && (c.VID == 0 || c.VID > 0xFFFF || c.PID == 0 || c.PID > 0xFFFF) {
		return fmt.Errorf("--vid %#x --pid %#x: want USB ids from 0x0001 to 0xffff", c.VID, c.PID)
	}
	return nil
}

func (c *Config) checkStateDir() error {
	if c.StateDir == "" {
		return errors.New("--state-dir: want a directory")
	}
	return nil
}

func (c *Config) checkTPM() error {
	if c.TPM == "" || c.Keystore == KeystoreSoftware {
		return nil
	}
	if _, err := tpmkeys.OpenerFor(c.TPM); err != nil {
		return fmt.Errorf("--tpm %q: want a device path (/dev/tpmrm0) or tcp://HOST:PORT", c.TPM)
	}
	return nil
}

func (c *Config) checkPassphraseFile() error {
	if c.PassphraseFile != "" && c.Keystore != KeystoreSoftware {
		return errors.New("--passphrase-file works with --keystore software only; with --keystore tpm the master key is sealed by the TPM")
	}
	return nil
}

func (c *Config) checkResetWindow() error {
	if c.ResetWindow < 0 {
		return fmt.Errorf("--reset-window %v: want 0 (always) or a positive duration", c.ResetWindow)
	}
	return nil
}

// maxResident is ctap2's MaxResidentCredentials for --max-resident n: 0
// lifts the limit.
func maxResident(n int) int {
	if n == 0 {
		return ctap2.NoResidentLimit
	}
	return n
}

func (c *Config) checkMaxResident() error {
	if c.MaxResident < 0 {
		return fmt.Errorf("--max-resident %d: want 0 or more", c.MaxResident)
	}
	return nil
}

func (c *Config) checkAttestationFiles() error {
	if (c.AttestationKey == "") != (c.AttestationCert == "") {
		return errors.New("--attestation-key and --attestation-cert go together")
	}
	return nil
}

func (c *Config) checkAAGUID() error {
	_, err := c.aaguid()
	return err
}

// aaguid is the parsed --aaguid (zero: ctap2's default).
func (c *Config) aaguid() ([16]byte, error) {
	var out [16]byte
	if c.AAGUID == "" {
		return out, nil
	}
	b, err := hex.DecodeString(strings.ReplaceAll(c.AAGUID, "-", ""))
	if err != nil || len(b) != 16 {
		return out, fmt.Errorf("--aaguid %q: want 16 bytes in hex", c.AAGUID)
	}
	copy(out[:], b)
	return out, nil
}

func (c *Config) checkLogLevel() error {
	_, err := c.logLevel()
	return err
}

func (c *Config) logLevel() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return l, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	return l, nil
}

// NewLogger returns the text logger of --log-level, writing to w.
func (c *Config) NewLogger(w io.Writer) (*slog.Logger, error) {
	l, err := c.logLevel()
	if err != nil {
		return nil, err
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// uvMode is the parsed --uv.
func (c *Config) uvMode() ctap2.UVMode {
	switch c.UV {
	case "auto":
		return ctap2.UVAuto
	case "deny":
		return ctap2.UVDeny
	}
	return ctap2.UVNone
}

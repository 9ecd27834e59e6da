// Package manage is virtkey's management commands: a CTAP2 client (package
// ctap2/client) that manages any FIDO2 key, virtual or hardware, like
// fido2-token or ykman fido.
//
//	virtkey [--device D] [--json] info
//	virtkey pin set|change
//	virtkey creds list [--rp ID]
//	virtkey creds rename CRED-ID --name N [--display-name D]
//	virtkey creds delete CRED-ID
//	virtkey reset
//	virtkey config always-uv on|off
//	virtkey config min-pin-length N [--rp ID]... [--force-change]
//
// --device and --json may come before or after the subcommand. The PIN is
// read from $VIRTKEY_PIN (the new PIN of "pin change" from
// $VIRTKEY_NEW_PIN), else from the terminal without echo. With --json the
// result — or, on failure, {"error": …} — is one JSON object on stdout.
// The exit codes are internal/cli's.
//
// Each command is a leaf of one table ([leaves]); the prologue they share
// (flags, arguments, opening the device, getInfo, the feature check) runs
// once, in [manager.runLeaf].
package manage

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/hid"
	"github.com/virtkey/virtkey/internal/cli"
)

// Environment variables read by the management commands.
const (
	envDevice = "VIRTKEY_DEVICE"  // default for --device
	envPIN    = "VIRTKEY_PIN"     // the PIN
	envNewPIN = "VIRTKEY_NEW_PIN" // the new PIN of "pin change"
)

// Env is the process environment a command runs in; tests replace it.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// OpenTTY opens the terminal PINs are asked on.
	OpenTTY func() (*os.File, error)
}

// OSEnv is the environment of this process.
func OSEnv() Env {
	return Env{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Getenv:  os.Getenv,
		OpenTTY: func() (*os.File, error) { return os.OpenFile("/dev/tty", os.O_RDWR, 0) },
	}
}

// leaf is one management command.
type leaf struct {
	path     string // "creds rename"
	synopsis string // its arguments and own flags
	summary  string // one line for "virtkey help"
	more     string // more lines for -h
	// flags defines the leaf's own flags; run reads them with call.flag.
	flags func(fs *flag.FlagSet)
	// args checks the positional arguments ("" = fine); nil allows none.
	args func(c *call) string
	// dashArgs: an argument starting with "-" that names no flag is
	// positional (a base64url credential ID may start with "-").
	dashArgs bool
	// feature is what the key must support, for "this key does not
	// support …"; supports says whether getInfo shows it (nil: anything).
	feature  string
	supports func(info *ctap2.GetInfoResponse) bool
	run      func(ctx context.Context, c *call) error
}

// leaves are the management commands, in the order "virtkey help" lists
// them.
var leaves = []*leaf{
	{path: "info", summary: "show what the key supports", run: info},
	{path: "pin set", summary: "set the first PIN", feature: "a PIN", supports: pinKnown, run: pinSet},
	{path: "pin change", summary: "change the PIN", feature: "a PIN", supports: pinKnown, run: pinChange},
	{path: "creds list", synopsis: "[--rp ID]", summary: "list passkeys (discoverable credentials)",
		flags:   func(fs *flag.FlagSet) { fs.String("rp", "", "list only the passkeys of this RP ID (e.g. example.com)") },
		feature: "credential management", supports: credMgmtKnown, run: credsList},
	{path: "creds rename", synopsis: "CRED-ID --name N [--display-name D]", summary: "change a passkey's user name and display name",
		more: "(without --display-name the display name is kept; --display-name \"\" removes it)",
		flags: func(fs *flag.FlagSet) {
			fs.String("name", "", "the new user name (required)")
			fs.String("display-name", "", "the new display name")
		},
		args: func(c *call) string {
			if len(c.args) == 1 && !c.isSet("name") {
				return "--name is required"
			}
			return credIDArg(c)
		},
		dashArgs: true, feature: "credential management", supports: credMgmtKnown, run: credsRename},
	{path: "creds delete", synopsis: "CRED-ID", summary: "delete a passkey", args: credIDArg, dashArgs: true,
		feature: "credential management", supports: credMgmtKnown, run: credsDelete},
	{path: "reset", summary: "erase every passkey, the PIN and the settings",
		more: "erases every passkey, the PIN and the settings; the key asks for a touch", run: reset},
	{path: "config always-uv", synopsis: "on|off", summary: "require user verification for everything",
		args: func(c *call) string {
			if len(c.args) != 1 || (c.args[0] != "on" && c.args[0] != "off") {
				return "want on or off"
			}
			return ""
		},
		feature: "the alwaysUv setting", supports: alwaysUVKnown, run: configAlwaysUV},
	{path: "config min-pin-length", synopsis: "N [--rp ID]... [--force-change]", summary: "raise the minimum PIN length",
		flags: func(fs *flag.FlagSet) {
			fs.Var(new(cli.StringList), "rp", "an RP ID allowed to read the minimum PIN length (minPinLength extension); repeatable")
			fs.Bool("force-change", false, "make the user change the PIN before the key is used again")
		},
		args: func(c *call) string {
			if len(c.args) != 1 {
				return "want one number N"
			}
			if _, ok := minPINLengthArg(c.args[0]); !ok {
				return fmt.Sprintf("N must be a number from %d to %d", ctap2.DefaultMinPINLength, ctap2.MaxPINBytes)
			}
			return ""
		},
		feature: "setting the minimum PIN length", supports: func(info *ctap2.GetInfoResponse) bool {
			ok, _ := client.Option(info, "setMinPINLength")
			return ok
		},
		run: configMinPINLength},
}

// Help is one line of "virtkey help".
type Help struct {
	Command  string // "creds rename"
	Synopsis string // "CRED-ID --name N [--display-name D]"
	Summary  string
}

// Commands lists the management commands for "virtkey help", in order.
func Commands() []Help {
	out := make([]Help, len(leaves))
	for i, l := range leaves {
		out[i] = Help{l.path, l.synopsis, l.summary}
	}
	return out
}

// IsCommand reports whether word is the first word of a management
// command.
func IsCommand(word string) bool {
	for _, l := range leaves {
		if first, _, _ := strings.Cut(l.path, " "); first == word {
			return true
		}
	}
	return false
}

// Run runs the management command in args (common flags may come first:
// "--device D info"). Its error is [cli.ErrUsage] or [cli.ErrHelp] (the
// usage text is printed), or an error in words with an ExitCode method
// (already written as JSON with --json).
func Run(ctx context.Context, env Env, args []string) error {
	m := &manager{Env: env}
	err := m.dispatch(ctx, args)
	if m.opened != nil {
		m.opened.close()
	}
	if err == nil || errors.Is(err, cli.ErrUsage) || errors.Is(err, cli.ErrHelp) {
		return err
	}
	e := m.explain(err)
	if m.json {
		m.printJSON(e.jsonError())
	}
	return e
}

// manager runs one management command.
type manager struct {
	Env

	// Common flags.
	device string
	json   bool

	opened   *openedDevice // the device, once open
	touching atomic.Bool   // a "touch the key" prompt is showing
}

// dispatch walks args to a leaf: common flags, a word, common flags, a
// word… ("--device D creds --json list").
func (m *manager) dispatch(ctx context.Context, args []string) error {
	prefix := ""
	for {
		fs := cli.NewFlagSet("virtkey "+prefix, m.groupUsage(prefix), m.Stderr)
		m.commonFlags(fs)
		rest, err := cli.ParseLeading(fs, args)
		if err != nil {
			return err
		}
		if len(rest) == 0 {
			if prefix == "" {
				return m.usageError(fs, "want a command: %s", cli.OrList(m.children(prefix)))
			}
			return m.usageError(fs, "%s: want %s", prefix, cli.OrList(m.children(prefix)))
		}
		path := strings.TrimSpace(prefix + " " + rest[0])
		for _, l := range leaves {
			if l.path == path {
				return m.runLeaf(ctx, l, rest[1:])
			}
		}
		if len(m.children(path)) == 0 {
			if prefix == "" {
				return m.usageError(fs, "unknown command %q (want %s)", rest[0], cli.OrList(m.children(prefix)))
			}
			return m.usageError(fs, "%s: unknown subcommand %q (want %s)", prefix, rest[0], cli.OrList(m.children(prefix)))
		}
		prefix, args = path, rest[1:]
	}
}

// children are the next words after prefix ("creds" → list, rename,
// delete).
func (m *manager) children(prefix string) []string {
	var out []string
	for _, l := range leaves {
		rest, ok := strings.CutPrefix(l.path, prefix)
		if prefix != "" && (!ok || !strings.HasPrefix(rest, " ")) {
			continue
		}
		word, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
		if len(out) == 0 || out[len(out)-1] != word {
			out = append(out, word)
		}
	}
	return out
}

// groupUsage lists the leaves below prefix.
func (m *manager) groupUsage(prefix string) string {
	b := strings.Builder{}
	if prefix == "" {
		b.WriteString("virtkey [--device D] [--json] COMMAND")
	} else {
		fmt.Fprintf(&b, "virtkey %s COMMAND [--device D] [--json]", prefix)
	}
	for _, l := range leaves {
		if prefix == "" || l.path == prefix || strings.HasPrefix(l.path, prefix+" ") {
			fmt.Fprintf(&b, "\n  virtkey %s", strings.TrimSpace(l.path+" "+l.synopsis))
		}
	}
	return b.String()
}

// commonFlags defines --device and --json on fs, keeping what earlier
// words set.
func (m *manager) commonFlags(fs *flag.FlagSet) {
	fs.StringVar(&m.device, "device", m.device, "the key: udp:HOST:PORT or /dev/hidrawN (default $VIRTKEY_DEVICE, else the only key present)")
	fs.BoolVar(&m.json, "json", m.json, "machine-readable JSON output")
}

// call is one run of a leaf: its flags and arguments, the device and its
// getInfo.
type call struct {
	*manager
	fs   *flag.FlagSet
	args []string
	dev  *client.Device
	info *ctap2.GetInfoResponse
}

// flag is the value of the leaf's flag name.
func (c *call) flag(name string) flag.Value { return c.fs.Lookup(name).Value }

// isSet reports whether the flag name was given.
func (c *call) isSet(name string) bool {
	set := false
	c.fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// runLeaf is the prologue every management command shares: flags,
// argument check, open the device, getInfo, feature check; then the
// command.
func (m *manager) runLeaf(ctx context.Context, l *leaf, args []string) error {
	synopsis := strings.TrimSpace("virtkey "+l.path+" "+l.synopsis) + " [--device D] [--json]"
	if l.more != "" {
		synopsis += "\n  " + l.more
	}
	// The usage lists the leaf's own flags first, then the common ones.
	var order []string
	if l.flags != nil {
		own := flag.NewFlagSet("", flag.ContinueOnError)
		l.flags(own)
		own.VisitAll(func(f *flag.Flag) { order = append(order, f.Name) })
	}
	fs := cli.NewFlagSet("virtkey "+l.path, synopsis, m.Stderr, append(order, "device", "json")...)
	m.commonFlags(fs)
	if l.flags != nil {
		l.flags(fs)
	}
	pos, err := cli.Parse(fs, args, l.dashArgs)
	if err != nil {
		return err
	}
	c := &call{manager: m, fs: fs, args: pos}
	complaint := ""
	if l.args != nil {
		complaint = l.args(c)
	} else if len(pos) > 0 {
		complaint = fmt.Sprintf("unexpected argument %q", pos[0])
	}
	if complaint != "" {
		return m.usageError(fs, "%s: %s", l.path, complaint)
	}
	if c.dev, err = m.open(ctx); err != nil {
		return err
	}
	if c.info, err = c.dev.GetInfo(ctx); err != nil {
		return err
	}
	if l.supports != nil && !l.supports(c.info) {
		return unsupported(l.feature)
	}
	err = l.run(ctx, c)
	if errors.Is(err, client.ErrNotSupported) && l.feature != "" {
		return unsupported(l.feature)
	}
	return err
}

// usageError prints msg and the usage of fs and returns cli.ErrUsage.
func (m *manager) usageError(fs *flag.FlagSet, format string, a ...any) error {
	fmt.Fprintf(m.Stderr, "virtkey: "+format+"\n", a...)
	fs.Usage()
	return cli.ErrUsage
}

// open opens the device named by --device, $VIRTKEY_DEVICE, or the only
// one present.
func (m *manager) open(ctx context.Context) (*client.Device, error) {
	spec := m.device
	if spec == "" {
		spec = m.Getenv(envDevice)
	}
	d, err := openDevice(ctx, spec, m.keepalive)
	if err != nil {
		return nil, err
	}
	m.opened = d
	return d.dev, nil
}

// keepalive tells the user to touch the key while the key waits for it.
func (m *manager) keepalive(status byte) {
	if status == hid.StatusUPNeeded {
		if !m.touching.Swap(true) {
			fmt.Fprintln(m.Stderr, "Touch your security key to confirm…")
		}
	} else {
		m.touching.Store(false)
	}
}

// printJSON writes v as indented JSON on stdout.
func (m *manager) printJSON(v any) error {
	enc := json.NewEncoder(m.Stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// powerCycleAdvice says how to power-cycle the key the command talks to:
// a hardware key is replugged; a virtual key over UDP has no plug.
func (m *manager) powerCycleAdvice() string {
	if m.opened != nil && strings.HasPrefix(m.opened.name, "udp:") {
		return "power-cycle the virtual key (kill -USR1 the \"virtkey run\" process, restart it, or send it the UDP power-cycle datagram)"
	}
	return "remove and reinsert the key"
}

// plural formats n with the singular or plural noun.
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// nonNil makes a nil slice an empty one, so JSON shows [] and not null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func pinKnown(info *ctap2.GetInfoResponse) bool {
	_, known := client.Option(info, "clientPin")
	return known
}

func credMgmtKnown(info *ctap2.GetInfoResponse) bool {
	cm, _ := client.Option(info, "credMgmt")
	preview, _ := client.Option(info, "credentialMgmtPreview")
	return cm || preview
}

func alwaysUVKnown(info *ctap2.GetInfoResponse) bool {
	_, known := client.Option(info, "alwaysUv")
	cfg, _ := client.Option(info, "authnrCfg")
	return known && cfg
}

// Package ctl is `virtkey ctl`: the control API's command-line client.
//
//	virtkey ctl --control unix:PATH keys add --attach udp
//	virtkey ctl --control unix:PATH creds add --rp example.com --private-key key.pem --resident --user-handle dXNlcg
//	virtkey ctl --control unix:PATH creds list --json
//	virtkey ctl --control unix:PATH uv off
//	virtkey ctl --control unix:PATH presence manual
//	virtkey ctl --control unix:PATH presence approve REQ
//	virtkey ctl --control unix:PATH events
package ctl

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/virtkey/virtkey/control"
	"github.com/virtkey/virtkey/control/client"
)

// Usage is the help text.
const Usage = `usage: virtkey ctl [--control ADDR] [--control-token-file FILE] [--key ID] COMMAND

Drive a running virtkey through its control API (virtkey run --control ...).
  --control ADDR             unix:PATH or tcp:HOST:PORT (default $VIRTKEY_CONTROL)
  --control-token-file FILE  bearer token for tcp: (default $VIRTKEY_CONTROL_TOKEN_FILE)
  --key ID                   the key to drive (default "default", the key virtkey run serves)

Commands:
  keys [list] [--json]                       list keys
  keys add --attach udp|uhid [--udp-listen ADDR] [--state-dir DIR [--accept-rollback]]
           [--protocol P] [--uv none|auto|deny] [--presence MODE] [--json]
  keys delete ID                             unplug and remove a key
  info [--json]                              describe the key
  creds list [--json] [--format playwright]  stored credentials
  creds get CRED-ID [--json]
  creds add --rp RP [--private-key FILE.pem] [--cred-id B64] [--resident] [--user-handle B64]
            [--user-name N] [--display-name D] [--sign-count N] [--backup-eligible] [--backup-state]
            [--cred-protect 1|2|3] [--hmac-secret] [--large-blob FILE] [--alg es256|eddsa|es384|rs256] [--json]
  creds add --playwright FILE.json           credentials in Playwright's shape (one or an array)
  creds delete CRED-ID | --all
  creds set CRED-ID [--sign-count N] [--backup-eligible=true|false] [--backup-state=true|false]
            [--user-name N] [--display-name D]
  uv on|off                                  built-in user verification succeeds or fails
  presence auto|deny|manual|timeout          how presence requests are answered
  presence pending [--json]                  queued requests (manual mode)
  presence approve|deny REQUEST-ID
  overrides [--bogus-signature] [--bad-uv] [--bad-up]
  pin set PIN | pin remove
  replug                                     power-cycle the key
  events                                     stream events, one JSON object a line
Binary values (credential ids, user handles) are base64url; standard base64 is accepted too.
`

// ErrUsage means the command line was wrong and the usage was printed.
var ErrUsage = errors.New("usage")

var errUsage = ErrUsage

// Main runs `virtkey ctl` with args (after "ctl") and returns the exit
// code: 0, 1 for an error (printed), 2 for a usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := Run(ctx, args, stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrUsage):
		return 2
	}
	fmt.Fprintln(stderr, "virtkey ctl:", err)
	return 1
}

// Run runs `virtkey ctl` with args (after "ctl"). A usage error is
// [ErrUsage] with the usage already printed; other errors are returned
// unprinted.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return run(ctx, args, stdout, stderr)
}

type env struct {
	ctx    context.Context
	c      *client.Client
	key    *client.Key
	stdout io.Writer
	stderr io.Writer
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("virtkey ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, Usage) }
	addr := fs.String("control", os.Getenv("VIRTKEY_CONTROL"), "")
	tokFile := fs.String("control-token-file", os.Getenv("VIRTKEY_CONTROL_TOKEN_FILE"), "")
	keyID := fs.String("key", control.DefaultKeyID, "")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, Usage)
		return errUsage
	}
	if fs.Arg(0) == "help" {
		fmt.Fprint(stdout, Usage)
		return nil
	}
	if *addr == "" {
		fmt.Fprintln(stderr, "virtkey ctl: --control (or VIRTKEY_CONTROL) is required")
		return errUsage
	}
	var tok string
	if *tokFile != "" {
		b, err := control.ReadToken(*tokFile)
		if err != nil {
			return err
		}
		tok = string(b)
	}
	c, err := client.New(*addr, tok)
	if err != nil {
		return err
	}
	defer c.Close()
	e := &env{ctx: ctx, c: c, key: c.Key(*keyID), stdout: stdout, stderr: stderr}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	if run, ok := commands[cmd]; ok {
		return run(e, rest)
	}
	return e.usage(fmt.Sprintf("unknown command %q", cmd))
}

// commands are virtkey ctl's commands by name.
var commands = map[string]func(*env, []string) error{
	"keys":      (*env).keys,
	"info":      (*env).info,
	"creds":     (*env).creds,
	"uv":        (*env).uv,
	"presence":  (*env).presence,
	"overrides": (*env).overrides,
	"pin":       (*env).pin,
	"replug":    (*env).replug,
	"events":    (*env).events,
}

func (e *env) replug(args []string) error {
	if len(args) != 0 {
		return e.usage("replug takes no arguments")
	}
	_, err := e.key.Replug(e.ctx)
	return err
}

func (e *env) usage(msg string) error {
	fmt.Fprintf(e.stderr, "virtkey ctl: %s\n\n%s", msg, Usage)
	return errUsage
}

// flags returns a flag set for a subcommand whose usage is the main one.
func (e *env) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("virtkey ctl "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(e.stderr, Usage) }
	return fs
}

// jsonOnly parses the arguments of a command that takes none and only the
// flag --json, and returns its value.
func (e *env) jsonOnly(name string, args []string) (asJSON bool, err error) {
	fs := e.flags(name)
	j := fs.Bool("json", false, "")
	if pos, err := parse(fs, args); err != nil || len(pos) != 0 {
		return false, e.usage(name + " takes no arguments")
	}
	return *j, nil
}

// parse parses args, allowing flags after positional arguments, and
// returns the positional ones.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, errUsage
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// table prints vs as JSON (asJSON), or as a table: the tab-separated
// header, then row's values of each, tab-separated.
func table[T any](e *env, asJSON bool, vs []T, header string, row func(T) []any) error {
	if asJSON {
		return e.printJSON(vs)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, v := range vs {
		for i, f := range row(v) {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, f)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// list runs a listing command (no arguments, --json): the rows fetch
// returns, as a table or JSON.
func list[T any](e *env, name string, args []string, fetch func(context.Context) ([]T, error), header string, row func(T) []any) error {
	asJSON, err := e.jsonOnly(name, args)
	if err != nil {
		return err
	}
	vs, err := fetch(e.ctx)
	if err != nil {
		return err
	}
	return table(e, asJSON, vs, header, row)
}

func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (e *env) keys(args []string) error {
	sub := "list"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "list":
		return list(e, "keys list", args, e.c.Keys, "ID\tATTACH\tADDRESS\tUV\tPRESENCE\tPIN", func(k control.KeyInfo) []any {
			return []any{k.ID, k.Attach, keyAddr(k), uvWord(k), k.Presence, k.PINSet}
		})
	case "add":
		fs := e.flags("keys add")
		var cfg control.KeyConfig
		fs.StringVar(&cfg.Attach, "attach", "udp", "")
		fs.StringVar(&cfg.UDPListen, "udp-listen", "", "")
		fs.StringVar(&cfg.StateDir, "state-dir", "", "")
		fs.BoolVar(&cfg.AcceptRollback, "accept-rollback", false, "")
		fs.StringVar(&cfg.Protocol, "protocol", "", "")
		uv := fs.String("uv", "", "")
		pres := fs.String("presence", "", "")
		asJSON := fs.Bool("json", false, "")
		if pos, err := parse(fs, args); err != nil || len(pos) != 0 {
			return e.usage("keys add takes flags only")
		}
		cfg.Presence = control.PresenceMode(*pres)
		t, f := true, false
		switch *uv {
		case "":
		case "none":
			cfg.HasUserVerification = &f
		case "auto":
			cfg.HasUserVerification, cfg.IsUserVerified = &t, &t
		case "deny":
			cfg.HasUserVerification, cfg.IsUserVerified = &t, &f
		default:
			return e.usage(fmt.Sprintf("--uv %q: want none, auto or deny", *uv))
		}
		ki, err := e.c.AddKey(e.ctx, cfg)
		if err != nil {
			return err
		}
		if *asJSON {
			return e.printJSON(ki)
		}
		fmt.Fprintf(e.stdout, "%s %s\n", ki.ID, keyAddr(ki))
		return nil
	case "delete", "remove", "rm":
		fs := e.flags("keys delete")
		pos, err := parse(fs, args)
		if err != nil || len(pos) != 1 {
			return e.usage("keys delete takes one key id")
		}
		return e.c.DeleteKey(e.ctx, pos[0])
	}
	return e.usage(fmt.Sprintf("unknown keys command %q", sub))
}

func keyAddr(k control.KeyInfo) string {
	switch {
	case k.UDPAddr != "":
		return "udp:" + k.UDPAddr
	case k.HIDRaw != "":
		return k.HIDRaw
	}
	return "-"
}

func uvWord(k control.KeyInfo) string {
	switch {
	case !k.HasUserVerification:
		return "none"
	case k.IsUserVerified:
		return "on"
	}
	return "off"
}

func (e *env) info(args []string) error {
	asJSON, err := e.jsonOnly("info", args)
	if err != nil {
		return err
	}
	ki, err := e.key.Info(e.ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return e.printJSON(ki)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	for _, row := range [][2]string{
		{"id", ki.ID}, {"attach", ki.Attach}, {"address", keyAddr(ki)}, {"protocol", ki.Protocol},
		{"keystore", ki.KeyStore}, {"uv", uvWord(ki)}, {"presence", string(ki.Presence)},
		{"pin set", strconv.FormatBool(ki.PINSet)}, {"resident keys", strconv.FormatBool(ki.HasResidentKey)},
		{"extensions", strings.Join(ki.Extensions, " ")}, {"state dir", ki.StateDir},
		{"ephemeral", strconv.FormatBool(ki.Ephemeral)}, {"export allowed", strconv.FormatBool(ki.ExportAllowed)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
	}
	return tw.Flush()
}

func (e *env) uv(args []string) error {
	if len(args) != 1 || (args[0] != "on" && args[0] != "off") {
		return e.usage("uv takes on or off")
	}
	_, err := e.key.SetUserVerified(e.ctx, args[0] == "on")
	return err
}

func (e *env) presence(args []string) error {
	if len(args) == 0 {
		return e.usage("presence takes a mode, pending, approve or deny")
	}
	switch args[0] {
	case "auto", "deny", "manual", "timeout":
		if len(args) == 2 && args[0] == "deny" {
			return e.answer(args[1], false)
		}
		if len(args) != 1 {
			return e.usage("presence " + args[0] + " takes no arguments")
		}
		_, err := e.key.SetPresence(e.ctx, control.PresenceMode(args[0]))
		return err
	case "approve":
		if len(args) != 2 {
			return e.usage("presence approve takes a request id")
		}
		return e.answer(args[1], true)
	case "pending":
		return list(e, "presence pending", args[1:], e.key.PendingPresence, "REQUEST\tOP\tRP\tUSER\tSINCE", func(p control.PendingPresence) []any {
			return []any{p.RequestID, p.Op, p.RPID, p.UserName, p.Since.Format("15:04:05.000")}
		})
	}
	return e.usage(fmt.Sprintf("presence %q: want auto, deny, manual, timeout, pending, approve or deny", args[0]))
}

func (e *env) answer(id string, approve bool) error {
	return e.key.AnswerPresence(e.ctx, id, approve)
}

func (e *env) overrides(args []string) error {
	fs := e.flags("overrides")
	var o control.Overrides
	fs.BoolVar(&o.IsBogusSignature, "bogus-signature", false, "")
	fs.BoolVar(&o.IsBadUV, "bad-uv", false, "")
	fs.BoolVar(&o.IsBadUP, "bad-up", false, "")
	if pos, err := parse(fs, args); err != nil || len(pos) != 0 {
		return e.usage("overrides takes flags only")
	}
	_, err := e.key.SetOverrides(e.ctx, o)
	return err
}

func (e *env) pin(args []string) error {
	switch {
	case len(args) == 2 && args[0] == "set":
		_, err := e.key.SetPIN(e.ctx, args[1])
		return err
	case len(args) == 1 && args[0] == "remove":
		_, err := e.key.RemovePIN(e.ctx)
		return err
	}
	return e.usage("pin set PIN | pin remove")
}

func (e *env) events(args []string) error {
	if len(args) != 0 {
		return e.usage("events takes no arguments")
	}
	es, err := e.key.Events(e.ctx)
	if err != nil {
		return err
	}
	defer es.Close()
	enc := json.NewEncoder(e.stdout)
	for {
		ev, err := es.Next()
		if err != nil {
			if errors.Is(err, io.EOF) || e.ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := enc.Encode(ev); err != nil {
			return err
		}
		if f, ok := e.stdout.(interface{ Sync() error }); ok {
			f.Sync()
		}
	}
}

// readPrivateKey reads a PEM (PKCS#8, SEC 1 EC or PKCS#1 RSA) or DER
// private key and returns it as PKCS#8 DER.
func readPrivateKey(file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	der := b
	if blk, _ := pem.Decode(b); blk != nil {
		der = blk.Bytes
		switch blk.Type {
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(der)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			return x509.MarshalPKCS8PrivateKey(k)
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(der)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			return x509.MarshalPKCS8PrivateKey(k)
		case "PRIVATE KEY":
		default:
			return nil, fmt.Errorf("%s: PEM block %q is not a private key", file, blk.Type)
		}
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: not a PKCS#8 private key: %w", file, err)
	}
	switch k.(type) {
	case *ecdsa.PrivateKey, ed25519.PrivateKey, *rsa.PrivateKey:
	default:
		return nil, fmt.Errorf("%s: unsupported key type %T", file, k)
	}
	return der, nil
}

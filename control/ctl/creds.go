package ctl

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/virtkey/virtkey/control"
)

// b64Flag is a flag holding base64 (either alphabet).
type b64Flag struct{ b []byte }

func (f *b64Flag) String() string { return control.Bytes(f.b).String() }
func (f *b64Flag) Set(s string) error {
	b, err := control.DecodeBase64(s)
	f.b = b
	return err
}

// optBool is a bool flag that knows whether it was given.
type optBool struct{ v *bool }

func (f *optBool) String() string {
	if f.v == nil {
		return ""
	}
	return strconv.FormatBool(*f.v)
}
func (f *optBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	f.v = &v
	return err
}
func (f *optBool) IsBoolFlag() bool { return true }

// credentialID decodes a credential id argument.
func credentialID(arg string) ([]byte, error) {
	id, err := control.DecodeBase64(arg)
	if err != nil {
		return nil, fmt.Errorf("credential id: %w", err)
	}
	return id, nil
}

// oneCredential parses the arguments of command name, which takes one
// credential id, and returns the id.
func (e *env) oneCredential(fs *flag.FlagSet, args []string, name string) ([]byte, error) {
	pos, err := parse(fs, args)
	if err != nil || len(pos) != 1 {
		return nil, e.usage(name + " takes one credential id")
	}
	return credentialID(pos[0])
}

var algs = map[string]int{"es256": -7, "eddsa": -8, "es384": -35, "rs256": -257}

func (e *env) creds(args []string) error {
	if len(args) == 0 {
		return e.usage("creds takes list, get, add, delete or set")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "list", "ls":
		fs := e.flags("creds list")
		asJSON := fs.Bool("json", false, "")
		format := fs.String("format", "", "")
		if pos, err := parse(fs, args); err != nil || len(pos) != 0 {
			return e.usage("creds list takes no arguments")
		}
		switch *format {
		case "":
		case "playwright":
			cs, err := e.key.PlaywrightCredentials(e.ctx)
			if err != nil {
				return err
			}
			return e.printJSON(cs)
		default:
			return e.usage("--format: want playwright")
		}
		cs, err := e.key.Credentials(e.ctx)
		if err != nil {
			return err
		}
		return table(e, *asJSON, cs, "CREDENTIAL ID\tRP\tUSER\tSIGN COUNT\tRESIDENT\tALG", func(c control.Credential) []any {
			return []any{c.CredentialID, c.RPID, c.UserName, c.SignCount, c.IsResidentCredential, c.Algorithm}
		})
	case "get":
		fs := e.flags("creds get")
		fs.Bool("json", true, "")
		id, err := e.oneCredential(fs, args, "creds get")
		if err != nil {
			return err
		}
		c, err := e.key.Credential(e.ctx, id)
		if err != nil {
			return err
		}
		return e.printJSON(c)
	case "add":
		return e.credsAdd(args)
	case "delete", "rm":
		fs := e.flags("creds delete")
		all := fs.Bool("all", false, "")
		pos, err := parse(fs, args)
		if err != nil || (len(pos) == 1) == *all || len(pos) > 1 {
			return e.usage("creds delete takes one credential id or --all")
		}
		if *all {
			return e.key.DeleteCredentials(e.ctx)
		}
		id, err := credentialID(pos[0])
		if err != nil {
			return err
		}
		return e.key.DeleteCredential(e.ctx, id)
	case "set":
		fs := e.flags("creds set")
		var p control.CredentialProps
		var be, bs optBool
		fs.Var(&be, "backup-eligible", "")
		fs.Var(&bs, "backup-state", "")
		signCount := fs.String("sign-count", "", "")
		userName := fs.String("user-name", "\x00", "")
		displayName := fs.String("display-name", "\x00", "")
		id, err := e.oneCredential(fs, args, "creds set")
		if err != nil {
			return err
		}
		p.BackupEligibility, p.BackupState = be.v, bs.v
		if *signCount != "" {
			n, err := strconv.ParseUint(*signCount, 10, 32)
			if err != nil {
				return fmt.Errorf("--sign-count: %w", err)
			}
			v := uint32(n)
			p.SignCount = &v
		}
		if *userName != "\x00" {
			p.UserName = userName
		}
		if *displayName != "\x00" {
			p.UserDisplayName = displayName
		}
		c, err := e.key.SetCredentialProps(e.ctx, id, p)
		if err != nil {
			return err
		}
		return e.printJSON(c)
	}
	return e.usage(fmt.Sprintf("unknown creds command %q", sub))
}

func (e *env) credsAdd(args []string) error {
	fs := e.flags("creds add")
	var p control.CredentialParams
	var id, user b64Flag
	var be, bs, hmac optBool
	fs.StringVar(&p.RPID, "rp", "", "")
	keyFile := fs.String("private-key", "", "")
	fs.Var(&id, "cred-id", "")
	resident := fs.Bool("resident", false, "")
	fs.Var(&user, "user-handle", "")
	fs.StringVar(&p.UserName, "user-name", "", "")
	fs.StringVar(&p.UserDisplayName, "display-name", "", "")
	signCount := fs.Uint("sign-count", 0, "")
	fs.Var(&be, "backup-eligible", "")
	fs.Var(&bs, "backup-state", "")
	credProtect := fs.Int("cred-protect", 0, "")
	fs.Var(&hmac, "hmac-secret", "")
	blobFile := fs.String("large-blob", "", "")
	alg := fs.String("alg", "", "")
	pwFile := fs.String("playwright", "", "")
	asJSON := fs.Bool("json", false, "")
	if pos, err := parse(fs, args); err != nil || len(pos) != 0 {
		return e.usage("creds add takes flags only")
	}
	if *pwFile != "" {
		return e.addPlaywright(*pwFile)
	}
	if *signCount > 1<<32-1 {
		return fmt.Errorf("--sign-count: at most %d", uint32(1<<32-1))
	}
	p.CredentialID, p.UserHandle, p.SignCount = id.b, user.b, uint32(*signCount)
	p.IsResidentCredential = resident
	p.BackupEligibility, p.BackupState, p.HMACSecret = be.v, bs.v, hmac.v
	if *credProtect != 0 {
		p.CredProtect = credProtect
	}
	if *keyFile != "" {
		der, err := readPrivateKey(*keyFile)
		if err != nil {
			return err
		}
		p.PrivateKey = der
	}
	if *alg != "" {
		a, ok := algs[strings.ToLower(*alg)]
		if !ok {
			return e.usage("--alg: want es256, eddsa, es384 or rs256")
		}
		p.Algorithm = &a
	}
	if *blobFile != "" {
		b, err := os.ReadFile(*blobFile)
		if err != nil {
			return err
		}
		p.LargeBlob = b
	}
	c, err := e.key.AddCredential(e.ctx, p)
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(c)
	}
	fmt.Fprintln(e.stdout, c.CredentialID)
	return nil
}

// addPlaywright adds the credentials of a JSON file in Playwright's shape:
// one object or an array.
func (e *env) addPlaywright(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var list []control.PlaywrightCredential
	if err := json.Unmarshal(b, &list); err != nil {
		var one control.PlaywrightCredential
		if err2 := json.Unmarshal(b, &one); err2 != nil {
			return fmt.Errorf("%s: want a Playwright credential or an array of them: %w", file, err)
		}
		list = []control.PlaywrightCredential{one}
	}
	for _, pc := range list {
		c, err := e.key.AddPlaywrightCredential(e.ctx, pc)
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, c.CredentialID)
	}
	return nil
}

package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/ctap2/client"
)

// credJSON is one passkey in the --json output of the creds commands.
// Binary values are base64url without padding (credentialId as "creds
// rename" and "creds delete" take it), the rpIdHash in hex.
type credJSON struct {
	RPID         string `json:"rpId"`
	RPName       string `json:"rpName,omitempty"`
	RPIDHash     string `json:"rpIdHash"`
	CredentialID string `json:"credentialId"`
	UserID       string `json:"userId"`
	UserName     string `json:"userName"`
	DisplayName  string `json:"displayName"`
	Algorithm    string `json:"algorithm"`
	CredProtect  uint   `json:"credProtect,omitempty"`
	LargeBlobKey bool   `json:"largeBlobKey"`
}

type credsListJSON struct {
	Existing    int        `json:"existing"`
	Remaining   int        `json:"remaining"`
	Credentials []credJSON `json:"credentials"`
}

// passkey is an enumerated credential with its RP.
type passkey struct {
	rp   client.RP
	cred client.Credential
}

func (p *passkey) json() credJSON {
	return credJSON{
		RPID:         p.rp.ID,
		RPName:       p.rp.Name,
		RPIDHash:     hex.EncodeToString(p.rp.IDHash),
		CredentialID: encodeID(p.cred.ID),
		UserID:       encodeID(p.cred.User.ID),
		UserName:     p.cred.User.Name,
		DisplayName:  p.cred.User.DisplayName,
		Algorithm:    algName(p.cred.Algorithm()),
		CredProtect:  p.cred.CredProtect,
		LargeBlobKey: len(p.cred.LargeBlobKey) > 0,
	}
}

// rpLabel is the RP ID, or its hash when the key does not return the ID.
func (p *passkey) rpLabel() string {
	if p.rp.ID != "" {
		return p.rp.ID
	}
	return "sha256:" + hex.EncodeToString(p.rp.IDHash)
}

func encodeID(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// credIDCandidates decodes a CRED-ID given on the command line: base64url
// (the form "creds list" prints, with or without padding), standard base64
// or hex. A string can be valid in several encodings (hex digits are also
// base64); every decoding is returned and the one that names an existing
// credential wins.
func credIDCandidates(s string) [][]byte {
	var out [][]byte
	add := func(b []byte, err error) {
		if err == nil && len(b) > 0 {
			for _, o := range out {
				if bytes.Equal(o, b) {
					return
				}
			}
			out = append(out, b)
		}
	}
	add(base64.RawURLEncoding.DecodeString(s))
	add(base64.URLEncoding.DecodeString(s))
	add(base64.StdEncoding.DecodeString(s))
	add(base64.RawStdEncoding.DecodeString(s))
	add(hex.DecodeString(s))
	return out
}

var credProtectNames = map[uint]string{1: "uvOptional", 2: "uvOptionalWithCredentialIDList", 3: "uvRequired"}

func (m *manager) creds(ctx context.Context, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") && !isCommonFlag(args[0]) {
		fmt.Fprint(m.stderr, "usage: virtkey creds list [--rp ID] | rename CRED-ID --name N [--display-name D] | delete CRED-ID\n")
		return errUsage
	}
	// Common flags may come first: "creds --json list".
	fs := m.flagSet("virtkey creds", "virtkey creds list|rename|delete …")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	args = fs.Args()
	if len(args) == 0 {
		return m.usageError(fs, "creds: want list, rename or delete")
	}
	switch args[0] {
	case "list":
		return m.credsList(ctx, args[1:])
	case "rename":
		return m.credsRename(ctx, args[1:])
	case "delete":
		return m.credsDelete(ctx, args[1:])
	}
	return m.usageError(fs, "creds: unknown subcommand %q (want list, rename or delete)", args[0])
}

func isCommonFlag(a string) bool {
	name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
	return name == "device" || name == "json"
}

// credMgmt opens the device and gets credential management with a token
// that has the cm permission.
func (m *manager) credMgmt(ctx context.Context) (*client.CredentialManagement, error) {
	dev, err := m.open(ctx)
	if err != nil {
		return nil, err
	}
	info, err := dev.GetInfo(ctx)
	if err != nil {
		return nil, err
	}
	cmOK, _ := client.Option(info, "credMgmt")
	previewOK, _ := client.Option(info, "credentialMgmtPreview")
	if !cmOK && !previewOK {
		return nil, &cliError{code: exitUnsupported, msg: "this key does not support credential management"}
	}
	tok, err := m.token(ctx, dev, client.PermCredentialMgmt)
	if errors.Is(err, errNoProtection) {
		return nil, &cliError{code: exitPINNeeded, msg: "no PIN is set on the key, and managing passkeys needs one; set one with \"virtkey pin set\""}
	}
	if err != nil {
		return nil, err
	}
	return dev.CredentialManagement(ctx, tok)
}

// enumerate lists the passkeys of every RP, or of rpID only, sorted by
// RP and user name.
func enumerate(ctx context.Context, cm *client.CredentialManagement, rpID string) ([]passkey, error) {
	var rps []client.RP
	if rpID != "" {
		rps = []client.RP{{ID: rpID, IDHash: client.RPIDHash(rpID)}}
	} else {
		var err error
		if rps, err = cm.EnumerateRPs(ctx); err != nil {
			return nil, err
		}
	}
	var out []passkey
	for _, rp := range rps {
		creds, err := cm.EnumerateCredentials(ctx, rp.IDHash)
		if err != nil {
			return nil, err
		}
		for _, c := range creds {
			out = append(out, passkey{rp: rp, cred: c})
		}
	}
	slices.SortStableFunc(out, func(a, b passkey) int {
		return cmp.Or(cmp.Compare(a.rpLabel(), b.rpLabel()), cmp.Compare(a.cred.User.Name, b.cred.User.Name))
	})
	return out, nil
}

func (m *manager) credsList(ctx context.Context, args []string) error {
	fs := m.flagSet("virtkey creds list", "virtkey creds list [--rp ID] [--device D] [--json]")
	rpID := fs.String("rp", "", "list only the passkeys of this RP ID (e.g. example.com)")
	pos, err := parseArgs(fs, args, false)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return m.usageError(fs, "creds list: unexpected argument %q", pos[0])
	}
	cm, err := m.credMgmt(ctx)
	if err != nil {
		return err
	}
	md, err := cm.Metadata(ctx)
	if err != nil {
		return err
	}
	keys, err := enumerate(ctx, cm, *rpID)
	if err != nil {
		return err
	}
	if m.json {
		out := credsListJSON{Existing: md.Existing, Remaining: md.Remaining, Credentials: []credJSON{}}
		for i := range keys {
			out.Credentials = append(out.Credentials, keys[i].json())
		}
		return m.printJSON(out)
	}
	switch {
	case *rpID != "" && len(keys) == 0:
		fmt.Fprintf(m.stdout, "No passkeys for %s (%s on the key, room for %d more).\n", *rpID, plural(md.Existing, "passkey", "passkeys"), md.Remaining)
		return nil
	case len(keys) == 0:
		fmt.Fprintf(m.stdout, "No passkeys on the key (room for %d).\n", md.Remaining)
		return nil
	}
	tw := tabwriter.NewWriter(m.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RP\tUSER\tDISPLAY NAME\tALG\tPROTECTION\tCREDENTIAL ID")
	for i := range keys {
		k := &keys[i]
		prot := credProtectNames[k.cred.CredProtect]
		if prot == "" {
			prot = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.rpLabel(), orDash(k.cred.User.Name), orDash(k.cred.User.DisplayName),
			algName(k.cred.Algorithm()), prot, encodeID(k.cred.ID))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(m.stdout, "\n%s on the key, room for %d more.\n", plural(md.Existing, "passkey", "passkeys"), md.Remaining)
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// findPasskey resolves a CRED-ID argument against the key's passkeys.
func (m *manager) findPasskey(ctx context.Context, cm *client.CredentialManagement, arg string) (*passkey, error) {
	cands := credIDCandidates(arg)
	if len(cands) == 0 {
		return nil, &cliError{code: exitUsage, msg: fmt.Sprintf("credential ID %q is not base64url, base64 or hex", arg)}
	}
	keys, err := enumerate(ctx, cm, "")
	if err != nil {
		return nil, err
	}
	for _, c := range cands {
		for i := range keys {
			if bytes.Equal(keys[i].cred.ID, c) {
				return &keys[i], nil
			}
		}
	}
	return nil, &cliError{code: exitNotFound, status: ctap2.ErrNoCredentials, msg: fmt.Sprintf("no such credential: %s", arg)}
}

func (m *manager) credsRename(ctx context.Context, args []string) error {
	const usage = "virtkey creds rename CRED-ID --name N [--display-name D] [--device D] [--json]\n" +
		"  (without --display-name the display name is kept; --display-name \"\" removes it)"
	fs := m.flagSet("virtkey creds rename", usage)
	name := fs.String("name", "", "the new user name (required)")
	display := fs.String("display-name", "", "the new display name")
	pos, err := parseArgs(fs, args, true)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if len(pos) != 1 {
		return m.usageError(fs, "creds rename: want one CRED-ID")
	}
	if !set["name"] {
		return m.usageError(fs, "creds rename: --name is required")
	}
	cm, err := m.credMgmt(ctx)
	if err != nil {
		return err
	}
	pk, err := m.findPasskey(ctx, cm, pos[0])
	if err != nil {
		return err
	}
	user := ctap2.UserEntity{ID: pk.cred.User.ID, Name: *name, DisplayName: pk.cred.User.DisplayName}
	if set["display-name"] {
		user.DisplayName = *display
	}
	if err := cm.UpdateUserInformation(ctx, pk.cred.ID, user); err != nil {
		if errors.Is(err, ctap2.ErrNoCredentials) {
			return &cliError{code: exitNotFound, status: ctap2.ErrNoCredentials, msg: "no such credential: " + pos[0]}
		}
		return err
	}
	pk.cred.User.Name, pk.cred.User.DisplayName = user.Name, user.DisplayName
	if m.json {
		return m.printJSON(struct {
			Renamed credJSON `json:"renamed"`
		}{pk.json()})
	}
	_, err = fmt.Fprintf(m.stdout, "Renamed the passkey at %s to %q (display name %q).\n", pk.rpLabel(), user.Name, user.DisplayName)
	return err
}

func (m *manager) credsDelete(ctx context.Context, args []string) error {
	fs := m.flagSet("virtkey creds delete", "virtkey creds delete CRED-ID [--device D] [--json]")
	pos, err := parseArgs(fs, args, true)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return m.usageError(fs, "creds delete: want one CRED-ID")
	}
	cm, err := m.credMgmt(ctx)
	if err != nil {
		return err
	}
	pk, err := m.findPasskey(ctx, cm, pos[0])
	if err != nil {
		return err
	}
	if err := cm.DeleteCredential(ctx, pk.cred.ID); err != nil {
		if errors.Is(err, ctap2.ErrNoCredentials) {
			return &cliError{code: exitNotFound, status: ctap2.ErrNoCredentials, msg: "no such credential: " + pos[0]}
		}
		return err
	}
	if m.json {
		return m.printJSON(struct {
			Deleted credJSON `json:"deleted"`
		}{pk.json()})
	}
	_, err = fmt.Fprintf(m.stdout, "Deleted the passkey of %s at %s.\n", orDash(pk.cred.User.Name), pk.rpLabel())
	return err
}

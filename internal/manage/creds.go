package manage

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"text/tabwriter"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/internal/cli"
	"github.com/virtkey/virtkey/presence"
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
		return presence.Printable(p.rp.ID)
	}
	return "sha256:" + hex.EncodeToString(p.rp.IDHash)
}

// shown is a name a relying party chose, for a terminal: escapes, control
// and bidi characters escaped by [presence.Printable] (a web page could
// otherwise rewrite the screen or break the table's columns), "-" for none.
// The JSON forms carry the names as they are.
func shown(s string) string { return orDash(presence.Printable(s)) }

func encodeID(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// credIDCandidates decodes a CRED-ID given on the command line: base64url
// (the form "creds list" prints, with or without padding), standard base64
// or hex. A string can be valid in several encodings (hex digits are also
// base64); every decoding is returned and the one that names an existing
// credential wins.
func credIDCandidates(s string) [][]byte {
	var out [][]byte
	add := func(b []byte, err error) {
		if err == nil && len(b) > 0 && !slices.ContainsFunc(out, func(o []byte) bool { return bytes.Equal(o, b) }) {
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

// credIDArg checks the CRED-ID argument of a leaf.
func credIDArg(c *call) string {
	if len(c.args) != 1 {
		return "want one CRED-ID"
	}
	if len(credIDCandidates(c.args[0])) == 0 {
		return fmt.Sprintf("credential ID %q is not base64url, base64 or hex", c.args[0])
	}
	return ""
}

var credProtectNames = map[uint]string{1: "uvOptional", 2: "uvOptionalWithCredentialIDList", 3: "uvRequired"}

// credMgmt gets credential management with a token that has the cm
// permission.
func (c *call) credMgmt(ctx context.Context) (*client.CredentialManagement, error) {
	tok, err := c.token(ctx, c.dev, client.PermCredentialMgmt)
	if errors.Is(err, errNoProtection) {
		return nil, &cliError{code: cli.ExitPINNeeded, msg: "no PIN is set on the key, and managing passkeys needs one; set one with \"virtkey pin set\""}
	}
	if err != nil {
		return nil, err
	}
	return c.dev.CredentialManagement(ctx, tok)
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

func credsList(ctx context.Context, c *call) error {
	rpID := c.flag("rp").String()
	cm, err := c.credMgmt(ctx)
	if err != nil {
		return err
	}
	md, err := cm.Metadata(ctx)
	if err != nil {
		return err
	}
	keys, err := enumerate(ctx, cm, rpID)
	if err != nil {
		return err
	}
	if c.json {
		out := credsListJSON{Existing: md.Existing, Remaining: md.Remaining, Credentials: []credJSON{}}
		for i := range keys {
			out.Credentials = append(out.Credentials, keys[i].json())
		}
		return c.printJSON(out)
	}
	switch {
	case rpID != "" && len(keys) == 0:
		fmt.Fprintf(c.Stdout, "No passkeys for %s (%s on the key, room for %d more).\n", rpID, plural(md.Existing, "passkey", "passkeys"), md.Remaining)
		return nil
	case len(keys) == 0:
		fmt.Fprintf(c.Stdout, "No passkeys on the key (room for %d).\n", md.Remaining)
		return nil
	}
	tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RP\tUSER\tDISPLAY NAME\tALG\tPROTECTION\tCREDENTIAL ID")
	for i := range keys {
		k := &keys[i]
		prot := credProtectNames[k.cred.CredProtect]
		if prot == "" {
			prot = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.rpLabel(), shown(k.cred.User.Name), shown(k.cred.User.DisplayName),
			algName(k.cred.Algorithm()), prot, encodeID(k.cred.ID))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.Stdout, "\n%s on the key, room for %d more.\n", plural(md.Existing, "passkey", "passkeys"), md.Remaining)
	return err
}

// findPasskey gets credential management and resolves the CRED-ID
// argument against the key's passkeys.
func (c *call) findPasskey(ctx context.Context) (*client.CredentialManagement, *passkey, error) {
	arg := c.args[0]
	cm, err := c.credMgmt(ctx)
	if err != nil {
		return nil, nil, err
	}
	keys, err := enumerate(ctx, cm, "")
	if err != nil {
		return nil, nil, err
	}
	for _, id := range credIDCandidates(arg) {
		for i := range keys {
			if bytes.Equal(keys[i].cred.ID, id) {
				return cm, &keys[i], nil
			}
		}
	}
	return nil, nil, notFound(arg)
}

func notFound(arg string) error {
	return &cliError{code: cli.ExitNotFound, status: ctap2.ErrNoCredentials, msg: "no such credential: " + arg}
}

func credsRename(ctx context.Context, c *call) error {
	cm, pk, err := c.findPasskey(ctx)
	if err != nil {
		return err
	}
	user := ctap2.UserEntity{ID: pk.cred.User.ID, Name: c.flag("name").String(), DisplayName: pk.cred.User.DisplayName}
	if c.isSet("display-name") {
		user.DisplayName = c.flag("display-name").String()
	}
	if err := cm.UpdateUserInformation(ctx, pk.cred.ID, user); err != nil {
		if errors.Is(err, ctap2.ErrNoCredentials) {
			return notFound(c.args[0])
		}
		return err
	}
	pk.cred.User.Name, pk.cred.User.DisplayName = user.Name, user.DisplayName
	if c.json {
		return c.printJSON(struct {
			Renamed credJSON `json:"renamed"`
		}{pk.json()})
	}
	_, err = fmt.Fprintf(c.Stdout, "Renamed the passkey at %s to %q (display name %q).\n", pk.rpLabel(), user.Name, user.DisplayName)
	return err
}

func credsDelete(ctx context.Context, c *call) error {
	cm, pk, err := c.findPasskey(ctx)
	if err != nil {
		return err
	}
	if err := cm.DeleteCredential(ctx, pk.cred.ID); err != nil {
		if errors.Is(err, ctap2.ErrNoCredentials) {
			return notFound(c.args[0])
		}
		return err
	}
	if c.json {
		return c.printJSON(struct {
			Deleted credJSON `json:"deleted"`
		}{pk.json()})
	}
	_, err = fmt.Fprintf(c.Stdout, "Deleted the passkey of %s at %s.\n", shown(pk.cred.User.Name), pk.rpLabel())
	return err
}

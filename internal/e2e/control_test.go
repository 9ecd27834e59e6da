package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/virtkey/virtkey/control"
	"github.com/virtkey/virtkey/control/client"
	"github.com/virtkey/virtkey/internal/vktest"
)

// pyResult is one line of testdata/python/control_check.py.
type pyResult struct {
	CredentialID control.Bytes `json:"credentialId"`
	SignCount    uint32        `json:"signCount"`
	Flags        uint8         `json:"flags"`
	Error        string        `json:"error"`
}

// controlCheck runs control_check.py against the key at addr.
func controlCheck(t *testing.T, addr string, args ...string) pyResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := pythonCmd(ctx, addr, append([]string{"testdata/python/control_check.py"}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var r pyResult
	if jerr := json.Unmarshal(stdout.Bytes(), &r); jerr != nil {
		t.Fatalf("control_check.py %v: %v %v\nstdout %s\nstderr %s", args, err, jerr, stdout.String(), stderr.String())
	}
	return r
}

func nextEvent(t *testing.T, es *client.EventStream, typ string) control.Event {
	t.Helper()
	return vktest.NextEvent(t, es, func(ev control.Event) bool { return ev.Type == typ })
}

// TestControlAPIWithPythonFIDO2 drives `virtkey run --control` over the
// Unix socket and over token-guarded TCP while python-fido2 (an
// independent CTAP client) observes every change.
func TestControlAPIWithPythonFIDO2(t *testing.T) {
	needPythonFIDO2(t)
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			dir := t.TempDir()
			ctlDir := filepath.Join(dir, "ctl")
			args := []string{"--profile", "browser-test", "--control-allow-export"}
			addr, tok := "unix:"+filepath.Join(ctlDir, "control.sock"), ""
			if network == "tcp" {
				tok = "e2e-token-0123456789abcdef"
				tf := filepath.Join(dir, "token")
				os.WriteFile(tf, []byte(tok+"\n"), 0o600)
				port := freeTCPPort(t)
				addr = "tcp:127.0.0.1:" + strconv.Itoa(port)
				args = append(args, "--control-token-file", tf)
			}
			args = append(args, "--control", addr)
			k := vktest.Start(t, filepath.Join(dir, "state"), args...)
			c, err := client.New(addr, tok)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			vktest.WaitControl(t, c)
			ctx := context.Background()
			key := c.Key(control.DefaultKeyID)
			ki, err := key.Info(ctx)
			if err != nil || ki.UDPAddr != k.Addr || !ki.IsUserVerified || ki.Presence != control.PresenceAuto || !ki.ExportAllowed {
				t.Fatalf("default key: %+v, %v (run on %s)", ki, err, k.Addr)
			}
			events, err := key.Events(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer events.Close()

			// A passkey made by python-fido2 shows in the API and the events.
			reg := controlCheck(t, k.Addr, "register", "--rp", "example.com", "--user", "alice", "--uv")
			if reg.Error != "" {
				t.Fatalf("register: %s", reg.Error)
			}
			if ev := nextEvent(t, events, control.EventCredentialAdded); string(ev.CredentialID) != string(reg.CredentialID) {
				t.Errorf("credentialAdded %+v, python made %s", ev, reg.CredentialID)
			}
			got, err := key.Credential(ctx, reg.CredentialID)
			if err != nil || got.UserName != "alice" || !got.IsResidentCredential || got.PrivateKey == nil {
				t.Fatalf("API view of the python credential: %+v, %v", got, err)
			}
			as := controlCheck(t, k.Addr, "assert", "--rp", "example.com", "--uv", "--spki", got.PublicKey.String())
			if as.Error != "" || string(as.CredentialID) != string(reg.CredentialID) {
				t.Fatalf("discoverable assertion: %+v", as)
			}
			if ev := nextEvent(t, events, control.EventCredentialAsserted); ev.SignCount == nil || *ev.SignCount != as.SignCount {
				t.Errorf("credentialAsserted %+v, python saw count %d", ev, as.SignCount)
			}

			// A credential seeded through the API signs for python-fido2.
			pk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			der, _ := x509.MarshalPKCS8PrivateKey(pk)
			tr := true
			seeded, err := key.AddCredential(ctx, control.CredentialParams{
				RPID: "seed.example", PrivateKey: der, IsResidentCredential: &tr, UserHandle: []byte("bob"), UserName: "bob", SignCount: 100,
			})
			if err != nil {
				t.Fatal(err)
			}
			as = controlCheck(t, k.Addr, "assert", "--rp", "seed.example", "--cred-id", seeded.CredentialID.String(), "--spki", seeded.PublicKey.String(), "--uv")
			if as.Error != "" || as.SignCount != 101 {
				t.Fatalf("assertion with the seeded credential: %+v", as)
			}
			// signCount re-base, lower.
			n := uint32(3)
			key.SetCredentialProps(ctx, seeded.CredentialID, control.CredentialProps{SignCount: &n})
			if as = controlCheck(t, k.Addr, "assert", "--rp", "seed.example", "--uv"); as.SignCount != 4 {
				t.Errorf("after re-base to 3: %+v", as)
			}

			// UV off: python's uv request fails; presence deny: refused.
			key.SetUserVerified(ctx, false)
			if as = controlCheck(t, k.Addr, "assert", "--rp", "seed.example", "--uv"); as.Error != "UV_INVALID" {
				t.Errorf("uv off: %+v", as)
			}
			key.SetUserVerified(ctx, true)
			key.SetPresence(ctx, control.PresenceDeny)
			if as = controlCheck(t, k.Addr, "assert", "--rp", "seed.example"); as.Error != "OPERATION_DENIED" {
				t.Errorf("presence deny: %+v", as)
			}
			key.SetPresence(ctx, control.PresenceAuto)
			// Overrides.
			key.SetOverrides(ctx, control.Overrides{IsBadUV: true})
			if as = controlCheck(t, k.Addr, "assert", "--rp", "seed.example", "--uv"); as.Error != "" || as.Flags&0x04 != 0 {
				t.Errorf("isBadUV: %+v", as)
			}
			key.SetOverrides(ctx, control.Overrides{IsBogusSignature: true})
			if as = controlCheck(t, k.Addr, "assert", "--rp", "seed.example", "--spki", seeded.PublicKey.String()); as.Error == "" {
				t.Errorf("isBogusSignature: python verified the signature: %+v", as)
			}
			key.SetOverrides(ctx, control.Overrides{})

			// Delete: python no longer finds it.
			if err := key.DeleteCredential(ctx, seeded.CredentialID); err != nil {
				t.Fatal(err)
			}
			if as = controlCheck(t, k.Addr, "assert", "--rp", "seed.example", "--cred-id", seeded.CredentialID.String()); as.Error != "NO_CREDENTIALS" {
				t.Errorf("after delete: %+v", as)
			}

			// The API-made state survives a restart of the process.
			if _, err := key.AddCredential(ctx, control.CredentialParams{RPID: "keep.example", IsResidentCredential: &tr, UserHandle: []byte("k"), SignCount: 50}); err != nil {
				t.Fatal(err)
			}
			events.Close()
			c.Close()
			k2 := k.Restart(t)
			c2, _ := client.New(addr, tok)
			defer c2.Close()
			vktest.WaitControl(t, c2)
			if as = controlCheck(t, k2.Addr, "assert", "--rp", "keep.example"); as.Error != "" || as.SignCount != 51 {
				t.Errorf("API-made credential after a restart: %+v", as)
			}
			// A wrong token is refused.
			if network == "tcp" {
				bad, _ := client.New(addr, "wrong-token-wrong-token")
				defer bad.Close()
				if _, err := bad.Keys(ctx); !client.IsStatus(err, 401) {
					t.Errorf("wrong token: %v", err)
				}
			}
			// Adding a key through the run process's API works over CTAP too.
			nk, err := c2.AddKey(ctx, control.KeyConfig{Attach: "udp"})
			if err != nil {
				t.Fatal(err)
			}
			if r := controlCheck(t, nk.UDPAddr, "register", "--rp", "new.example", "--uv"); r.Error != "" {
				t.Errorf("register on an added key: %+v", r)
			}
			if err := c2.DeleteKey(ctx, nk.ID); err != nil {
				t.Fatal(err)
			}
			if err := c2.DeleteKey(ctx, "default"); !errors.Is(err, control.ErrConflict) {
				t.Errorf("deleting the default key: %v", err)
			}
		})
	}
}

// freeTCPPort returns a loopback TCP port free at the time of the call.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

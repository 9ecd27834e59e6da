package ctl_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtkey/virtkey/control"
	"github.com/virtkey/virtkey/control/ctl"
	"github.com/virtkey/virtkey/control/factory"
	"github.com/virtkey/virtkey/control/internal/apitest"
	"github.com/virtkey/virtkey/cose"
	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/internal/testkit"
	"github.com/virtkey/virtkey/internal/vktest"
)

// serve runs a control server with real keys on a Unix socket and
// returns its address.
func serve(t *testing.T) string {
	t.Helper()
	return apitest.Serve(t, control.NewServer(control.Options{Factory: factory.New(factory.Options{})}), "unix").Addr
}

// run runs virtkey ctl and returns its exit code, stdout and stderr.
func run(ctx context.Context, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := ctl.Main(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := run(context.Background(), args...)
	if code != 0 {
		t.Fatalf("virtkey ctl %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

func TestCtlContract(t *testing.T) {
	addr := serve(t)
	// keys add --attach udp → "key-1 udp:HOST:PORT"
	f := strings.Fields(mustRun(t, "--control", addr, "keys", "add", "--attach", "udp"))
	if len(f) != 2 || f[0] != "key-1" || !strings.HasPrefix(f[1], "udp:127.0.0.1:") {
		t.Fatalf("keys add: %q", f)
	}
	udpAddr := strings.TrimPrefix(f[1], "udp:")
	k := []string{"--control", addr, "--key", "key-1"}

	// creds add --rp example.com --private-key key.pem --resident --user-handle …
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(priv)
	pemFile := filepath.Join(t.TempDir(), "key.pem")
	os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), 0o600)
	id := strings.TrimSpace(mustRun(t, append(k, "creds", "add", "--rp", "example.com", "--private-key", pemFile, "--resident", "--user-handle", "dXNlcg", "--user-name", "alice", "--sign-count", "7")...))
	credID, err := control.DecodeBase64(id)
	if err != nil || len(credID) == 0 {
		t.Fatalf("creds add printed %q", id)
	}

	// creds list --json
	var cs []control.Credential
	if err := json.Unmarshal([]byte(mustRun(t, append(k, "creds", "list", "--json")...)), &cs); err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].RPID != "example.com" || string(cs[0].UserHandle) != "user" || cs[0].SignCount != 7 || !cs[0].IsResidentCredential {
		t.Fatalf("creds list --json: %+v", cs)
	}
	if out := mustRun(t, append(k, "creds", "list")...); !strings.Contains(out, "alice") || !strings.Contains(out, id) {
		t.Errorf("creds list: %q", out)
	}

	// A CTAP client sees the credential, signed with the PEM's key.
	d := vktest.Dial(t, udpAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cdh := sha256.Sum256([]byte("c"))
	uv := true
	req := &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: cdh[:], Options: &ctap2.RequestOptions{UV: &uv}}
	a, err := d.GetAssertion(ctx, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cose.Verify(&priv.PublicKey, cose.AlgES256, append(a.RawAuthData, cdh[:]...), a.Signature); err != nil || a.AuthData.SignCount != 8 {
		t.Errorf("assertion: count %d, %v", a.AuthData.SignCount, err)
	}

	// uv off
	mustRun(t, append(k, "uv", "off")...)
	if _, err := d.GetAssertion(ctx, req, nil); err == nil {
		t.Error("uv off: UV still succeeds")
	}
	mustRun(t, append(k, "uv", "on")...)

	// presence manual, then presence approve REQ
	mustRun(t, append(k, "presence", "manual")...)
	res := make(chan error, 1)
	go func() { _, err := d.GetAssertion(ctx, req, nil); res <- err }()
	var reqID string
	for reqID == "" {
		var ps []control.PendingPresence
		json.Unmarshal([]byte(mustRun(t, append(k, "presence", "pending", "--json")...)), &ps)
		if len(ps) > 0 {
			reqID = ps[0].RequestID
		}
		time.Sleep(10 * time.Millisecond)
	}
	mustRun(t, append(k, "presence", "approve", reqID)...)
	if err := <-res; err != nil {
		t.Errorf("approved request: %v", err)
	}

	// events: one JSON object a line, until ctx ends.
	evCtx, evCancel := context.WithCancel(context.Background())
	var evOut testkit.SyncBuffer
	evDone := make(chan int, 1)
	go func() { evDone <- ctl.Main(evCtx, append(k, "events"), &evOut, os.Stderr) }()
	time.Sleep(200 * time.Millisecond)
	mustRun(t, append(k, "replug")...)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(evOut.String(), `"replug"`) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	evCancel()
	if code := <-evDone; code != 0 {
		t.Errorf("events exit %d", code)
	}
	var ev control.Event
	if err := json.Unmarshal([]byte(strings.SplitN(evOut.String(), "\n", 2)[0]), &ev); err != nil || ev.Type != control.EventReplug {
		t.Errorf("events printed %q (%v)", evOut.String(), err)
	}

	mustRun(t, append(k, "creds", "delete", id)...)
	mustRun(t, "--control", addr, "keys", "delete", "key-1")
	if out := mustRun(t, "--control", addr, "keys"); strings.Contains(out, "key-1") {
		t.Errorf("keys after delete: %q", out)
	}
}

func TestCtlUsage(t *testing.T) {
	t.Parallel()
	addr := serve(t)
	for _, c := range []struct {
		args []string
		code int
	}{
		{nil, 2},
		{[]string{"keys"}, 2}, // no --control
		{[]string{"--control", addr, "bogus"}, 2},
		{[]string{"--control", addr, "uv", "maybe"}, 2},
		{[]string{"--control", addr, "presence", "sometimes"}, 2},
		{[]string{"--control", addr, "creds", "delete"}, 2},
		{[]string{"--control", addr, "creds", "get", "!!"}, 1},
		{[]string{"--control", addr, "--key", "nokey", "uv", "on"}, 1},
		{[]string{"--control", "tcp:127.0.0.1:1", "keys"}, 1},
		{[]string{"--control", addr, "help"}, 0},
	} {
		if code, _, errs := run(context.Background(), c.args...); code != c.code {
			t.Errorf("virtkey ctl %v: exit %d, want %d (%s)", c.args, code, c.code, errs)
		}
	}
}

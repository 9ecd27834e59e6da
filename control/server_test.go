package control_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtkey/virtkey/control"
	"github.com/virtkey/virtkey/control/client"
	"github.com/virtkey/virtkey/control/internal/apitest"
	"github.com/virtkey/virtkey/internal/vktest"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type fixture struct {
	*apitest.Env
	def     *memKey
	factory *memFactory
}

// startUnix serves a server with a default memKey on a Unix socket.
func startUnix(t *testing.T, opts control.Options) *fixture {
	t.Helper()
	f := &fixture{factory: &memFactory{}, def: newMemKey()}
	if opts.Factory == nil {
		opts.Factory = f.factory
	}
	srv := control.NewServer(opts)
	if err := srv.AddKey(control.DefaultKeyID, f.def, nil); err != nil {
		t.Fatal(err)
	}
	f.Env = apitest.Serve(t, srv, "unix")
	return f
}

// raw sends a request and returns the status and the body.
func (f *fixture) raw(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(testCtx(t), method, f.Base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.HC.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		var e control.ErrorResponse
		if err := json.Unmarshal(b, &e); err != nil || e.Error == "" {
			t.Errorf("%s %s: error body %q is not {\"error\": ...}", method, path, b)
		}
	}
	return resp.StatusCode, string(b)
}

func TestUnixSocketPermissions(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "new")
	sock := filepath.Join(dir, "c.sock")
	ln, err := control.Listen(control.ListenConfig{Address: "unix:" + sock})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode = %v, %v; want 0700", st.Mode().Perm(), err)
	}
	st, err = os.Lstat(sock)
	if err != nil || st.Mode().Perm() != 0o600 || st.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode = %v, %v; want a 0600 socket", st.Mode(), err)
	}
	// A second server on the same path is refused while the first listens.
	if l2, err := control.Listen(control.ListenConfig{Address: "unix:" + sock}); err == nil {
		l2.Close()
		t.Error("a second listener on a live socket was allowed")
	}
	ln.Close()
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after Close: %v", err)
	}

	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o777)
	if l, err := control.Listen(control.ListenConfig{Address: "unix:" + filepath.Join(open, "c.sock")}); err == nil {
		l.Close()
		t.Error("a socket in a world-writable directory was allowed")
	}
	os.Chmod(open, 0o770)
	if l, err := control.Listen(control.ListenConfig{Address: "unix:" + filepath.Join(open, "c.sock")}); err == nil {
		l.Close()
		t.Error("a socket in a group-writable directory was allowed")
	}
	// A stale socket (no listener) is replaced; a regular file is not.
	stale := filepath.Join(t.TempDir(), "stale.sock")
	sl, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	sl.(*net.UnixListener).SetUnlinkOnClose(false)
	sl.Close()
	l3, err := control.Listen(control.ListenConfig{Address: "unix:" + stale})
	if err != nil {
		t.Errorf("stale socket not replaced: %v", err)
	} else {
		l3.Close()
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if l, err := control.Listen(control.ListenConfig{Address: "unix:" + file}); err == nil {
		l.Close()
		t.Error("a regular file was replaced by the socket")
	}
}

func TestTCPToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	const tok = "0123456789abcdef-secret"
	os.WriteFile(tokFile, []byte(tok+"\n"), 0o600)

	if _, err := control.Listen(control.ListenConfig{Address: "tcp:127.0.0.1:0"}); err == nil {
		t.Error("TCP without a token was allowed")
	}
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("abc"), 0o600)
	if _, err := control.Listen(control.ListenConfig{Address: "tcp:127.0.0.1:0", TokenFile: short}); err == nil {
		t.Error("a 3-character token was accepted")
	}
	if l, err := control.Listen(control.ListenConfig{Address: "tcp:0.0.0.0:0", TokenFile: tokFile}); err == nil {
		l.Close()
		t.Error("a non-loopback address was allowed without AllowRemote")
	}
	l, err := control.Listen(control.ListenConfig{Address: "tcp:0.0.0.0:0", TokenFile: tokFile, AllowRemote: true})
	if err != nil {
		t.Errorf("AllowRemote: %v", err)
	} else {
		l.Close()
	}

	ln, err := control.Listen(control.ListenConfig{Address: "tcp:127.0.0.1:0", TokenFile: tokFile})
	if err != nil {
		t.Fatal(err)
	}
	srv := control.NewServer(control.Options{})
	srv.AddKey("default", newMemKey(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()

	url := "http://" + strings.TrimPrefix(ln.URL(), "tcp:") + "/v1/keys"
	for _, c := range []struct {
		auth string
		want int
	}{
		{"", 401}, {"Bearer", 401}, {"Bearer ", 401}, {"Bearer wrong-token-wrong-token", 401},
		{"bearer " + tok, 401}, {"Basic " + tok, 401}, {"Bearer " + tok + "x", 401}, {"Bearer " + tok, 200},
	} {
		req, _ := http.NewRequest("GET", url, nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("Authorization %q: status %d, want %d", c.auth, resp.StatusCode, c.want)
		}
	}
	cl, _ := client.New(ln.URL(), tok)
	defer cl.Close()
	keys, err := cl.Keys(testCtx(t))
	if err != nil || len(keys) != 1 || keys[0].ID != "default" {
		t.Errorf("Keys with the token = %+v, %v", keys, err)
	}
	bad, _ := client.New(ln.URL(), "nope-nope-nope-nope")
	defer bad.Close()
	if _, err := bad.Keys(testCtx(t)); !client.IsStatus(err, 401) {
		t.Errorf("Keys with a wrong token: %v", err)
	}
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	f := startUnix(t, control.Options{})
	ctx := testCtx(t)
	keys, err := f.Client.Keys(ctx)
	if err != nil || len(keys) != 1 || keys[0].ID != "default" || keys[0].Extensions == nil {
		t.Fatalf("Keys = %+v, %v", keys, err)
	}
	ki, err := f.Client.AddKey(ctx, control.KeyConfig{Attach: "udp"})
	if err != nil || ki.ID != "key-1" {
		t.Fatalf("AddKey = %+v, %v", ki, err)
	}
	k := f.Client.Key(ki.ID)
	id := []byte("0123456789abcdef-cred")
	tr := true
	c, err := k.AddCredential(ctx, control.CredentialParams{CredentialID: id, RPID: "example.com", IsResidentCredential: &tr, UserHandle: []byte("u1"), SignCount: 7})
	if err != nil || string(c.CredentialID) != string(id) || c.SignCount != 7 || !c.IsResidentCredential {
		t.Fatalf("AddCredential = %+v, %v", c, err)
	}
	if cs, err := k.Credentials(ctx); err != nil || len(cs) != 1 {
		t.Errorf("Credentials = %+v, %v", cs, err)
	}
	if got, err := k.Credential(ctx, id); err != nil || got.RPID != "example.com" {
		t.Errorf("Credential = %+v, %v", got, err)
	}
	n := uint32(1)
	if got, err := k.SetCredentialProps(ctx, id, control.CredentialProps{SignCount: &n, BackupEligibility: &tr}); err != nil || got.SignCount != 1 || !got.BackupEligibility {
		t.Errorf("SetCredentialProps = %+v, %v", got, err)
	}
	if _, err := k.Credential(ctx, []byte("no-such-credential-id")); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("unknown credential: %v", err)
	}
	if ki, err := k.SetUserVerified(ctx, true); err != nil || !ki.IsUserVerified {
		t.Errorf("SetUserVerified = %+v, %v", ki, err)
	}
	if ki, err := k.SetPresence(ctx, control.PresenceDeny); err != nil || ki.IsUserConsenting || ki.Presence != "deny" {
		t.Errorf("SetPresence = %+v, %v", ki, err)
	}
	if ps, err := k.PendingPresence(ctx); err != nil || ps == nil || len(ps) != 0 {
		t.Errorf("PendingPresence = %#v, %v", ps, err)
	}
	if err := k.AnswerPresence(ctx, "7", true); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("AnswerPresence(unknown) = %v", err)
	}
	if ki, err := k.SetOverrides(ctx, control.Overrides{IsBadUV: true}); err != nil || !ki.Overrides.IsBadUV {
		t.Errorf("SetOverrides = %+v, %v", ki, err)
	}
	if ki, err := k.SetPIN(ctx, "123456"); err != nil || !ki.PINSet {
		t.Errorf("SetPIN = %+v, %v", ki, err)
	}
	if ki, err := k.RemovePIN(ctx); err != nil || ki.PINSet {
		t.Errorf("RemovePIN = %+v, %v", ki, err)
	}
	if _, err := k.Replug(ctx); err != nil {
		t.Errorf("Replug: %v", err)
	}
	if err := k.DeleteCredential(ctx, id); err != nil {
		t.Errorf("DeleteCredential: %v", err)
	}
	if err := k.DeleteCredentials(ctx); err != nil {
		t.Errorf("DeleteCredentials: %v", err)
	}
	if err := f.Client.DeleteKey(ctx, "default"); !errors.Is(err, control.ErrConflict) {
		t.Errorf("DeleteKey(default) = %v, want 409", err)
	}
	if err := f.Client.DeleteKey(ctx, ki.ID); err != nil {
		t.Errorf("DeleteKey: %v", err)
	}
	if !f.factory.keys[0].closed {
		t.Error("DeleteKey did not close the key")
	}
	if err := f.Client.DeleteKey(ctx, ki.ID); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("DeleteKey twice = %v", err)
	}
	if _, err := f.Client.Key(ki.ID).Credentials(ctx); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("a removed key still answers: %v", err)
	}
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	f := startUnix(t, control.Options{MaxBody: 4096})
	for _, c := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/v1/nope", "", 404},
		{"GET", "/", "", 404},
		{"PUT", "/v1/keys", "", 405},
		{"PATCH", "/v1/keys/default/uv", "", 405},
		{"GET", "/v1/keys/nokey/credentials", "", 404},
		{"POST", "/v1/keys/default/uv", "", 400},
		{"POST", "/v1/keys/default/uv", "{", 400},
		{"POST", "/v1/keys/default/uv", `{"isUserVerified": "yes"}`, 400},
		{"POST", "/v1/keys/default/uv", `{"isUserVerified": true, "extra": 1}`, 400},
		{"POST", "/v1/keys/default/uv", `{"isUserVerified": true} {}`, 400},
		{"POST", "/v1/keys/default/uv", `[]`, 400},
		{"POST", "/v1/keys/default/uv", `null`, 400},
		{"POST", "/v1/keys/default/uv", `{}`, 400},
		{"POST", "/v1/keys/default/uv", `{"isUserVerified": false}`, 200},
		{"POST", "/v1/keys/default/presence", `{"mode": "sometimes"}`, 400},
		{"POST", "/v1/keys/default/presence", `{"mode": 1}`, 400},
		{"POST", "/v1/keys/default/presence/pending/1", `{}`, 400},
		{"POST", "/v1/keys/default/pin", `{"pin": ""}`, 400},
		{"POST", "/v1/keys/default/pin", `{"pin": "12"}`, 400},
		{"POST", "/v1/keys/default/credentials", `{"rpId": "x.com", "credentialId": "!!!"}`, 400},
		{"POST", "/v1/keys/default/credentials", `{"rpId": "x.com", "credentialId": 5}`, 400},
		{"POST", "/v1/keys/default/credentials", `{"credentialId": "MDEyMzQ1Njc4OWFiY2RlZg"}`, 400},
		{"POST", "/v1/keys/default/credentials", `{"rpId": "x.com", "credentialId": "MDEyMzQ1Njc4OWFiY2RlZg", "isResidentCredential": true}`, 400},
		{"POST", "/v1/keys/default/credentials", `{"rpId": "x.com", "credProtect": 4}`, 400},
		{"POST", "/v1/keys/default/credentials", `{"rpId": "x.com", "signCount": -1}`, 400},
		{"POST", "/v1/keys/default/credentials", `{"rpId": "x.com", "signCount": 4294967296}`, 400},
		{"POST", "/v1/keys/default/credentials", `{"rpId": "x.com", "id": "MDEyMzQ1Njc4OWFiY2RlZg", "credentialId": "MDEyMzQ1Njc4OWFiY2RlZh"}`, 400},
		{"POST", "/v1/keys/default/credentials", `{"rpId": "x.com", "largeBlob": "` + strings.Repeat("A", 5000) + `"}`, 400},
		{"GET", "/v1/keys/default/credentials?format=xml", "", 400},
		{"GET", "/v1/keys/default/credentials/%21%21", "", 400},
		{"POST", "/v1/keys", `{}`, 400},
		{"POST", "/v1/keys", `{"attach": "usb"}`, 400},
		{"POST", "/v1/keys", `{"attach": "udp", "protocol": "ctap3"}`, 400},
		{"POST", "/v1/keys", `{"attach": "udp", "transport": "nfc"}`, 400},
		{"POST", "/v1/keys", `{"attach": "uhid", "udpListen": "127.0.0.1:0"}`, 400},
		{"POST", "/v1/keys", `{"attach": "udp", "hasResidentKey": "yes"}`, 400},
		{"POST", "/v1/keys", `{"attach": "udp", "extensions": "credBlob"}`, 400},
	} {
		got, body := f.raw(t, c.method, c.path, c.body)
		if got != c.want {
			t.Errorf("%s %s %.60q: %d %s, want %d", c.method, c.path, c.body, got, body, c.want)
		}
	}
	if n := len(f.factory.keys); n != 0 {
		t.Errorf("bad POST /v1/keys made %d keys", n)
	}
}

func TestBase64Forms(t *testing.T) {
	t.Parallel()
	f := startUnix(t, control.Options{})
	// An id whose base64 has '+' and '/' in the standard alphabet.
	id := []byte{0xfb, 0xff, 0xfe, 0xfb, 0xef, 0xbf, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	std := base64.StdEncoding.EncodeToString(id)
	if !strings.ContainsAny(std, "+/") {
		t.Fatal("test id lacks + and /")
	}
	code, body := f.raw(t, "POST", "/v1/keys/default/credentials", `{"rpId":"x.com","credentialId":"`+std+`","userHandle":"dXNlcg=="}`)
	if code != 201 {
		t.Fatalf("standard base64 in: %d %s", code, body)
	}
	var c map[string]any
	json.Unmarshal([]byte(body), &c)
	if c["credentialId"] != base64.RawURLEncoding.EncodeToString(id) || c["userHandle"] != "dXNlcg" {
		t.Errorf("answer not unpadded base64url: %s", body)
	}
	for _, p := range []string{base64.RawURLEncoding.EncodeToString(id), strings.NewReplacer("/", "%2F", "+", "%2B").Replace(std)} {
		if code, body := f.raw(t, "GET", "/v1/keys/default/credentials/"+p, ""); code != 200 {
			t.Errorf("GET credential %s: %d %s", p, code, body)
		}
	}
	for _, bad := range []string{"a+b-", "====", "YQ===", "Y"} {
		if _, err := control.DecodeBase64(bad); err == nil {
			t.Errorf("DecodeBase64(%q) accepted", bad)
		}
	}
}

func TestPlaywrightShape(t *testing.T) {
	t.Parallel()
	f := startUnix(t, control.Options{})
	ctx := testCtx(t)
	k := f.Client.Key("default")
	priv, spki := apitest.ES256Key(t)
	pw := control.PlaywrightCredential{ID: []byte("0123456789abcdef"), RPID: "example.com", UserHandle: []byte("user"), PrivateKey: priv, PublicKey: spki}
	c, err := k.AddPlaywrightCredential(ctx, pw)
	if err != nil || !c.IsResidentCredential || string(c.CredentialID) != string(pw.ID) {
		t.Fatalf("Playwright credential in: %+v, %v", c, err)
	}
	out, err := k.PlaywrightCredentials(ctx)
	if err != nil || len(out) != 1 || string(out[0].ID) != string(pw.ID) || string(out[0].PrivateKey) != string(priv) || out[0].RPID != "example.com" {
		t.Errorf("Playwright credentials out: %+v, %v", out, err)
	}
	f.def.mu.Lock()
	f.def.creds[0].PrivateKey = nil // as a key that may not export
	f.def.mu.Unlock()
	if _, err := k.PlaywrightCredentials(ctx); !errors.Is(err, control.ErrForbidden) {
		t.Errorf("Playwright shape without a private key: %v, want 403", err)
	}
}

// readEvent reads one NDJSON line with a deadline.
func readEvent(t *testing.T, es *client.EventStream) control.Event {
	t.Helper()
	return vktest.NextEvent(t, es, nil)
}

func TestEventStream(t *testing.T) {
	t.Parallel()
	f := startUnix(t, control.Options{})
	ctx := testCtx(t)
	k := f.Client.Key("default")
	es, err := k.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	if _, err := k.Replug(ctx); err != nil {
		t.Fatal(err)
	}
	if ev := readEvent(t, es); ev.Type != control.EventReplug || ev.Time.IsZero() {
		t.Errorf("event = %+v", ev)
	}
	id := []byte("0123456789abcdef")
	if _, err := k.AddCredential(ctx, control.CredentialParams{CredentialID: id, RPID: "a.com"}); err != nil {
		t.Fatal(err)
	}
	if ev := readEvent(t, es); ev.Type != control.EventCredentialAdded || string(ev.CredentialID) != string(id) || ev.RPID != "a.com" || ev.SignCount == nil {
		t.Errorf("event = %+v", ev)
	}
}

// A subscriber that reads nothing must not slow the key: Publish never
// blocks, and the reader is told how many events it lost.
func TestSlowSubscriber(t *testing.T) {
	t.Parallel()
	f := startUnix(t, control.Options{EventBuffer: 8})
	ctx := testCtx(t)
	req, _ := http.NewRequestWithContext(ctx, "GET", f.Base+"/v1/keys/default/events", nil)
	resp, err := f.HC.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("Content-Type %q", ct)
	}
	const n = 200000
	start := time.Now()
	for i := 0; i < n; i++ {
		f.def.Publish(control.Event{Type: control.EventReplug, Time: time.Now()})
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("publishing %d events to a stalled reader took %v", n, d)
	}
	f.def.Publish(control.Event{Type: control.EventReset, Time: time.Now()})
	sc := bufio.NewScanner(resp.Body)
	var got, lost uint64
	for sc.Scan() {
		var ev control.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		switch ev.Type {
		case control.EventsDropped:
			lost += ev.Dropped
		default:
			got++
		}
		if got+lost == n+1 {
			break
		}
	}
	if lost == 0 || got+lost != n+1 {
		t.Errorf("got %d events, %d reported lost; want a loss and %d in all", got, lost, n+1)
	}
}

// Removing a key ends its event streams, waits for its calls in flight,
// closes it and leaves no goroutine behind.
func TestRemoveKeyLifecycle(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		f := startUnix(t, control.Options{})
		ctx := testCtx(t)
		ki, err := f.Client.AddKey(ctx, control.KeyConfig{Attach: "udp"})
		if err != nil {
			t.Fatal(err)
		}
		mk := f.factory.keys[0]
		mk.slowCall = make(chan struct{})
		k := f.Client.Key(ki.ID)
		var streams []*client.EventStream
		for range 3 {
			es, err := k.Events(ctx)
			if err != nil {
				t.Fatal(err)
			}
			streams = append(streams, es)
		}
		if n := mk.Subscribers(); n != 3 {
			t.Fatalf("%d subscribers, want 3", n)
		}
		slow := make(chan error, 1)
		go func() { _, err := k.Credentials(ctx); slow <- err }()
		deleted := make(chan error, 1)
		time.Sleep(50 * time.Millisecond) // let the slow call start
		go func() { deleted <- f.Client.DeleteKey(ctx, ki.ID) }()
		for _, es := range streams {
			if _, err := es.Next(); err != io.EOF {
				t.Errorf("stream after delete: %v, want EOF", err)
			}
			es.Close()
		}
		select {
		case err := <-deleted:
			t.Fatalf("DeleteKey returned (%v) while a call was in flight", err)
		case <-time.After(100 * time.Millisecond):
		}
		if mk.closed {
			t.Fatal("key closed under a call in flight")
		}
		close(mk.slowCall)
		if err := <-slow; err != nil {
			t.Errorf("in-flight call: %v", err)
		}
		if err := <-deleted; err != nil {
			t.Errorf("DeleteKey: %v", err)
		}
		if !mk.closed || mk.Subscribers() != 0 {
			t.Errorf("closed %v, %d subscribers left", mk.closed, mk.Subscribers())
		}
		f.Client.Close()
		f.HC.CloseIdleConnections()
		f.Stop()
	}()
	checkGoroutines(t, before)
}

// checkGoroutines waits for the goroutine count to fall back to before.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Shutting the server down ends event streams at once.
func TestShutdownEndsStreams(t *testing.T) {
	t.Parallel()
	f := startUnix(t, control.Options{})
	es, err := f.Client.Key("default").Events(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	start := time.Now()
	f.Stop()
	if _, err := es.Next(); err == nil {
		t.Error("stream still open after shutdown")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("shutdown took %v", d)
	}
}

func TestConcurrentCalls(t *testing.T) {
	t.Parallel()
	f := startUnix(t, control.Options{})
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				ki, err := f.Client.AddKey(ctx, control.KeyConfig{Attach: "udp"})
				if err != nil {
					t.Error(err)
					return
				}
				k := f.Client.Key(ki.ID)
				id := []byte(strings.Repeat("x", 16) + string(rune('a'+i)) + string(rune('a'+j)))
				k.AddCredential(ctx, control.CredentialParams{CredentialID: id, RPID: "a.com"})
				k.SetUserVerified(ctx, j%2 == 0)
				f.Client.Key("default").SetPresence(ctx, control.PresenceManual)
				f.Client.Keys(ctx)
				if err := f.Client.DeleteKey(ctx, ki.ID); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
}

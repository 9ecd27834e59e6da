package apitest

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/virtkey/virtkey/control"
	"github.com/virtkey/virtkey/control/client"
)

// Env is a control server under test, serving on a Unix socket or on
// token-guarded loopback TCP.
type Env struct {
	Srv    *control.Server
	Addr   string // unix:PATH or tcp:HOST:PORT
	Token  string // "" on a Unix socket
	Client *client.Client
	// HC speaks raw HTTP to the endpoint (Base "http://virtkey").
	HC   *http.Client
	Base string
	// Stop shuts the server down and closes its keys (also at cleanup).
	Stop func()
}

// Serve serves srv on network ("unix" or "tcp") until the test ends.
func Serve(t testing.TB, srv *control.Server, network string) *Env {
	t.Helper()
	e := &Env{Srv: srv, Base: "http://virtkey"}
	lc := control.ListenConfig{Address: "unix:" + filepath.Join(t.TempDir(), "ctl", "control.sock")}
	if network == "tcp" {
		e.Token = "token-for-the-tests-0123456789"
		f := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(f, []byte(e.Token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		lc = control.ListenConfig{Address: "tcp:127.0.0.1:0", TokenFile: f}
	}
	ln, err := control.Listen(lc)
	if err != nil {
		t.Fatal(err)
	}
	e.Addr = ln.URL()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var once sync.Once
	e.Stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			if err := srv.Close(); err != nil {
				t.Errorf("closing the keys: %v", err)
			}
		})
	}
	t.Cleanup(func() { e.Stop() })
	if e.Client, err = client.New(e.Addr, e.Token); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Client.Close)
	nw, addr, _ := control.ParseAddress(e.Addr)
	e.HC = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, nw, addr)
	}}}
	t.Cleanup(e.HC.CloseIdleConnections)
	return e
}

package vktest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/hid/udp"
	"github.com/virtkey/virtkey/inproc"
)

// Timeouts of a test's CTAP2 client.
const (
	dialTimeout    = 10 * time.Second // CTAPHID INIT
	commandTimeout = 30 * time.Second // one CTAP command
)

// Dial opens a CTAP2 client on the UDP key at addr (CTAPHID INIT within
// 10 s; each command then within 30 s). Its socket closes at cleanup.
func Dial(t testing.TB, addr string) *client.Device {
	t.Helper()
	return dial(t, addr, nil)
}

// Client is [Dial] on the key; a failure shows the key's output.
func (k *Key) Client(t testing.TB) *client.Device {
	t.Helper()
	return dial(t, k.Addr, k.Output)
}

func dial(t testing.TB, addr string, output func() string) *client.Device {
	t.Helper()
	d, closeConn, err := Open(addr)
	if err != nil {
		if output != nil {
			t.Fatalf("%v\nvirtkey output:\n%s", err, output())
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { closeConn() })
	return d
}

// Open is [Dial] for callers without a testing.TB (testscript commands):
// the caller closes the socket with the returned function.
func Open(addr string) (*client.Device, func() error, error) {
	conn, err := udp.Dial(addr)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	d, err := client.Open(ctx, conn, &client.Options{Timeout: commandTimeout})
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("opening %s: %w", addr, err)
	}
	return d, conn.Close, nil
}

// ServeUDP serves an in-process key (package inproc: software key store in
// a temporary directory, presence approved at once) on a free 127.0.0.1
// UDP port until cleanup, and returns its address. configure, if not nil,
// adjusts the authenticator's configuration.
func ServeUDP(t testing.TB, configure func(*ctap2.Config)) string {
	t.Helper()
	k := InProc(t, inproc.Options{Dir: t.TempDir(), Configure: configure})
	conn, err := udp.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { conn.Serve(ctx, k.Authenticator, nil); close(done) }()
	t.Cleanup(func() { cancel(); conn.Close(); <-done })
	return conn.Addr().String()
}

// CredMgmt opens credential management on d with a PIN token of pin
// (permission cm), failing t on an error.
func CredMgmt(t testing.TB, ctx context.Context, d *client.Device, pin string) *client.CredentialManagement {
	t.Helper()
	tok, err := d.GetPINToken(ctx, pin, client.PermCredentialMgmt, "")
	if err != nil {
		t.Fatalf("PIN token for credential management: %v", err)
	}
	cm, err := d.CredentialManagement(ctx, tok)
	if err != nil {
		t.Fatalf("credential management: %v", err)
	}
	return cm
}

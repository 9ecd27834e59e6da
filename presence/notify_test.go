package presence

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/internal/vktest"
)

// These tests start a private bus with dbus-daemon (Debian package
// dbus-daemon), register a fake notification server on it and point
// Notify at it. Without dbus-daemon they skip, except under CI=true, where
// they fail.

// busConfig is a minimal session bus: a socket in its own directory, no
// service activation (a real notification daemon must never start), and
// everything allowed.
const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir=DIR</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`

// startBus starts a private bus daemon and returns its address.
func startBus(t *testing.T) string {
	t.Helper()
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		vktest.MissingTool(t, "dbus-daemon not installed (Debian package dbus-daemon); the notify tests need it")
	}
	// A short directory: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "vkbus")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(strings.Replace(busConfig, "DIR", dir, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(daemon, "--config-file="+conf, "--print-address", "--nofork")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		addr <- strings.TrimSpace(line)
	}()
	select {
	case a := <-addr:
		if a == "" {
			t.Fatal("dbus-daemon printed no address")
		}
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("dbus-daemon did not start")
	}
	return ""
}

// notifyCall is one Notify call the fake server got.
type notifyCall struct {
	id            uint32
	appName       string
	summary, body string
	actions       []string
	hints         map[string]dbus.Variant
	timeout       int32
	replacesID    uint32
	sender        dbus.Sender
}

// fakeServer is an org.freedesktop.Notifications server whose answer to
// Notify depends on mode. Its signals go out before the Notify reply, so
// the client must already be listening.
type fakeServer struct {
	conn    *dbus.Conn
	spoofer *dbus.Conn // another connection on the bus
	mode    string
	caps    []string

	mu       sync.Mutex
	lastID   uint32
	notified chan notifyCall
	closed   chan uint32
}

func (f *fakeServer) GetCapabilities() ([]string, *dbus.Error) { return f.caps, nil }

func (f *fakeServer) GetServerInformation() (string, string, string, string, *dbus.Error) {
	return "fake", "virtkey", "1", "1.2", nil
}

func (f *fakeServer) Notify(sender dbus.Sender, appName string, replacesID uint32, icon, summary, body string,
	actions []string, hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	f.mu.Lock()
	f.lastID++
	id := f.lastID
	f.mu.Unlock()
	f.notified <- notifyCall{id: id, appName: appName, summary: summary, body: body, actions: actions,
		hints: hints, timeout: timeout, replacesID: replacesID, sender: sender}
	action := func(c *dbus.Conn, id uint32, key string) {
		c.Emit(notifyPath, notifyInterface+".ActionInvoked", id, key)
	}
	closed := func(id, reason uint32) {
		f.conn.Emit(notifyPath, notifyInterface+".NotificationClosed", id, reason)
	}
	switch f.mode {
	case "allow":
		action(f.conn, id, "allow")
		closed(id, 2)
	case "deny":
		action(f.conn, id, "deny")
		closed(id, 2)
	case "dismiss":
		closed(id, 2)
	case "default-then-allow":
		action(f.conn, id, "default")
		action(f.conn, id, "allow")
	case "other-id":
		action(f.conn, id+100, "allow")
		closed(id+100, 2)
		action(f.conn, id, "deny")
	case "spoof":
		// Another program on the bus "allows", broadcasting and sending
		// straight to the client; then the real server denies.
		action(f.spoofer, id, "allow")
		msg := &dbus.Message{Type: dbus.TypeSignal, Headers: map[dbus.HeaderField]dbus.Variant{
			dbus.FieldPath:        dbus.MakeVariant(notifyPath),
			dbus.FieldInterface:   dbus.MakeVariant(notifyInterface),
			dbus.FieldMember:      dbus.MakeVariant("ActionInvoked"),
			dbus.FieldDestination: dbus.MakeVariant(string(sender)),
			dbus.FieldSignature:   dbus.MakeVariant(dbus.SignatureOf(id, "allow")),
		}, Body: []any{id, "allow"}}
		f.spoofer.Send(msg, nil)
		time.Sleep(50 * time.Millisecond) // let the spoofs arrive first
		action(f.conn, id, "deny")
	case "none":
	}
	return id, nil
}

func (f *fakeServer) CloseNotification(id uint32) *dbus.Error {
	f.closed <- id
	f.conn.Emit(notifyPath, notifyInterface+".NotificationClosed", id, uint32(3))
	return nil
}

// startFakeServer registers a fake notification server on the bus.
func startFakeServer(t *testing.T, addr, mode string, caps ...string) *fakeServer {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	spoofer, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { spoofer.Close() })
	if caps == nil {
		caps = []string{"actions", "body", "body-markup"}
	}
	f := &fakeServer{conn: conn, spoofer: spoofer, mode: mode, caps: caps,
		notified: make(chan notifyCall, 10), closed: make(chan uint32, 10)}
	if err := conn.Export(f, notifyPath, notifyInterface); err != nil {
		t.Fatal(err)
	}
	reply, err := conn.RequestName(notifyName, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName: %v, %v", reply, err)
	}
	// Give the name back before the connection closes: the bus frees the
	// name of a closed connection only when it notices, and the next
	// subtest's server (one name per bus) would find it still taken.
	t.Cleanup(func() { conn.ReleaseName(notifyName) })
	return f
}

func dialNotify(t *testing.T, addr string) *Notify {
	t.Helper()
	n, err := DialNotify(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func TestNotifyAnswers(t *testing.T) {
	t.Parallel()
	addr := startBus(t)
	tests := []struct {
		mode string
		want error
	}{
		{"allow", nil},
		{"deny", ctap2.ErrDeclined},
		{"dismiss", ctap2.ErrDeclined},
		{"default-then-allow", nil},
		{"other-id", ctap2.ErrDeclined},
		{"spoof", ctap2.ErrDeclined},
	}
	// One server name per bus: the modes run one after another.
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			f := startFakeServer(t, addr, tt.mode)
			n := dialNotify(t, addr)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if err := n.Confirm(ctx, aliceRequest); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("Confirm = %v, want %v", err, tt.want)
			}
			c := <-f.notified
			if c.appName != "virtkey" || c.summary != "Security key request" ||
				c.body != "Allow makeCredential for example.com (alice)?" || c.timeout != 0 || c.replacesID != 0 {
				t.Fatalf("Notify call = %+v", c)
			}
			if !slices.Equal(c.actions, []string{"allow", "Allow", "deny", "Deny"}) {
				t.Fatalf("actions = %q", c.actions)
			}
			if u, _ := c.hints["urgency"].Value().(byte); u != 2 {
				t.Fatalf("urgency hint = %v, want 2 (critical)", c.hints["urgency"])
			}
			f.conn.Close() // release the name for the next mode
		})
	}
}

func TestNotifyCancelClosesTheNotification(t *testing.T) {
	t.Parallel()
	addr := startBus(t)
	f := startFakeServer(t, addr, "none")
	n := dialNotify(t, addr)
	for _, name := range []string{"cancel", "timeout"} {
		ctx, cancel := context.WithCancel(t.Context())
		want := context.Canceled
		if name == "timeout" {
			ctx, cancel = context.WithTimeout(t.Context(), 300*time.Millisecond)
			want = context.DeadlineExceeded
		}
		errc := make(chan error, 1)
		go func() { errc <- n.Confirm(ctx, aliceRequest) }()
		c := <-f.notified
		if name == "cancel" {
			cancel() // as CTAPHID_CANCEL does
		}
		select {
		case err := <-errc:
			if !errors.Is(err, want) {
				t.Fatalf("%s: Confirm = %v, want %v", name, err, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: Confirm did not return", name)
		}
		select {
		case id := <-f.closed:
			if id != c.id {
				t.Fatalf("%s: CloseNotification(%d), want %d", name, id, c.id)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the notification was not closed", name)
		}
		cancel()
	}
}

func TestNotifyEscapesMarkup(t *testing.T) {
	t.Parallel()
	addr := startBus(t)
	req := ctap2.PresenceRequest{Op: "getAssertion", RPID: "example.com", UserName: "<b>bob</b> & co", UV: true}

	f := startFakeServer(t, addr, "allow")
	n := dialNotify(t, addr)
	if err := n.Confirm(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if c := <-f.notified; c.body != "Allow getAssertion for example.com (&lt;b&gt;bob&lt;/b&gt; &amp; co)?\nAllowing also verifies you to the site." {
		t.Fatalf("body with markup = %q", c.body)
	}
	f.conn.Close()

	// A server without body-markup gets the text as it is.
	f = startFakeServer(t, addr, "allow", "actions", "body")
	n = dialNotify(t, addr)
	if err := n.Confirm(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if c := <-f.notified; !strings.Contains(c.body, "(<b>bob</b> & co)") {
		t.Fatalf("body without markup = %q", c.body)
	}
	f.conn.Close()

	// Control characters are shown escaped, not passed to the notification.
	f = startFakeServer(t, addr, "allow", "actions", "body")
	n = dialNotify(t, addr)
	if err := n.Confirm(t.Context(), ctap2.PresenceRequest{Op: "getAssertion", RPID: "example.com", UserName: hostile}); err != nil {
		t.Fatal(err)
	}
	if c := <-f.notified; c.body != "Allow getAssertion for example.com ("+hostileEscaped+")?" {
		t.Fatalf("body with control characters = %q", c.body)
	}
}

func TestNotifyWithoutServer(t *testing.T) {
	t.Parallel()
	addr := startBus(t)
	n := dialNotify(t, addr) // no server yet: a warning, not an error
	err := n.Confirm(t.Context(), aliceRequest)
	if err == nil || errors.Is(err, ctap2.ErrDeclined) || !strings.Contains(err.Error(), "no desktop notification server") {
		t.Fatalf("Confirm = %v, want a no-server error", err)
	}
}

func TestSessionBusAddress(t *testing.T) {
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/x")
	if a, err := sessionBusAddress(); err != nil || a != "unix:path=/x" {
		t.Fatalf("from env: %q, %v", a, err)
	}
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "")
	dir := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", dir)
	if _, err := sessionBusAddress(); err == nil {
		t.Fatal("no bus: want an error")
	}
	if err := os.WriteFile(filepath.Join(dir, "bus"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if a, err := sessionBusAddress(); err != nil || a != "unix:path="+dbus.EscapeBusAddressValue(filepath.Join(dir, "bus")) {
		t.Fatalf("from XDG_RUNTIME_DIR: %q, %v", a, err)
	}
	if _, err := DialNotify("", nil); err == nil {
		t.Fatal("DialNotify to a bus that is not there succeeded")
	}
}

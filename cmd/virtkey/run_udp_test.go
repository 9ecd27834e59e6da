package main

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/virtkey/virtkey/internal/vktest"
)

func TestUDPAccessFlags(t *testing.T) {
	t.Parallel()
	f, err := parseRunFlags([]string{"--udp-allow-uid", "65534", "--udp-allow-uid", "7", "--udp-allow-any-user", "--udp-allow-remote"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.udpAllowUIDs, []uint32{65534, 7}) || !f.udpAllowAnyUser || !f.udpAllowRemote {
		t.Fatalf("flags %+v", f)
	}
	if f, err := parseRunFlags(nil, io.Discard); err != nil || f.udpAllowUIDs != nil || f.udpAllowAnyUser || f.udpAllowRemote {
		t.Fatalf("defaults %+v, %v", f, err)
	}
	for _, bad := range []string{"nobody", "-1", "4294967296"} {
		if _, err := parseRunFlags([]string{"--udp-allow-uid", bad}, io.Discard); err == nil {
			t.Errorf("--udp-allow-uid %s accepted", bad)
		}
	}
}

// TestRunRefusesRemoteListen: a non-loopback --udp-listen needs
// --udp-allow-remote.
func TestRunRefusesRemoteListen(t *testing.T) {
	t.Parallel()
	err := runKey(context.Background(), []string{"--transport", "udp", "--udp-listen", "0.0.0.0:0", "--presence", "auto", "--state-dir", t.TempDir()}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--udp-allow-remote") {
		t.Fatalf("runKey = %v", err)
	}
}

// TestRefuseAnotherUsersSocket: while the key is down another user
// (nobody) holds its port; the CLI refuses to talk to it before sending
// anything (a PIN would follow).
func TestRefuseAnotherUsersSocket(t *testing.T) {
	addr := vktest.FreeUDPAddr(t)
	probe := vktest.ListenProbe(t, addr)
	r := runInProcess(t, map[string]string{envPIN: "123456"}, "pin", "change", "--device", "udp:"+addr)
	if r.code != exitNoDevice || !strings.Contains(r.stderr, "belongs to uid 65534") {
		t.Errorf("exit %d, stderr %q; want a refusal naming nobody's uid", r.code, r.stderr)
	}
	if b, ok := probe.Recv(300 * time.Millisecond); ok {
		t.Fatalf("nobody's socket received % X", b[:min(len(b), 8)])
	}
}

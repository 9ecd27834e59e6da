package server

import (
	"context"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
)

// TestUDPAccessFlags: --udp-allow-uid (repeatable, numeric),
// --udp-allow-any-user and --udp-allow-remote reach the Config and are
// validated before anything is created.
func TestUDPAccessFlags(t *testing.T) {
	t.Parallel()
	parse := func(args ...string) (Config, error) {
		c := Default()
		fs := flag.NewFlagSet("run", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.RegisterFlags(fs)
		if err := fs.Parse(args); err != nil {
			return c, err
		}
		return c, c.Validate()
	}
	c, err := parse("--transport", "udp", "--udp-allow-uid", "65534", "--udp-allow-uid", "7", "--udp-allow-any-user", "--udp-allow-remote")
	if err != nil {
		t.Fatal(err)
	}
	if uids, _ := c.udpAllowUIDs(); !slices.Equal(uids, []uint32{65534, 7}) || !c.UDPAllowAnyUser || !c.UDPAllowRemote {
		t.Fatalf("flags %+v", c)
	}
	if c, err := parse("--transport", "udp"); err != nil || c.UDPAllowUIDs != nil || c.UDPAllowAnyUser || c.UDPAllowRemote {
		t.Fatalf("defaults %+v, %v", c, err)
	}
	for _, bad := range []string{"nobody", "-1", "4294967296"} {
		if _, err := parse("--transport", "udp", "--udp-allow-uid", bad); err == nil || !strings.Contains(err.Error(), "--udp-allow-uid") {
			t.Errorf("--udp-allow-uid %s: %v", bad, err)
		}
	}
}

// TestRefusesRemoteListen: a non-loopback --udp-listen needs
// --udp-allow-remote, and nothing is created in the state directory.
func TestRefusesRemoteListen(t *testing.T) {
	t.Parallel()
	c := Default()
	c.Transport, c.UDPListen, c.Presence, c.StateDir = "udp", "0.0.0.0:0", "auto", t.TempDir()+"/state"
	k, err := New(context.Background(), c, nil)
	if err == nil {
		k.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "--udp-allow-remote") {
		t.Fatalf("New = %v", err)
	}
}

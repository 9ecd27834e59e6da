package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtkey/virtkey/internal/vktest"
)

func TestMain(m *testing.M) {
	var err error
	if repoRoot, err = vktest.RepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	os.Exit(vktest.Run(m))
}

// TestPythonFIDO2 runs the python-fido2 suite (testdata/python) against a
// fresh key.
func TestPythonFIDO2(t *testing.T) {
	needPythonFIDO2(t)
	k := vktest.Start(t, t.TempDir())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out := &prefixWriter{w: os.Stdout, prefix: "pytest| "}
	cmd := pythonCmd(ctx, k.Addr, "-m", "pytest", "-q", "testdata/python")
	cmd.Stdout = out
	cmd.Stderr = out
	err := cmd.Run()
	out.Flush()
	if err != nil {
		t.Errorf("python-fido2 suite failed (VIRTKEY_UDP=%s): %v — see the pytest| lines above", k.Addr, err)
	}
	// The key must still be healthy after the whole suite.
	if _, err := vktest.InitChannel(k.Addr, time.Second); err != nil {
		t.Errorf("key does not answer INIT after the suite: %v", err)
	}
}

// cred is one credential line printed by scenario.py.
type cred struct {
	ID      string `json:"id"`
	Key     string `json:"key"`
	User    string `json:"user"`
	RP      string `json:"rp"`
	Counter uint32 `json:"counter"`
	Fmt     string `json:"fmt,omitempty"` // attestation format (register only)
}

func parseCreds(t *testing.T, out string) []cred {
	t.Helper()
	var cs []cred
	for _, l := range lines(out) {
		var c cred
		if err := json.Unmarshal([]byte(l), &c); err != nil {
			t.Fatalf("bad scenario.py line %q: %v", l, err)
		}
		cs = append(cs, c)
	}
	return cs
}

func writeCreds(t *testing.T, path string, cs []cred) {
	t.Helper()
	var b strings.Builder
	for _, c := range cs {
		j, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkAsserted compares `scenario.py assert` output with what was asserted:
// every credential answered, each with a higher counter.
func checkAsserted(t *testing.T, before, after []cred) {
	t.Helper()
	got := map[string]cred{}
	for _, c := range after {
		got[c.ID] = c
	}
	for _, b := range before {
		a, ok := got[b.ID]
		if !ok {
			t.Errorf("credential %s (%s) was not asserted", b.ID, b.RP)
			continue
		}
		if a.Counter <= b.Counter {
			t.Errorf("credential %s: counter %d after restart, was %d", b.ID, a.Counter, b.Counter)
		}
	}
}

// TestRestartKeepsCredentials registers credentials, stops virtkey with
// SIGTERM, restarts it on the same state directory and asserts again.
func TestRestartKeepsCredentials(t *testing.T) {
	needPythonFIDO2(t)
	state := t.TempDir()
	tmp := t.TempDir()

	k := vktest.Start(t, state)
	var com, org []cred
	com = append(com, parseCreds(t, scenario(t, k, "register", "--rp", "example.com", "--user", "alice"))...)
	com = append(com, parseCreds(t, scenario(t, k, "register", "--rp", "example.com", "--user", "bob"))...)
	org = append(org, parseCreds(t, scenario(t, k, "register", "--rp", "example.org", "--user", "carol", "--non-resident"))...)
	if len(com) != 2 || len(org) != 1 {
		t.Fatalf("registered %d+%d credentials, want 2+1", len(com), len(org))
	}
	comFile, orgFile := filepath.Join(tmp, "com.jsonl"), filepath.Join(tmp, "org.jsonl")
	writeCreds(t, comFile, com)
	writeCreds(t, orgFile, org)
	// One assertion before the restart, so the counters are not fresh.
	com2 := parseCreds(t, scenario(t, k, "assert", "--rp", "example.com", "--creds", comFile, "--discoverable"))
	checkAsserted(t, com, com2)
	writeCreds(t, comFile, com2)
	k.Stop(t)

	for round := 1; round <= 2; round++ {
		k = vktest.Start(t, state)
		after := parseCreds(t, scenario(t, k, "assert", "--rp", "example.com", "--creds", comFile, "--discoverable"))
		checkAsserted(t, com2, after)
		com2 = after
		writeCreds(t, comFile, com2)
		afterOrg := parseCreds(t, scenario(t, k, "assert", "--rp", "example.org", "--creds", orgFile))
		checkAsserted(t, org, afterOrg)
		org = afterOrg
		writeCreds(t, orgFile, org)
		k.Stop(t)
	}
}

// TestKillMidWrite registers credentials in a loop, SIGKILLs virtkey in the
// middle, restarts it and requires every acknowledged credential to still
// sign, with counters above every value handed out before the crash.
func TestKillMidWrite(t *testing.T) {
	needPythonFIDO2(t)
	state := t.TempDir()
	credFile := filepath.Join(t.TempDir(), "acked.jsonl")
	var acked []cred

	for round, killAfter := range []int{3, 7, 12} {
		k := vktest.Start(t, state)
		if len(acked) > 0 {
			after := parseCreds(t, scenario(t, k, "assert", "--rp", "example.com", "--creds", credFile, "--discoverable"))
			checkAsserted(t, acked, after)
			acked = after
			writeCreds(t, credFile, acked)
		}
		got := registerThenKill(t, k, fmt.Sprintf("r%d-", round), killAfter)
		t.Logf("round %d: %d credentials acknowledged before SIGKILL", round, len(got))
		if len(got) < killAfter {
			t.Fatalf("round %d: only %d credentials acknowledged, want >= %d", round, len(got), killAfter)
		}
		acked = append(acked, got...)
		writeCreds(t, credFile, acked)
	}

	k := vktest.Start(t, state)
	after := parseCreds(t, scenario(t, k, "assert", "--rp", "example.com", "--creds", credFile, "--discoverable"))
	checkAsserted(t, acked, after)
	k.Stop(t)
}

// registerThenKill runs `scenario.py register-loop` and SIGKILLs the key
// once killAfter credentials were acknowledged. It returns every credential
// the client saw acknowledged (including those that raced with the kill).
func registerThenKill(t *testing.T, k *vktest.Key, prefix string, killAfter int) []cred {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := pythonCmd(ctx, k.Addr, "testdata/python/scenario.py", "register-loop",
		"--rp", "example.com", "--count", "500", "--prefix", prefix, "--timeout", "2")
	var stderr bytes.Buffer // read after Wait
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out []cred
	sc := bufio.NewScanner(stdout)
	killed := false
	for sc.Scan() {
		var c cred
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Errorf("bad register-loop line %q: %v", sc.Text(), err)
			continue
		}
		out = append(out, c)
		if !killed && len(out) >= killAfter {
			k.Kill(t)
			killed = true
		}
	}
	io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case !killed:
		t.Fatalf("register-loop ended after %d credentials before the kill: %v\nstderr:\n%s\nvirtkey output:\n%s",
			len(out), err, stderr.String(), k.Output())
	case err == nil:
		t.Fatalf("register-loop finished all 500 registrations although the key was killed")
	case errors.As(err, &ee) && ee.ExitCode() == 3:
		// Expected: the device went away.
	default:
		t.Fatalf("register-loop: %v\nstderr:\n%s", err, stderr.String())
	}
	return out
}

// TestAttestationNone: `run --attestation none` makes "none" attestations,
// and the credentials work as usual.
func TestAttestationNone(t *testing.T) {
	needPythonFIDO2(t)
	k := vktest.Start(t, t.TempDir(), "--attestation", "none")
	cs := parseCreds(t, scenario(t, k, "register", "--rp", "example.com", "--user", "alice"))
	if len(cs) != 1 || cs[0].Fmt != "none" {
		t.Fatalf("register with --attestation none: %+v, want one credential with fmt none", cs)
	}
	f := filepath.Join(t.TempDir(), "creds.jsonl")
	writeCreds(t, f, cs)
	checkAsserted(t, cs, parseCreds(t, scenario(t, k, "assert", "--rp", "example.com", "--creds", f, "--discoverable")))
}

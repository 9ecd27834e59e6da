package backup_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtkey/virtkey/internal/vktest"
)

// TestAgeToolDecrypts: the age tool itself (Debian's age) decrypts a
// backup with the passphrase, into the tar the package documents, and a
// state directory unpacked from it by hand serves the key. age reads a
// passphrase from a terminal only, so script(1) gives it one.
func TestAgeToolDecrypts(t *testing.T) {
	t.Parallel()
	ageBin := vktest.RequireTool(t, "age", "age")
	scriptBin := vktest.RequireTool(t, "script", "bsdutils")
	_, archive := fixtureArchive(t)
	out := filepath.Join(t.TempDir(), "backup.tar")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, scriptBin, "-qec", shellQuote(ageBin, "-d", "-o", out, archive), "/dev/null")
	// age asks once the terminal is set up; the passphrase waits in the
	// pty's input until it reads.
	cmd.Stdin = strings.NewReader(passphrase + "\n")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		t.Fatalf("age -d: %v\n%s", err, log.String())
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatalf("age wrote nothing: %v\n%s", err, log.String())
	}
	defer f.Close()
	// An in-process key makes no device key or attestation CA.
	checkTar(t, f, []string{"state/", "state/master.key", "state/epoch", "state/state.db"})

	// By hand: tar -x --strip-components=1 state, as README says.
	hand := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(hand, 0o700); err != nil {
		t.Fatal(err)
	}
	tarBin := vktest.RequireTool(t, "tar", "tar")
	if b, err := exec.Command(tarBin, "-x", "-f", out, "-C", hand, "--strip-components=1", "state").CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v\n%s", err, b)
	}
	k, d := inprocKey(t, hand)
	defer closeKey(t, k)
	if n := pinRetries(t, d); n != 8 {
		t.Fatalf("the unpacked key: %d PIN retries", n)
	}
}

// shellQuote joins args into one sh command line.
func shellQuote(args ...string) string {
	var q []string
	for _, a := range args {
		q = append(q, "'"+strings.ReplaceAll(a, "'", `'\''`)+"'")
	}
	return strings.Join(q, " ")
}

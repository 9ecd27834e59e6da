package statedir

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestCheckOwner: item 4. Each way another user could plant or change
// the state is refused, with the fix in the message.
func TestCheckOwner(t *testing.T) {
	t.Parallel()
	me := os.Getuid()
	for name, tc := range map[string]struct {
		prepare func(dir string)
		uid     int    // the user checking; me unless set
		want    string // "" = accepted
	}{
		"private":           {func(string) {}, me, ""},
		"0755 directory":    {func(dir string) { os.Chmod(dir, 0o755) }, me, ""},
		"0777 directory":    {func(dir string) { os.Chmod(dir, 0o777) }, me, "chmod 700 "},
		"0666 state.db":     {func(dir string) { os.Chmod(filepath.Join(dir, "state.db"), 0o666) }, me, "chmod 600 "},
		"0620 state.db":     {func(dir string) { os.Chmod(filepath.Join(dir, "state.db"), 0o620) }, me, "writable by group or others"},
		"0777 subdirectory": {func(dir string) { os.Chmod(filepath.Join(dir, "attestation"), 0o777) }, me, "attestation is writable"},
		"someone else's":    {func(string) {}, me + 1, "not by you"},
		"symlinked state.db": {func(dir string) {
			os.Remove(filepath.Join(dir, "state.db"))
			os.Symlink("/etc/passwd", filepath.Join(dir, "state.db"))
		}, me, "symbolic link"},
		"a fifo in the state":   {func(dir string) { syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600) }, me, "not a regular file"},
		"state dir is a file":   {func(dir string) { os.RemoveAll(dir); os.WriteFile(dir, nil, 0o600) }, me, "is not a directory"},
		"state dir not created": {func(dir string) { os.RemoveAll(dir) }, me, ""},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "state")
			must(t, os.MkdirAll(filepath.Join(dir, "attestation"), 0o700))
			must(t, os.WriteFile(filepath.Join(dir, "state.db"), []byte("x"), 0o600))
			tc.prepare(dir)
			err := checkOwner(dir, tc.uid)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error saying %q", err, tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), "--state-dir"):
				t.Errorf("%v: no way out (another --state-dir) offered", err)
			}
		})
	}
}

// TestRunRefusesUntrustedStateDir: item 4, end to end. `virtkey run`
// accepted a 0777 state directory, a planted 0666 state.db and a state
// directory owned by another user (doctor flagged them; run did not).
func TestRunRefusesUntrustedStateDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	must(t, os.MkdirAll(dir, 0o700))
	must(t, os.Chmod(dir, 0o777))
	wantOutput(t, runFails(t, dir), "writable by group or others", "chmod 700 "+dir)

	must(t, os.Chmod(dir, 0o700))
	must(t, os.WriteFile(filepath.Join(dir, StateFileName), nil, 0o600))
	must(t, os.Chmod(filepath.Join(dir, StateFileName), 0o666))
	wantOutput(t, runFails(t, dir), "state.db is writable by group or others", "chmod 600")

	if os.Getuid() != 0 {
		// TestCheckOwner covers another owner without root.
		return
	}
	must(t, os.Chmod(filepath.Join(dir, StateFileName), 0o600))
	must(t, os.Chown(filepath.Join(dir, StateFileName), 65534, 65534))
	wantOutput(t, runFails(t, dir), "owned by uid 65534, not by you", "chown")
	must(t, os.Chown(dir, 65534, 65534))
	wantOutput(t, runFails(t, dir), "state directory "+dir+" is owned by uid 65534")
}

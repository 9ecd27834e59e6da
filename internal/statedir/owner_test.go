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
			mustOK(t, os.MkdirAll(filepath.Join(dir, "attestation"), 0o700))
			mustOK(t, os.WriteFile(filepath.Join(dir, "state.db"), []byte("x"), 0o600))
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

// mustOK fails the test on err (harness_test.go's must lives in the
// external test package).
func mustOK(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

package backup

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretRead: the file comes first (its trailing newline dropped),
// then the environment variable, then the terminal — twice for a new
// passphrase, which must match; without any of them, a message naming all
// three.
func TestSecretRead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "pass")
	os.WriteFile(file, []byte("from file\r\n"), 0o600)
	emptyFile := filepath.Join(dir, "empty")
	os.WriteFile(emptyFile, []byte("\n"), 0o600)
	env := func(v string) func(string) string {
		return func(name string) string {
			if name == EnvPassphrase {
				return v
			}
			return ""
		}
	}
	// answers answers prompts with a, counting them in *n.
	answers := func(n *int, a ...string) func(string) ([]byte, error) {
		return func(p string) ([]byte, error) {
			*n++
			if len(a) == 0 {
				return nil, errors.New("no more answers")
			}
			s := a[0]
			a = a[1:]
			return []byte(s), nil
		}
	}
	var asked [9]int
	base := Secret{What: "backup passphrase", FileFlag: "--passphrase-file", Env: EnvPassphrase}
	with := func(mod func(*Secret)) Secret { s := base; mod(&s); return s }

	for i, tc := range []struct {
		name    string
		s       Secret
		confirm bool
		want    string
		err     string
		prompts int
	}{
		{"file", with(func(s *Secret) { s.File = file; s.Getenv = env("from env") }), true, "from file", "", 0},
		{"empty file", with(func(s *Secret) { s.File = emptyFile }), false, "", "holds an empty backup passphrase", 0},
		{"missing file", with(func(s *Secret) { s.File = filepath.Join(dir, "nope") }), false, "", "--passphrase-file: open", 0},
		{"env", with(func(s *Secret) { s.Getenv = env("from env"); s.ask = answers(&asked[3], "typed") }), true, "from env", "", 0},
		{"terminal once", with(func(s *Secret) { s.Getenv = env(""); s.ask = answers(&asked[4], "typed") }), false, "typed", "", 1},
		{"terminal twice", with(func(s *Secret) { s.ask = answers(&asked[5], "typed", "typed") }), true, "typed", "", 2},
		{"terminal differs", with(func(s *Secret) { s.ask = answers(&asked[6], "typed", "tpyed") }), true, "", "the two backup passphrases differ", 2},
		{"terminal empty", with(func(s *Secret) { s.ask = answers(&asked[7], "") }), true, "", "no backup passphrase entered", 1},
		{"no terminal", with(func(s *Secret) { s.OpenTTY = func() (*os.File, error) { return nil, os.ErrNotExist } }), false, "",
			"the backup passphrase is needed: give --passphrase-file FILE, set VIRTKEY_BACKUP_PASSPHRASE, or run virtkey in a terminal", 0},
	} {
		got, err := tc.s.Read(tc.confirm)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: %q, %v; want error %q", tc.name, got, err, tc.err)
		case tc.err == "" && (err != nil || string(got) != tc.want):
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		case asked[i] != tc.prompts:
			t.Errorf("%s: %d prompts, want %d", tc.name, asked[i], tc.prompts)
		}
	}
	if _, err := with(func(*Secret) {}).Read(false); !errors.Is(err, ErrPassphraseNeeded) {
		t.Errorf("no source: %v, want ErrPassphraseNeeded", err)
	}
}

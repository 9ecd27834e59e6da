package statedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// CheckOwner refuses a state directory that another user could have
// planted or can change: the directory, and everything in it, must belong
// to the running user and must not be writable by group or others; no
// entry may be a symbolic link or a special file. A directory that does not
// exist yet passes (virtkey creates it 0700). Each error says how to fix
// it. (virtkey doctor's check is stricter: it also wants 0700 and 0600.)
func CheckOwner(dir string) error { return checkOwner(dir, os.Getuid()) }

// checkOwner is CheckOwner for user uid.
func checkOwner(dir string, uid int) error {
	fi, err := os.Stat(dir) // the state directory itself may be a link
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("state directory %s is not a directory: move it away or pick another --state-dir", dir)
	}
	if err := checkEntry(dir, dir, fi, uid); err != nil {
		return err
	}
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("state directory: %w (run `chown -R %d %s`, or pick another --state-dir)", err, uid, dir)
		}
		if path == dir {
			return nil
		}
		info, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // vanished meanwhile
		}
		if err != nil {
			return fmt.Errorf("state directory: %w", err)
		}
		return checkEntry(dir, path, info, uid)
	})
}

func checkEntry(dir, path string, fi fs.FileInfo, uid int) error {
	kind := "file"
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symbolic link; virtkey does not follow links inside its state directory: "+
			"replace it with the file itself, or pick another --state-dir", path)
	case fi.IsDir():
		kind = "directory"
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file (mode %v): remove it, or pick another --state-dir", path, fi.Mode())
	}
	if path == dir {
		kind = "state directory"
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != uid {
		return fmt.Errorf("%s %s is owned by uid %d, not by you (uid %d): another user could have planted it. "+
			"Pick a state directory of your own (--state-dir), or, if it is yours, run `sudo chown -R %d %s`",
			kind, path, st.Uid, uid, uid, dir)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		want := "600"
		if fi.IsDir() {
			want = "700"
		}
		return fmt.Errorf("%s %s is writable by group or others (mode %04o): anyone could change the key's state. "+
			"Run `chmod %s %s`, or pick another --state-dir", kind, path, perm, want, path)
	}
	return nil
}

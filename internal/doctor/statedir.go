package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/virtkey/virtkey/store"
)

// stateDBChecks runs the store's full consistency check on state.db, if
// there is one (it reads every page: it takes a while on a large store).
// While virtkey runs, the file is locked and the check is skipped.
func stateDBChecks(dir string) []Check {
	path := filepath.Join(dir, "state.db")
	if !fileExists(path) {
		return nil
	}
	return []Check{stateDBCheck(path)}
}

func stateDBCheck(path string) Check {
	switch err := store.Check(path); {
	case errors.Is(err, store.ErrLocked):
		return Check{Status: Skip, Check: "state-db", What: path + " is in use (virtkey runs): stop it to check the database"}
	case err != nil:
		return Check{Status: Problem, Check: "state-db", What: err.Error(), Fix: "restore state.db from a backup, or move the state directory away to start fresh"}
	}
	return Check{Status: OK, Check: "state-db", What: path + " passes the full consistency check"}
}

// stateDirChecks checks that the state directory and everything in it
// belong to this user and are private (0700 directories, 0600 files).
func stateDirChecks(dir string) []Check {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return []Check{{Status: OK, Check: "state-dir", What: "state directory " + dir + " does not exist yet (virtkey run creates it, mode 0700)"}}
	}
	if err != nil {
		return []Check{{Status: Problem, Check: "state-dir", What: "state directory: " + err.Error(), Fix: "check the path and its parents' permissions"}}
	}
	if !fi.IsDir() {
		return []Check{{Status: Problem, Check: "state-dir", What: "state directory " + dir + " is not a directory", Fix: "move it away or pick another --state-dir"}}
	}
	uid := os.Getuid()
	var problems []Check
	problem := func(what, fix string) {
		problems = append(problems, Check{Status: Problem, Check: "state-dir", What: what, Fix: fix})
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			problem(err.Error(), "chown -R $USER "+dir)
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil // vanished meanwhile
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) != uid {
			problem(fmt.Sprintf("%s is owned by uid %d, not you (uid %d)", path, st.Uid, uid), "sudo chown -R "+strconv.Itoa(uid)+" "+dir)
		}
		switch {
		case info.IsDir():
			if info.Mode().Perm() != 0o700 {
				problem(fmt.Sprintf("%s has mode %04o, want 0700", path, info.Mode().Perm()), "chmod 700 "+path)
			}
		case info.Mode().IsRegular():
			if info.Mode().Perm()&0o077 != 0 {
				problem(fmt.Sprintf("%s has mode %04o, want 0600", path, info.Mode().Perm()), "chmod 600 "+path)
			}
		default:
			problem(path+" is not a regular file or directory", "remove it")
		}
		return nil
	})
	if err != nil {
		problem(err.Error(), "check "+dir)
	}
	if len(problems) > 0 {
		return problems
	}
	return []Check{{Status: OK, Check: "state-dir", What: "state directory " + dir + " is yours, 0700, and its files are 0600"}}
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/virtkey/virtkey/tpmkeys"
)

// uhidPath is the kernel's user-space HID device.
const uhidPath = "/dev/uhid"

// check is the outcome of one doctor check.
type check struct {
	status string // "OK", "PROBLEM" or "SKIP"
	what   string
	fix    string // for a PROBLEM
}

// doctor reports whether this user can run a real key here: /dev/uhid, the
// TPM and the state directory, one line per check, and how to fix each
// problem. It fails (exit status 1) if any check finds a problem.
func doctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("virtkey doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", defaultStateDir(), "state directory to check (as for virtkey run)")
	tpm := fs.String("tpm", "", "TPM to check: a device path (default /dev/tpmrm0, then /dev/tpm0) or tcp://127.0.0.1:PORT")
	keystore := fs.String("keystore", "tpm", "the key store you intend to use: tpm (check the TPM) or software (skip it)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: virtkey doctor [--state-dir DIR] [--tpm PATH|tcp://HOST:PORT] [--keystore tpm|software]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		if err == nil {
			fmt.Fprintf(stderr, "virtkey doctor: unexpected argument %q\n", fs.Arg(0))
		}
		return errUsage
	}
	var checks []check
	checks = append(checks, checkUHID())
	switch *keystore {
	case keystoreTPM, keystoreTPMEdDSA:
		checks = append(checks, checkTPM(ctx, *tpm, *stateDir)...)
	case keystoreSoftware:
		checks = append(checks, check{status: "SKIP", what: "TPM: not checked (--keystore software)"})
	default:
		return fmt.Errorf("--keystore %q: want tpm or software", *keystore)
	}
	checks = append(checks, checkStateDir(*stateDir)...)

	problems := 0
	for _, c := range checks {
		line := fmt.Sprintf("%-8s %s", c.status, c.what)
		if c.status == "PROBLEM" {
			problems++
			line += " — fix: " + c.fix
		}
		fmt.Fprintln(stdout, line)
	}
	if problems > 0 {
		return fmt.Errorf("doctor: %d problem(s) found", problems)
	}
	return nil
}

// checkUHID checks that /dev/uhid exists and this user may open it for
// reading and writing.
func checkUHID() check {
	const rule = `KERNEL=="uhid", GROUP="virtkey", MODE="0660"`
	fi, err := os.Stat(uhidPath)
	if errors.Is(err, fs.ErrNotExist) {
		return check{status: "PROBLEM", what: uhidPath + " does not exist",
			fix: "load the uhid module: sudo modprobe uhid (and at boot: echo uhid | sudo tee /etc/modules-load.d/uhid.conf)"}
	}
	if err != nil {
		return check{status: "PROBLEM", what: uhidPath + ": " + err.Error(), fix: "check the device node"}
	}
	if fi.Mode()&fs.ModeCharDevice == 0 {
		return check{status: "PROBLEM", what: uhidPath + " is not a character device", fix: "remove it and reload the uhid module"}
	}
	if unix.Access(uhidPath, unix.R_OK|unix.W_OK) == nil {
		return check{status: "OK", what: uhidPath + " exists and you can read and write it"}
	}
	group := deviceGroup(fi)
	fix := fmt.Sprintf("add a udev rule: echo '%s' | sudo tee /etc/udev/rules.d/70-virtkey.rules && sudo udevadm control --reload && sudo udevadm trigger --name-match=uhid; "+
		"then sudo groupadd -f virtkey && sudo usermod -aG virtkey $USER and log in again", rule)
	if group != "" && group != "root" {
		fix = groupFix(group, fix)
	}
	return check{status: "PROBLEM", what: fmt.Sprintf("%s is not readable and writable by you (mode %v, group %s)", uhidPath, fi.Mode().Perm(), orUnknown(group)), fix: fix}
}

// checkTPM checks the TPM device (or swtpm socket) and, if the state
// directory is tied to a TPM, that it is this one.
func checkTPM(ctx context.Context, spec, stateDir string) []check {
	var out []check
	devices := tpmkeys.DefaultTPMDevices
	if spec != "" {
		devices = nil
		if filepath.IsAbs(spec) {
			devices = []string{spec}
		}
	}
	usable := spec != "" && len(devices) == 0 // a tcp:// TPM has no device node
	var first *deviceCheck
	for _, dev := range devices {
		c := checkTPMDevice(dev)
		if c.status == "OK" {
			out, usable, first = append(out, c.check), true, nil
			break
		}
		// Report the first device that exists (or, if none does, the first).
		if first == nil || (!fileExists(first.path) && fileExists(dev)) {
			first = &c
		}
	}
	if first != nil {
		out = append(out, first.check)
	}
	if !usable {
		return out
	}
	open, err := tpmkeys.OpenerFor(spec)
	if err != nil {
		return append(out, check{status: "PROBLEM", what: err.Error(), fix: "give --tpm a device path or tcp://HOST:PORT"})
	}
	switch err := tpmkeys.CheckTPM(ctx, stateDir, open); {
	case err == nil:
		what := "TPM answers and can create the storage root key"
		if fileExists(filepath.Join(stateDir, tpmkeys.TPMStateFileName)) {
			what += "; it is the TPM the state directory was set up with"
		}
		out = append(out, check{status: "OK", what: what})
	case errors.Is(err, tpmkeys.ErrTPMMismatch):
		out = append(out, check{status: "PROBLEM", what: err.Error(),
			fix: "use the TPM the passkeys were made on; or, accepting that they are lost, move " + stateDir + " away and register new passkeys"})
	default:
		out = append(out, check{status: "PROBLEM", what: "the TPM does not work: " + err.Error(),
			fix: "check that no other program holds /dev/tpm0 (prefer /dev/tpmrm0), and the TPM's owner hierarchy has no password"})
	}
	return out
}

// deviceCheck is a check of a device node.
type deviceCheck struct {
	check
	path string
}

func checkTPMDevice(dev string) deviceCheck {
	fi, err := os.Stat(dev)
	if err != nil {
		return deviceCheck{check{status: "PROBLEM", what: dev + " does not exist (no TPM, or its driver is not loaded)",
			fix: "enable the TPM in the firmware setup; without a TPM use --keystore software"}, dev}
	}
	if unix.Access(dev, unix.R_OK|unix.W_OK) != nil {
		group := deviceGroup(fi)
		fix := "make the device group-accessible (Debian/Ubuntu ship a udev rule giving /dev/tpmrm0 to group tss, mode 0660) and join that group"
		if group != "" && group != "root" {
			fix = groupFix(group, fix)
		}
		return deviceCheck{check{status: "PROBLEM", what: fmt.Sprintf("%s is not readable and writable by you (mode %v, group %s)", dev, fi.Mode().Perm(), orUnknown(group)), fix: fix}, dev}
	}
	return deviceCheck{check{status: "OK", what: dev + " exists and you can read and write it"}, dev}
}

// checkStateDir checks that the state directory and everything in it
// belong to this user and are private (0700 directories, 0600 files).
func checkStateDir(dir string) []check {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return []check{{status: "OK", what: "state directory " + dir + " does not exist yet (virtkey run creates it, mode 0700)"}}
	}
	if err != nil {
		return []check{{status: "PROBLEM", what: "state directory: " + err.Error(), fix: "check the path and its parents' permissions"}}
	}
	if !fi.IsDir() {
		return []check{{status: "PROBLEM", what: "state directory " + dir + " is not a directory", fix: "move it away or pick another --state-dir"}}
	}
	uid := os.Getuid()
	var problems []check
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			problems = append(problems, check{status: "PROBLEM", what: err.Error(), fix: "chown -R $USER " + dir})
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil // vanished meanwhile
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) != uid {
			problems = append(problems, check{status: "PROBLEM", what: fmt.Sprintf("%s is owned by uid %d, not you (uid %d)", path, st.Uid, uid),
				fix: "sudo chown -R " + strconv.Itoa(uid) + " " + dir})
		}
		switch {
		case info.IsDir():
			if info.Mode().Perm() != 0o700 {
				problems = append(problems, check{status: "PROBLEM", what: fmt.Sprintf("%s has mode %04o, want 0700", path, info.Mode().Perm()), fix: "chmod 700 " + path})
			}
		case info.Mode().IsRegular():
			if info.Mode().Perm()&0o077 != 0 {
				problems = append(problems, check{status: "PROBLEM", what: fmt.Sprintf("%s has mode %04o, want 0600", path, info.Mode().Perm()), fix: "chmod 600 " + path})
			}
		default:
			problems = append(problems, check{status: "PROBLEM", what: path + " is not a regular file or directory", fix: "remove it"})
		}
		return nil
	})
	if err != nil {
		problems = append(problems, check{status: "PROBLEM", what: err.Error(), fix: "check " + dir})
	}
	if len(problems) > 0 {
		return problems
	}
	return []check{{status: "OK", what: "state directory " + dir + " is yours, 0700, and its files are 0600"}}
}

// deviceGroup is the name (or number) of a device node's group.
func deviceGroup(fi os.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	gid := strconv.FormatUint(uint64(st.Gid), 10)
	if g, err := user.LookupGroupId(gid); err == nil {
		return g.Name
	}
	return gid
}

// groupFix tells how to join group, or that a new login is needed when the
// user is a member who joined after this session started.
func groupFix(group, otherwise string) string {
	u, err := user.Current()
	if err != nil {
		return otherwise
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return otherwise
	}
	member, _ := u.GroupIds()
	gid, _ := strconv.Atoi(g.Gid)
	session, _ := os.Getgroups()
	switch {
	case slices.Contains(member, g.Gid) && !slices.Contains(session, gid):
		return fmt.Sprintf("you are in group %s but this login session predates it: log out and in again (or run newgrp %s)", group, group)
	case slices.Contains(member, g.Gid):
		return fmt.Sprintf("you are in group %s, but the device mode does not let the group read and write it; %s", group, otherwise)
	}
	return fmt.Sprintf("sudo usermod -aG %s %s, then log out and in again", group, u.Username)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func fileExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

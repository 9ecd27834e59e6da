// Package doctor checks whether this machine and this user can run the
// virtual key the way "virtkey run" is asked to: the device files, the
// presence provider, the TPM and the state directory. Each check says what
// it found and, for a problem, how to fix it.
//
// The advice for a /dev/uhid that cannot be opened lives here only:
// "virtkey run" fails with [UHIDError], "virtkey doctor" reports [UHID],
// and both use the same words.
package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strconv"
	"syscall"

	"github.com/virtkey/virtkey/hid/uhid"
	"github.com/virtkey/virtkey/tpmkeys"
)

// DefaultTTY is the controlling terminal --presence terminal asks on.
const DefaultTTY = "/dev/tty"

// Status is the outcome of a check.
type Status string

// The outcomes.
const (
	OK      Status = "OK"
	Problem Status = "PROBLEM"
	Skip    Status = "SKIP" // not needed in this mode
)

// Check is the outcome of one check. Its JSON form is part of
// "virtkey doctor --json".
type Check struct {
	Status Status `json:"status"`
	// Check names what was checked: "uhid", "tpm", "presence" or
	// "state-dir".
	Check string `json:"check"`
	What  string `json:"what"`
	Fix   string `json:"fix,omitempty"` // for a problem
}

// Setup is what "virtkey run" would use, as its flags say (doctor reads the
// same flags with the same defaults), and where the machine's device files
// are.
type Setup struct {
	Transport string // "uhid" or "udp"
	Keystore  string // "software", "tpm" or "tpm+eddsa"
	StateDir  string
	TPM       string // --tpm: "" (the default devices), a path or tcp://HOST:PORT
	Presence  string // "terminal", "pinentry", "notify" or "auto"

	// Where the machine's device files are; empty means the real ones.
	UHIDPath   string   // the uhid device ([uhid.DefaultPath])
	TTYPath    string   // the controlling terminal ([DefaultTTY])
	TPMDevices []string // tried in order when TPM is "" ([tpmkeys.DefaultTPMDevices])
}

// Run runs the checks Setup needs, in the order they matter to "virtkey
// run": the transport, the presence provider, the key store, the state
// directory. A check that the mode does not need is reported as [Skip].
func Run(ctx context.Context, s Setup) []Check {
	if s.UHIDPath == "" {
		s.UHIDPath = uhid.DefaultPath
	}
	if s.TTYPath == "" {
		s.TTYPath = DefaultTTY
	}
	if s.TPMDevices == nil {
		s.TPMDevices = tpmkeys.DefaultTPMDevices
	}
	var checks []Check
	if s.Transport == "uhid" {
		checks = append(checks, UHID(s.UHIDPath))
	} else {
		checks = append(checks, Check{Status: Skip, Check: "uhid", What: s.UHIDPath + ": not needed (--transport " + s.Transport + ")"})
	}
	checks = append(checks, presenceCheck(s))
	if s.Keystore == "tpm" || s.Keystore == "tpm+eddsa" {
		checks = append(checks, tpmChecks(ctx, s)...)
	} else {
		what := "TPM: not needed (--keystore " + s.Keystore + ")"
		if s.TPM != "" {
			what += "; add --keystore tpm to check --tpm " + s.TPM
		}
		checks = append(checks, Check{Status: Skip, Check: "tpm", What: what})
	}
	checks = append(checks, stateDirChecks(s.StateDir)...)
	return append(checks, stateDBChecks(s.StateDir)...)
}

// Problems counts the checks that found a problem.
func Problems(checks []Check) int {
	n := 0
	for _, c := range checks {
		if c.Status == Problem {
			n++
		}
	}
	return n
}

// Report is the JSON form of a doctor run.
type Report struct {
	OK       bool    `json:"ok"`
	Problems int     `json:"problems"`
	Checks   []Check `json:"checks"`
}

// Print writes the checks, one line each ("PROBLEM  what — fix: how"), or
// as one JSON [Report].
func Print(w io.Writer, checks []Check, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		n := Problems(checks)
		return enc.Encode(Report{OK: n == 0, Problems: n, Checks: checks})
	}
	for _, c := range checks {
		line := fmt.Sprintf("%-8s %s", c.Status, c.What)
		if c.Status == Problem {
			line += " — fix: " + c.Fix
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}

// nodeGroup is the name (or number) of a file's group, "" if unknown.
func nodeGroup(fi os.FileInfo) string {
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
// user is a member who joined after this session started; otherwise is the
// advice when the group does not help (it is root's, or unknown).
func groupFix(group, otherwise string) string {
	if group == "" || group == "root" {
		return otherwise
	}
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
	return fmt.Sprintf("sudo usermod -aG %s %s, then log out and in again (or run newgrp %s)", group, u.Username, group)
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

package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"

	"golang.org/x/sys/unix"
)

// uhidRuleFix is how to give the virtkey group /dev/uhid (README "Real key
// quick start" says the same).
const uhidRuleFix = "give the virtkey group access with the udev rule in contrib/udev and join the group: " +
	"sudo install -m 0644 contrib/udev/70-virtkey-uhid.rules /etc/udev/rules.d/ && " +
	"sudo groupadd -f --system virtkey && sudo usermod -aG virtkey \"$USER\" && " +
	"sudo udevadm control --reload && sudo udevadm trigger --name-match=uhid; " +
	"then log in again (or start a shell with: newgrp virtkey)"

// udpAlternative ends run's uhid errors.
const udpAlternative = "or serve the key over UDP instead (for CTAP clients that speak it, such as python-fido2 and the virtkey CLI): --transport udp"

// UHID checks that the uhid device at path exists and this user may open
// it for reading and writing.
func UHID(path string) Check {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return uhidMissing(path)
	case err != nil:
		return Check{Status: Problem, Check: "uhid", What: path + ": " + err.Error(), Fix: "check the device node"}
	case fi.Mode()&fs.ModeCharDevice == 0:
		return Check{Status: Problem, Check: "uhid", What: path + " is not a character device", Fix: "remove it and reload the uhid module"}
	case unix.Access(path, unix.R_OK|unix.W_OK) == nil:
		return Check{Status: OK, Check: "uhid", What: path + " exists and you can read and write it"}
	}
	return uhidDenied(path, fi)
}

// UHIDError explains why the uhid device at path could not be opened and
// what fixes it, in the words of [UHID].
func UHIDError(path string, err error) error {
	var c Check
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c = uhidMissing(path)
	case errors.Is(err, fs.ErrPermission):
		fi, _ := os.Stat(path)
		c = uhidDenied(path, fi)
	default:
		return fmt.Errorf("--transport uhid: %w", err)
	}
	return fmt.Errorf("--transport uhid: %s (%v)\n  fix: %s\n  %s", c.What, err, c.Fix, udpAlternative)
}

func uhidMissing(path string) Check {
	return Check{Status: Problem, Check: "uhid",
		What: path + " does not exist: the kernel's uhid module is not loaded",
		Fix:  "sudo modprobe uhid, and to load it at boot: echo uhid | sudo tee /etc/modules-load.d/uhid.conf"}
}

// uhidDenied is the problem of a uhid node this user cannot open; fi may be
// nil when the node could not be examined.
func uhidDenied(path string, fi os.FileInfo) Check {
	who := "this user"
	if u, err := user.Current(); err == nil {
		who = "user " + u.Username
	}
	mode, group := "unknown", ""
	if fi != nil {
		mode, group = fi.Mode().String(), nodeGroup(fi)
	}
	return Check{Status: Problem, Check: "uhid",
		What: fmt.Sprintf("%s cannot be opened for reading and writing by %s (mode %s, group %s)", path, who, mode, orUnknown(group)),
		Fix:  groupFix(group, uhidRuleFix)}
}

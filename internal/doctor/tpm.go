package doctor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/virtkey/virtkey/tpmkeys"
)

// tpmChecks checks the TPM device (or swtpm socket) and, if the state
// directory is tied to a TPM, that it is this one.
func tpmChecks(ctx context.Context, s Setup) []Check {
	var out []Check
	devices := s.TPMDevices
	if s.TPM != "" {
		devices = nil
		if filepath.IsAbs(s.TPM) {
			devices = []string{s.TPM}
		}
	}
	spec := s.TPM // what to open: a tcp:// TPM has no device node to check first
	var first *Check
	firstPath := ""
	for _, dev := range devices {
		c := tpmDevice(dev)
		if c.Status == OK {
			out, spec, first = append(out, c), dev, nil
			break
		}
		// Report the first device that exists (or, if none does, the first).
		if first == nil || (!fileExists(firstPath) && fileExists(dev)) {
			first, firstPath = &c, dev
		}
	}
	if first != nil {
		return append(out, *first)
	}
	open, err := tpmkeys.OpenerFor(spec)
	if err != nil {
		return append(out, Check{Status: Problem, Check: "tpm", What: err.Error(), Fix: "give --tpm a device path or tcp://HOST:PORT"})
	}
	switch err := tpmkeys.CheckTPM(ctx, s.StateDir, open); {
	case err == nil:
		what := "TPM answers and can create the storage root key"
		if fileExists(filepath.Join(s.StateDir, tpmkeys.TPMStateFileName)) {
			what += "; it is the TPM the state directory was set up with"
		}
		out = append(out, Check{Status: OK, Check: "tpm", What: what})
	case errors.Is(err, tpmkeys.ErrTPMMismatch):
		out = append(out, Check{Status: Problem, Check: "tpm", What: err.Error(),
			Fix: "use the TPM the passkeys were made on; or, accepting that they are lost, move " + s.StateDir + " away and register new passkeys"})
	default:
		out = append(out, Check{Status: Problem, Check: "tpm", What: "the TPM does not work: " + err.Error(),
			Fix: "check that no other program holds /dev/tpm0 (prefer /dev/tpmrm0), and the TPM's owner hierarchy has no password"})
	}
	return out
}

// tpmDevice checks a TPM device node.
func tpmDevice(dev string) Check {
	fi, err := os.Stat(dev)
	if err != nil {
		return Check{Status: Problem, Check: "tpm", What: dev + " does not exist (no TPM, or its driver is not loaded)",
			Fix: "enable the TPM in the firmware setup; without a TPM use --keystore software"}
	}
	if unix.Access(dev, unix.R_OK|unix.W_OK) != nil {
		group := nodeGroup(fi)
		fix := groupFix(group, "make the device group-accessible (Debian/Ubuntu ship a udev rule giving /dev/tpmrm0 to group tss, mode 0660) and join that group")
		return Check{Status: Problem, Check: "tpm", What: fmt.Sprintf("%s is not readable and writable by you (mode %v, group %s)", dev, fi.Mode().Perm(), orUnknown(group)), Fix: fix}
	}
	return Check{Status: OK, Check: "tpm", What: dev + " exists and you can read and write it"}
}

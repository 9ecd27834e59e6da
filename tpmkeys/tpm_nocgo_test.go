//go:build !cgo

package tpmkeys

import (
	"os"
	"strings"
	"testing"
)

// TestTPMSimulatorNeedsCgo stands in for the simulator tests
// (tpm_sim_test.go), which need cgo and libcrypto (libssl-dev).
func TestTPMSimulatorNeedsCgo(t *testing.T) {
	msg := "the TPM simulator tests need cgo (CGO_ENABLED=1, a C compiler and libssl-dev)"
	if v := strings.ToLower(os.Getenv("CI")); v == "true" || v == "1" {
		t.Fatal("CI=true: " + msg)
	}
	t.Skip(msg)
}

//go:build !cgo

package tpmkeys

import (
	"testing"

	"github.com/virtkey/virtkey/internal/testkit"
)

// TestTPMSimulatorNeedsCgo stands in for the simulator tests
// (tpm_sim_test.go), which need cgo and libcrypto (libssl-dev).
func TestTPMSimulatorNeedsCgo(t *testing.T) {
	testkit.MissingTool(t, "the TPM simulator tests need cgo (CGO_ENABLED=1, a C compiler and libssl-dev)")
}

package manage

import (
	"os"
	"testing"

	"github.com/virtkey/virtkey/internal/vktest"
)

// TestMain lets vktest re-run this test binary as a probe of another user
// (TestRefuseAnotherUsersSocket).
func TestMain(m *testing.M) { os.Exit(vktest.Run(m)) }

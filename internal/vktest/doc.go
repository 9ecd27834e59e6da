// Package vktest runs the virtkey binary for end-to-end tests. It is for
// tests only (internal/e2e, internal/fido2tools, internal/tpmtest and the
// cmd/virtkey tests import it): its functions take a [testing.TB] and fail
// or skip the test instead of returning errors.
//
// # The binary
//
// [Binary] builds ./cmd/virtkey once per test process, into a temporary
// directory that [Run] removes after the tests:
//
//	func TestMain(m *testing.M) { os.Exit(vktest.Run(m)) }
//
// When the test binary is built with -race, so is virtkey: a data race in
// the server then makes it exit 66 at SIGTERM and [Key.Stop] fails the test.
// VIRTKEY_E2E_RACE=0 turns that off. VIRTKEY_BIN=/path/to/virtkey tests a
// prebuilt binary instead. In -short mode every test that needs the binary
// is skipped.
//
// # Keys
//
// [Start] runs `virtkey run --transport udp --presence auto --reset-window 0`
// on a free 127.0.0.1 UDP port with a given state directory, and returns
// once the key answers a CTAPHID INIT. The process's output is kept for
// failure reports ([Key.Output]). At cleanup, or with [Key.Stop], it gets
// SIGTERM and must exit with status 0 within 5 s and without a race report;
// [Key.Kill] is a crash (SIGKILL) and [Key.Restart] starts the key again on
// the same state directory.
//
// [StartBinary] and [Key.Terminate] are the same without a testing.TB,
// for testscript commands (cmd/virtkey's scripts run the test binary
// itself as virtkey).
//
// # Clients
//
// [Dial] (or [Key.Client]) opens a ctap2/client Device on a UDP key,
// closed at cleanup; [Open] is the same for callers without a testing.TB.
// [ServeUDP] serves an in-process key (package inproc) on a free loopback
// port, for tests that need a key but not the binary.
//
// # Tools
//
// A test that needs an external program calls [RequireTool] (or
// [MissingTool] for something that is not a program on PATH). It skips,
// except under CI=true, where a missing tool fails the test:
// scripts/install-test-deps.sh installs them all.
package vktest

package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/virtkey/virtkey/cose"
	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/hid/udp"
	"github.com/virtkey/virtkey/internal/server"
	"github.com/virtkey/virtkey/internal/vktest"
)

// The CLI is tested by the scripts in testdata/*.txtar (testscript, as
// filippo.io/age tests its CLI). Each "virtkey" in a script re-runs this
// test binary as virtkey, with the device files of the test environment
// instead of the machine's:
//
//	VIRTKEY_TEST_UHID  the uhid device (default in scripts: $WORK/no-uhid)
//	VIRTKEY_TEST_TTY   the controlling terminal, for presence and PINs ($WORK/no-tty)
//	VIRTKEY_TEST_TPM   the default TPM devices, colon-separated ($WORK/tpmrm0:$WORK/tpm0)
//	VIRTKEY_TEST_SCRYPT_WORK_FACTOR  the backup's scrypt log2(N) (10 in scripts: fast)
//
// so that nothing a script checks depends on the host. The commands the
// scripts have besides testscript's own:
//
//	exits CODE virtkey ARGS...   run virtkey and require exit status CODE
//	startkey [RUN FLAGS...]      start "virtkey run" over UDP on a free port (state
//	                             $WORK/state, --presence auto --reset-window 0
//	                             --log-level info, unless the flags say otherwise);
//	                             sets $ADDR (HOST:PORT), $DEVICE and $VIRTKEY_DEVICE
//	                             (udp:HOST:PORT)
//	stopkey                      SIGTERM: it must exit 0, without a race report
//	signalkey USR1               send the key a signal (USR1: a power cycle)
//	powercycle                   send the key the UDP magic reboot datagram
//	mkcred RP USER               make a discoverable credential (PIN: $VIRTKEY_PIN);
//	                             sets $ID_USER (base64url), $IDHEX_USER and $IDSTD_USER

var update = flag.Bool("update", false, "rewrite the expected output in testdata/*.txtar from what virtkey prints")

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"virtkey": func() { os.Exit(mainEnv(testEnv(), os.Args[1:])) },
	})
}

// testEnv is the environment of virtkey in a script: the process's, with
// the device files named by the VIRTKEY_TEST_* variables.
func testEnv() *env {
	e := osEnv()
	e.host = server.Host{UHID: os.Getenv("VIRTKEY_TEST_UHID"), TTY: os.Getenv("VIRTKEY_TEST_TTY")}
	if v := os.Getenv("VIRTKEY_TEST_TPM"); v != "" {
		e.host.TPMDevices = strings.Split(v, ":")
	}
	if v, err := strconv.Atoi(os.Getenv("VIRTKEY_TEST_SCRYPT_WORK_FACTOR")); err == nil {
		e.scryptWorkFactor = v
	}
	if tty := e.host.TTY; tty != "" {
		e.OpenTTY = func() (*os.File, error) { return os.OpenFile(tty, os.O_RDWR, 0) }
	}
	return e
}

func TestScripts(t *testing.T) {
	t.Parallel()
	keys := &scriptKeys{m: map[*testscript.TestScript]*vktest.Key{}}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata",
		UpdateScripts:       *update,
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("VIRTKEY_TEST_UHID", filepath.Join(e.WorkDir, "no-uhid"))
			e.Setenv("VIRTKEY_TEST_TTY", filepath.Join(e.WorkDir, "no-tty"))
			e.Setenv("VIRTKEY_TEST_TPM", filepath.Join(e.WorkDir, "tpmrm0")+":"+filepath.Join(e.WorkDir, "tpm0"))
			e.Setenv("XDG_STATE_HOME", filepath.Join(e.WorkDir, "xdg"))
			e.Setenv("XDG_RUNTIME_DIR", e.WorkDir)            // no session D-Bus there
			e.Setenv("VIRTKEY_TEST_SCRYPT_WORK_FACTOR", "10") // backups: ~1 ms instead of ~1 s
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":      cmdExits,
			"startkey":   keys.start,
			"stopkey":    keys.stop,
			"signalkey":  keys.signal,
			"powercycle": keys.powerCycle,
			"mkcred":     keys.mkcred,
		},
	})
}

func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE command [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: %v", err)
	}
	got := 0
	var ee *exec.ExitError
	switch err := ts.Exec(args[1], args[2:]...); {
	case errors.As(err, &ee):
		got = ee.ExitCode()
	case err != nil:
		ts.Fatalf("%s: %v", args[1], err)
	}
	if got != want {
		ts.Fatalf("exit status %d, want %d", got, want)
	}
}

// scriptKeys are the keys the scripts started, one per script at most.
type scriptKeys struct {
	mu sync.Mutex
	m  map[*testscript.TestScript]*vktest.Key
}

func (s *scriptKeys) key(ts *testscript.TestScript) *vktest.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.m[ts]
	if k == nil {
		ts.Fatalf("no key started (startkey)")
	}
	return k
}

func (s *scriptKeys) start(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! startkey")
	}
	bin, err := exec.LookPath("virtkey")
	if err != nil {
		ts.Fatalf("%v", err)
	}
	k, err := vktest.StartBinary(bin, ts.MkAbs("state"), append([]string{"--log-level", "info"}, args...)...)
	if err != nil {
		ts.Fatalf("startkey: %v", err)
	}
	s.mu.Lock()
	s.m[ts] = k
	s.mu.Unlock()
	ts.Defer(func() {
		if err := k.Terminate(); err != nil && !strings.Contains(err.Error(), "exited on its own") {
			ts.Logf("%v", err)
		}
	})
	ts.Setenv("ADDR", k.Addr)
	ts.Setenv("DEVICE", "udp:"+k.Addr)
	ts.Setenv("VIRTKEY_DEVICE", "udp:"+k.Addr)
}

func (s *scriptKeys) stop(ts *testscript.TestScript, neg bool, args []string) {
	k := s.key(ts)
	if err := k.Terminate(); err != nil {
		ts.Fatalf("%v", err)
	}
	ts.Logf("key output:\n%s", k.Output())
}

func (s *scriptKeys) signal(ts *testscript.TestScript, neg bool, args []string) {
	sig := map[string]syscall.Signal{"USR1": syscall.SIGUSR1, "TERM": syscall.SIGTERM}[strings.Join(args, "")]
	if neg || sig == 0 {
		ts.Fatalf("usage: signalkey USR1|TERM")
	}
	k := s.key(ts)
	cycles := strings.Count(k.Output(), powerCycleLog)
	if err := k.Signal(sig); err != nil {
		ts.Fatalf("%v", err)
	}
	if sig != syscall.SIGUSR1 {
		return
	}
	// The signal is handled on its own goroutine: wait for its log line.
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(k.Output(), powerCycleLog) == cycles {
		if time.Now().After(deadline) {
			ts.Fatalf("the key did not log a power cycle:\n%s", k.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitReady(ts, k)
}

// powerCycleLog is what "virtkey run" logs (at info level) on SIGUSR1.
const powerCycleLog = `msg="power cycle"`

func (s *scriptKeys) powerCycle(ts *testscript.TestScript, neg bool, args []string) {
	k := s.key(ts)
	conn, err := udp.Dial(k.Addr)
	if err != nil {
		ts.Fatalf("%v", err)
	}
	defer conn.Close()
	// The key handles the datagram before any later one.
	if err := conn.Reboot(); err != nil {
		ts.Fatalf("%v", err)
	}
	waitReady(ts, k)
}

// waitReady requires the key to answer INIT.
func waitReady(ts *testscript.TestScript, k *vktest.Key) {
	if _, err := vktest.InitChannel(k.Addr, 5*time.Second); err != nil {
		ts.Fatalf("the key does not answer: %v\n%s", err, k.Output())
	}
}

func (s *scriptKeys) mkcred(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: mkcred RP USER")
	}
	rp, user := args[0], args[1]
	d, closeConn, err := vktest.Open(s.key(ts).Addr)
	if err != nil {
		ts.Fatalf("%v", err)
	}
	defer closeConn()
	ctx := context.Background()
	var tok *client.PINToken
	if pin := ts.Getenv("VIRTKEY_PIN"); pin != "" {
		if tok, err = d.GetPINToken(ctx, pin, client.PermMakeCredential, rp); err != nil {
			ts.Fatalf("%v", err)
		}
	}
	alg, rk := int64(cose.AlgES256), true
	att, err := d.MakeCredential(ctx, &ctap2.MakeCredentialRequest{
		ClientDataHash:   bytes.Repeat([]byte{1}, 32),
		RP:               &ctap2.RPEntity{ID: rp},
		User:             &ctap2.UserEntity{ID: []byte("id-" + user), Name: user, DisplayName: "Display " + user},
		PubKeyCredParams: []ctap2.CredParam{{Type: "public-key", Alg: &alg}},
		Options:          &ctap2.RequestOptions{RK: &rk},
	}, tok)
	if err != nil {
		ts.Fatalf("makeCredential: %v", err)
	}
	id := att.AuthData.CredentialID
	ts.Setenv("ID_"+user, base64.RawURLEncoding.EncodeToString(id))
	ts.Setenv("IDHEX_"+user, hex.EncodeToString(id))
	ts.Setenv("IDSTD_"+user, base64.StdEncoding.EncodeToString(id))
}

package store

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// crashEnv names the database the crash helper writes to. When it is set,
// TestCrashHelper runs as the child process of TestCrashSafety.
const crashEnv = "VIRTKEY_STORE_CRASH_DB"

const crashCounters = 3

func crashID(i int) []byte        { return fmt.Appendf(nil, "cred-%06d", i) }
func crashRecord(i int) []byte    { return bytes.Repeat(fmt.Appendf(nil, "record %d;", i), 1+i%40) }
func crashRP(i int) []byte        { return rp(fmt.Sprintf("rp%d.example", i%7)) }
func crashCounterID(j int) []byte { return fmt.Appendf(nil, "counter-%d", j) }

// TestCrashHelper is the child: starting at credential number $start it
// writes credentials (every third one is later moved to another RP) and
// takes counters, acknowledging each completed operation on stdout, until
// it is killed.
func TestCrashHelper(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("child process of TestCrashSafety")
	}
	start, _ := strconv.Atoi(os.Getenv(crashEnv + "_START"))
	d, err := Open(path, WithCounterReserve(16), WithLockTimeout(5*time.Second))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	ack := func(format string, args ...any) {
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush() // an ack leaves the process only after the operation returned
	}
	for i := start; ; i++ {
		if err := d.PutCredential(crashID(i), crashRP(i), crashRecord(i)); err != nil {
			ack("error %v", err)
			os.Exit(2)
		}
		ack("cred %d", i)
		if i%3 == 0 && i > start {
			j := i - 1 // move the previous credential to another RP
			if err := d.PutCredential(crashID(j), crashRP(j+1), crashRecord(j+1)); err != nil {
				ack("error %v", err)
				os.Exit(2)
			}
			ack("moved %d", j)
		}
		for j := range crashCounters {
			v, err := d.NextCounter(crashCounterID(j))
			if err != nil {
				ack("error %v", err)
				os.Exit(2)
			}
			ack("ctr %d %d", j, v)
		}
	}
}

// TestCrashSafety kills a writer with SIGKILL at random moments, then
// checks that the store opens, every acknowledged write is intact and
// indexed, and every counter resumes above its last acknowledged value.
// SIGKILL tests process crashes; power loss additionally relies on
// bbolt's fsync on commit, which this store never disables.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	t.Parallel()
	path := t.TempDir() + "/state.db"
	creds := map[int]int{} // credential number → record number it holds
	counters := make([]uint32, crashCounters)
	next := 0
	for round := 0; round < 4; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+path, fmt.Sprintf("%s_START=%d", crashEnv, next))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The kill comes 150–400 ms after the first acknowledgement, so a
		// slow start (a loaded machine, -race) does not eat the round.
		var killAt time.Time
		killed := false
		sc := bufio.NewScanner(stdout)
		acks := 0
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 2 && f[0] == "cred":
				i, _ := strconv.Atoi(f[1])
				creds[i] = i
				next = i + 1
			case len(f) == 2 && f[0] == "moved":
				i, _ := strconv.Atoi(f[1])
				creds[i] = i + 1
			case len(f) == 3 && f[0] == "ctr":
				j, _ := strconv.Atoi(f[1])
				v, _ := strconv.ParseUint(f[2], 10, 32)
				if uint32(v) <= counters[j] {
					t.Fatalf("child handed out counter %d after %d", v, counters[j])
				}
				counters[j] = uint32(v)
			case len(f) > 0 && f[0] == "error":
				t.Fatalf("child: %s", sc.Text())
			default:
				continue // test framework chatter
			}
			acks++
			if killAt.IsZero() {
				killAt = time.Now().Add(time.Duration(150+rand.IntN(250)) * time.Millisecond)
			}
			if !killed && time.Now().After(killAt) {
				cmd.Process.Signal(syscall.SIGKILL) // mid-write: the child never pauses
				killed = true
			}
		}
		io.Copy(io.Discard, stdout)
		err = cmd.Wait()
		if !killed {
			t.Fatalf("child exited before the kill: %v\n%s", err, stderr.String())
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("child did not die by SIGKILL: %v\n%s", err, stderr.String())
		}
		if acks < 10 {
			t.Fatalf("round %d: only %d acknowledgements", round, acks)
		}
		t.Logf("round %d: killed after %d acks, %d credentials", round, acks, len(creds))
		verifyAfterCrash(t, path, creds, counters)
	}
}

func verifyAfterCrash(t *testing.T, path string, creds map[int]int, counters []uint32) {
	t.Helper()
	d, err := Open(path, WithCounterReserve(16))
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer d.Close()
	if err := d.bolt.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	}); err != nil {
		t.Fatalf("consistency check: %v", err)
	}
	for i, r := range creds {
		rec, ok, err := d.Credential(crashID(i))
		if err != nil || !ok {
			t.Fatalf("acknowledged credential %d lost: %v", i, err)
		}
		// A move the child did not get to acknowledge may or may not have
		// committed: the record is then the old or the new one.
		if !bytes.Equal(rec, crashRecord(r)) {
			if r != i || !bytes.Equal(rec, crashRecord(i+1)) {
				t.Fatalf("credential %d holds %.20q, want record %d", i, rec, r)
			}
			r = i + 1
		}
		recs, err := d.CredentialsByRP(crashRP(r))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(recs, func(x []byte) bool { return bytes.Equal(x, rec) }) {
			t.Fatalf("credential %d missing from its RP's index", i)
		}
	}
	for j, last := range counters {
		v, err := d.NextCounter(crashCounterID(j))
		if err != nil {
			t.Fatal(err)
		}
		if v <= last {
			t.Fatalf("counter %d resumed at %d, not above acknowledged %d", j, v, last)
		}
		if v > last+maxCounterReserve+1 {
			t.Errorf("counter %d skipped from %d to %d (more than the largest reservation)", j, last, v)
		}
		counters[j] = v
	}
}

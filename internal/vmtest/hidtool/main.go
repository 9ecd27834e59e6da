//go:build linux

// Command hidtool is the VM harness's guest-side helper (internal/vmtest):
// small CTAPHID and tty chores the scenario scripts in testdata/vm cannot do
// with the stock tools.
//
//	hidtool find [-name virtkey] [-timeout 20s] [-gone]  print /dev/hidrawN of the key (or wait until none is left)
//	hidtool uhidprobe                                    create a uhid device, find its hidraw node, pass a report each way
//	hidtool ping -dev D                                  CTAPHID INIT, PING and CBOR getInfo
//	hidtool partial -dev D [-hold 30s]                   start a CBOR message and never finish it (a client dying mid-transaction)
//	hidtool garbage -dev D [-n 300]                      write malformed reports, then check the key still answers
//	hidtool expect [-pin PIN] [-timeout 60s] -- CMD ...  run CMD on a new pty and answer its PIN prompts
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/virtkey/virtkey/hid"
	"github.com/virtkey/virtkey/hid/hidraw"
	"github.com/virtkey/virtkey/hid/uhid"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "find":
		err = cmdFind(args)
	case "uhidprobe":
		err = cmdUhidProbe(args)
	case "ping":
		err = cmdPing(args)
	case "partial":
		err = cmdPartial(args)
	case "garbage":
		err = cmdGarbage(args)
	case "expect":
		var code int
		code, err = cmdExpect(args)
		if err == nil {
			os.Exit(code)
		}
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "hidtool %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: hidtool find|uhidprobe|ping|partial|garbage|expect [flags]")
	os.Exit(2)
}

// ---- hidraw discovery and I/O: package hid/hidraw ----

// waitNode waits until match finds a FIDO hidraw node whose /dev file
// exists.
func waitNode(timeout time.Duration, match func(hidraw.Info) bool) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		found, err := hidraw.Find()
		if err != nil {
			return "", err
		}
		for _, n := range found {
			if match(n) {
				if _, err := os.Stat(n.Path); err == nil {
					return n.Path, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no matching hidraw node after %v (FIDO nodes: %+v)", timeout, found)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func cmdFind(args []string) error {
	fs := flag.NewFlagSet("find", flag.ExitOnError)
	name := fs.String("name", "virtkey", "substring of HID_NAME")
	timeout := fs.Duration("timeout", 20*time.Second, "how long to wait")
	gone := fs.Bool("gone", false, "wait until no node matches")
	fs.Parse(args)
	match := func(n hidraw.Info) bool { return strings.Contains(n.Name, *name) }
	if *gone {
		deadline := time.Now().Add(*timeout)
		for {
			found, err := hidraw.Find()
			if err != nil {
				return err
			}
			left := 0
			for _, n := range found {
				if match(n) {
					left++
				}
			}
			if left == 0 {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%d matching hidraw nodes still there after %v", left, *timeout)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	dev, err := waitNode(*timeout, match)
	if err != nil {
		return err
	}
	fmt.Println(dev)
	return nil
}

// readReport returns the next input report, or nil after timeout.
func readReport(h *hidraw.File, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r, err := h.ReadReport(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, nil
	}
	return r, err
}

// check runs INIT, PING and CBOR getInfo on a fresh channel.
func check(ctx context.Context, h *hidraw.File) (string, error) {
	c := hid.NewClient(h)
	t0 := time.Now()
	if err := c.Init(ctx); err != nil {
		return "", err
	}
	data := make([]byte, 300)
	rand.Read(data)
	echo, err := c.Ping(ctx, data)
	if err != nil {
		return "", fmt.Errorf("PING: %w", err)
	}
	if !bytes.Equal(echo, data) {
		return "", errors.New("PING: the echo differs")
	}
	info, err := c.CBOR(ctx, []byte{0x04})
	if err != nil {
		return "", fmt.Errorf("getInfo: %w", err)
	}
	if len(info) < 2 || info[0] != 0 {
		return "", fmt.Errorf("getInfo: status % x", info[:min(1, len(info))])
	}
	return fmt.Sprintf("cid=%08x getInfo=%d bytes in %v", c.CID(), len(info)-1, time.Since(t0).Round(time.Millisecond)), nil
}

func cmdPing(args []string) error {
	fs := flag.NewFlagSet("ping", flag.ExitOnError)
	dev := fs.String("dev", "", "hidraw node")
	timeout := fs.Duration("timeout", 10*time.Second, "")
	fs.Parse(args)
	h, err := hidraw.OpenFile(*dev)
	if err != nil {
		return err
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	s, err := check(ctx, h)
	if err != nil {
		return err
	}
	fmt.Println("ok", s)
	return nil
}

// openInit opens the hidraw node at path and allocates a CTAPHID channel
// on it (INIT within 10 s).
func openInit(path string) (*hidraw.File, *hid.Client, error) {
	h, err := hidraw.OpenFile(path)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := hid.NewClient(h)
	if err := c.Init(ctx); err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("INIT: %w", err)
	}
	return h, c, nil
}

// cmdPartial allocates a channel and sends the first packet of a CBOR
// message whose length needs more packets, then holds the device open,
// printing what arrives, until -hold passes or the device goes away.
func cmdPartial(args []string) error {
	fs := flag.NewFlagSet("partial", flag.ExitOnError)
	dev := fs.String("dev", "", "hidraw node")
	hold := fs.Duration("hold", 30*time.Second, "how long to hold the device open afterwards")
	fs.Parse(args)
	h, c, err := openInit(*dev)
	if err != nil {
		return err
	}
	defer h.Close()
	// makeCredential, 300 bytes announced, only the first 57 sent.
	msg := make([]byte, 300)
	msg[0] = 0x01
	pkts := hid.Fragment(c.CID(), hid.CmdCBOR, msg)
	if err := h.WriteReport(pkts[0]); err != nil {
		return err
	}
	fmt.Printf("PARTIAL cid=%08x sent 1 of %d packets\n", c.CID(), len(pkts))
	deadline := time.Now().Add(*hold)
	for time.Now().Before(deadline) {
		r, err := readReport(h, 200*time.Millisecond)
		if err != nil {
			fmt.Printf("READ-ERROR %v\n", err)
			return nil
		}
		if len(r) >= 7 && binary.BigEndian.Uint32(r) == c.CID() {
			fmt.Printf("GOT cmd=%#02x payload=% x\n", r[4], r[7:8])
		}
	}
	fmt.Println("HOLD-EXPIRED")
	return nil
}

func cmdGarbage(args []string) error {
	fs := flag.NewFlagSet("garbage", flag.ExitOnError)
	dev := fs.String("dev", "", "hidraw node")
	n := fs.Int("n", 300, "malformed reports to write")
	fs.Parse(args)
	// A real channel to aim some of the garbage at.
	h, c, err := openInit(*dev)
	if err != nil {
		return fmt.Errorf("before the garbage: %w", err)
	}
	defer h.Close()
	seed, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	rng := mrand.New(mrand.NewPCG(seed.Uint64(), 1))
	fmt.Printf("seed=%d\n", seed)
	cid := c.CID()
	kinds := map[string]int{}
	writeErrs := 0
	replies := 0
	for i := 0; i < *n; i++ {
		r := make([]byte, hid.ReportSize)
		kind := rng.IntN(10)
		switch kind {
		case 0: // random bytes
			for j := range r {
				r[j] = byte(rng.UintN(256))
			}
		case 1: // continuation packet with no message started
			binary.BigEndian.PutUint32(r, cid)
			r[4] = byte(rng.IntN(0x80))
		case 2: // init packet announcing more than a message can hold
			binary.BigEndian.PutUint32(r, cid)
			r[4] = hid.CmdCBOR
			binary.BigEndian.PutUint16(r[5:], 0xFFFF)
		case 3: // unknown command
			binary.BigEndian.PutUint32(r, cid)
			r[4] = 0x80 | byte(0x40+rng.IntN(0x3F))
		case 4: // a non-INIT command on the broadcast channel
			binary.BigEndian.PutUint32(r, hid.BroadcastCID)
			r[4] = hid.CmdCBOR
			r[6] = 1
			r[7] = 0x04
		case 5: // channel 0
			r[4] = hid.CmdPing
			r[6] = 8
		case 6: // an unallocated channel
			binary.BigEndian.PutUint32(r, 0x7000_0000|uint32(rng.IntN(1<<24)))
			r[4] = hid.CmdPing
			r[6] = 4
		case 7: // CBOR with garbage inside
			binary.BigEndian.PutUint32(r, cid)
			r[4] = hid.CmdCBOR
			r[6] = 40
			for j := 7; j < 47; j++ {
				r[j] = byte(rng.UintN(256))
			}
		case 8: // a message cut short, then a continuation with a wrong SEQ
			binary.BigEndian.PutUint32(r, cid)
			r[4] = hid.CmdPing
			r[5], r[6] = 0x01, 0x00
			if err := h.WriteReport(r); err != nil {
				writeErrs++
			}
			r = make([]byte, hid.ReportSize)
			binary.BigEndian.PutUint32(r, cid)
			r[4] = 5
		case 9: // odd write lengths straight to hidraw
			l := []int{1, 2, 8, 33, 63, 64, 66, 100, 129}[rng.IntN(9)]
			b := make([]byte, l)
			for j := range b {
				b[j] = byte(rng.UintN(256))
			}
			b[0] = 0
			kinds["length"]++
			if _, err := h.Write(b); err != nil {
				writeErrs++
			}
			continue
		}
		kinds[fmt.Sprint(kind)]++
		if err := h.WriteReport(r); err != nil {
			writeErrs++
		}
		for { // drain whatever came back
			r, err := readReport(h, time.Millisecond)
			if err != nil {
				return fmt.Errorf("after %d garbage reports: read: %w", i+1, err)
			}
			if r == nil {
				break
			}
			replies++
		}
	}
	fmt.Printf("wrote %d malformed reports (%d write errors), %d replies\n", *n, writeErrs, replies)
	// The key may still be assembling the last partial message until its
	// message timeout: retry for a while.
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		s, err := check(ctx, h)
		cancel()
		if err == nil {
			fmt.Println("ok after garbage:", s)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the key does not answer after the garbage: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ---- uhid probe: the kernel path without virtkey's transport ----

func cmdUhidProbe(args []string) error {
	fs := flag.NewFlagSet("uhidprobe", flag.ExitOnError)
	fs.Parse(args)
	d, err := uhid.Open(uhid.Options{Name: "vktest uhid probe"})
	if err != nil {
		return err
	}
	defer d.Close()
	dev, err := waitNode(10*time.Second, func(n hidraw.Info) bool { return n.Serial == d.Serial() })
	if err != nil {
		return err
	}
	h, err := hidraw.OpenFile(dev)
	if err != nil {
		return err
	}
	defer h.Close()
	out := make([]byte, hid.ReportSize)
	rand.Read(out)
	if err := h.WriteReport(out); err != nil {
		return fmt.Errorf("hidraw write: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := d.ReadReport(ctx)
	if err != nil {
		return fmt.Errorf("uhid read: %w", err)
	}
	if !bytes.Equal(got, out) {
		return fmt.Errorf("uhid got % x, want % x", got[:8], out[:8])
	}
	in := make([]byte, hid.ReportSize)
	rand.Read(in)
	if err := d.WriteReport(in); err != nil {
		return fmt.Errorf("uhid write: %w", err)
	}
	back, err := readReport(h, 5*time.Second)
	if err != nil || back == nil {
		return fmt.Errorf("hidraw read: %v (timed out: %v)", err, back == nil)
	}
	if !bytes.Equal(back, in) {
		return fmt.Errorf("hidraw got %d bytes % x, want % x", len(back), back[:min(8, len(back))], in[:8])
	}
	fmt.Printf("ok %s (serial %s): a 64-byte report each way\n", dev, d.Serial())
	return nil
}

// ---- expect: answer PIN prompts on a pty ----

// promptRE matches a PIN prompt at the end of the output so far: "Enter
// PIN for /dev/hidraw0: " (libfido2's tools, pamu2fcfg), "Please enter the
// PIN: " (pam-u2f), and systemd's "Please enter security token PIN: (press
// TAB for no echo) ".
var promptRE = regexp.MustCompile(`(?i)pin[^\n]*:\s*(\(press TAB for no echo\)\s*)?$`)

func cmdExpect(args []string) (int, error) {
	fs := flag.NewFlagSet("expect", flag.ExitOnError)
	pin := fs.String("pin", os.Getenv("PIN"), "the answer to every prompt mentioning a PIN")
	timeout := fs.Duration("timeout", 60*time.Second, "kill the command after this long")
	fs.Parse(args)
	argv := fs.Args()
	if len(argv) == 0 {
		return 0, errors.New("no command")
	}
	master, slave, err := openPty()
	if err != nil {
		return 0, err
	}
	defer master.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		slave.Close()
		return 0, err
	}
	slave.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	output := make(chan []byte)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			if n > 0 {
				output <- append([]byte(nil), buf[:n]...)
			}
			if err != nil { // EIO once the last slave fd is closed
				close(output)
				return
			}
		}
	}()
	var pending strings.Builder
	answered := 0
	timer := time.NewTimer(*timeout)
	defer timer.Stop()
	outOpen := true
	var waitErr error
	exited := false
	for outOpen || !exited {
		select {
		case b, ok := <-output:
			if !ok {
				outOpen = false
				continue
			}
			os.Stdout.Write(bytes.ReplaceAll(b, []byte("\r"), nil))
			pending.Write(b)
			if promptRE.MatchString(pending.String()) {
				if _, err := master.Write([]byte(*pin + "\n")); err != nil {
					fmt.Fprintf(os.Stderr, "hidtool expect: answering: %v\n", err)
				}
				answered++
				pending.Reset()
				fmt.Println()
			}
		case waitErr = <-done:
			exited = true
			// Output still buffered in the pty is read until EIO; give it
			// a moment, not forever (a grandchild may hold the slave).
			timer.Reset(2 * time.Second)
		case <-timer.C:
			if !exited {
				cmd.Process.Kill()
				<-done
				fmt.Fprintf(os.Stderr, "hidtool expect: %s timed out after %v (answered %d prompts)\n", argv[0], *timeout, answered)
				return 124, nil
			}
			outOpen = false
		}
	}
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		return ee.ExitCode(), nil
	}
	if waitErr != nil {
		return 0, waitErr
	}
	return 0, nil
}

// openPty returns a new pseudo-terminal pair.
func openPty() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("ptsname: %w", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	// No echo: the PIN must not land in the logs.
	if t, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS); err == nil {
		t.Lflag &^= unix.ECHO
		unix.IoctlSetTermios(int(s.Fd()), unix.TCSETS, t)
	}
	return m, s, nil
}

package tpmkeys

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// Opener connects to a TPM. [OpenTPM] calls it once at start and again
// whenever it has to reconnect (the TPM or swtpm restarted, a device read
// failed).
type Opener func() (transport.TPMCloser, error)

// DefaultTPMDevices are tried in order when no TPM is named: the kernel's
// resource manager first (several processes can share it and it flushes our
// objects if we die), then the raw device.
var DefaultTPMDevices = []string{"/dev/tpmrm0", "/dev/tpm0"}

// OpenerFor returns the Opener for a --tpm value:
//
//   - "" tries each of [DefaultTPMDevices] in turn;
//   - a path such as /dev/tpmrm0 or /dev/tpm0 opens that character device;
//   - tcp://HOST:PORT connects to the data port of swtpm (`swtpm socket
//     --server type=tcp,…`), which takes raw TPM command frames.
//
// Every transport retries commands the TPM answers with TPM_RC_RETRY,
// TPM_RC_YIELDED or TPM_RC_TESTING.
func OpenerFor(spec string) (Opener, error) {
	switch {
	case spec == "":
		return func() (transport.TPMCloser, error) {
			var errs []error
			for _, p := range DefaultTPMDevices {
				t, err := openDevice(p)
				if err == nil {
					return t, nil
				}
				errs = append(errs, err)
			}
			return nil, deviceErrors(errs)
		}, nil
	case strings.HasPrefix(spec, "tcp://"):
		addr := strings.TrimPrefix(spec, "tcp://")
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("tpmkeys: TPM address %q: want tcp://HOST:PORT", spec)
		}
		return func() (transport.TPMCloser, error) { return dialTCP(addr) }, nil
	case strings.HasPrefix(spec, "/"):
		return func() (transport.TPMCloser, error) { return openDevice(spec) }, nil
	}
	return nil, fmt.Errorf("tpmkeys: TPM %q: want a device path (/dev/tpmrm0) or tcp://HOST:PORT", spec)
}

// deviceErrors are the failures of each default device, on one line.
type deviceErrors []error

func (e deviceErrors) Error() string {
	s := make([]string, len(e))
	for i, err := range e {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

func (e deviceErrors) Unwrap() []error { return e }

func openDevice(path string) (transport.TPMCloser, error) {
	t, err := linuxtpm.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return &retrying{TPMCloser: t}, nil
}

// tcpTimeout bounds one command on a TCP TPM (swtpm answers in milliseconds).
const (
	tcpDialTimeout = 5 * time.Second
	tcpTimeout     = 30 * time.Second
	// maxResponse bounds a TPM response; real ones are at most a few KiB.
	maxResponse = 1 << 16
)

// tcpTPM speaks raw TPM 2.0 command framing over a TCP connection, as
// swtpm's data port does: write the command, read the 10-byte response
// header, then exactly responseSize-10 more bytes. (go-tpm's transport/tcp
// speaks the Microsoft simulator's framing, which swtpm's data port does not.)
type tcpTPM struct {
	addr string
	conn net.Conn
}

func dialTCP(addr string) (transport.TPMCloser, error) {
	c, err := net.DialTimeout("tcp", addr, tcpDialTimeout)
	if err != nil {
		return nil, fmt.Errorf("connecting to the TPM at tcp://%s: %w", addr, err)
	}
	return &retrying{TPMCloser: &tcpTPM{addr: addr, conn: c}}, nil
}

func (t *tcpTPM) Send(cmd []byte) ([]byte, error) {
	if err := t.conn.SetDeadline(time.Now().Add(tcpTimeout)); err != nil {
		return nil, err
	}
	if _, err := t.conn.Write(cmd); err != nil {
		return nil, fmt.Errorf("TPM at tcp://%s: %w", t.addr, err)
	}
	var hdr [10]byte
	if _, err := io.ReadFull(t.conn, hdr[:]); err != nil {
		return nil, fmt.Errorf("TPM at tcp://%s: reading response header: %w", t.addr, err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < uint32(len(hdr)) || size > maxResponse {
		return nil, fmt.Errorf("TPM at tcp://%s: bad response size %d", t.addr, size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr[:])
	if _, err := io.ReadFull(t.conn, rsp[len(hdr):]); err != nil {
		return nil, fmt.Errorf("TPM at tcp://%s: reading response: %w", t.addr, err)
	}
	return rsp, nil
}

func (t *tcpTPM) Close() error { return t.conn.Close() }

// retrying resends a command the TPM asks to be retried (TPM 2.0 Part 2
// §6.6.3: TPM_RC_RETRY, TPM_RC_YIELDED, TPM_RC_TESTING), with a short
// back-off, for at most about two seconds.
type retrying struct {
	transport.TPMCloser
}

const (
	retryFirst = 5 * time.Millisecond
	retryMax   = 200 * time.Millisecond
	retryTotal = 2 * time.Second
)

func (r *retrying) Send(cmd []byte) ([]byte, error) {
	wait, waited := retryFirst, time.Duration(0)
	for {
		rsp, err := r.TPMCloser.Send(cmd)
		if err != nil || len(rsp) < 10 || waited >= retryTotal {
			return rsp, err
		}
		switch tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10])) {
		case tpm2.TPMRCRetry, tpm2.TPMRCYielded, tpm2.TPMRCTesting:
		default:
			return rsp, nil
		}
		time.Sleep(wait)
		waited += wait
		wait = min(2*wait, retryMax)
	}
}

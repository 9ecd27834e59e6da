package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtkey/virtkey/internal/vktest"
)

// pythonPath is Debian's interpreter, which has python3-fido2 0.9.1 (a pyenv
// python earlier on PATH would not).
const pythonPath = "/usr/bin/python3"

// repoRoot is the module root (has go.mod), set by TestMain.
var repoRoot string

// needPythonFIDO2 checks for /usr/bin/python3 with fido2 0.9.x and pytest.
func needPythonFIDO2(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(pythonPath); err != nil {
		vktest.MissingTool(t, pythonPath+" not found")
	}
	out, err := exec.Command(pythonPath, "-c",
		"import fido2, pytest; print(fido2.__version__)").CombinedOutput()
	if err != nil {
		vktest.MissingTool(t, fmt.Sprintf("python modules fido2/pytest not importable by %s: %v: %s",
			pythonPath, err, bytes.TrimSpace(out)))
	}
	if v := strings.TrimSpace(string(out)); !strings.HasPrefix(v, "0.9.") {
		vktest.MissingTool(t, "python-fido2 0.9.x needed (Debian python3-fido2), found "+v)
	}
}

// pythonCmd prepares /usr/bin/python3 with args, run from the repository
// root, talking to addr.
func pythonCmd(ctx context.Context, addr string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, pythonPath, args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(),
		"VIRTKEY_UDP="+addr,
		"PYTHONDONTWRITEBYTECODE=1",
		"PYTHONUNBUFFERED=1",
	)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// scenario runs testdata/python/scenario.py and returns its stdout; a
// non-zero exit fails the test.
func scenario(t *testing.T, k *vktest.Key, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := pythonCmd(ctx, k.Addr, append([]string{"testdata/python/scenario.py"}, args...)...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if s := strings.TrimSpace(stderr.String()); s != "" {
		t.Logf("scenario %s stderr:\n%s", strings.Join(args, " "), s)
	}
	if err != nil {
		t.Fatalf("scenario.py %s: %v\nstdout:\n%s\nstderr:\n%s\nvirtkey output:\n%s",
			strings.Join(args, " "), err, stdout.String(), stderr.String(), k.Output())
	}
	return stdout.String()
}

// prefixWriter copies complete lines to w with a prefix.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

func (p *prefixWriter) Flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.buf) > 0 {
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf)
		p.buf = nil
	}
}

// lines splits output into non-empty lines.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}

package doctor

import (
	"fmt"
	"io/fs"
	"strings"
	"testing"
)

// run's error and doctor's check say the same.
func TestUHIDErrorExplains(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tt := range []struct {
		err  error
		want []string
	}{
		{&fs.PathError{Op: "open", Path: dir + "/uhid", Err: fs.ErrNotExist},
			[]string{dir + "/uhid does not exist", "sudo modprobe uhid", "--transport udp"}},
		{fmt.Errorf("uhid: %w", &fs.PathError{Op: "open", Path: dir + "/uhid", Err: fs.ErrPermission}),
			[]string{"cannot be opened for reading and writing", "contrib/udev/70-virtkey-uhid.rules",
				"usermod -aG virtkey", "udevadm trigger", "--transport udp"}},
	} {
		msg := UHIDError(dir+"/uhid", tt.err).Error()
		for _, w := range tt.want {
			if !strings.Contains(msg, w) {
				t.Errorf("message for %v lacks %q:\n%s", tt.err, w, msg)
			}
		}
	}
	c := UHID(dir + "/uhid")
	if msg := UHIDError(dir+"/uhid", fs.ErrNotExist).Error(); c.Status != Problem || !strings.Contains(msg, c.What) || !strings.Contains(msg, c.Fix) {
		t.Errorf("doctor says %q — %q; run says %q", c.What, c.Fix, msg)
	}
}

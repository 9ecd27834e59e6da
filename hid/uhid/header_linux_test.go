//go:build linux

package uhid

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/virtkey/virtkey/internal/vktest"
)

// TestLayoutMatchesHeader compiles a C program against the installed
// linux/uhid.h (Debian linux-libc-dev) and compares every size, offset and
// constant this package hard-codes. Outside CI it skips when no C compiler
// or header is installed; under CI=true that is a failure.
func TestLayoutMatchesHeader(t *testing.T) {
	t.Parallel()
	const header = "/usr/include/linux/uhid.h"
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	ccPath, ccErr := exec.LookPath(cc)
	_, hdrErr := os.Stat(header)
	if ccErr != nil || hdrErr != nil {
		vktest.MissingTool(t, fmt.Sprintf("needs a C compiler (gcc) and %s (Debian linux-libc-dev): %v, %v", header, ccErr, hdrErr))
	}
	const prog = `#include <stdio.h>
#include <stddef.h>
#include <linux/uhid.h>
#include <linux/input.h>
#define P(name, v) printf("%s %lu\n", name, (unsigned long)(v))
int main(void) {
	P("eventSize", sizeof(struct uhid_event));
	P("offCreateName", offsetof(struct uhid_event, u.create2.name));
	P("offCreatePhys", offsetof(struct uhid_event, u.create2.phys));
	P("offCreateUniq", offsetof(struct uhid_event, u.create2.uniq));
	P("offCreateRDSize", offsetof(struct uhid_event, u.create2.rd_size));
	P("offCreateBus", offsetof(struct uhid_event, u.create2.bus));
	P("offCreateVendor", offsetof(struct uhid_event, u.create2.vendor));
	P("offCreateProduct", offsetof(struct uhid_event, u.create2.product));
	P("offCreateVersion", offsetof(struct uhid_event, u.create2.version));
	P("offCreateCountry", offsetof(struct uhid_event, u.create2.country));
	P("offCreateRDData", offsetof(struct uhid_event, u.create2.rd_data));
	P("maxDescriptorSize", sizeof(((struct uhid_event *)0)->u.create2.rd_data));
	P("nameSize", sizeof(((struct uhid_event *)0)->u.create2.name));
	P("physSize", sizeof(((struct uhid_event *)0)->u.create2.phys));
	P("uniqSize", sizeof(((struct uhid_event *)0)->u.create2.uniq));
	P("offInputSize", offsetof(struct uhid_event, u.input2.size));
	P("offInputData", offsetof(struct uhid_event, u.input2.data));
	P("dataMax", UHID_DATA_MAX);
	P("offOutputData", offsetof(struct uhid_event, u.output.data));
	P("offOutputSize", offsetof(struct uhid_event, u.output.size));
	P("offOutputRType", offsetof(struct uhid_event, u.output.rtype));
	P("offStartFlags", offsetof(struct uhid_event, u.start.dev_flags));
	P("offReqID", offsetof(struct uhid_event, u.get_report.id));
	P("offReqRNum", offsetof(struct uhid_event, u.get_report.rnum));
	P("offReqRType", offsetof(struct uhid_event, u.get_report.rtype));
	P("setReqID", offsetof(struct uhid_event, u.set_report.id));
	P("setReqRNum", offsetof(struct uhid_event, u.set_report.rnum));
	P("setReqRType", offsetof(struct uhid_event, u.set_report.rtype));
	P("offSetSize", offsetof(struct uhid_event, u.set_report.size));
	P("offSetData", offsetof(struct uhid_event, u.set_report.data));
	P("offReplyID", offsetof(struct uhid_event, u.get_report_reply.id));
	P("offReplyErr", offsetof(struct uhid_event, u.get_report_reply.err));
	P("offReplySize", offsetof(struct uhid_event, u.get_report_reply.size));
	P("setReplyID", offsetof(struct uhid_event, u.set_report_reply.id));
	P("setReplyErr", offsetof(struct uhid_event, u.set_report_reply.err));
	P("evDestroy", UHID_DESTROY);
	P("evStart", UHID_START);
	P("evStop", UHID_STOP);
	P("evOpen", UHID_OPEN);
	P("evClose", UHID_CLOSE);
	P("evOutput", UHID_OUTPUT);
	P("evGetReport", UHID_GET_REPORT);
	P("evGetReportReply", UHID_GET_REPORT_REPLY);
	P("evCreate2", UHID_CREATE2);
	P("evInput2", UHID_INPUT2);
	P("evSetReport", UHID_SET_REPORT);
	P("evSetReportReply", UHID_SET_REPORT_REPLY);
	P("featureReport", UHID_FEATURE_REPORT);
	P("outputReport", UHID_OUTPUT_REPORT);
	P("inputReport", UHID_INPUT_REPORT);
	P("busUSB", BUS_USB);
	return 0;
}
`
	dir := t.TempDir()
	src, bin := filepath.Join(dir, "layout.c"), filepath.Join(dir, "layout")
	if err := os.WriteFile(src, []byte(prog), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(ccPath, "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cc, err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		"eventSize": eventSize, "offCreateName": offCreateName, "offCreatePhys": offCreatePhys,
		"offCreateUniq": offCreateUniq, "offCreateRDSize": offCreateRDSize, "offCreateBus": offCreateBus,
		"offCreateVendor": offCreateVendor, "offCreateProduct": offCreateProduct,
		"offCreateVersion": offCreateVersion, "offCreateCountry": offCreateCountry,
		"offCreateRDData": offCreateRDData, "maxDescriptorSize": maxDescriptorSize,
		"nameSize": nameSize, "physSize": physSize, "uniqSize": uniqSize,
		"offInputSize": offInputSize, "offInputData": offInputData, "dataMax": dataMax,
		"offOutputData": offOutputData, "offOutputSize": offOutputSize, "offOutputRType": offOutputRType,
		"offStartFlags": offStartFlags,
		"offReqID":      offReqID, "offReqRNum": offReqRNum, "offReqRType": offReqRType,
		"setReqID": offReqID, "setReqRNum": offReqRNum, "setReqRType": offReqRType,
		"offSetSize": offSetSize, "offSetData": offSetData,
		"offReplyID": offReplyID, "offReplyErr": offReplyErr, "offReplySize": offReplySize,
		"setReplyID": offReplyID, "setReplyErr": offReplyErr,
		"evDestroy": int(evDestroy), "evStart": int(evStart), "evStop": int(evStop), "evOpen": int(evOpen),
		"evClose": int(evClose), "evOutput": int(evOutput), "evGetReport": int(evGetReport),
		"evGetReportReply": int(evGetReportReply), "evCreate2": int(evCreate2), "evInput2": int(evInput2),
		"evSetReport": int(evSetReport), "evSetReportReply": int(evSetReportReply),
		"featureReport": int(featureReport), "outputReport": int(outputReport), "inputReport": int(inputReport),
		"busUSB": busUSB,
	}
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		name, val, _ := strings.Cut(sc.Text(), " ")
		got, err := strconv.Atoi(val)
		if err != nil {
			t.Fatalf("bad line %q", sc.Text())
		}
		w, ok := want[name]
		if !ok {
			t.Fatalf("header check prints %q, which the test does not know", name)
		}
		seen++
		if got != w {
			t.Errorf("%s: header says %d, package has %d", name, got, w)
		}
	}
	if seen != len(want) {
		t.Fatalf("checked %d of %d values", seen, len(want))
	}
}

package uhid

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// This file encodes and decodes struct uhid_event (linux/uhid.h). It is
// pure — no system calls — so it is tested on every platform with golden
// bytes, and cross-checked against the C header where one is installed.
//
// The kernel ABI is packed and in host byte order:
//
//	struct uhid_event {          // 4380 bytes
//		__u32 type;
//		union { ... } u;         // 4376 bytes: create2 (4372) is the
//	} __attribute__((__packed__)); // largest member, and the unpacked
//	                               // uhid_start_req (a __u64) aligns the
//	                               // union to 8 bytes
//
// The kernel reads at most sizeof(struct uhid_event) and zero-extends a
// shorter write; it writes whole events, which a read of that size takes
// in one go.

// eventType is enum uhid_event_type.
type eventType uint32

// Event types. The numbers are the kernel's; 0, 7 and 8 are legacy events
// this package never sends and ignores when read.
const (
	evDestroy        eventType = 1  // UHID_DESTROY (to kernel)
	evStart          eventType = 2  // UHID_START (from kernel)
	evStop           eventType = 3  // UHID_STOP (from kernel)
	evOpen           eventType = 4  // UHID_OPEN (from kernel)
	evClose          eventType = 5  // UHID_CLOSE (from kernel)
	evOutput         eventType = 6  // UHID_OUTPUT (from kernel)
	evGetReport      eventType = 9  // UHID_GET_REPORT (from kernel)
	evGetReportReply eventType = 10 // UHID_GET_REPORT_REPLY (to kernel)
	evCreate2        eventType = 11 // UHID_CREATE2 (to kernel)
	evInput2         eventType = 12 // UHID_INPUT2 (to kernel)
	evSetReport      eventType = 13 // UHID_SET_REPORT (from kernel)
	evSetReportReply eventType = 14 // UHID_SET_REPORT_REPLY (to kernel)
)

func (t eventType) String() string {
	switch t {
	case evDestroy:
		return "DESTROY"
	case evStart:
		return "START"
	case evStop:
		return "STOP"
	case evOpen:
		return "OPEN"
	case evClose:
		return "CLOSE"
	case evOutput:
		return "OUTPUT"
	case evGetReport:
		return "GET_REPORT"
	case evGetReportReply:
		return "GET_REPORT_REPLY"
	case evCreate2:
		return "CREATE2"
	case evInput2:
		return "INPUT2"
	case evSetReport:
		return "SET_REPORT"
	case evSetReportReply:
		return "SET_REPORT_REPLY"
	}
	return fmt.Sprintf("event(%d)", uint32(t))
}

// reportType is enum uhid_report_type.
type reportType uint8

const (
	featureReport reportType = 0 // UHID_FEATURE_REPORT
	outputReport  reportType = 1 // UHID_OUTPUT_REPORT
	inputReport   reportType = 2 // UHID_INPUT_REPORT
)

// Sizes and offsets from linux/uhid.h and linux/hid.h.
const (
	maxDescriptorSize = 4096 // HID_MAX_DESCRIPTOR_SIZE
	dataMax           = 4096 // UHID_DATA_MAX

	nameSize = 128 // uhid_create2_req.name
	physSize = 64  // uhid_create2_req.phys
	uniqSize = 64  // uhid_create2_req.uniq

	// create2Size is sizeof(struct uhid_create2_req), the largest union
	// member: 128+64+64+2+2+4+4+4+4+4096 = 4372.
	create2Size = nameSize + physSize + uniqSize + 2 + 2 + 4 + 4 + 4 + 4 + maxDescriptorSize

	// eventSize is sizeof(struct uhid_event): the type and the union,
	// whose size is create2Size rounded up to its 8-byte alignment.
	eventSize = 4 + (create2Size+7)&^7 // 4380

	// Offsets into the event (the union starts at 4).
	offUnion = 4

	// uhid_create2_req
	offCreateName    = offUnion
	offCreatePhys    = offCreateName + nameSize // 132
	offCreateUniq    = offCreatePhys + physSize // 196
	offCreateRDSize  = offCreateUniq + uniqSize // 260
	offCreateBus     = offCreateRDSize + 2      // 262
	offCreateVendor  = offCreateBus + 2         // 264
	offCreateProduct = offCreateVendor + 4      // 268
	offCreateVersion = offCreateProduct + 4     // 272
	offCreateCountry = offCreateVersion + 4     // 276
	offCreateRDData  = offCreateCountry + 4     // 280

	// uhid_input2_req
	offInputSize = offUnion     // 4
	offInputData = offUnion + 2 // 6

	// uhid_output_req
	offOutputData  = offUnion                // 4
	offOutputSize  = offOutputData + dataMax // 4100
	offOutputRType = offOutputSize + 2       // 4102

	// uhid_start_req
	offStartFlags = offUnion // 4

	// uhid_get_report_req, uhid_set_report_req (same head)
	offReqID    = offUnion     // 4
	offReqRNum  = offUnion + 4 // 8
	offReqRType = offUnion + 5 // 9
	offSetSize  = offUnion + 6 // 10
	offSetData  = offUnion + 8 // 12

	// uhid_get_report_reply_req, uhid_set_report_reply_req (same head)
	offReplyID   = offUnion     // 4
	offReplyErr  = offUnion + 4 // 8
	offReplySize = offUnion + 6 // 10 (get_report_reply only)
)

// busUSB is BUS_USB from linux/input.h. libfido2 lists only USB devices.
const busUSB = 0x03

// errnoEIO is the error code in GET/SET_REPORT replies: the kernel turns
// any non-zero code into -EIO for the requester.
const errnoEIO = 5

// ne is the kernel's byte order: the host's.
var ne = binary.NativeEndian

// create2 is the content of a UHID_CREATE2 event.
type create2 struct {
	name, phys, uniq string
	bus              uint16
	vendor, product  uint32
	version, country uint32
	descriptor       []byte
}

// errField reports a create2 string or descriptor that does not fit.
var errField = errors.New("uhid: field too long")

// encodeCreate2 returns a full-size UHID_CREATE2 event. Strings must leave
// room for the terminating NUL the kernel expects.
func encodeCreate2(c create2) ([]byte, error) {
	ev := newEvent(evCreate2)
	for _, f := range []struct {
		what string
		s    string
		off  int
		size int
	}{
		{"name", c.name, offCreateName, nameSize},
		{"phys", c.phys, offCreatePhys, physSize},
		{"uniq", c.uniq, offCreateUniq, uniqSize},
	} {
		if len(f.s) >= f.size {
			return nil, fmt.Errorf("%w: %s is %d bytes, at most %d fit", errField, f.what, len(f.s), f.size-1)
		}
		for i := 0; i < len(f.s); i++ {
			if f.s[i] == 0 {
				return nil, fmt.Errorf("uhid: %s contains a NUL byte", f.what)
			}
		}
		copy(ev[f.off:], f.s)
	}
	if len(c.descriptor) == 0 || len(c.descriptor) > maxDescriptorSize {
		return nil, fmt.Errorf("%w: report descriptor is %d bytes, want 1 to %d", errField, len(c.descriptor), maxDescriptorSize)
	}
	ne.PutUint16(ev[offCreateRDSize:], uint16(len(c.descriptor)))
	ne.PutUint16(ev[offCreateBus:], c.bus)
	ne.PutUint32(ev[offCreateVendor:], c.vendor)
	ne.PutUint32(ev[offCreateProduct:], c.product)
	ne.PutUint32(ev[offCreateVersion:], c.version)
	ne.PutUint32(ev[offCreateCountry:], c.country)
	copy(ev[offCreateRDData:], c.descriptor)
	return ev, nil
}

// encodeInput2 returns a UHID_INPUT2 event carrying data (at most
// [dataMax] bytes; the caller passes one 64-byte report).
func encodeInput2(data []byte) []byte {
	ev := newEvent(evInput2)
	ne.PutUint16(ev[offInputSize:], uint16(len(data)))
	copy(ev[offInputData:], data)
	return ev
}

// encodeDestroy returns a UHID_DESTROY event.
func encodeDestroy() []byte { return newEvent(evDestroy) }

// encodeGetReportReply returns a UHID_GET_REPORT_REPLY for request id
// carrying errno code errno and no data.
func encodeGetReportReply(id uint32, errno uint16) []byte {
	ev := newEvent(evGetReportReply)
	ne.PutUint32(ev[offReplyID:], id)
	ne.PutUint16(ev[offReplyErr:], errno)
	ne.PutUint16(ev[offReplySize:], 0)
	return ev
}

// encodeSetReportReply returns a UHID_SET_REPORT_REPLY for request id
// carrying errno code errno.
func encodeSetReportReply(id uint32, errno uint16) []byte {
	ev := newEvent(evSetReportReply)
	ne.PutUint32(ev[offReplyID:], id)
	ne.PutUint16(ev[offReplyErr:], errno)
	return ev
}

// newEvent returns a zeroed full-size event of type t. Every event this
// package writes is full-size: the kernel would zero-extend a short one,
// but a full one is obviously right.
func newEvent(t eventType) []byte {
	ev := make([]byte, eventSize)
	ne.PutUint32(ev, uint32(t))
	return ev
}

// event is a decoded event from the kernel. Only the fields of its type
// are set.
type event struct {
	typ      eventType
	devFlags uint64     // START: UHID_DEV_NUMBERED_* flags
	id       uint32     // GET_REPORT, SET_REPORT: request id for the reply
	rnum     uint8      // GET_REPORT, SET_REPORT: report number
	rtype    reportType // OUTPUT, GET_REPORT, SET_REPORT
	data     []byte     // OUTPUT, SET_REPORT: the report, report number first
}

// decodeEvent parses one event as read from /dev/uhid. A short read is
// zero-extended, as linux/uhid.h prescribes; fewer than 4 bytes or a size
// field beyond the data area is an error. data aliases nothing in b.
func decodeEvent(b []byte) (event, error) {
	if len(b) < 4 {
		return event{}, fmt.Errorf("uhid: short event (%d bytes)", len(b))
	}
	var buf [eventSize]byte
	copy(buf[:], b)
	ev := event{typ: eventType(ne.Uint32(buf[:]))}
	switch ev.typ {
	case evStart:
		ev.devFlags = ne.Uint64(buf[offStartFlags:])
	case evOutput:
		n := int(ne.Uint16(buf[offOutputSize:]))
		if n > dataMax {
			return event{}, fmt.Errorf("uhid: OUTPUT size %d exceeds %d", n, dataMax)
		}
		ev.rtype = reportType(buf[offOutputRType])
		ev.data = append([]byte(nil), buf[offOutputData:offOutputData+n]...)
	case evGetReport:
		ev.id = ne.Uint32(buf[offReqID:])
		ev.rnum = buf[offReqRNum]
		ev.rtype = reportType(buf[offReqRType])
	case evSetReport:
		ev.id = ne.Uint32(buf[offReqID:])
		ev.rnum = buf[offReqRNum]
		ev.rtype = reportType(buf[offReqRType])
		n := int(ne.Uint16(buf[offSetSize:]))
		if n > dataMax {
			return event{}, fmt.Errorf("uhid: SET_REPORT size %d exceeds %d", n, dataMax)
		}
		ev.data = append([]byte(nil), buf[offSetData:offSetData+n]...)
	}
	return ev, nil
}

// reportSize is the CTAPHID report size: 64 bytes, no report ID.
const reportSize = 64

// outputToReport turns the data of a UHID_OUTPUT event into a CTAPHID
// report. The kernel passes on what the client wrote to hidraw: the report
// number (always 0: the FIDO descriptor declares no report IDs) and then
// the report, 65 bytes in all. A shorter write is zero-padded, as a short
// USB transfer would be; anything else is not a report of this device.
func outputToReport(rtype reportType, data []byte) ([]byte, error) {
	switch {
	case rtype != outputReport:
		return nil, fmt.Errorf("uhid: OUTPUT of report type %d, want an output report", rtype)
	case len(data) < 2:
		return nil, fmt.Errorf("uhid: OUTPUT of %d bytes is too short", len(data))
	case len(data) > 1+reportSize:
		return nil, fmt.Errorf("uhid: OUTPUT of %d bytes, want at most %d", len(data), 1+reportSize)
	case data[0] != 0:
		return nil, fmt.Errorf("uhid: OUTPUT for report number %d, want 0", data[0])
	}
	r := make([]byte, reportSize)
	copy(r, data[1:])
	return r, nil
}

// Package uhid plugs a virtual FIDO security key into the Linux kernel
// through /dev/uhid (Documentation/hid/uhid.rst): the kernel sees a USB HID
// device with the FIDO report descriptor (usage page 0xF1D0), binds
// hid-generic to it, and browsers, libfido2 and OpenSSH find it as a
// /dev/hidraw node like any hardware key.
//
// A [Device] is an hid.ReportDevice: it carries 64-byte CTAPHID reports
// and knows nothing of CTAPHID itself.
//
//	dev, err := uhid.Open(uhid.Options{Logger: log})
//	if err != nil { ... } // errors.Is(err, fs.ErrNotExist): modprobe uhid; fs.ErrPermission: see below
//	defer dev.Close()
//	srv := hid.NewServer(dev, authenticator, &hid.Options{Logger: log})
//	return srv.Run(ctx)
//
// # The kernel interface
//
// Every read and write of /dev/uhid is one struct uhid_event (4380 bytes:
// a u32 type and a union, packed, in host byte order). The device is created
// with UHID_CREATE2 on bus BUS_USB (libfido2 lists only USB devices), a
// name, phys and a unique serial (uniq) and the vendor and product ids. A
// client's write to hidraw arrives as UHID_OUTPUT: the report number (0;
// the descriptor has no report IDs) and the 64-byte report; [Device.ReadReport]
// strips the report number. [Device.WriteReport] sends UHID_INPUT2 with 64
// bytes, which hidraw hands to every client that has the node open, so
// several clients (a browser and the CLI) share the device and CTAPHID
// channels keep them apart. UHID_START, STOP, OPEN and CLOSE are logged;
// UHID_GET_REPORT and SET_REPORT (feature reports, unused by FIDO) are
// answered with EIO so the requester does not wait for the kernel's
// timeout.
//
// # Lifetime
//
// [Device.Close] writes UHID_DESTROY and closes the file. The kernel also
// destroys the device when the file is closed for any reason, a crash or
// SIGKILL included, so no stale device outlives the process. A client that
// dies mid-transaction only closes its hidraw file: the device stays.
// [Device.Recreate] unplugs and replugs the device, a simulated power
// cycle.
//
// # Permissions
//
// /dev/uhid is root-only by default. The udev rule in
// contrib/udev/70-virtkey-uhid.rules gives a group read and write access;
// systemd's fido_id then marks the new hidraw node ID_SECURITY_TOKEN=1 and
// the uaccess rule gives the logged-in user access to it.
package uhid

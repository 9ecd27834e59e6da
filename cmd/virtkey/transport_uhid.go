package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"sync"
	"syscall"

	"github.com/virtkey/virtkey/control/vkey"
	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/hid"
	"github.com/virtkey/virtkey/hid/uhid"
)

// replugSignal re-creates the uhid device — unplug, power cycle, plug in —
// for tests of clients that see a key vanish mid-request:
// kill -USR1 $(pidof virtkey).
const replugSignal = syscall.SIGUSR1

// serveUHID serves the key as a USB HID device through /dev/uhid until ctx
// ends (SIGINT, SIGTERM), then destroys the device. If the process dies
// any other way the kernel destroys the device when its file closes.
// SIGUSR1 re-creates the device, which is a power cycle.
// uhidUsable fails with the same advice as serveUHID when /dev/uhid cannot be
// opened, so that run says so before it creates any state. Opening the
// node alone creates no device.
func uhidUsable() error {
	fd, err := os.OpenFile(uhid.DefaultPath, os.O_RDWR, 0)
	if err != nil {
		return uhidOpenError(uhid.DefaultPath, err)
	}
	return fd.Close()
}

func serveUHID(ctx context.Context, f *runFlags, auth *ctap2.Authenticator, log *slog.Logger, cp *controlPlane, uv ctap2.UVMode) error {
	if f.vid == 0 || f.vid > 0xFFFF || f.pid == 0 || f.pid > 0xFFFF {
		return fmt.Errorf("--vid %#x --pid %#x: want USB ids from 0x0001 to 0xffff", f.vid, f.pid)
	}
	dev, err := uhid.Open(uhid.Options{
		Name:      f.name,
		VendorID:  uint16(f.vid),
		ProductID: uint16(f.pid),
		Version:   bcdVersion(version),
		Logger:    log,
	})
	if err != nil {
		return uhidOpenError(uhid.DefaultPath, err)
	}
	defer func() {
		if err := dev.Close(); err != nil {
			log.Warn("destroying the uhid device", "err", err)
		}
	}()
	log.Info("virtkey serving", "transport", "uhid", "name", f.name,
		"vid", fmt.Sprintf("%04x", f.vid), "pid", fmt.Sprintf("%04x", f.pid),
		"serial", dev.Serial(), "state", f.stateDir)

	srv := hid.NewServer(dev, auth, &hid.Options{Logger: log, Version: version})
	stopControl, err := cp.serve(ctx, auth, vkey.UHIDDevice(dev, srv), uv)
	if err != nil {
		return err
	}
	defer stopControl()

	replug := make(chan os.Signal, 1)
	signal.Notify(replug, replugSignal)
	defer signal.Stop(replug)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-replug:
				log.Info("re-creating the uhid device (power cycle)")
				if err := dev.Recreate(srv.PowerCycle); err != nil {
					// The device is closed: Run fails and virtkey exits.
					log.Error("re-creating the uhid device", "err", err)
					return
				}
			}
		}
	})
	err = srv.Run(ctx)
	wg.Wait()
	if ctx.Err() != nil {
		log.Info("virtkey stopped")
		return nil
	}
	return err
}

// bcdVersion renders the firmware version as a USB bcdDevice: 1.2.3 →
// 0x0123.
func bcdVersion(v [3]byte) uint32 {
	return uint32(v[0])<<8 | uint32(v[1]&0xF)<<4 | uint32(v[2]&0xF)
}

// uhidOpenError explains why the uhid device could not be created and
// what fixes it.
func uhidOpenError(path string, err error) error {
	const udp = "\n  or serve the key over UDP instead (for CTAP clients that speak it, such as python-fido2 and the virtkey CLI): --transport udp"
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("--transport uhid: %s does not exist: the kernel's uhid module is not loaded (%v)"+
			"\n  fix: sudo modprobe uhid, and to load it at boot: echo uhid | sudo tee /etc/modules-load.d/uhid.conf"+udp, path, err)
	case errors.Is(err, fs.ErrPermission):
		who := "this user"
		if u, uerr := user.Current(); uerr == nil {
			who = "user " + u.Username
		}
		return fmt.Errorf("--transport uhid: %s cannot be opened for reading and writing by %s (%s)"+
			"\n  fix: give the virtkey group access with the udev rule in contrib/udev and join the group:"+
			"\n    sudo install -m 0644 contrib/udev/70-virtkey-uhid.rules /etc/udev/rules.d/"+
			"\n    sudo groupadd -f --system virtkey && sudo usermod -aG virtkey \"$USER\""+
			"\n    sudo udevadm control --reload && sudo udevadm trigger --name-match=uhid"+
			"\n    then log in again (or start a shell with: newgrp virtkey); `virtkey doctor` checks the result"+udp,
			path, who, describeNode(path))
	}
	return fmt.Errorf("--transport uhid: %w", err)
}

// describeNode says who owns a device node: "mode crw-------, group root".
func describeNode(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return err.Error()
	}
	s := "mode " + fi.Mode().String()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		gid := strconv.FormatUint(uint64(st.Gid), 10)
		if g, err := user.LookupGroupId(gid); err == nil {
			gid = g.Name
		}
		s += ", group " + gid
	}
	return s
}

//go:build !linux

package main

import "errors"

// hidraw exists only on Linux; elsewhere only --device udp:HOST:PORT works.

func openHidraw(path string) (reportDevice, error) {
	return nil, errors.New("hidraw devices exist only on Linux")
}

func findFIDOHidraw() ([]hidrawDevice, error) { return nil, nil }

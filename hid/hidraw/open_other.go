//go:build !linux

package hidraw

import "errors"

// Open fails: hidraw nodes exist only on Linux.
func Open(path string) (Device, error) {
	return nil, errors.New("hidraw devices exist only on Linux")
}

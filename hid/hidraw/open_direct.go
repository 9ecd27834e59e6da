//go:build linux && !(hidraw && cgo)

package hidraw

// Open opens the hidraw node at path (see the package documentation for
// the backends).
func Open(path string) (Device, error) {
	f, err := OpenFile(path)
	if err != nil {
		return nil, err
	}
	return f, nil
}

package layout

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrNotRegular: a bundle file that is not a regular file (a FIFO, which
// would block a read for ever; a symlink, which would lead out of the
// bundle; a dir, a socket, a device) is never read.
var ErrNotRegular = errors.New("not a regular file")

// maxBundleFile bounds what ReadRegular reads: bundle files are a few
// hundred bytes, and a huge one is damage, not data.
const maxBundleFile = 1 << 20

// OpenNoFollow opens a bundle file the way every reader of one must: never
// following a symlink (the open fails with ELOOP), never blocking on a FIFO
// (O_NONBLOCK), never taking a terminal, close-on-exec; flags adds the
// access mode. One open and one fstat, whose answer says what was opened:
// the caller checks st.Mode&unix.S_IFMT. A look before the open (lstat)
// would cost a call more and leave a window for the file to be swapped.
func OpenNoFollow(path string, flags int) (fd int, st unix.Stat_t, err error) {
	fd, err = unix.Open(path, flags|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return -1, st, &os.PathError{Op: "open", Path: path, Err: err}
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, st, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	return fd, st, nil
}

// ReadRegular reads a bundle file that must be a regular file
// (OpenNoFollow, then the read). A missing file gives an error wrapping
// fs.ErrNotExist; anything but a regular file, one wrapping
// ErrNotRegular.
func ReadRegular(path string) ([]byte, error) {
	fd, st, err := OpenNoFollow(path, unix.O_RDONLY)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%s: %w (symlink)", filepath.Base(path), ErrNotRegular)
	}
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s: %w (%s)", filepath.Base(path), ErrNotRegular, typeName(st.Mode))
	}
	if st.Size > maxBundleFile {
		return nil, fmt.Errorf("%s: %d bytes, more than a bundle file holds", filepath.Base(path), st.Size)
	}
	// Room for more than the size, to see the end: a read of a regular
	// file that returns less than asked for is at its end, so a file that
	// did not grow is read in one call.
	data := make([]byte, 0, st.Size+512)
	for {
		if len(data) == cap(data) {
			if len(data) > maxBundleFile {
				return nil, fmt.Errorf("%s: more than a bundle file holds", filepath.Base(path))
			}
			data = append(data, make([]byte, 4096)...)[:len(data)]
		}
		n, err := unix.Read(fd, data[len(data):cap(data)])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		short := n < cap(data)-len(data)
		data = data[:len(data)+n]
		if n == 0 || short {
			return data, nil
		}
	}
}

func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "device"
	}
	return "not regular"
}

package cleanup

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// RemoveSocket removes the unix socket file at path, which must name a
// socket inside dir. The path is taken as it was read (from a bundle's
// bootstrap.json, say) and confined in one step: any ".." element is
// refused before cleaning, so no symlink met on the way can turn
// "dir/link/../x" into something outside dir; its parent is then opened
// below dir with openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, and only a
// socket is unlinked from it. A missing file is not an error; anything
// but a socket is refused.
func RemoveSocket(dir, path string) error {
	for _, el := range strings.Split(path, "/") {
		if el == ".." {
			return fmt.Errorf("remove socket %q: has a \"..\" element (confined to %q): %w", path, dir, ErrOutside)
		}
	}
	if !Within(dir, path) {
		return fmt.Errorf("remove socket %q (confined to %q): %w", path, dir, ErrOutside)
	}
	rel, err := filepath.Rel(filepath.Clean(dir), filepath.Clean(path))
	if err != nil {
		return err
	}
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("open socket dir %q: %w", dir, err)
	}
	defer unix.Close(root)
	parent, base := filepath.Dir(rel), filepath.Base(rel)
	pfd, err := unix.Openat2(root, parent, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ELOOP):
		return fmt.Errorf("remove socket %q: its parent leads outside %q or through a symlink: %w", path, dir, ErrOutside)
	case err != nil:
		return fmt.Errorf("open %q below %q: %w", parent, dir, err)
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fmt.Errorf("remove socket %q: not a socket (mode %#o); left alone", path, st.Mode&unix.S_IFMT)
	}
	if err := unix.Unlinkat(pfd, base, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

package cleanup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/shimkeeper/shimkeeper/layout"
)

// Within reports whether path is strictly inside dir once both are cleaned.
// dir itself is not within dir.
func Within(dir, path string) bool {
	dir, path = filepath.Clean(dir), filepath.Clean(path)
	if !filepath.IsAbs(dir) || !filepath.IsAbs(path) {
		return false
	}
	rel, err := filepath.Rel(dir, path)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return false
	}
	return true
}

func confine(dir, path string) error {
	if !Within(dir, path) {
		return fmt.Errorf("remove %q (confined to %q): %w", path, dir, ErrOutside)
	}
	return noLinkBetween(dir, path)
}

// noLinkBetween refuses a path with a symlink among its components below
// dir (the last one excepted, which is removed as a link): the path is
// inside dir as text, but the kernel would follow the link outside it.
func noLinkBetween(dir, path string) error {
	dir, path = filepath.Clean(dir), filepath.Clean(path)
	rel, err := filepath.Rel(dir, path)
	if err != nil {
		return err
	}
	parts := strings.Split(rel, string(filepath.Separator))
	cur := dir
	for _, part := range parts[:len(parts)-1] {
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("remove %q: %q is a symlink (confined to %q): %w", path, cur, dir, ErrOutside)
		}
	}
	return nil
}

// Remove removes path and everything below it. path must be strictly inside
// dir. A symlink is removed as a link; its target is never touched. A path
// that does not exist is not an error.
func Remove(dir, path string) error {
	if err := confine(dir, path); err != nil {
		return err
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return removeAs(path, fi)
}

// removeAs removes path, whose Lstat is fi: a symlink or any other
// non-directory as itself, a directory with its tree.
func removeAs(path string, fi fs.FileInfo) error {
	if fi.Mode()&fs.ModeSymlink != 0 || !fi.IsDir() {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	// os.RemoveAll removes symlinks inside the tree as links; it does not
	// follow them.
	return os.RemoveAll(path)
}

// AtomicRemove removes path crash-safely: it renames path to ".<name>" in
// the same parent and then removes that. After a crash, the dot-name is
// skipped by every scanner and finished by FinishPending. path must be
// strictly inside dir. A path that does not exist is not an error.
func AtomicRemove(dir, path string) error {
	if err := confine(dir, path); err != nil {
		return err
	}
	path = filepath.Clean(path)
	base := filepath.Base(path)
	if layout.Hidden(base) {
		return Remove(dir, path)
	}
	hidden := layout.PendingRemoval(path)
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 || !fi.IsDir() {
		return removeAs(path, fi) // confined and looked at just above
	}
	// A leftover from an earlier crash would make the rename fail.
	if err := Remove(dir, hidden); err != nil {
		return fmt.Errorf("remove stale %s: %w", hidden, err)
	}
	if err := os.Rename(path, hidden); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return Remove(dir, hidden)
}

// FinishPending removes the dot-named directories directly below parent
// that an interrupted AtomicRemove left behind. parent must be inside (or
// equal to a child of) dir. It returns the names it removed.
func FinishPending(dir, parent string) ([]string, error) {
	if err := confine(dir, parent); err != nil && filepath.Clean(dir) != filepath.Clean(parent) {
		return nil, err
	}
	if fi, err := os.Lstat(parent); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("finish pending removals in %q: a symlink (confined to %q): %w", parent, dir, ErrOutside)
	}
	entries, err := os.ReadDir(parent)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var done []string
	var errs []error
	for _, e := range entries {
		name := e.Name()
		// Only directories: AtomicRemove renames nothing else.
		if !layout.IsPendingRemoval(name) || !e.IsDir() {
			continue
		}
		if err := Remove(dir, filepath.Join(parent, name)); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, name)
	}
	return done, errors.Join(errs...)
}

package cleanup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/core/mount"

	"github.com/shimkeeper/shimkeeper/layout"
)

// BundlePaths names the on-disk state of one shim: the bundle in the state
// dir and the work dir in the root dir. StateDir and RootDir are the
// plugin's dirs (e.g. <state>/io.containerd.runtime.v2.task); every removal
// is confined to them.
type BundlePaths struct {
	StateDir, RootDir string
	Namespace, ID     string
}

// Bundle is <state>/<ns>/<id>.
func (p BundlePaths) Bundle() string { return filepath.Join(p.StateDir, p.Namespace, p.ID) }

// Work is <root>/<ns>/<id>.
func (p BundlePaths) Work() string { return filepath.Join(p.RootDir, p.Namespace, p.ID) }

// DeleteBundle removes a bundle and its work dir, in stock containerd's
// order: unmount <bundle>/rootfs, remove it, then remove the bundle and
// the work dir atomically. The work dir is the one derived from RootDir,
// never the target of the bundle's "work" link, so a link that was pointed
// elsewhere cannot lead a removal outside the root dir.
//
// If the rootfs cannot be unmounted or is a non-empty directory, nothing is
// removed and the error says why. A missing bundle or work dir is not an
// error, so DeleteBundle can be retried.
func DeleteBundle(p BundlePaths) error {
	bundle, work := p.Bundle(), p.Work()
	if err := confine(p.StateDir, bundle); err != nil {
		return err
	}
	if err := confine(p.RootDir, work); err != nil {
		return err
	}
	if fi, err := os.Lstat(bundle); err == nil && fi.IsDir() {
		// Only a real directory is unmounted; a rootfs that is a symlink is
		// removed as a link with the bundle and never followed.
		rootfs := layout.BundleFile(bundle, layout.DirRootfs)
		if fi, err := os.Lstat(rootfs); err == nil && fi.IsDir() {
			if err := mount.UnmountRecursive(rootfs, 0); err != nil {
				return fmt.Errorf("unmount rootfs %s: %w", rootfs, err)
			}
			if err := os.Remove(rootfs); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove bundle rootfs %s: %w", rootfs, err)
			}
		}
	}
	return errors.Join(
		wrap("remove bundle", AtomicRemove(p.StateDir, bundle)),
		wrap("remove work dir", AtomicRemove(p.RootDir, work)),
	)
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

package layout

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFileAtomic writes data to path so that a reader sees the old file
// or the new one, never a part, and a crash keeps one of the two: a temp
// file in the same dir (TempPrefix, so scanners skip it and it is told
// from anything else), written, set to perm exactly (no umask, as
// containerd's atomicfile), fsynced, renamed over path, then the dir
// fsynced. On failure before the rename the temp file is removed and path
// is untouched. A failed fsync of the dir after the rename is returned
// too: path then holds the new data, which may not survive a crash.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, TempPrefix+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = writeSync(f, data, perm)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		// Only the temp file this call created, by the name CreateTemp
		// gave it: nothing anyone else writes or reads.
		_ = os.Remove(tmp)
		return err
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("%s written, but not its dir: %w", path, err)
	}
	return nil
}

func writeSync(f *os.File, data []byte, perm fs.FileMode) error {
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

// syncDir fsyncs a dir, so that a rename in it is durable. A file system
// that cannot fsync dirs (EINVAL) has nothing more to make durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, syscall.EINVAL) {
		return nil
	}
	return err
}

package loader

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/shimkeeper/shimkeeper/cleanup"
)

// tmpPrefix marks the temp files of writeFileAtomic. They are dot-named,
// so no scanner takes them for a namespace or a bundle, and one left by a
// daemon killed mid-write is removed by removeStaleTemps at the next pass.
const tmpPrefix = ".shimkeeper-tmp-"

// writeFileAtomic writes content to path through a temp file in the same
// dir, fsynced, then renamed over path: a reader sees the old file or the
// new one, never a part.
func writeFileAtomic(path string, content []byte) error {
	dir := filepath.Dir(path)
	tmp := filepath.Join(dir, tmpPrefix+filepath.Base(path)+"."+strconv.Itoa(os.Getpid()))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// removeStaleTemps removes temp files of earlier, interrupted writes in
// dir (the plugin's state or root dir).
func removeStaleTemps(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) && e.Type().IsRegular() {
			_ = cleanup.Remove(dir, filepath.Join(dir, e.Name()))
		}
	}
}

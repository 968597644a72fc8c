package loader

import (
	"os"
	"path/filepath"

	"github.com/shimkeeper/shimkeeper/cleanup"
	"github.com/shimkeeper/shimkeeper/layout"
)

// removeStaleTemps removes the temp files of layout.WriteFileAtomic that
// a daemon killed mid-write left in dir (the plugin's state or root dir).
// They are dot-named, so no scanner took them for a namespace or bundle.
func removeStaleTemps(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if layout.IsTemp(e.Name()) && e.Type().IsRegular() {
			_ = cleanup.Remove(dir, filepath.Join(dir, e.Name()))
		}
	}
}

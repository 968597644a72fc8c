package testshim

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// Snapshot records every entry of a dir (name, mode, content), to prove
// that a read touched nothing.
func Snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		v := fi.Mode().String()
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + string(data)
		}
		out[p] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// RequireSameSnapshot fails t for every entry created, changed or removed
// between two Snapshots.
func RequireSameSnapshot(t testing.TB, before, after map[string]string) {
	t.Helper()
	for p, v := range after {
		if b, ok := before[p]; !ok {
			t.Errorf("created %s (%s)", p, v)
		} else if b != v {
			t.Errorf("changed %s: %q -> %q", p, b, v)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("removed %s", p)
		}
	}
}

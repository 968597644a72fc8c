package testshim

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
)

// Tree fingerprints every entry below dirs, without following links or
// opening FIFOs and sockets: mode, size, a hash of a regular file's
// content, a link's target and, with times, mtime and ctime (so that any
// write, create, remove, chmod or rename shows; reads do not). A dir that
// does not exist is empty.
func Tree(t testing.TB, times bool, dirs ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			fi, err := os.Lstat(path)
			if err != nil {
				return err
			}
			desc := fmt.Sprintf("%v %d", fi.Mode(), fi.Size())
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && times {
				desc += fmt.Sprintf(" m%d.%d c%d.%d", st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
			}
			switch {
			case fi.Mode().IsRegular():
				sum, err := hashFile(path)
				if err != nil {
					return err
				}
				desc += " " + sum
			case fi.Mode()&fs.ModeSymlink != 0:
				target, err := os.Readlink(path)
				if err != nil {
					return err
				}
				desc += " -> " + target
			}
			out[path] = desc
			return nil
		})
		if err != nil {
			t.Fatalf("walk %s: %v", dir, err)
		}
	}
	return out
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// DiffTrees lists, sorted, what differs between two Trees.
func DiffTrees(before, after map[string]string) []string {
	var diffs []string
	for k, v := range before {
		if w, ok := after[k]; !ok {
			diffs = append(diffs, "removed "+k+" ("+v+")")
		} else if v != w {
			diffs = append(diffs, "changed "+k+": "+v+" -> "+w)
		}
	}
	for k, v := range after {
		if _, ok := before[k]; !ok {
			diffs = append(diffs, "added "+k+" ("+v+")")
		}
	}
	sort.Strings(diffs)
	return diffs
}

// Snapshot is Tree of dir without times: what a read must leave as it was.
func Snapshot(t testing.TB, dir string) map[string]string { return Tree(t, false, dir) }

// RequireSameSnapshot fails t for every entry created, changed or removed
// between two Snapshots.
func RequireSameSnapshot(t testing.TB, before, after map[string]string) {
	t.Helper()
	for _, d := range DiffTrees(before, after) {
		t.Error(d)
	}
}

// Canary makes a dir outside whatever a test confines its code to, with a
// file in it, and returns a check that both are untouched.
func Canary(t testing.TB) (dir string, check func()) {
	t.Helper()
	dir = t.TempDir()
	f := filepath.Join(dir, "canary")
	if err := os.WriteFile(f, []byte("alive"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, func() {
		t.Helper()
		if data, err := os.ReadFile(f); err != nil || string(data) != "alive" {
			t.Fatalf("canary %s was touched: %q, %v", f, data, err)
		}
	}
}

// StaleSocket leaves a unix socket file at path with nobody listening.
func StaleSocket(t testing.TB, path string) {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
}

//go:build integration

package integration

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/shimkeeper/shimkeeper/internal/crihost"
	"github.com/shimkeeper/shimkeeper/internal/testshim"
)

// proc is one process as /proc shows it.
type proc = crihost.Proc

// shimArgMarker is how a shim started by the daemon at address shows up in
// /proc/<pid>/cmdline: containerd passes `-address <grpc address>`. ctr uses
// `--address`, which does not match.
func shimArgMarker(address string) string { return "\x00-address\x00" + address + "\x00" }

// shimProcs returns the live processes started as shims of the daemon
// listening on address (real shims and the fake shims alike).
func shimProcs(address string) []proc {
	var out []proc
	marker := shimArgMarker(address)
	for _, p := range crihost.ListProcs() {
		if p.State != 'Z' && strings.Contains(p.Cmdline, marker) {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}

const cgroupRoot = "/sys/fs/cgroup"

// cgroupNamespaceDirs returns, for every mounted hierarchy, the cgroup dir
// that ctr's default cgroups path (/<ns>/<id>) puts containers of ns under.
func cgroupNamespaceDirs(ns string) []string {
	var out []string
	hierarchies, _ := os.ReadDir(cgroupRoot)
	for _, h := range hierarchies {
		dir := filepath.Join(cgroupRoot, h.Name(), ns)
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			out = append(out, dir)
		}
	}
	// cgroup v2 or a unified-only host has no per-controller dirs.
	if dir := filepath.Join(cgroupRoot, ns); isDir(dir) {
		out = append(out, dir)
	}
	return out
}

// containerCgroups returns the container cgroup dirs left under ns.
func containerCgroups(ns string) []string {
	var out []string
	for _, dir := range cgroupNamespaceDirs(ns) {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.IsDir() {
				out = append(out, filepath.Join(dir, e.Name()))
			}
		}
	}
	return out
}

// cgroupPIDs returns the pids in any cgroup below the namespace dirs of ns.
func cgroupPIDs(ns string) []int {
	var pids []int
	for _, dir := range cgroupNamespaceDirs(ns) {
		_ = filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() || e.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(path)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids
}

// thawCgroups unfreezes paused containers of ns so SIGKILL can take effect.
func thawCgroups(ns string) {
	dir := filepath.Join(cgroupRoot, "freezer", ns)
	_ = filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() && e.Name() == "freezer.state" {
			_ = os.WriteFile(path, []byte("THAWED"), 0o644)
		}
		return nil
	})
	// cgroup v2
	_ = filepath.WalkDir(filepath.Join(cgroupRoot, ns), func(path string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() && e.Name() == "cgroup.freeze" {
			_ = os.WriteFile(path, []byte("0"), 0o644)
		}
		return nil
	})
}

// removeCgroups removes the (empty) cgroup dirs of ns, deepest first.
func removeCgroups(ns string) []error {
	var errs []error
	for _, dir := range cgroupNamespaceDirs(ns) {
		errs = append(errs, testshim.RmdirTree(dir)...)
	}
	return errs
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// dirEntries lists the names in dir (nil if it does not exist).
func dirEntries(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

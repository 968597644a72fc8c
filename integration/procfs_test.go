//go:build integration

package integration

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shimkeeper/shimkeeper/internal/testshim"
)

// proc is what the tests need to know about one process from /proc.
type proc struct {
	PID     int
	PPID    int
	State   byte   // R, S, D, Z, ...
	Cmdline string // argv joined by NUL, as in /proc/<pid>/cmdline
}

// Args returns the process's argv.
func (p proc) Args() []string { return strings.Split(strings.TrimRight(p.Cmdline, "\x00"), "\x00") }

// readProc reads /proc/<pid>; ok is false if the process is gone.
func readProc(pid int) (proc, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return proc{}, false
	}
	// pid (comm) state ppid ...; comm may contain spaces and parentheses.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return proc{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return proc{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return proc{PID: pid, PPID: ppid, State: f[0][0], Cmdline: string(cmdline)}, true
}

// listProcs returns every process on the machine.
func listProcs() map[int]proc {
	procs := map[int]proc{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok {
			procs[pid] = p
		}
	}
	return procs
}

// pidAlive reports whether pid exists and is not a zombie.
func pidAlive(pid int) bool {
	p, ok := readProc(pid)
	return ok && p.State != 'Z' && p.State != 'X'
}

// shimArgMarker is how a shim started by the daemon at address shows up in
// /proc/<pid>/cmdline: containerd passes `-address <grpc address>`. ctr uses
// `--address`, which does not match.
func shimArgMarker(address string) string { return "\x00-address\x00" + address + "\x00" }

// shimProcs returns the live processes started as shims of the daemon
// listening on address (real shims and the fake shims alike).
func shimProcs(address string) []proc {
	var out []proc
	marker := shimArgMarker(address)
	for _, p := range listProcs() {
		if p.State != 'Z' && strings.Contains(p.Cmdline, marker) {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}

// descendants returns the pids of all descendants of roots (roots excluded).
func descendants(procs map[int]proc, roots []int) []int {
	children := map[int][]int{}
	for _, p := range procs {
		children[p.PPID] = append(children[p.PPID], p.PID)
	}
	var out []int
	queue := append([]int{}, roots...)
	seen := map[int]bool{}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	return out
}

// killPIDs SIGKILLs each pid and waits (bounded) until none is alive;
// it returns the pids still alive afterwards.
func killPIDs(pids []int, timeout time.Duration) []int {
	for _, pid := range pids {
		if pid > 1 && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	var alive []int
	eventually(timeout, func() string {
		alive = alive[:0]
		for _, pid := range pids {
			if pidAlive(pid) {
				alive = append(alive, pid)
			}
		}
		if len(alive) > 0 {
			return "alive"
		}
		return ""
	})
	return alive
}

// mountsUnder returns the mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return strings.Count(out[i], "/") > strings.Count(out[j], "/") })
	return out
}

// unescapeMountPath undoes the \ooo octal escapes of /proc/self/mountinfo.
func unescapeMountPath(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountAll lazily unmounts everything at or below dir, deepest first.
func unmountAll(dir string) []error {
	var errs []error
	for i := 0; i < 5; i++ { // stacked mounts need more than one pass
		mps := mountsUnder(dir)
		if len(mps) == 0 {
			return nil
		}
		errs = errs[:0]
		for _, mp := range mps {
			if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
			}
		}
	}
	return errs
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

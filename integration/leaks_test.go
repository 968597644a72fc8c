//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shimkeeper/shimkeeper/internal/crihost"
)

// Plugin directories under root and state (their names come from the plugin
// Type+ID and must match stock).
const (
	taskPluginDir    = "io.containerd.runtime.v2.task"
	sandboxPluginDir = "io.containerd.sandbox.controller.v1.shim"
)

// leaks describes everything the daemon's shims left behind for the test's
// namespaces (processes, mounts, bundles, work dirs, runc state, cgroups);
// an empty result means clean.
func (d *Daemon) leaks() []string {
	var out []string
	for _, p := range shimProcs(d.Address) {
		out = append(out, fmt.Sprintf("process %d still running: %s", p.PID, strings.Join(p.Args(), " ")))
	}
	for _, mp := range crihost.MountsUnder(d.Dir) {
		out = append(out, "mount left: "+mp)
	}
	for _, ns := range d.namespaceList() {
		for _, dir := range []string{
			filepath.Join(d.State, taskPluginDir, ns),    // bundles
			filepath.Join(d.Root, taskPluginDir, ns),     // work dirs
			filepath.Join(d.State, sandboxPluginDir, ns), // sandbox bundles
			filepath.Join(d.Root, sandboxPluginDir, ns),
			filepath.Join(d.RuncRoot, ns), // runc container state
		} {
			for _, name := range dirEntries(dir) {
				out = append(out, "left in "+dir+": "+name)
			}
		}
		for _, cg := range containerCgroups(ns) {
			out = append(out, "cgroup left: "+cg)
		}
		// The harness passes --runc-root; runc state in the default
		// location would mean a host path was used.
		if hostRunc := filepath.Join("/run/containerd/runc", ns); isDir(hostRunc) {
			out = append(out, "runc state in host path "+hostRunc)
		}
	}
	if d.cri != nil {
		out = append(out, d.cri.leaks(d)...)
	}
	return out
}

// staleSockets lists the files left in socket_dir. They are reported, not
// failed on: a runc shim removes its socket on exit using the `s` link in its
// bundle, and when the daemon has already deleted the bundle (right after
// the Shutdown RPC), most likely, the shim falls back to /run/containerd/s and the socket
// file stays. Stock v2.4.2 does this too, in about one loaded run in ten.
// Processes still listening on a socket are caught as process leaks.
func (d *Daemon) staleSockets() []string { return dirEntries(d.SocketDir) }

func (d *Daemon) namespaceList() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	ns := make([]string, 0, len(d.namespaces)+1)
	seen := map[string]bool{}
	for _, n := range append([]string{d.NS}, keys(d.namespaces)...) {
		if !seen[n] {
			seen[n] = true
			ns = append(ns, n)
		}
	}
	return ns
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// assertNoLeaks fails the test if, after the test's own teardown (tasks and
// containers deleted), any shim process, mount, bundle, work dir, runc
// state or container cgroup of the test is still there. Shims
// exit asynchronously after a delete, so it waits up to leakTimeout for
// things to settle.
func assertNoLeaks(t testing.TB, d *Daemon) {
	t.Helper()
	d.leaksChecked = true
	var leaks []string
	eventually(leakTimeout, func() string {
		leaks = d.leaks()
		if len(leaks) > 0 {
			return "leaks"
		}
		return ""
	})
	for _, l := range leaks {
		t.Errorf("leak: %s", l)
	}
	if stale := d.staleSockets(); len(stale) > 0 {
		t.Logf("stale shim sockets in %s (not failed on, see staleSockets): %v", d.SocketDir, stale)
	}
	if len(leaks) > 0 {
		t.Errorf("%s", d.logTail(40))
	}
}

// teardown runs at test cleanup whatever happened: it dumps the daemon log
// on failure, then kills the daemon and every process of the test by PID,
// unmounts, removes the test's cgroups and deletes the temp dir.
func (d *Daemon) teardown() {
	t := d.t
	switch {
	case t.Failed():
		t.Logf("%s", d.logTail(80))
	case t.Skipped():
	case !d.leaksChecked:
		t.Errorf("test ended without calling assertNoLeaks")
	default:
		// Once more, in case something was started after the test's
		// own check.
		assertNoLeaks(t, d)
	}

	namespaces := d.namespaceList()
	// Container pids as the daemon reports them, while it is still up.
	var taskPIDs []int
	if d.running() {
		for _, ns := range namespaces {
			r := d.ctrWithin(5*time.Second, ns, "task", "ls")
			if tasks, err := parseTaskList(r.Stdout); r.ExitCode == 0 && err == nil {
				for _, tk := range tasks {
					// A stopped task's pid may already belong to
					// someone else.
					if tk.Status != "STOPPED" {
						taskPIDs = append(taskPIDs, tk.PID)
					}
				}
			}
		}
	}

	if d.running() {
		_ = d.cmd.Process.Kill()
		select {
		case <-d.exited:
		case <-time.After(daemonStopTimeout):
			t.Errorf("daemon pid %d survived SIGKILL", d.cmd.Process.Pid)
		}
	}

	// Repeat: killing a shim can reparent its children before we see them.
	for round := 0; round < 5; round++ {
		procs := crihost.ListProcs()
		var roots []int
		for _, p := range procs {
			// Shims carry `-address <sock>`; fake shim servers and any
			// helper started from the test dir carry the dir in argv.
			if p.State != 'Z' && (strings.Contains(p.Cmdline, shimArgMarker(d.Address)) ||
				strings.Contains(p.Cmdline, d.Dir+"/")) && p.PID != os.Getpid() {
				roots = append(roots, p.PID)
			}
		}
		pids := append(roots, crihost.Descendants(procs, roots)...)
		if round == 0 {
			for _, pid := range taskPIDs {
				if crihost.PIDAlive(pid) {
					pids = append(pids, pid)
				}
			}
		}
		for _, ns := range namespaces {
			thawCgroups(ns)
			pids = append(pids, cgroupPIDs(ns)...)
		}
		if len(pids) == 0 {
			break
		}
		if alive := crihost.KillPIDs(pids, 10*time.Second); len(alive) > 0 && round == 4 {
			t.Errorf("teardown: processes %v survived SIGKILL", alive)
		}
	}

	for _, err := range crihost.UnmountAll(d.Dir) {
		t.Errorf("teardown: %v", err)
	}
	if d.cri != nil {
		for _, err := range d.cri.teardown() {
			t.Errorf("teardown: %v", err)
		}
	}
	for _, ns := range namespaces {
		for _, err := range removeCgroups(ns) {
			t.Errorf("teardown: %v", err)
		}
	}
	if dir := os.Getenv("INTEGRATION_LOG_DIR"); dir != "" {
		d.saveLog(dir)
	}
	if err := os.RemoveAll(d.Dir); err != nil {
		t.Errorf("teardown: %v", err)
	}
}

// saveLog copies the daemon log to dir/<test name>.log, for
// INTEGRATION_LOG_DIR.
func (d *Daemon) saveLog(dir string) {
	b, err := os.ReadFile(d.LogPath)
	if err != nil {
		return
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(d.t.Name())
	if err := os.MkdirAll(dir, 0o755); err == nil {
		_ = os.WriteFile(filepath.Join(dir, name+"-"+filepath.Base(d.Dir)+".log"), b, 0o644)
	}
}

//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shimkeeper/shimkeeper/internal/crihost"
	"github.com/shimkeeper/shimkeeper/layout"
)

// The upgrade tests switch the daemon binary under running containers, as
// an operator upgrading a host does: containerd 1.7 → ours, and ours →
// stock v2.4.2 (going back). Both use a version 2 config.toml, the newest
// version 1.7 reads (it refuses version 3), kept unchanged across the
// switch: what a host upgraded from 1.7 still has. It sets no socket_dir
// (1.7 has none; its shims always listen in /run/containerd/s, which is
// also the default of ours and stock for root) and names the servers with
// the version 2 top-level [grpc], [ttrpc] and [debug] sections, which 2.x
// migrates to its server plugins.

// upgradeContainers are the containers each test runs before the switch:
// two in the test's namespace, one in a second namespace.
var upgradeContainers = []struct{ ns, id string }{{"", "a"}, {"", "b"}, {"ns2", "c"}}

// configV2 is d's config as a version 2 file.
func (d *Daemon) configV2() string {
	level := os.Getenv("INTEGRATION_LOG_LEVEL")
	if level == "" {
		level = "info"
	}
	quoted := make([]string, len(disabledPlugins))
	for i, p := range disabledPlugins {
		quoted[i] = fmt.Sprintf("%q", p)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "version = 2\n")
	fmt.Fprintf(&b, "root = %q\n", d.Root)
	fmt.Fprintf(&b, "state = %q\n", d.State)
	fmt.Fprintf(&b, "disabled_plugins = [%s]\n\n", strings.Join(quoted, ", "))
	fmt.Fprintf(&b, "[grpc]\n  address = %q\n\n", d.Address)
	fmt.Fprintf(&b, "[ttrpc]\n  address = %q\n\n", d.TTRPCAddress)
	fmt.Fprintf(&b, "[debug]\n  address = %q\n  level = %q\n", d.DebugAddress, level)
	return b.String()
}

// serverVersion returns the Server Version and Revision of `ctr version`.
func (d *Daemon) serverVersion() (version, revision string) {
	d.t.Helper()
	out := d.mustCtrIn("", "version")
	_, server, ok := strings.Cut(out, "Server:")
	if !ok {
		d.t.Fatalf("no Server: in ctr version:\n%s", out)
	}
	for _, line := range strings.Split(server, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		switch k {
		case "Version":
			version = strings.TrimSpace(v)
		case "Revision":
			revision = strings.TrimSpace(v)
		}
	}
	return version, revision
}

// requireServer fails the test unless the daemon answering is version
// (and, when revPrefix is not empty, has a revision starting with it).
func requireServer(t *testing.T, d *Daemon, version, revPrefix string) {
	t.Helper()
	v, rev := d.serverVersion()
	if v != version || !strings.HasPrefix(rev, revPrefix) {
		t.Fatalf("daemon answering is version %q revision %q, want %q revision %q...", v, rev, version, revPrefix)
	}
}

// sameExecutable reports whether process pid runs the binary at path.
func sameExecutable(pid int, path string) (bool, error) {
	a, err := os.Stat(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false, err
	}
	b, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	return os.SameFile(a, b), nil
}

// upgradeState is what the containers looked like before the switch.
type upgradeState struct {
	tasks map[string]task // "<ns>/<id>" → task
	shims map[string]int  // "<ns>/<id>" → shim pid
}

// upgradeRun starts the upgrade containers on d and checks that each runs
// under a shim executing shimBinary.
func upgradeRun(t *testing.T, d *Daemon, ns2, shimBinary string) upgradeState {
	t.Helper()
	st := upgradeState{tasks: map[string]task{}}
	for _, c := range upgradeContainers {
		ns := upgradeNS(d, ns2, c.ns)
		st.tasks[ns+"/"+c.id] = d.mustRunSleeper(ns, c.id)
	}
	st.shims = recShims(d)
	if len(st.shims) != len(upgradeContainers) {
		t.Fatalf("shims %v, want one per container %v", st.shims, keysOfTasks(st.tasks))
	}
	for key, pid := range st.shims {
		if _, ok := st.tasks[key]; !ok {
			t.Fatalf("shim %d serves %s, which the test did not start", pid, key)
		}
		if ok, err := sameExecutable(pid, shimBinary); err != nil || !ok {
			exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			t.Fatalf("shim %d of %s runs %s (%v), want %s", pid, key, exe, err, shimBinary)
		}
	}
	return st
}

// upgradeAfter checks, on the daemon that took over, that every container
// is RUNNING with its pid and shim of before, that exec works in each, that
// a kill brings the task's exit event from its shim, and that task delete
// and container delete leave nothing behind (no bundle, work dir, shim
// process, runc state, cgroup or mount).
func upgradeAfter(t *testing.T, d *Daemon, ns2 string, before upgradeState) {
	t.Helper()
	for _, c := range upgradeContainers {
		ns := upgradeNS(d, ns2, c.ns)
		key := ns + "/" + c.id
		want := task{ID: c.id, PID: before.tasks[key].PID, Status: "RUNNING"}
		if got, ok := d.tasks(ns)[c.id]; !ok || got != want {
			t.Errorf("after the switch %s: task %+v (listed %v), want %+v", key, got, ok, want)
		}
		if !crihost.PIDAlive(want.PID) {
			t.Errorf("after the switch %s: container pid %d is gone", key, want.PID)
		}
		if got := d.containers(ns); !containsString(got, c.id) {
			t.Errorf("after the switch: containers of %s = %v, want %s among them", ns, got, c.id)
		}
	}
	if got := recShims(d); !equalShims(got, before.shims) {
		t.Errorf("shims after the switch %v, want the same processes as before %v", got, before.shims)
	}
	if t.Failed() {
		t.FailNow()
	}

	for _, c := range upgradeContainers {
		ns := upgradeNS(d, ns2, c.ns)
		msg := "exec in " + ns + "/" + c.id
		if r := d.execIn(ns, c.id, "after", "/bin/echo", msg); r.ExitCode != 0 || r.Stdout != msg+"\n" {
			t.Fatalf("exec after the switch\n%s\n%s", r, d.logTail(40))
		}
	}

	// The shims keep publishing to the ttrpc address they were started
	// with, which the new daemon serves: their exit events reach its
	// subscribers.
	streams := map[string]*eventStream{}
	for _, c := range upgradeContainers {
		if ns := upgradeNS(d, ns2, c.ns); streams[ns] == nil {
			streams[ns] = d.subscribe(t, ns)
		}
	}
	for _, c := range upgradeContainers {
		ns := upgradeNS(d, ns2, c.ns)
		key := ns + "/" + c.id
		d.mustCtrIn(ns, "task", "kill", c.id)
		ev, err := streams[ns].next(statusTimeout, func(e event) bool {
			return e.Topic == "/tasks/exit" && e.Fields["container_id"] == c.id
		})
		if err != nil {
			t.Fatalf("no /tasks/exit of %s after ctr task kill: %v\n%s", key, err, d.logTail(40))
		}
		if pid, status := ev.Fields["pid"], ev.Fields["exit_status"]; pid != float64(before.tasks[key].PID) || status != float64(143) {
			t.Errorf("/tasks/exit of %s: pid %v exit_status %v, want %d and 143 (SIGTERM)", key, pid, status, before.tasks[key].PID)
		}
		d.waitTask(ns, c.id, "STOPPED")
		d.mustCtrIn(ns, "task", "delete", c.id)
		if _, ok := d.tasks(ns)[c.id]; ok {
			t.Fatalf("task %s still listed after ctr task delete", key)
		}
		d.mustCtrIn(ns, "container", "delete", c.id)
		if got := d.containers(ns); containsString(got, c.id) {
			t.Fatalf("container %s still listed after ctr container delete: %v", key, got)
		}
		recWaitGone(t, "shim of "+key, before.shims[key])
		for _, p := range []string{recBundle(d, ns, c.id), recWorkDir(d, ns, c.id)} {
			if _, err := os.Lstat(p); !os.IsNotExist(err) {
				t.Errorf("%s left after delete (%v)", p, err)
			}
		}
	}
	assertNoLeaks(t, d)
}

// upgradeNS maps a container's namespace ("" is the test's own).
func upgradeNS(d *Daemon, ns2, ns string) string {
	if ns == "" {
		return d.NS
	}
	return ns2
}

// upgradeSocketCleanup registers, before newDaemon (so that it runs after
// the daemon's teardown has killed every shim of the test), the removal of
// the shim sockets that upgradeSockets records and that are still there as
// sockets: they are in /run/containerd/s, which the harness does not own,
// and a runc shim can leave its socket file behind (see staleSockets).
func upgradeSocketCleanup(t *testing.T) *[]string {
	paths := new([]string)
	t.Cleanup(func() {
		for _, p := range *paths {
			if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
				t.Logf("stale shim socket %s removed", p)
				_ = os.Remove(p)
			}
		}
	})
	return paths
}

// upgradeSockets returns the shims' socket paths, from each bundle's 1.x
// address file or else its bootstrap.json.
func upgradeSockets(t *testing.T, d *Daemon, ns2 string) []string {
	t.Helper()
	var paths []string
	for _, c := range upgradeContainers {
		ns := upgradeNS(d, ns2, c.ns)
		bundle := recBundle(d, ns, c.id)
		var addr string
		if data, err := os.ReadFile(filepath.Join(bundle, layout.FileAddress)); err == nil {
			addr = strings.TrimSpace(string(data))
		} else {
			addr = "unix://" + recShimAddress(t, d, ns, c.id)
		}
		p, ok := strings.CutPrefix(addr, "unix://")
		if !ok || !filepath.IsAbs(p) {
			t.Fatalf("shim address of %s/%s is %q, want unix://<absolute path>", ns, c.id, addr)
		}
		paths = append(paths, p)
	}
	return paths
}

// TestUpgradeFrom17 upgrades a host from containerd 1.7 to ours with
// containers running under 1.7's runc shim: 1.7 runs them, stops (SIGTERM),
// ours starts on the same config, root and state and must adopt every 1.7
// shim (bundles with a 1.x `address` file and no bootstrap.json, task API
// v2 only), then exec into and tear down each container.
func TestUpgradeFrom17(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	old, oldShim := bin("containerd-1.7"), bin("containerd-shim-runc-v2-1.7")
	requireBinaries(t, daemonBinary(), old, oldShim)
	if isStock(daemonBinary()) {
		t.Logf("DAEMON is stock containerd: this is an upgrade from 1.7 to stock")
	}

	// 1.7 finds io.containerd.runc.v2 as containerd-shim-runc-v2 on its
	// PATH: a dir of its own, first, makes that 1.7's shim.
	shimDir := t.TempDir()
	if err := os.Symlink(oldShim, filepath.Join(shimDir, "containerd-shim-runc-v2")); err != nil {
		t.Fatal(err)
	}
	sockets := upgradeSocketCleanup(t)
	d := newDaemon(t, withBinary(old), withConfig((*Daemon).configV2), withPathFirst(shimDir))
	requireServer(t, d, "v1.7.35", "")
	ns2 := newNamespace()
	before := upgradeRun(t, d, ns2, oldShim)
	for key := range before.shims {
		ns, id, _ := strings.Cut(key, "/")
		bundle := recBundle(d, ns, id)
		if _, err := os.Stat(filepath.Join(bundle, layout.FileAddress)); err != nil {
			t.Fatalf("1.7 bundle %s has no address file: %v", bundle, err)
		}
		if _, err := os.Stat(filepath.Join(bundle, layout.FileBootstrap)); !os.IsNotExist(err) {
			t.Fatalf("1.7 bundle %s has a %s (%v): the test would not cover 1.x bundles", bundle, layout.FileBootstrap, err)
		}
	}
	*sockets = upgradeSockets(t, d, ns2)

	d.Stop()
	d.pathFirst = nil // ours and stock resolve shims as usual
	since := time.Now()
	d.StartWith(daemonBinary())
	if !isStock(daemonBinary()) {
		requireServer(t, d, "v2.4.2", "shimkeeper-")
		// Each 1.7 shim adopted, nothing else found.
		recAssertReport(t, d, since, recAdoptedAll(before.shims), []string{})
	}
	upgradeAfter(t, d, ns2, before)
}

// TestUpgradeBackToStock is the way back: containers started by ours (with
// the same version 2 config), ours stopped (SIGTERM), stock v2.4.2 started
// on the same dirs must take over every shim, exec and tear down.
func TestUpgradeBackToStock(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	requireBinaries(t, daemonBinary(), stockBinary())
	sockets := upgradeSocketCleanup(t)
	d := newDaemon(t, withConfig((*Daemon).configV2))
	if !isStock(daemonBinary()) {
		requireServer(t, d, "v2.4.2", "shimkeeper-")
	}
	ns2 := newNamespace()
	before := upgradeRun(t, d, ns2, bin("containerd-shim-runc-v2"))
	*sockets = upgradeSockets(t, d, ns2)

	d.Stop()
	d.StartWith(stockBinary())
	v, rev := d.serverVersion()
	if v != "v2.4.2" || strings.HasPrefix(rev, "shimkeeper-") {
		t.Fatalf("daemon answering is version %q revision %q, want stock v2.4.2", v, rev)
	}
	upgradeAfter(t, d, ns2, before)
}

func keysOfTasks(m map[string]task) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func equalShims(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

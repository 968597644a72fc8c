//go:build integration

package integration

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/shimkeeper/shimkeeper/internal/crihost"
)

// runcGroupAnnotation makes the runc shim run all containers with the same
// value in one shim process (contract §7.4): `start` of the second container
// finds the group's socket and returns its address.
const runcGroupAnnotation = "io.containerd.runc.v2.group"

// TestSharedShim runs two containers in one shim: the shim is shared, each
// task is managed on its own, deleting one leaves the other and the shim
// running, and the shim survives a daemon restart with both tasks.
func TestSharedShim(t *testing.T) {
	t.Parallel()
	d := newDaemon(t)
	opts := []string{"-d", "--annotation", runcGroupAnnotation + "=g1"}
	tasks := map[string]task{}
	for _, id := range []string{"a", "b"} {
		if r := d.ctr(d.runArgs(opts, id, "/bin/sleep", "3600")...); r.ExitCode != 0 {
			t.Fatalf("%s", r)
		}
		tasks[id] = d.waitTask(d.NS, id, "RUNNING")
	}
	shims := shimPIDs(d)
	if len(shims) != 1 {
		t.Fatalf("shim pids %v, want one shared shim", shims)
	}
	if got := dirEntries(d.SocketDir); !equalStrings(got, []string{groupSocketName(d, d.NS, "g1")}) {
		t.Fatalf("socket dir %v, want only the group's socket", got)
	}

	d.Restart()
	for id, want := range tasks {
		if got := d.tasks(d.NS)[id]; got != want {
			t.Fatalf("after restart: %+v, want %+v", got, want)
		}
	}
	if got := shimPIDs(d); !equalInts(got, shims) {
		t.Fatalf("shim pids after restart %v, want %v", got, shims)
	}

	d.removeContainer(d.NS, "a")
	if got := d.tasks(d.NS)["b"]; got != tasks["b"] || !crihost.PIDAlive(got.PID) {
		t.Fatalf("after removing a: b is %+v, want %+v and alive", got, tasks["b"])
	}
	if got := shimPIDs(d); !equalInts(got, shims) {
		t.Fatalf("shim pids after removing a: %v, want the shared shim %v still running", got, shims)
	}
	if r := d.execIn(d.NS, "b", "e1", "/bin/echo", "b"); r.ExitCode != 0 || r.Stdout != "b\n" {
		t.Fatalf("exec in b after removing a\n%s", r)
	}
	d.removeContainer(d.NS, "b")
	removeGroupSocket(t, d, d.NS, "g1")
	assertNoLeaks(t, d)
}

// groupSocketName is the socket file a runc shim group uses in socket_dir:
// sha256(<grpc address>/<ns>/<group>) (pkg/shim CreateSocketAddress).
func groupSocketName(d *Daemon, ns, group string) string {
	return fmt.Sprintf("%x", sha256.Sum256([]byte(filepath.Join(d.Address, ns, group))))
}

// removeGroupSocket removes the socket a grouped runc shim leaves behind.
// When it exits, the shim removes the socket named after its own id, not the
// group's (pkg/shim cleanupSockets), so after the last container of a group
// is gone its socket file stays in socket_dir with stock containerd too.
// The helper requires that socket to be the only thing left and removes it
// so the rest of the leak check stays strict.
func removeGroupSocket(t *testing.T, d *Daemon, ns, group string) {
	t.Helper()
	name := groupSocketName(d, ns, group)
	var left []string
	if msg := eventually(leakTimeout, func() string {
		if len(shimProcs(d.Address)) > 0 {
			return "shim still running"
		}
		left = dirEntries(d.SocketDir)
		return ""
	}); msg != "" {
		t.Fatalf("grouped shim: %s", msg)
	}
	if len(left) == 0 {
		return // a shim that cleans up after itself is fine too
	}
	if !equalStrings(left, []string{name}) {
		t.Fatalf("socket dir holds %v, want at most the group socket %s", left, name)
	}
	if err := os.Remove(filepath.Join(d.SocketDir, name)); err != nil {
		t.Fatal(err)
	}
}

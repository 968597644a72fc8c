//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shimkeeper/shimkeeper/internal/crihost"
	"github.com/shimkeeper/shimkeeper/internal/testshim"
	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/loader"
)

// The tests of the safety rule: a container is destroyed only on proof that
// its shim is gone. Each one fails on a daemon that takes something less
// (a boot id record, a missing socket file, a deadline) for proof.

// safeRebootedDaemon returns a wrapper that runs our daemon in a private
// mount namespace (propagation slave: the host's mounts show, its own do
// not leave it) where /proc/sys/kernel/random/boot_id reads bootID: to the
// daemon, the machine has rebooted since its last pass.
func safeRebootedDaemon(t testing.TB, d *Daemon, bootID string) string {
	t.Helper()
	fake := filepath.Join(d.Dir, "boot_id")
	if err := os.WriteFile(fake, []byte(bootID+"\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(d.Dir, "containerd-rebooted")
	script := fmt.Sprintf("#!/bin/sh\nexec unshare --mount --propagation slave /bin/sh -c 'mount --bind %s /proc/sys/kernel/random/boot_id && exec %s \"$@\"' sh \"$@\"\n",
		fake, daemonBinary())
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return wrapper
}

// TestSafetyBootRecordIsNoProof: switch to stock, reboot (simulated: our
// daemon then runs where boot_id reads another id), run containers under
// stock (which does not update our record), switch back: every container,
// ours and stock's, RUNNING at the same pid, exec works. A daemon that
// trusts its record cleans every one of them up without a probe.
func TestSafetyBootRecordIsNoProof(t *testing.T) {
	t.Parallel()
	requireOurs(t, "keeps no boot id record")
	requireBinaries(t, stockBinary())
	d := newDaemon(t)
	ns := d.NS
	before := map[string]task{"ours": d.mustRunSleeper(ns, "ours")}
	d.Stop()

	d.StartWith(stockBinary())
	before["stock"] = d.mustRunSleeper(ns, "stock")
	if got := d.tasks(ns)["ours"]; got != before["ours"] {
		t.Fatalf("stock lists ours as %+v, want %+v", got, before["ours"])
	}
	d.Stop()
	newBoot := "00000000-" + randomHex(2) + "-" + randomHex(2) + "-" + randomHex(2) + "-" + randomHex(6)

	since := time.Now()
	d.StartWith(safeRebootedDaemon(t, d, newBoot))
	tasks := d.tasks(ns)
	for id, want := range before {
		if got := tasks[id]; got != want || !crihost.PIDAlive(want.PID) {
			t.Errorf("after switching back, %s = %+v (alive %v), want %+v", id, got, crihost.PIDAlive(want.PID), want)
		}
		if r := d.execIn(ns, id, "e-"+id, "/bin/echo", "up"); r.ExitCode != 0 || r.Stdout != "up\n" {
			t.Errorf("exec in %s after switching back\n%s", id, r)
		}
	}
	rep := recAssertReport(t, d, since, map[string]recWant{
		ns + "/ours":  {"adopt", "done", "shim alive, task live"},
		ns + "/stock": {"adopt", "done", "shim alive, task live"},
	}, []string{})
	if !rep.Rebooted {
		t.Errorf("report does not note the changed boot id record")
	}
	if rep.BootID != newBoot {
		t.Errorf("report boot id %q, want the simulated boot's %q", rep.BootID, newBoot)
	}
	if got := readTrimmedFile(t, filepath.Join(d.Root, taskPluginDir, layout.BootIDFile)); got != newBoot {
		t.Errorf("boot id record after the pass: %q, want %q", got, newBoot)
	}
	for id := range before {
		d.removeContainer(ns, id)
	}
	assertNoLeaks(t, d)
}

// TestSafetySocketFileRemoved: a live shim whose socket file was removed
// (a tmp cleaner, an operator tidying /run) is kept and listed, its
// container untouched, and calls on it say why. Once the shim really dies
// (the operator kills it, as the README says), a re-probe finds socket and
// process gone and cleans up.
func TestSafetySocketFileRemoved(t *testing.T) {
	t.Parallel()
	requireOurs(t, "takes a missing socket file for a dead shim")
	d := newDaemon(t)
	ns := d.NS
	live := d.mustRunSleeper(ns, "orphan")
	shim := recShimPID(t, d, ns, "orphan")
	sock := recShimAddress(t, d, ns, "orphan")
	d.Stop()
	recSetConfig(t, d, recRecoveryConfig(`recovery_retry_initial = "200ms"`, `recovery_retry_max = "500ms"`))
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}

	since := time.Now()
	d.Start()
	want := map[string]recWant{ns + "/orphan": {"keep", "probing", "shim socket gone, but the shim process is alive: unreachable"}}
	recWaitReport(t, d, since, func(rep *loader.Report) string { return recCheckEntries(rep, want, true) })
	got, ok := d.tasks(ns)["orphan"]
	if !ok || got.Status != "UNKNOWN" {
		t.Errorf("task of the unreachable shim: %+v (listed %v), want it listed UNKNOWN", got, ok)
	}
	if !crihost.PIDAlive(live.PID) || !crihost.PIDAlive(shim) || !isDir(recBundle(d, ns, "orphan")) {
		t.Fatalf("container %d alive %v, shim %d alive %v, bundle kept %v: want all kept",
			live.PID, crihost.PIDAlive(live.PID), shim, crihost.PIDAlive(shim), isDir(recBundle(d, ns, "orphan")))
	}
	r := d.execIn(ns, "orphan", "e1", "/bin/true")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "unreachable") {
		t.Errorf("exec on the unreachable shim: want an error naming the reason\n%s", r)
	}
	// Re-probes go on and change nothing while the shim lives.
	time.Sleep(time.Second) // several re-probe rounds of 200-500ms
	if !crihost.PIDAlive(live.PID) || !isDir(recBundle(d, ns, "orphan")) {
		t.Fatalf("a re-probe destroyed the container of a live shim")
	}

	// The operator's way out: kill the shim; recovery then has its proof.
	recKill(t, shim, syscall.SIGKILL)
	recWaitGone(t, "shim", shim)
	recWaitGone(t, "container process (shim delete stops it)", live.PID)
	recWaitPathGone(t, d, recBundle(d, ns, "orphan"))
	rep := recWaitReport(t, d, since, func(rep *loader.Report) string {
		return recCheckEntries(rep, map[string]recWant{ns + "/orphan": {"cleanup-dead", "done", "unresponsive shim is gone: shim gone"}}, true)
	})
	if e := recEntries(rep)[ns+"/orphan"]; e.ShimProcess.String() != "absent" {
		t.Errorf("entry after the kill: shim process %s, want absent", e.ShimProcess)
	}
	if _, ok := d.tasks(ns)["orphan"]; ok {
		t.Errorf("task still listed after its shim was proven gone")
	}
	d.mustCtr("container", "rm", "orphan")
	assertNoLeaks(t, d)
}

// TestSafetyDeadlineRegistersEveryBundle: with one worker, a 1 s deadline
// and a shim that takes 2 s to answer first in line, the shims no worker
// reached by the deadline are still listed at once and RUNNING once
// re-probed; the slow one too, once it answers.
func TestSafetyDeadlineRegistersEveryBundle(t *testing.T) {
	t.Parallel()
	requireOurs(t, "has no recovery deadline")
	d := newDaemon(t)
	ns := d.NS
	ids := []string{"a-slow", "b", "c", "d"}
	before := map[string]task{}
	for _, id := range ids {
		before[id] = d.mustRunSleeper(ns, id)
	}
	slow := recShimPID(t, d, ns, "a-slow")
	d.Stop()
	recSetConfig(t, d, recRecoveryConfig(`recovery_concurrency = 1`, `recovery_deadline = "1s"`,
		`recovery_retry_initial = "500ms"`, `recovery_retry_max = "1s"`))
	recKill(t, slow, syscall.SIGSTOP)
	resumed := false
	defer func() {
		if !resumed {
			_ = syscall.Kill(slow, syscall.SIGCONT)
		}
	}()

	d.Start()
	tasks := d.tasks(ns)
	for _, id := range ids {
		if _, ok := tasks[id]; !ok {
			t.Errorf("%s not listed right after the restart (tasks %+v)", id, tasks)
		}
	}
	time.AfterFunc(2*time.Second, func() { _ = syscall.Kill(slow, syscall.SIGCONT) })
	resumed = true
	for _, id := range ids {
		if got := d.waitTask(ns, id, "RUNNING"); got != before[id] {
			t.Errorf("%s = %+v, want %+v", id, got, before[id])
		}
	}
	if r := d.execIn(ns, "d", "e1", "/bin/echo", "up"); r.ExitCode != 0 || r.Stdout != "up\n" {
		t.Errorf("exec in a shim first judged after the deadline\n%s", r)
	}
	for _, id := range ids {
		d.removeContainer(ns, id)
	}
	assertNoLeaks(t, d)
}

// TestSafetyExitBeforeNewTask: a dead shim's /tasks/exit and /tasks/delete
// reach subscribers once each, before the /tasks/create of a new task of
// the same id, even while other dead shims are still being cleaned up.
func TestSafetyExitBeforeNewTask(t *testing.T) {
	t.Parallel()
	requireOurs(t, "cleans up dead shims before a client can subscribe")
	d := newDaemon(t)
	ns := d.NS
	old := map[string]task{}
	for _, id := range []string{"x", "y"} {
		old[id] = d.mustRunSleeper(ns, id)
	}
	shims := []int{recShimPID(t, d, ns, "x"), recShimPID(t, d, ns, "y")}
	d.Stop()
	release := map[string]string{"x": recSlowDelete(t, d, ns, "x"), "y": recSlowDelete(t, d, ns, "y")}
	recSetConfig(t, d, "[timeouts]\n  \"io.containerd.timeout.shim.cleanup\" = \"60s\"\n")
	for _, pid := range shims {
		recKill(t, pid, syscall.SIGKILL)
	}
	recWaitGone(t, "shims", shims...)

	d.Start()
	sub := d.subscribe(t, ns)
	started := make(chan result, 1)
	go func() { started <- d.ctr("task", "start", "-d", "--fifo-dir", d.FIFODir, "x") }()
	recReleaseFIFO(t, release["x"])
	if r := <-started; r.ExitCode != 0 {
		t.Fatalf("%s\n%s", r, d.logTail(30))
	}
	recReleaseFIFO(t, release["y"])

	var order []string
	exits := 0
	deadline := time.Now().Add(statusTimeout)
	for time.Now().Before(deadline) && !(exits > 0 && len(order) >= 3) {
		ev, err := sub.next(time.Until(deadline), func(e event) bool {
			id, _ := e.Fields["container_id"].(string)
			return id == "x" && (e.Topic == "/tasks/exit" || e.Topic == "/tasks/delete" || e.Topic == "/tasks/create")
		})
		if err != nil {
			break
		}
		if ev.Topic == "/tasks/exit" && ev.Fields["pid"] == float64(old["x"].PID) {
			exits++
		}
		order = append(order, ev.Topic)
	}
	// Anything more would be a second copy.
	for {
		ev, err := sub.next(2*time.Second, func(e event) bool {
			id, _ := e.Fields["container_id"].(string)
			return id == "x" && (e.Topic == "/tasks/exit" || e.Topic == "/tasks/delete")
		})
		if err != nil {
			break
		}
		order = append(order, ev.Topic)
	}
	want := []string{"/tasks/exit", "/tasks/delete", "/tasks/create"}
	if !equalStrings(order, want) {
		t.Errorf("events of x: %q, want %q (the old task's exit and delete once each, before the new task)", order, want)
	}
	recWaitGone(t, "container process of y", old["y"].PID)
	d.removeContainer(ns, "x")
	d.mustCtr("container", "rm", "y")
	assertNoLeaks(t, d)
}

// TestSafetyHostileSocketAddress: a dead shim's bootstrap.json names its
// socket through a symlink and "..": cleanup must remove neither the
// socket that the textual path names inside the socket dir (another
// shim's) nor the one the kernel would reach outside it.
func TestSafetyHostileSocketAddress(t *testing.T) {
	t.Parallel()
	requireOurs(t, "removes the socket a dead shim's address names")
	d := newDaemon(t)
	ns := d.NS
	d.mustRunSleeper(ns, "h")
	shim := recShimPID(t, d, ns, "h")
	d.Stop()
	recKill(t, shim, syscall.SIGKILL)
	recWaitGone(t, "shim", shim)

	outside := filepath.Join(d.Dir, "outside")
	if err := os.MkdirAll(filepath.Join(outside, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(d.SocketDir, "evil")
	if err := os.Symlink(filepath.Join(outside, "sub"), link); err != nil {
		t.Fatal(err)
	}
	inside, beyond := filepath.Join(d.SocketDir, "canary"), filepath.Join(outside, "canary")
	testshim.StaleSocket(t, inside)
	testshim.StaleSocket(t, beyond)
	boot := map[string]any{"version": 3, "protocol": "ttrpc", "address": "unix://" + link + "/../canary"}
	data, _ := json.Marshal(boot)
	if err := os.WriteFile(filepath.Join(recBundle(d, ns, "h"), "bootstrap.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}

	since := time.Now()
	d.Start()
	recWaitReport(t, d, since, func(rep *loader.Report) string {
		return recCheckEntries(rep, map[string]recWant{ns + "/h": {"cleanup-dead", "done", "shim gone"}}, true)
	})
	for _, p := range []string{inside, beyond, link} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v: cleanup of a hostile address removed it", p, err)
		}
	}
	if !d.logContains(`\"..\" element`) && !d.logContains(`".." element`) {
		t.Errorf("no log line says the hostile socket path was refused\n%s", d.logTail(20))
	}
	for _, p := range []string{inside, beyond, link} {
		_ = os.Remove(p)
	}
	d.mustCtr("container", "rm", "h")
	assertNoLeaks(t, d)
}

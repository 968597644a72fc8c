//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shimkeeper/shimkeeper/internal/crihost"
)

// TestDaemonRestart checks that running containers survive the daemon
// stopping (SIGTERM) or dying (SIGKILL): after a restart their tasks are
// RUNNING with the same PIDs and shims, and still manageable.
func TestDaemonRestart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		stop func(*Daemon)
	}{
		{"SIGTERM", (*Daemon).Stop},
		{"SIGKILL", (*Daemon).Kill},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newDaemon(t)
			testSurvivesRestart(t, d, func() {
				shims := recShims(d)
				tc.stop(d)
				since := time.Now()
				d.Start()
				if !isStock(d.bin) {
					// Each running (or paused) container adopted, nothing else.
					recAssertReport(t, d, since, recAdoptedAll(shims), []string{})
				}
			})
		})
	}
}

// testSurvivesRestart runs containers (two namespaces, one of them paused),
// calls restart, and checks that everything was taken over intact and can be
// managed and torn down afterwards.
func testSurvivesRestart(t *testing.T, d *Daemon, restart func()) {
	t.Helper()
	ns2 := newNamespace()
	before := map[string]task{
		d.NS + "/a": d.mustRunSleeper(d.NS, "a"),
		d.NS + "/b": d.mustRunSleeper(d.NS, "b"),
		ns2 + "/a":  d.mustRunSleeper(ns2, "a"),
	}
	d.mustCtr("task", "pause", "b")
	d.waitTask(d.NS, "b", "PAUSED")
	shimsBefore := shimPIDs(d)

	restart()

	for key, want := range map[string]task{
		d.NS + "/a": {ID: "a", PID: before[d.NS+"/a"].PID, Status: "RUNNING"},
		d.NS + "/b": {ID: "b", PID: before[d.NS+"/b"].PID, Status: "PAUSED"},
		ns2 + "/a":  {ID: "a", PID: before[ns2+"/a"].PID, Status: "RUNNING"},
	} {
		ns := key[:len(key)-len(want.ID)-1]
		if got, ok := d.tasks(ns)[want.ID]; !ok || got != want {
			t.Errorf("after restart %s: got %+v (listed %v), want %+v", key, got, ok, want)
		}
		if !crihost.PIDAlive(want.PID) {
			t.Errorf("after restart %s: pid %d is gone", key, want.PID)
		}
	}
	if got := shimPIDs(d); !equalInts(got, shimsBefore) {
		t.Errorf("shim pids after restart %v, want the same as before %v", got, shimsBefore)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Still manageable: ps, exec, resume, kill, delete.
	if got := psPIDs(t, d.mustCtr("task", "ps", "a")); !equalInts(got, []int{before[d.NS+"/a"].PID}) {
		t.Fatalf("task ps after restart = %v, want [%d]", got, before[d.NS+"/a"].PID)
	}
	if r := d.execIn(d.NS, "a", "after", "/bin/echo", "still here"); r.ExitCode != 0 || r.Stdout != "still here\n" {
		t.Fatalf("exec after restart\n%s", r)
	}
	d.mustCtr("task", "resume", "b")
	d.waitTask(d.NS, "b", "RUNNING")
	if r := d.execIn(d.NS, "b", "after", "/bin/true"); r.ExitCode != 0 {
		t.Fatalf("exec in resumed task after restart\n%s", r)
	}
	d.mustCtr("task", "kill", "a")
	d.waitTask(d.NS, "a", "STOPPED")
	for _, id := range []string{"a", "b"} {
		d.removeContainer(d.NS, id)
	}
	d.removeContainer(ns2, "a")
	assertNoLeaks(t, d)
}

// TestRestartWithExitedTask restarts the daemon over a task that has
// exited but was not deleted: once with the task exited before the daemon
// stopped, once with its process exiting while the daemon was down (the
// shim saw the exit; nobody was there to hear of it). Stock v2.4.2 treats
// such a shim as leaked on load (its ps is empty) and reaps it: the task
// disappears with its exit status and only the container record stays
// (contract §6.3 case 8). Ours must keep the task listed STOPPED with its
// real exit status until it is deleted, and report it adopted.
func TestRestartWithExitedTask(t *testing.T) {
	t.Parallel()
	t.Run("exited before the restart", func(t *testing.T) {
		t.Parallel()
		d := newDaemon(t)
		const id = "done"
		if r := d.runDetached(d.NS, id, "/bin/fail", "4"); r.ExitCode != 0 {
			t.Fatalf("%s", r)
		}
		before := d.waitTask(d.NS, id, "STOPPED")
		d.Kill()
		since := time.Now()
		d.Start()
		testExitedTaskAfterRestart(t, d, id, before, 4, since)
	})
	t.Run("exited while the daemon was down", func(t *testing.T) {
		t.Parallel()
		d := newDaemon(t)
		const id = "downexit"
		release, running := runUntilReleased(t, d, id, 7)
		d.Stop()
		release()
		recWaitGone(t, "container process after its FIFO was released", running.PID)
		since := time.Now()
		d.Start()
		testExitedTaskAfterRestart(t, d, id, task{ID: id, PID: running.PID, Status: "STOPPED"}, 7, since)
	})
}

// testExitedTaskAfterRestart checks a task that had exited with status
// code when the daemon restarted at since, then removes its container.
func testExitedTaskAfterRestart(t *testing.T, d *Daemon, id string, want task, code int, since time.Time) {
	t.Helper()
	got, listed := d.tasks(d.NS)[id]
	switch {
	case !isStock(d.bin):
		if !listed || got != want {
			t.Fatalf("after restart: task %+v (listed %v), want %+v", got, listed, want)
		}
		recAssertReport(t, d, since, map[string]recWant{
			d.NS + "/" + id: {"adopt", "done", "shim alive, task exited"},
		}, []string{})
		if r := d.ctr("task", "delete", id); r.ExitCode != 0 || !strings.Contains(r.Stderr, fmt.Sprintf("exit code %d", code)) {
			t.Fatalf("delete after restart: want the exit code %d of the process\n%s", code, r)
		}
	case listed:
		t.Logf("exited task kept across the restart: %+v", got)
		if got != want {
			t.Fatalf("after restart: task %+v, want %+v", got, want)
		}
		if r := d.ctr("task", "delete", id); r.ExitCode != 0 || !strings.Contains(r.Stderr, fmt.Sprintf("exit code %d", code)) {
			t.Fatalf("delete after restart: want the exit code %d of the process\n%s", code, r)
		}
	default:
		t.Logf("exited task reaped on restart (stock behaviour)")
		if n := len(shimProcs(d.Address)); n != 0 {
			t.Fatalf("task reaped but %d shim processes remain", n)
		}
		if r := d.ctr("task", "delete", id); r.ExitCode == 0 || !strings.Contains(r.Stderr, "not found") {
			t.Fatalf("delete of a reaped task: want a not found error\n%s", r)
		}
	}
	if got := d.containers(d.NS); !equalStrings(got, []string{id}) {
		t.Fatalf("containers after restart = %v, want [%s]: the record is the client's", got, id)
	}
	d.mustCtr("container", "rm", id)
	assertNoLeaks(t, d)
}

// shimPIDs returns the sorted pids of the daemon's shims.
func shimPIDs(d *Daemon) []int {
	var pids []int
	for _, p := range shimProcs(d.Address) {
		pids = append(pids, p.PID)
	}
	return pids
}

// containsAll reports whether s contains every one of subs.
func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestExitAfterRestartListed: right after a restart, the task listing is
// answered from what recovery's probe learned (knownstate); a task that
// exits after that must be listed STOPPED with its exit status at once,
// as stock lists it (stock asks the shim on every listing), not only once
// the probe's answer has expired (knownstate.TTL, 10 s). The process exits
// on its own, so no call through the daemon tells it: only the shim's
// /tasks/exit event does.
func TestExitAfterRestartListed(t *testing.T) {
	t.Parallel()
	d := newDaemon(t)
	const id = "exitlater"
	release, running := runUntilReleased(t, d, id, 5)
	d.Restart()
	if got := d.tasks(d.NS)[id]; got != running {
		t.Fatalf("after restart: %+v, want %+v", got, running)
	}
	release()
	recWaitGone(t, "container process after its FIFO was released", running.PID)
	// Well inside the probe answer's 10 s.
	if msg := eventually(3*time.Second, func() string {
		if got := d.tasks(d.NS)[id]; got.Status != "STOPPED" {
			return fmt.Sprintf("task %+v, want STOPPED", got)
		}
		return ""
	}); msg != "" {
		t.Fatalf("an exit after the restart is not listed: %s", msg)
	}
	if r := d.ctr("task", "delete", id); r.ExitCode != 0 || !strings.Contains(r.Stderr, "exit code 5") {
		t.Fatalf("delete: want exit code 5\n%s", r)
	}
	d.mustCtr("container", "rm", id)
	assertNoLeaks(t, d)
}

// TestShimLogCopied: what a shim writes to its bundle's log FIFO reaches
// the daemon's stderr, for a shim the daemon started and, after a
// restart, for the same shim adopted (shimlog: one pump for every shim).
// The test writes to the FIFO as the shim would.
func TestShimLogCopied(t *testing.T) {
	t.Parallel()
	d := newDaemon(t)
	const id = "logged"
	d.mustRunSleeper(d.NS, id)
	fifo := filepath.Join(d.State, taskPluginDir, d.NS, id, "log")
	say := func(line string) {
		t.Helper()
		w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			t.Fatalf("open the shim log FIFO for writing (nobody reading it?): %v", err)
		}
		defer w.Close()
		if _, err := w.WriteString(line + "\n"); err != nil {
			t.Fatal(err)
		}
		if msg := eventually(5*time.Second, func() string {
			if !d.logContains(line) {
				return "not in the daemon's log"
			}
			return ""
		}); msg != "" {
			t.Fatalf("%q %s", line, msg)
		}
	}
	say("shim log line " + randomHex(4) + " before the restart")
	d.Restart()
	d.waitTask(d.NS, id, "RUNNING")
	say("shim log line " + randomHex(4) + " after the restart")
	d.removeContainer(d.NS, id)
	assertNoLeaks(t, d)
}

// runUntilReleased runs a container whose process blocks (cat on a FIFO
// in the rootfs) until release is called, then exits with code: it exits
// exactly when the test wants, no sleep. It returns release and the task
// RUNNING.
func runUntilReleased(t *testing.T, d *Daemon, id string, code int) (release func(), running task) {
	t.Helper()
	fifo := "/tmp/release-" + randomHex(4)
	recMkfifo(t, d.Rootfs+fifo)
	if r := d.runDetached(d.NS, id, "/bin/sh", "-c", fmt.Sprintf("cat %s; exit %d", fifo, code)); r.ExitCode != 0 {
		t.Fatalf("%s", r)
	}
	return func() { recReleaseFIFO(t, d.Rootfs+fifo) }, d.waitTask(d.NS, id, "RUNNING")
}

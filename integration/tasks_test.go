//go:build integration

package integration

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/shimkeeper/shimkeeper/internal/crihost"
)

// TestSameIDInTwoNamespaces runs a container with the same id in two
// namespaces: they are separate tasks, and removing one leaves the other.
func TestSameIDInTwoNamespaces(t *testing.T) {
	t.Parallel()
	d := newDaemon(t)
	const id = "same"
	ns1, ns2 := d.NS, newNamespace()

	t1 := d.mustRunSleeper(ns1, id)
	t2 := d.mustRunSleeper(ns2, id)
	if t1.PID == t2.PID {
		t.Fatalf("both namespaces report pid %d", t1.PID)
	}
	for _, ns := range []string{ns1, ns2} {
		if got := d.tasks(ns); len(got) != 1 {
			t.Fatalf("namespace %s lists %d tasks, want 1: %v", ns, len(got), got)
		}
	}

	if r := d.execIn(ns2, id, "e1", "/bin/echo", ns2); r.ExitCode != 0 || r.Stdout != ns2+"\n" {
		t.Fatalf("exec in %s\n%s", ns2, r)
	}
	d.removeContainer(ns1, id)
	if !crihost.PIDAlive(t2.PID) {
		t.Fatalf("removing %s/%s killed %s/%s (pid %d)", ns1, id, ns2, id, t2.PID)
	}
	if got := d.tasks(ns2)[id]; got.Status != "RUNNING" || got.PID != t2.PID {
		t.Fatalf("%s/%s after removing %s/%s: %+v, want RUNNING pid %d", ns2, id, ns1, id, got, t2.PID)
	}
	d.removeContainer(ns2, id)
	assertNoLeaks(t, d)
}

// TestParallelTasks starts, checks and removes ten containers concurrently.
func TestParallelTasks(t *testing.T) {
	t.Parallel()
	d := newDaemon(t)
	const n = 10
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("p%d", i)
	}

	parallel(t, ids, func(id string) error {
		if r := d.runDetached(d.NS, id, "/bin/sleep", "3600"); r.ExitCode != 0 {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
	var tasks map[string]task
	if msg := eventually(statusTimeout, func() string {
		tasks = d.tasks(d.NS)
		for _, id := range ids {
			if tasks[id].Status != "RUNNING" {
				return fmt.Sprintf("task %s is %q", id, tasks[id].Status)
			}
		}
		return ""
	}); msg != "" {
		t.Fatal(msg)
	}
	if len(tasks) != n {
		t.Fatalf("ctr task ls lists %d tasks, want %d: %v", len(tasks), n, tasks)
	}
	pids := map[int]string{}
	for _, id := range ids {
		pid := tasks[id].PID
		if other, dup := pids[pid]; dup || !crihost.PIDAlive(pid) {
			t.Fatalf("task %s pid %d: duplicate of %q or not alive", id, pid, other)
		}
		pids[pid] = id
	}
	if shims := shimProcs(d.Address); len(shims) != n {
		t.Errorf("%d shim processes, want one per task (%d)", len(shims), n)
	}

	parallel(t, ids, func(id string) error {
		if r := d.execIn(d.NS, id, "e1", "/bin/echo", id); r.ExitCode != 0 || r.Stdout != id+"\n" {
			return fmt.Errorf("exec: %s", r)
		}
		if r := d.ctr("task", "delete", "--force", id); r.ExitCode != 0 {
			return fmt.Errorf("%s", r)
		}
		if r := d.ctr("container", "rm", id); r.ExitCode != 0 {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
	if got := d.tasks(d.NS); len(got) != 0 {
		t.Fatalf("tasks left after parallel delete: %v", got)
	}
	assertNoLeaks(t, d)
}

// parallel runs fn for every id concurrently and fails the test with every
// error.
func parallel(t *testing.T, ids []string, fn func(id string) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(ids))
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(id)
		}()
	}
	wg.Wait()
	failed := false
	for i, err := range errs {
		if err != nil {
			t.Errorf("%s: %v", ids[i], err)
			failed = true
		}
	}
	if failed {
		t.FailNow()
	}
}

// TestExitStatus checks that the exit status of a process that ends on its
// own reaches ctr, in the foreground, detached and for execs.
func TestExitStatus(t *testing.T) {
	t.Parallel()
	t.Run("foreground run", func(t *testing.T) {
		t.Parallel()
		d := newDaemon(t)
		// ctr run without -d waits for the task and exits with its status;
		// --rm deletes the container afterwards.
		r := d.ctr(d.runArgs([]string{"--rm"}, "fg", "/bin/fail", "3")...)
		if r.ExitCode != 3 {
			t.Fatalf("ctr run of `fail 3`: want exit code 3\n%s", r)
		}
		if got := d.containers(d.NS); len(got) != 0 {
			t.Fatalf("containers after run --rm: %v", got)
		}
		assertNoLeaks(t, d)
	})

	t.Run("detached run", func(t *testing.T) {
		t.Parallel()
		d := newDaemon(t)
		const id = "bg"
		if r := d.runDetached(d.NS, id, "/bin/sh", "-c", "exit 7"); r.ExitCode != 0 {
			t.Fatalf("%s", r)
		}
		tk := d.waitTask(d.NS, id, "STOPPED")
		if tk.PID <= 0 || crihost.PIDAlive(tk.PID) {
			t.Fatalf("stopped task %+v: want the pid of an exited process", tk)
		}
		r := d.ctr("task", "delete", id)
		if r.ExitCode != 0 || !strings.Contains(r.Stderr, "exit with non-zero exit code 7") {
			t.Fatalf("task delete: want exit 0 and a warning about exit code 7\n%s", r)
		}
		d.mustCtr("container", "rm", id)
		assertNoLeaks(t, d)
	})

	t.Run("exec", func(t *testing.T) {
		t.Parallel()
		d := newDaemon(t)
		const id = "ex"
		d.mustRunSleeper(d.NS, id)
		for _, tc := range []struct {
			argv []string
			want int
		}{
			{[]string{"/bin/true"}, 0},
			{[]string{"/bin/false"}, 1},
			{[]string{"/bin/fail", "42"}, 42},
			{[]string{"/bin/sh", "-c", "echo x; exit 9"}, 9},
		} {
			if r := d.execIn(d.NS, id, "e1", tc.argv...); r.ExitCode != tc.want {
				t.Errorf("exec %v: want exit code %d\n%s", tc.argv, tc.want, r)
			}
		}
		d.removeContainer(d.NS, id)
		assertNoLeaks(t, d)
	})
}

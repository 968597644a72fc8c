//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/shimkeeper/shimkeeper/internal/crihost"
)

// TestRunExecKillDelete walks one container through its whole life with ctr:
// run, ls, exec, kill, delete, container rm.
func TestRunExecKillDelete(t *testing.T) {
	t.Parallel()
	d := newDaemon(t)
	const id = "c1"

	tk := d.mustRunSleeper(d.NS, id)
	if got := procArgs(t, tk.PID); !equalStrings(got, []string{"/bin/sleep", "3600"}) {
		t.Fatalf("task pid %d runs %q, want [/bin/sleep 3600]", tk.PID, got)
	}
	// The shim must have put its socket in the configured socket_dir, not
	// in the default /run/containerd/s.
	if names := dirEntries(d.SocketDir); len(names) == 0 {
		t.Fatalf("no shim socket in socket_dir %s", d.SocketDir)
	}
	if !isDir(filepath.Join(d.State, taskPluginDir, d.NS, id)) {
		t.Fatalf("no bundle at %s", filepath.Join(d.State, taskPluginDir, d.NS, id))
	}

	if r := d.execIn(d.NS, id, "e1", "/bin/echo", "hi"); r.ExitCode != 0 || r.Stdout != "hi\n" {
		t.Fatalf("exec echo: want exit 0 and stdout %q\n%s", "hi\n", r)
	}
	if r := d.execIn(d.NS, id, "e2", "/bin/sh", "-c", "exit 5"); r.ExitCode != 5 {
		t.Fatalf("exec sh -c 'exit 5': want exit 5\n%s", r)
	}
	// Exec ids are reusable once the earlier process is gone.
	if r := d.execIn(d.NS, id, "e1", "/bin/echo", "again"); r.ExitCode != 0 || r.Stdout != "again\n" {
		t.Fatalf("exec with a reused exec id: want %q\n%s", "again\n", r)
	}

	d.mustCtr("task", "kill", id) // SIGTERM by default
	stopped := d.waitTask(d.NS, id, "STOPPED")
	if stopped.PID != tk.PID {
		t.Errorf("STOPPED task reports pid %d, want %d", stopped.PID, tk.PID)
	}
	if crihost.PIDAlive(tk.PID) {
		t.Errorf("container process %d still alive after SIGTERM", tk.PID)
	}

	r := d.ctr("task", "delete", id)
	// toybox sleep exits 128+15 on SIGTERM; ctr reports non-zero statuses.
	if r.ExitCode != 0 || !strings.Contains(r.Stderr, "exit with non-zero exit code 143") {
		t.Fatalf("task delete: want exit 0 and a warning about exit code 143\n%s", r)
	}
	if _, ok := d.tasks(d.NS)[id]; ok {
		t.Fatalf("task %s still listed after delete", id)
	}
	if got := d.containers(d.NS); !equalStrings(got, []string{id}) {
		t.Fatalf("containers after task delete = %v, want [%s]", got, id)
	}
	d.mustCtr("container", "rm", id)
	if got := d.containers(d.NS); len(got) != 0 {
		t.Fatalf("containers after container rm = %v, want none", got)
	}
	assertNoLeaks(t, d)
}

// TestDeleteRunningTask checks that a running task refuses a plain delete and
// that --force kills and deletes it.
func TestDeleteRunningTask(t *testing.T) {
	t.Parallel()
	d := newDaemon(t)
	const id = "c1"
	tk := d.mustRunSleeper(d.NS, id)

	r := d.ctr("task", "delete", id)
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "must be stopped") {
		t.Fatalf("delete of a running task: want an error saying it must be stopped\n%s", r)
	}
	if got := d.tasks(d.NS)[id]; got.Status != "RUNNING" || got.PID != tk.PID {
		t.Fatalf("after refused delete: task = %+v, want RUNNING pid %d", got, tk.PID)
	}

	d.mustCtr("task", "delete", "--force", id)
	if _, ok := d.tasks(d.NS)[id]; ok {
		t.Fatalf("task %s still listed after delete --force", id)
	}
	if crihost.PIDAlive(tk.PID) {
		t.Fatalf("container process %d alive after delete --force", tk.PID)
	}
	d.mustCtr("container", "rm", id)
	assertNoLeaks(t, d)
}

// TestPauseResume checks PAUSED/RUNNING in ctr and the freezer state behind it.
func TestPauseResume(t *testing.T) {
	t.Parallel()
	d := newDaemon(t)
	const id = "c1"
	tk := d.mustRunSleeper(d.NS, id)

	d.mustCtr("task", "pause", id)
	if got := d.tasks(d.NS)[id]; got.Status != "PAUSED" || got.PID != tk.PID {
		t.Fatalf("after pause: task = %+v, want PAUSED pid %d", got, tk.PID)
	}
	if got := procState(t, tk.PID); got != 'D' && got != 'S' {
		// Frozen tasks show up as D (v1 freezer) or S; never R.
		t.Errorf("paused process state %q", got)
	}
	if got := freezerState(t, d.NS, id); got != "" && got != "FROZEN" {
		t.Errorf("freezer.state = %q after pause, want FROZEN", got)
	}

	d.mustCtr("task", "resume", id)
	if got := d.tasks(d.NS)[id]; got.Status != "RUNNING" || got.PID != tk.PID {
		t.Fatalf("after resume: task = %+v, want RUNNING pid %d", got, tk.PID)
	}
	if got := freezerState(t, d.NS, id); got != "" && got != "THAWED" {
		t.Errorf("freezer.state = %q after resume, want THAWED", got)
	}
	// A resumed container still does work.
	if r := d.execIn(d.NS, id, "e1", "/bin/echo", "awake"); r.ExitCode != 0 || r.Stdout != "awake\n" {
		t.Fatalf("exec after resume\n%s", r)
	}
	d.removeContainer(d.NS, id)
	assertNoLeaks(t, d)
}

// TestTaskPs checks that ctr task ps lists the init process and an exec.
func TestTaskPs(t *testing.T) {
	t.Parallel()
	d := newDaemon(t)
	const id = "c1"
	tk := d.mustRunSleeper(d.NS, id)

	if got := psPIDs(t, d.mustCtr("task", "ps", id)); !equalInts(got, []int{tk.PID}) {
		t.Fatalf("task ps = %v, want [%d]", got, tk.PID)
	}
	if r := d.ctr("task", "exec", "-d", "--fifo-dir", d.FIFODir, "--exec-id", "e1", id, "/bin/sleep", "3600"); r.ExitCode != 0 {
		t.Fatalf("exec -d: %s", r)
	}
	var pids []int
	if msg := eventually(statusTimeout, func() string {
		pids = psPIDs(t, d.mustCtr("task", "ps", id))
		if len(pids) != 2 {
			return fmt.Sprintf("task ps = %v, want 2 pids", pids)
		}
		return ""
	}); msg != "" {
		t.Fatal(msg)
	}
	var execPID int
	for _, p := range pids {
		if p != tk.PID {
			execPID = p
		}
	}
	if execPID == 0 || !equalStrings(procArgs(t, execPID), []string{"/bin/sleep", "3600"}) {
		t.Fatalf("task ps = %v: no exec'd sleep besides init %d", pids, tk.PID)
	}
	waitCatchesSIGTERM(t, execPID)

	d.mustCtr("task", "kill", "--exec-id", "e1", id)
	if msg := eventually(statusTimeout, func() string {
		if got := psPIDs(t, d.mustCtr("task", "ps", id)); !equalInts(got, []int{tk.PID}) {
			return fmt.Sprintf("task ps = %v after killing the exec, want [%d]", got, tk.PID)
		}
		return ""
	}); msg != "" {
		t.Fatal(msg)
	}
	d.removeContainer(d.NS, id)
	assertNoLeaks(t, d)
}

// TestTaskMetrics checks the cgroup metrics ctr task metrics shows.
func TestTaskMetrics(t *testing.T) {
	t.Parallel()
	d := newDaemon(t)
	const id = "c1"
	tk := d.mustRunSleeper(d.NS, id)

	var (
		out string
		m   map[string]string
	)
	// The pids controller counts threads (toybox is a Go program), so
	// compare with the thread count; retry in case the runtime just
	// started one.
	if msg := eventually(statusTimeout, func() string {
		out = d.mustCtr("task", "metrics", id)
		m = parseMetrics(out)
		if want := strconv.Itoa(threadCount(t, tk.PID)); m["pids.current"] != want {
			return fmt.Sprintf("pids.current = %q, want %s (threads of pid %d)\n%s", m["pids.current"], want, tk.PID, out)
		}
		return ""
	}); msg != "" {
		t.Error(msg)
	}
	if m["ID"] != "TIMESTAMP" || !strings.Contains(out, "\n"+id+" ") {
		t.Errorf("metrics header does not name task %s:\n%s", id, out)
	}
	if v, err := strconv.ParseUint(m["memory.usage_in_bytes"], 10, 64); err != nil || v == 0 {
		t.Errorf("memory.usage_in_bytes = %q, want > 0\n%s", m["memory.usage_in_bytes"], out)
	}
	if v, err := strconv.ParseUint(m["cpuacct.usage"], 10, 64); err != nil || v == 0 {
		t.Errorf("cpuacct.usage = %q, want > 0\n%s", m["cpuacct.usage"], out)
	}
	d.removeContainer(d.NS, id)
	assertNoLeaks(t, d)
}

// helpers

func procArgs(t *testing.T, pid int) []string {
	t.Helper()
	p, ok := crihost.ReadProc(pid)
	if !ok {
		t.Fatalf("process %d does not exist", pid)
	}
	return p.Args()
}

func procState(t *testing.T, pid int) byte {
	t.Helper()
	p, ok := crihost.ReadProc(pid)
	if !ok {
		t.Fatalf("process %d does not exist", pid)
	}
	return p.State
}

// threadCount is the number of threads of pid.
func threadCount(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// freezerState reads the v1 freezer state of container id ("" on a host
// without a v1 freezer hierarchy).
func freezerState(t *testing.T, ns, id string) string {
	t.Helper()
	if !isDir(filepath.Join(cgroupRoot, "freezer")) {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(cgroupRoot, "freezer", ns, id, "freezer.state"))
	if err != nil {
		t.Fatalf("container cgroup: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// psPIDs parses `ctr task ps` (PID INFO).
func psPIDs(t *testing.T, out string) []int {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || strings.Join(strings.Fields(lines[0]), " ") != "PID INFO" {
		t.Fatalf("unexpected ctr task ps output %q", out)
	}
	var pids []int
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		pid, err := strconv.Atoi(f[0])
		if err != nil {
			t.Fatalf("bad ctr task ps row %q", l)
		}
		pids = append(pids, pid)
	}
	return pids
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

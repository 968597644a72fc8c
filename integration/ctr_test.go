//go:build integration

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shimkeeper/shimkeeper/internal/crihost"
)

// result is one finished ctr (or crictl) invocation.
type result struct {
	Tool     string // "" for ctr
	Args     []string
	Stdout   string
	Stderr   string
	ExitCode int // -1 when ctr did not exit normally (e.g. killed by the watchdog)
	Elapsed  time.Duration
	Err      error
}

func (r result) String() string {
	tool := r.Tool
	if tool == "" {
		tool = "ctr"
	}
	return fmt.Sprintf("`%s %s` exit=%d after %s\nstdout: %s\nstderr: %s",
		tool, strings.Join(r.Args, " "), r.ExitCode, r.Elapsed.Round(time.Millisecond),
		strings.TrimSpace(r.Stdout), strings.TrimSpace(r.Stderr))
}

// ctrError returns ctr's error message (its "ctr: ..." lines), without the
// log lines ctr prints before it.
func (r result) ctrError() string {
	var lines []string
	for _, l := range strings.Split(r.Stderr, "\n") {
		if strings.HasPrefix(l, "ctr: ") || (len(lines) > 0 && l != "") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// ctrCmd builds `bin/ctr --address <sock> [--namespace ns] args...`.
func (d *Daemon) ctrCmd(ctx context.Context, ns string, args ...string) *exec.Cmd {
	full := []string{"--address", d.Address}
	if ns != "" {
		full = append(full, "--namespace", ns)
		d.mu.Lock()
		d.namespaces[ns] = true
		d.mu.Unlock()
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, bin("ctr"), full...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// ctrCtx runs ctr under ctx in namespace ns and never fails the test.
func (d *Daemon) ctrCtx(ctx context.Context, ns string, args ...string) result {
	return runResult(d.ctrCmd(ctx, ns, args...), "", args)
}

// runResult runs cmd, which has no Stdout or Stderr set, and collects what
// it printed and how it exited; args are the arguments to report.
func runResult(cmd *exec.Cmd, tool string, args []string) result {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{Tool: tool, Args: args, Stdout: stdout.String(), Stderr: stderr.String(), Elapsed: time.Since(start), Err: err, ExitCode: -1}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		r.ExitCode = 0
	case errors.As(err, &exitErr) && exitErr.Exited():
		r.ExitCode = exitErr.ExitCode()
	}
	return r
}

// ctrIn runs ctr in namespace ns under the ctr watchdog.
func (d *Daemon) ctrIn(ns string, args ...string) result {
	return d.ctrWithin(ctrTimeout, ns, args...)
}

// ctrWithin runs ctr in namespace ns and kills it after timeout.
func (d *Daemon) ctrWithin(timeout time.Duration, ns string, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.ctrCtx(ctx, ns, args...)
}

// ctr runs ctr in the test's namespace.
func (d *Daemon) ctr(args ...string) result { return d.ctrIn(d.NS, args...) }

// mustCtrIn runs ctr in ns and fails the test unless it exits 0.
func (d *Daemon) mustCtrIn(ns string, args ...string) string {
	d.t.Helper()
	r := d.ctrIn(ns, args...)
	if r.ExitCode != 0 {
		d.t.Fatalf("%s", r)
	}
	return r.Stdout
}

// mustCtr runs ctr in the test's namespace and fails the test unless it exits 0.
func (d *Daemon) mustCtr(args ...string) string {
	d.t.Helper()
	return d.mustCtrIn(d.NS, args...)
}

// runArgs are the `ctr run` arguments for a container on the test rootfs,
// with runc state and FIFOs inside the test dir.
func (d *Daemon) runArgs(extra []string, id string, argv ...string) []string {
	args := []string{"run", "--rootfs", "--runc-root", d.RuncRoot, "--fifo-dir", d.FIFODir}
	args = append(args, extra...)
	args = append(args, d.Rootfs, id)
	return append(args, argv...)
}

// runDetached is `ctr run -d` of argv in container id of namespace ns.
func (d *Daemon) runDetached(ns, id string, argv ...string) result {
	return d.ctrIn(ns, d.runArgs([]string{"-d"}, id, argv...)...)
}

// mustRunSleeper starts a detached `sleep 3600` container and returns its
// task once ctr task ls reports it RUNNING with a live PID.
func (d *Daemon) mustRunSleeper(ns, id string) task {
	d.t.Helper()
	if r := d.runDetached(ns, id, "/bin/sleep", "3600"); r.ExitCode != 0 {
		d.t.Fatalf("%s\n%s", r, d.logTail(40))
	}
	tk := d.waitTask(ns, id, "RUNNING")
	if tk.PID <= 0 || !crihost.PIDAlive(tk.PID) {
		d.t.Fatalf("task %s/%s RUNNING with pid %d, which is not a live process", ns, id, tk.PID)
	}
	waitCatchesSIGTERM(d.t, tk.PID)
	return tk
}

// waitCatchesSIGTERM waits until pid has a SIGTERM handler installed. The
// container's init is PID 1 of its pid namespace, which ignores signals it
// has no handler for, so a `ctr task kill` sent before toybox sleep has set
// up its handler would be lost.
func waitCatchesSIGTERM(t testing.TB, pid int) {
	t.Helper()
	if msg := eventually(statusTimeout, func() string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return err.Error()
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
				mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				if err != nil {
					return err.Error()
				}
				if mask&(1<<(uint(syscall.SIGTERM)-1)) != 0 {
					return ""
				}
				return "SIGTERM not caught yet"
			}
		}
		return "no SigCgt in /proc/" + strconv.Itoa(pid) + "/status"
	}); msg != "" {
		t.Fatalf("pid %d: %s", pid, msg)
	}
}

// execIn runs `ctr task exec` in ns and returns the result.
func (d *Daemon) execIn(ns, id, execID string, argv ...string) result {
	args := append([]string{"task", "exec", "--fifo-dir", d.FIFODir, "--exec-id", execID, id}, argv...)
	return d.ctrIn(ns, args...)
}

// task is one row of `ctr task ls`.
type task struct {
	ID     string
	PID    int
	Status string
}

// parseTaskList parses `ctr task ls` output (TASK PID STATUS columns).
func parseTaskList(out string) (map[string]task, error) {
	tasks := map[string]task{}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || !strings.HasPrefix(strings.Join(strings.Fields(lines[0]), " "), "TASK PID STATUS") {
		return nil, fmt.Errorf("unexpected ctr task ls header in %q", out)
	}
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("unexpected ctr task ls row %q", line)
		}
		pid, err := strconv.Atoi(f[1])
		if err != nil {
			return nil, fmt.Errorf("bad pid in ctr task ls row %q: %w", line, err)
		}
		tasks[f[0]] = task{ID: f[0], PID: pid, Status: f[2]}
	}
	return tasks, nil
}

// tasks returns `ctr task ls` of namespace ns by task id.
func (d *Daemon) tasks(ns string) map[string]task {
	d.t.Helper()
	tasks, err := parseTaskList(d.mustCtrIn(ns, "task", "ls"))
	if err != nil {
		d.t.Fatal(err)
	}
	return tasks
}

// waitTask polls ctr task ls until task id has the given status.
func (d *Daemon) waitTask(ns, id, status string) task {
	d.t.Helper()
	var tk task
	msg := eventually(statusTimeout, func() string {
		r := d.ctrIn(ns, "task", "ls")
		if r.ExitCode != 0 {
			return r.String()
		}
		tasks, err := parseTaskList(r.Stdout)
		if err != nil {
			return err.Error()
		}
		var ok bool
		if tk, ok = tasks[id]; !ok {
			return fmt.Sprintf("task %s not listed:\n%s", id, r.Stdout)
		}
		if tk.Status != status {
			return fmt.Sprintf("task %s is %s, want %s", id, tk.Status, status)
		}
		return ""
	})
	if msg != "" {
		d.t.Fatalf("waiting for %s/%s to be %s: %s\n%s", ns, id, status, msg, d.logTail(40))
	}
	return tk
}

// containers returns the ids listed by `ctr container ls -q`.
func (d *Daemon) containers(ns string) []string {
	d.t.Helper()
	return strings.Fields(d.mustCtrIn(ns, "container", "ls", "-q"))
}

// removeContainer tears a container down the way a user would: SIGKILL the
// task if it is still running, wait for STOPPED, delete the task, then the
// container; it asserts each step.
func (d *Daemon) removeContainer(ns, id string) {
	d.t.Helper()
	if tk, ok := d.tasks(ns)[id]; ok {
		if tk.Status != "STOPPED" {
			d.mustCtrIn(ns, "task", "kill", "--signal", "SIGKILL", id)
			d.waitTask(ns, id, "STOPPED")
		}
		d.mustCtrIn(ns, "task", "delete", id)
		if _, ok := d.tasks(ns)[id]; ok {
			d.t.Fatalf("task %s/%s still listed after ctr task delete", ns, id)
		}
	}
	d.mustCtrIn(ns, "container", "rm", id)
	for _, c := range d.containers(ns) {
		if c == id {
			d.t.Fatalf("container %s/%s still listed after ctr container rm", ns, id)
		}
	}
}

// plugin is one row of `ctr plugins ls`.
type plugin struct{ Type, ID, Status string }

// parsePlugins parses `ctr plugins ls` (TYPE ID PLATFORMS STATUS).
func parsePlugins(out string) (map[string]plugin, error) {
	plugins := map[string]plugin{}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || strings.Join(strings.Fields(lines[0]), " ") != "TYPE ID PLATFORMS STATUS" {
		return nil, fmt.Errorf("unexpected ctr plugins ls header in %q", out)
	}
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) < 4 {
			return nil, fmt.Errorf("unexpected ctr plugins ls row %q", line)
		}
		p := plugin{Type: f[0], ID: f[1], Status: f[len(f)-1]}
		plugins[p.Type+"."+p.ID] = p
	}
	return plugins, nil
}

// parseMetrics parses the METRIC/VALUE table of `ctr task metrics`.
func parseMetrics(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			m[f[0]] = strings.Join(f[1:], " ")
		}
	}
	return m
}

// background is a long-running ctr process (e.g. ctr events) whose stdout
// lines are delivered on Lines.
type background struct {
	cmd   *exec.Cmd
	Lines chan string
	done  chan struct{}
	mu    sync.Mutex
	errb  bytes.Buffer
}

// startBackground starts ctr args... in ns and stops it (by PID) at cleanup.
func (d *Daemon) startBackground(ns string, args ...string) *background {
	d.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := d.ctrCmd(ctx, ns, args...)
	b := &background{cmd: cmd, Lines: make(chan string, 1024), done: make(chan struct{})}
	cmd.Stderr = &lockedWriter{mu: &b.mu, w: &b.errb}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		d.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		d.t.Fatal(err)
	}
	go func() {
		defer close(b.done)
		defer close(b.Lines)
		buf := make([]byte, 0, 64*1024)
		var pending []byte
		for {
			n, err := stdout.Read(buf[:cap(buf)])
			pending = append(pending, buf[:n]...)
			for {
				i := bytes.IndexByte(pending, '\n')
				if i < 0 {
					break
				}
				b.Lines <- string(pending[:i])
				pending = pending[i+1:]
			}
			if err != nil {
				return
			}
		}
	}()
	d.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		cancel()
		<-b.done
		_ = cmd.Wait()
	})
	return b
}

// Stderr returns what the background ctr wrote to stderr so far.
func (b *background) Stderr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.errb.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

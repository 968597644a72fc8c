//go:build integration

package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/sandbox"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/shimkeeper/shimkeeper/internal/crihost"

	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/loader"
)

// sandboxShim is the fake shim in sandbox mode (testdata/fakeshim,
// sandbox.go) behind a wrapper script, with its call log.
type sandboxShim struct {
	Path  string // the wrapper, for --runtime
	Calls string // one "<Method> <id>" line per call the server answered
}

// installSandboxShim writes <test dir>/containerd-shim-fakesb-v2, which
// runs the fake shim in sandbox mode with its call log in the test dir.
func installSandboxShim(t testing.TB, d *Daemon) sandboxShim {
	t.Helper()
	fake, err := buildFakeShim()
	if err != nil {
		t.Fatal(err)
	}
	s := sandboxShim{Path: filepath.Join(d.Dir, "containerd-shim-fakesb-v2"), Calls: filepath.Join(d.Dir, "sandbox-calls.log")}
	script := fmt.Sprintf("#!/bin/sh\nFAKESHIM_CALLS=%q exec %q sandbox \"$@\"\n", s.Calls, fake)
	if err := os.WriteFile(s.Path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return s
}

// calls returns the calls the fake sandbox server logged, in order.
func (s sandboxShim) calls(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile(s.Calls)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.FieldsFunc(string(b), func(r rune) bool { return r == '\n' })
}

// writePodConfig writes a minimal OCI spec for `ctr sandboxes run`.
func writePodConfig(t testing.TB, d *Daemon, hostname string) string {
	t.Helper()
	path := filepath.Join(d.Dir, "pod-"+hostname+".json")
	if err := os.WriteFile(path, []byte(`{"ociVersion": "1.2.1", "hostname": "`+hostname+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// sandboxSocket is where a stock-protocol shim of ns/id listens:
// <socket_dir>/<sha256 of grpc address/ns/id>.
func sandboxSocket(d *Daemon, ns, id string) string {
	sum := sha256.Sum256([]byte(filepath.Join(d.Address, ns, id)))
	return filepath.Join(d.SocketDir, hex.EncodeToString(sum[:]))
}

// sandboxController returns the daemon's "shim" sandbox controller through
// the Go client (ctr has no status, metrics or wait command for sandboxes)
// and a context in ns. Platform cannot be reached this way: stock's sandbox
// controllers service does not implement it.
func sandboxController(t testing.TB, d *Daemon, ns string) (sandbox.Controller, context.Context) {
	t.Helper()
	c, err := client.New(d.Address, client.WithDefaultNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.SandboxController("shim"), namespaces.WithNamespace(context.Background(), ns)
}

// waitReportIn is recWaitReport for any plugin's state dir.
func waitReportIn(t testing.TB, d *Daemon, pluginDir string, since time.Time, check func(*loader.Report) string) *loader.Report {
	t.Helper()
	var rep *loader.Report
	msg := eventually(recReportTimeout, func() string {
		var err error
		if rep, err = loader.ReadReport(filepath.Join(d.State, pluginDir)); err != nil {
			return err.Error()
		}
		if rep.StartedAt.Before(since) {
			return fmt.Sprintf("report from a pass started at %s, before the restart at %s", rep.StartedAt, since)
		}
		if rep.Finished.IsZero() {
			return "the pass's background work has not finished"
		}
		if check != nil {
			return check(rep)
		}
		return ""
	})
	if msg != "" {
		data, _ := os.ReadFile(filepath.Join(d.State, pluginDir, layout.ReportFile))
		t.Fatalf("recovery report of %s: %s\nreport:\n%s\n%s", pluginDir, msg, data, d.logTail(40))
	}
	return rep
}

// assertMode checks the permission bits of a directory.
func assertMode(t testing.TB, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	if !fi.IsDir() || fi.Mode().Perm() != want {
		t.Errorf("%s: mode %s, want a directory with mode %s", path, fi.Mode(), want)
	}
}

// TestShimSandboxController drives the "shim" sandbox controller (the
// client's default sandboxer) with a fake sandbox shim: ctr sandboxes run,
// ls, info, the controller's Status, Metrics and Wait through the
// Go client, a daemon restart that must adopt the sandbox's shim, and ctr
// sandboxes rm after it (Stop, Shutdown: the shim exits, bundle, work dir
// and socket go).
func TestShimSandboxController(t *testing.T) {
	t.Parallel()
	d := newDaemon(t)
	ns, id := d.NS, "sb1"
	shim := installSandboxShim(t, d)
	pod := writePodConfig(t, d, "sbhost")

	r := d.ctr("sandboxes", "run", "--runtime", shim.Path, pod, id)
	if r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != id {
		t.Fatalf("want ctr sandboxes run to print %q\n%s\n%s", id, r, d.logTail(30))
	}

	// The bundle is the shim controller's, in stock's layout and modes.
	stateDir, rootDir := filepath.Join(d.State, sandboxPluginDir), filepath.Join(d.Root, sandboxPluginDir)
	bundle, work := filepath.Join(stateDir, ns, id), filepath.Join(rootDir, ns, id)
	assertMode(t, stateDir, 0o700)
	assertMode(t, rootDir, 0o700)
	assertMode(t, filepath.Join(stateDir, ns), 0o711)
	assertMode(t, bundle, 0o700)
	assertMode(t, work, 0o711)
	if _, err := os.Lstat(filepath.Join(d.State, taskPluginDir, ns, id)); err == nil {
		t.Errorf("sandbox %s has a bundle in the task plugin's dir too", id)
	}
	if b, err := os.ReadFile(filepath.Join(bundle, "shim-binary-path")); err != nil || string(b) != shim.Path {
		t.Errorf("shim-binary-path = %q (%v), want %q", b, err, shim.Path)
	}
	if target, err := os.Readlink(filepath.Join(bundle, "work")); err != nil || target != work {
		t.Errorf("work link -> %q (%v), want %q", target, err, work)
	}
	var spec struct{ Hostname string }
	if b, err := os.ReadFile(filepath.Join(bundle, "config.json")); err != nil || json.Unmarshal(b, &spec) != nil || spec.Hostname != "sbhost" {
		t.Errorf("config.json of the sandbox bundle: %q (%v), want the pod config's spec", b, err)
	}
	sock := sandboxSocket(d, ns, id)
	var boot struct {
		Version  int
		Address  string
		Protocol string
	}
	if b, err := os.ReadFile(filepath.Join(bundle, "bootstrap.json")); err != nil || json.Unmarshal(b, &boot) != nil ||
		boot.Version != 3 || boot.Protocol != "ttrpc" || boot.Address != "unix://"+sock {
		t.Errorf("bootstrap.json: %q (%v), want version 3, ttrpc, unix://%s", b, err, sock)
	}
	server := recShimPID(t, d, ns, id)
	// The new shim is created and started; ours first probes it (task API
	// Connect, which stock does not call on start).
	want := []string{"CreateSandbox " + id, "StartSandbox " + id}
	if !isStock(d.bin) {
		want = append([]string{"Connect " + id}, want...)
	}
	if calls := shim.calls(t); len(calls) < len(want) || !equalStrings(calls[:len(want)], want) {
		t.Errorf("calls of ctr sandboxes run: %q, want %q first", calls, want)
	}
	if t.Failed() {
		t.FailNow()
	}

	// ctr sandboxes ls and info read the sandbox store.
	ls := d.mustCtr("sandboxes", "ls")
	if !containsRow(ls, id, shim.Path) {
		t.Errorf("ctr sandboxes ls does not list %s with runtime %s:\n%s", id, shim.Path, ls)
	}
	var info struct {
		ID        string
		Sandboxer string
		Runtime   struct{ Name string }
	}
	if out := d.mustCtr("sandboxes", "info", id); json.Unmarshal([]byte(out), &info) != nil ||
		info.ID != id || info.Sandboxer != "shim" || info.Runtime.Name != shim.Path {
		t.Errorf("ctr sandboxes info %s: want ID %s, sandboxer shim, runtime %s:\n%s", id, id, shim.Path, out)
	}

	ctrl, ctx := sandboxController(t, d, ns)
	wantStatus := func(when string, pid int, state string) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		st, err := ctrl.Status(cctx, id, false)
		if err != nil {
			t.Fatalf("%s: status: %v", when, err)
		}
		// The sandbox controllers service drops the controller's Address
		// and Version from its Status reply (stock's service).
		if st.SandboxID != id || st.Pid != uint32(pid) || st.State != state || st.Info["bundle"] != bundle || st.CreatedAt.IsZero() {
			t.Errorf("%s: status %+v, want pid %d, state %s, bundle %s", when, st, pid, state, bundle)
		}
	}
	wantStatus("after run", server, "running")
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if m, err := ctrl.Metrics(cctx, id); err != nil || m.GetID() != id {
		t.Errorf("metrics: %v, %v; want a metric of %s", m, err, id)
	}
	// The tasks service lists the shared map, sandbox shims included; the
	// sandbox has no task, so nothing is listed, and nothing fails.
	if tk, ok := d.tasks(ns)[id]; ok {
		t.Errorf("ctr task ls lists the sandbox as a task: %+v", tk)
	}

	// A restart adopts the sandbox's shim.
	d.Stop()
	if !crihost.PIDAlive(server) {
		t.Fatalf("sandbox shim %d died with the daemon", server)
	}
	since := time.Now()
	d.Start()
	if !isStock(d.bin) {
		waitReportIn(t, d, sandboxPluginDir, since, func(rep *loader.Report) string {
			return recCheckEntries(rep, map[string]recWant{
				ns + "/" + id: {"adopt", "done", "shim alive, no task, sandbox record found"},
			}, true)
		})
	}
	if got := recShimPID(t, d, ns, id); got != server {
		t.Fatalf("sandbox shim pid %d after restart, want %d", got, server)
	}
	ctrl, ctx = sandboxController(t, d, ns)
	wantStatus("after restart", server, "running")

	// Wait blocks until the sandbox stops.
	waits := strings.Count(strings.Join(shim.calls(t), "\n"), "WaitSandbox "+id)
	waited := make(chan error, 1)
	var exit sandbox.ExitStatus
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		var err error
		exit, err = ctrl.Wait(wctx, id)
		waited <- err
	}()
	if msg := eventually(statusTimeout, func() string {
		if strings.Count(strings.Join(shim.calls(t), "\n"), "WaitSandbox "+id) > waits {
			return ""
		}
		return "the shim has not been asked to wait"
	}); msg != "" {
		t.Fatal(msg)
	}
	select {
	case err := <-waited:
		t.Fatalf("wait returned before the sandbox was stopped: %v", err)
	default:
	}

	before := len(shim.calls(t))
	r = d.ctr("sandboxes", "rm", id)
	// ctr sandboxes rm logs errors and exits 0.
	if r.ExitCode != 0 || strings.Contains(r.Stderr, "level=error") {
		t.Fatalf("%s\n%s", r, d.logTail(30))
	}
	select {
	case err := <-waited:
		if err != nil || exit.ExitedAt.IsZero() {
			t.Errorf("wait after rm: %+v, %v; want an exit", exit, err)
		}
	case <-time.After(statusTimeout):
		t.Errorf("wait did not return within %s of the sandbox's stop", statusTimeout)
	}
	if got := strings.Join(shim.calls(t)[before:], ","); got != "StopSandbox "+id+",ShutdownSandbox "+id {
		t.Errorf("calls of ctr sandboxes rm: %q, want StopSandbox then ShutdownSandbox", got)
	}
	recWaitGone(t, "sandbox shim after ctr sandboxes rm", server)
	recWaitPathGone(t, d, bundle)
	recWaitPathGone(t, d, work)
	recWaitPathGone(t, d, sock)
	if ls := d.mustCtr("sandboxes", "ls"); strings.Contains(ls, id) {
		t.Errorf("ctr sandboxes ls still lists %s after rm:\n%s", id, ls)
	}
	assertNoLeaks(t, d)
}

// containsRow reports whether a line of a ctr table has all the fields.
func containsRow(table string, fields ...string) bool {
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		ok := len(f) > 0
		for _, want := range fields {
			found := false
			for _, g := range f {
				if g == want {
					found = true
				}
			}
			ok = ok && found
		}
		if ok {
			return true
		}
	}
	return false
}

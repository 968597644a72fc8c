//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/ttrpc"
	"github.com/shimkeeper/shimkeeper/internal/crihost"

	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/loader"
)

// Helpers of the recovery tests (recovery_test.go). Their names start with
// rec so that they do not collide with other files' helpers.

// recReportTimeout bounds the wait for a recovery pass's background work
// (dead-shim cleanup, reaping, work-dir GC) to show in its report.
const recReportTimeout = 20 * time.Second

// recBundle and recWorkDir are a task's bundle and work dir.
func recBundle(d *Daemon, ns, id string) string {
	return filepath.Join(d.State, taskPluginDir, ns, id)
}

func recWorkDir(d *Daemon, ns, id string) string {
	return filepath.Join(d.Root, taskPluginDir, ns, id)
}

// recSetConfig rewrites the daemon's config.toml as the harness writes it
// plus extra (TOML appended at the end). It takes effect at the next start.
func recSetConfig(t testing.TB, d *Daemon, extra string) {
	t.Helper()
	if err := os.WriteFile(d.ConfigPath, []byte(d.config()+"\n"+extra), 0o600); err != nil {
		t.Fatal(err)
	}
}

// recRecoveryConfig is a task-plugin section with the given recovery
// settings ("key = value" lines).
func recRecoveryConfig(lines ...string) string {
	return "[plugins.\"io.containerd.runtime.v2.task\"]\n  " + strings.Join(lines, "\n  ") + "\n"
}

// recLogHasLine reports whether one line of the daemon's log, from byte
// offset on, holds every one of parts.
func recLogHasLine(d *Daemon, offset int, parts ...string) bool {
	log := readFileString(d.LogPath)
	return hasLineWith(log[min(offset, len(log)):], nil, parts...)
}

// recReadReport reads the task plugin's recovery report.
func recReadReport(d *Daemon) (*loader.Report, error) {
	return loader.ReadReport(filepath.Join(d.State, taskPluginDir))
}

// recWant is what a report entry must say.
type recWant struct {
	Action, Outcome, Reason string
}

func (w recWant) String() string { return fmt.Sprintf("%s/%s (%q)", w.Action, w.Outcome, w.Reason) }

// recEntries maps "<ns>/<id>" to its report entry.
func recEntries(rep *loader.Report) map[string]*loader.Entry {
	m := map[string]*loader.Entry{}
	for _, e := range rep.Entries {
		m[e.Namespace+"/"+e.ID] = e
	}
	return m
}

func recEntryString(e *loader.Entry) string {
	b, _ := json.Marshal(e)
	return string(b)
}

// recCheckEntries compares the report's entries with want: every wanted
// entry must be there as wanted and, when exact, no other entry may be.
func recCheckEntries(rep *loader.Report, want map[string]recWant, exact bool) string {
	got := recEntries(rep)
	var msgs []string
	for key, w := range want {
		e, ok := got[key]
		switch {
		case !ok:
			msgs = append(msgs, fmt.Sprintf("%s: no report entry, want %s", key, w))
		case e.Action.String() != w.Action || e.Outcome != w.Outcome || e.Reason != w.Reason:
			msgs = append(msgs, fmt.Sprintf("%s: entry %s, want %s", key, recEntryString(e), w))
		}
	}
	if exact {
		for key, e := range got {
			if _, ok := want[key]; !ok {
				msgs = append(msgs, fmt.Sprintf("unexpected report entry %s: %s", key, recEntryString(e)))
			}
		}
	}
	sort.Strings(msgs)
	return strings.Join(msgs, "\n")
}

// recWaitReport polls the task plugin's report until it is from a pass
// started after since, its background work has finished, and check (if
// not nil) passes; it fails the test otherwise.
func recWaitReport(t testing.TB, d *Daemon, since time.Time, check func(*loader.Report) string) *loader.Report {
	t.Helper()
	return waitReportIn(t, d, taskPluginDir, since, check)
}

// recAssertReport waits for the report of the pass started after since and
// requires exactly the wanted entries, no warnings and, unless
// workDirsRemoved is nil, exactly those work dirs removed.
func recAssertReport(t testing.TB, d *Daemon, since time.Time, want map[string]recWant, workDirsRemoved []string) *loader.Report {
	t.Helper()
	rep := recWaitReport(t, d, since, func(rep *loader.Report) string {
		return recCheckEntries(rep, want, true)
	})
	if len(rep.Warnings) > 0 {
		t.Errorf("report warnings: %q", rep.Warnings)
	}
	if workDirsRemoved != nil {
		got := append([]string(nil), rep.WorkDirsRemoved...)
		sort.Strings(got)
		wantDirs := append([]string(nil), workDirsRemoved...)
		sort.Strings(wantDirs)
		if !equalStrings(got, wantDirs) {
			t.Errorf("report work_dirs_removed = %q, want %q", got, wantDirs)
		}
	}
	return rep
}

// recShims returns "<ns>/<id>" → pid of every shim of the daemon, from
// /proc/<pid>/cmdline (`-namespace <ns> -id <id> -address <d.Address>`).
func recShims(d *Daemon) map[string]int {
	out := map[string]int{}
	for _, p := range shimProcs(d.Address) {
		args := p.Args()
		var ns, id string
		for i := 0; i+1 < len(args); i++ {
			switch args[i] {
			case "-namespace":
				ns = args[i+1]
			case "-id":
				id = args[i+1]
			}
		}
		if ns != "" && id != "" {
			out[ns+"/"+id] = p.PID
		}
	}
	return out
}

// recShimPID returns the pid of the one shim serving ns/id.
func recShimPID(t testing.TB, d *Daemon, ns, id string) int {
	t.Helper()
	marker := "\x00-namespace\x00" + ns + "\x00"
	idMarker := "\x00-id\x00" + id + "\x00"
	var pids []int
	for _, p := range shimProcs(d.Address) {
		if strings.Contains(p.Cmdline, marker) && strings.Contains(p.Cmdline, idMarker) {
			pids = append(pids, p.PID)
		}
	}
	if len(pids) != 1 {
		t.Fatalf("shims of %s/%s: %v, want exactly one", ns, id, pids)
	}
	return pids[0]
}

// recAdoptedAll is the report a restart over the live shims in shims
// (recShims before the restart) must give: each adopted, nothing else.
func recAdoptedAll(shims map[string]int) map[string]recWant {
	want := map[string]recWant{}
	for key := range shims {
		want[key] = recWant{"adopt", "done", "shim alive, task live"}
	}
	return want
}

// recWaitGone waits until none of pids is alive.
func recWaitGone(t testing.TB, what string, pids ...int) {
	t.Helper()
	if msg := eventually(statusTimeout, func() string {
		for _, pid := range pids {
			if crihost.PIDAlive(pid) {
				return fmt.Sprintf("pid %d still alive", pid)
			}
		}
		return ""
	}); msg != "" {
		t.Fatalf("%s: %s", what, msg)
	}
}

// recKill sends sig to pid (which must be > 1).
func recKill(t testing.TB, pid int, sig syscall.Signal) {
	t.Helper()
	if pid <= 1 {
		t.Fatalf("refusing to signal pid %d", pid)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("kill -%d %d: %v", sig, pid, err)
	}
}

// recWaitPathGone waits until path (not followed) no longer exists.
func recWaitPathGone(t testing.TB, d *Daemon, path string) {
	t.Helper()
	if msg := eventually(recReportTimeout, func() string {
		if _, err := os.Lstat(path); err == nil {
			return path + " still exists: " + strings.Join(dirEntries(path), " ")
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err.Error()
		}
		return ""
	}); msg != "" {
		t.Fatalf("%s\n%s", msg, d.logTail(30))
	}
}

// recDeleteTaskViaShim kills and deletes ns/id's task through its shim's
// task API, as only the daemon would, while the daemon is down: the shim
// stays up with no task.
func recDeleteTaskViaShim(t testing.TB, d *Daemon, ns, id string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(recBundle(d, ns, id), "bootstrap.json"))
	if err != nil {
		t.Fatal(err)
	}
	var params struct {
		Version  int    `json:"version"`
		Address  string `json:"address"`
		Protocol string `json:"protocol"`
	}
	if err := json.Unmarshal(data, &params); err != nil {
		t.Fatal(err)
	}
	if params.Version != 3 || params.Protocol != "ttrpc" {
		t.Fatalf("bootstrap.json %s: want task API v3 over ttrpc", data)
	}
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 20*time.Second)
	defer cancel()
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "unix", strings.TrimPrefix(params.Address, "unix://"))
	if err != nil {
		t.Fatal(err)
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	tc := taskv3.NewTTRPCTaskClient(client)
	if _, err := tc.Kill(ctx, &taskv3.KillRequest{ID: id, Signal: uint32(syscall.SIGKILL), All: true}); err != nil {
		t.Fatalf("kill %s through its shim: %v", id, err)
	}
	if _, err := tc.Wait(ctx, &taskv3.WaitRequest{ID: id}); err != nil {
		t.Fatalf("wait %s through its shim: %v", id, err)
	}
	if _, err := tc.Delete(ctx, &taskv3.DeleteRequest{ID: id}); err != nil {
		t.Fatalf("delete %s through its shim: %v", id, err)
	}
	if _, err := tc.State(ctx, &taskv3.StateRequest{ID: id}); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("state of %s after delete through its shim: %v, want not found", id, err)
	}
}

// recRawDaemon is a daemon process started from d's binary and config
// without waiting for it to be ready, for tests that kill it during start.
type recRawDaemon struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// recStartRaw starts d's binary with d's config (d itself must be
// stopped); the process is SIGKILLed by PID at cleanup if still running.
func recStartRaw(t testing.TB, d *Daemon, label string) *recRawDaemon {
	t.Helper()
	if d.running() {
		t.Fatalf("daemon already running (pid %d)", d.Pid())
	}
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n=== integration: raw start (%s): %s ===\n", label, d.bin)
	cmd := exec.Command(d.bin, "--config", d.ConfigPath)
	cmd.Env = append(os.Environ(), "PATH="+binDir()+":"+os.Getenv("PATH"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", d.bin, err)
	}
	r := &recRawDaemon{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(r.exited) }()
	t.Cleanup(func() {
		select {
		case <-r.exited:
		default:
			_ = cmd.Process.Kill()
			<-r.exited
		}
	})
	return r
}

// kill SIGKILLs the raw daemon and waits for it to exit; it reports
// whether the daemon was still running when killed.
func (r *recRawDaemon) kill(t testing.TB) bool {
	t.Helper()
	select {
	case <-r.exited:
		return false
	default:
	}
	_ = r.cmd.Process.Kill()
	select {
	case <-r.exited:
	case <-time.After(daemonStopTimeout):
		t.Fatalf("raw daemon pid %d did not exit after SIGKILL", r.cmd.Process.Pid)
	}
	return true
}

// recBootID is the machine's current boot id.
func recBootID(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// recMkfifo creates a FIFO.
func recMkfifo(t testing.TB, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatalf("mkfifo %s: %v", path, err)
	}
}

// recReleaseFIFO opens path for writing once a reader has it open, then
// closes it: the reader (cat in a container) sees EOF.
func recReleaseFIFO(t testing.TB, path string) {
	t.Helper()
	if msg := eventually(statusTimeout, func() string {
		fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Sprintf("open %s for writing: %v (no reader yet?)", path, err)
		}
		syscall.Close(fd)
		return ""
	}); msg != "" {
		t.Fatal(msg)
	}
}

// recShimAddress is the socket path in ns/id's bootstrap.json.
func recShimAddress(t testing.TB, d *Daemon, ns, id string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(recBundle(d, ns, id), "bootstrap.json"))
	if err != nil {
		t.Fatal(err)
	}
	var params struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal(data, &params); err != nil {
		t.Fatal(err)
	}
	path, ok := strings.CutPrefix(params.Address, "unix://")
	if !ok {
		t.Fatalf("bootstrap.json of %s/%s: address %q is not unix://", ns, id, params.Address)
	}
	return path
}

// recSocketTrap listens on a dead shim's socket path and counts the
// connections made to it: a daemon that must not probe that shim must not
// connect. Accepted connections are held open, never answered.
type recSocketTrap struct {
	l     net.Listener
	path  string
	mu    sync.Mutex
	conns []net.Conn
	once  sync.Once
	done  chan struct{}
	file  os.FileInfo // the socket file as bound
}

func recListenTrap(t testing.TB, path string) *recSocketTrap {
	t.Helper()
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	tr := &recSocketTrap{l: l, path: path, done: make(chan struct{}), file: fi}
	go func() {
		defer close(tr.done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			tr.mu.Lock()
			tr.conns = append(tr.conns, c)
			tr.mu.Unlock()
		}
	}()
	t.Cleanup(tr.close)
	return tr
}

// close stops listening and closes the connections. The socket file is
// removed only if it is still the trap's (the daemon may have removed it,
// and a new shim may have bound the path since).
func (tr *recSocketTrap) close() {
	tr.once.Do(func() {
		tr.l.Close()
		<-tr.done
		tr.mu.Lock()
		defer tr.mu.Unlock()
		for _, c := range tr.conns {
			c.Close()
		}
		if fi, err := os.Lstat(tr.path); err == nil && os.SameFile(fi, tr.file) {
			_ = os.Remove(tr.path)
		}
	})
}

// bound reports whether the trap's socket file is still at its path.
func (tr *recSocketTrap) bound() bool {
	fi, err := os.Lstat(tr.path)
	return err == nil && os.SameFile(fi, tr.file)
}

// accepted is the number of connections made so far.
func (tr *recSocketTrap) accepted() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.conns)
}

// recSimulateReboot does to the test's containers what a reboot does while
// the daemon is down: it SIGKILLs every shim and container process (by
// PID) and removes their cgroups; with wipeRun, it also empties what lives
// on tmpfs (/run): the daemon's state dir, runc's state, the shim socket
// dir and the FIFO dir. The root dir survives. Then it writes a boot id
// other than the current one into the file the loader compares with.
func recSimulateReboot(t testing.TB, d *Daemon, wipeRun bool) {
	t.Helper()
	if d.running() {
		t.Fatalf("simulate a reboot with the daemon running")
	}
	var pids []int
	for _, p := range shimProcs(d.Address) {
		pids = append(pids, p.PID)
	}
	for _, ns := range d.namespaceList() {
		pids = append(pids, cgroupPIDs(ns)...)
	}
	if len(pids) == 0 {
		t.Fatalf("simulate a reboot: no shim or container process to kill")
	}
	if alive := crihost.KillPIDs(pids, statusTimeout); len(alive) > 0 {
		t.Fatalf("processes %v survived SIGKILL", alive)
	}
	// A killed process leaves its cgroup busy for a moment.
	if msg := eventually(statusTimeout, func() string {
		var errs []string
		for _, ns := range d.namespaceList() {
			for _, err := range removeCgroups(ns) {
				errs = append(errs, err.Error())
			}
		}
		return strings.Join(errs, "; ")
	}); msg != "" {
		t.Fatal(msg)
	}
	if wipeRun {
		for _, dir := range []string{d.State, d.RuncRoot, d.SocketDir, d.FIFODir} {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		}
	}
	bootFile := filepath.Join(d.Root, taskPluginDir, layout.BootIDFile)
	old, err := os.ReadFile(bootFile)
	if err != nil {
		t.Fatalf("no boot id recorded by the previous start: %v", err)
	}
	if got, want := strings.TrimSpace(string(old)), recBootID(t); got != want {
		t.Fatalf("boot id file %s holds %q, want the current boot id %q", bootFile, got, want)
	}
	if err := os.WriteFile(bootFile, []byte("00000000-"+randomHex(2)+"-"+randomHex(2)+"-"+randomHex(2)+"-"+randomHex(6)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// recSlowDelete points the bundle's shim-binary-path at a wrapper of the
// runc shim whose `delete` first waits until the returned FIFO is released
// (recReleaseFIFO). The daemon must be stopped.
func recSlowDelete(t testing.TB, d *Daemon, ns, id string) (fifo string) {
	t.Helper()
	fifo = filepath.Join(d.Dir, "release-delete-"+id)
	recMkfifo(t, fifo)
	wrapper := filepath.Join(d.Dir, "containerd-shim-slowdelete-"+id)
	script := fmt.Sprintf("#!/bin/sh\nfor a in \"$@\"; do if [ \"$a\" = delete ]; then cat %q >/dev/null; fi; done\nexec %q \"$@\"\n",
		fifo, bin("containerd-shim-runc-v2"))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(recBundle(d, ns, id), "shim-binary-path"), []byte(wrapper), 0o644); err != nil {
		t.Fatal(err)
	}
	return fifo
}

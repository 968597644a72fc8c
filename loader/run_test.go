package loader

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	task "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/shimkeeper/shimkeeper/internal/testshim"
	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/lifecycle"
	"github.com/shimkeeper/shimkeeper/manager"
)

// fakeShim serves task API v3 over ttrpc on a unix socket, in process. It
// knows one task (or none), records the calls it gets, and stops serving
// on Shutdown, as a shim exits.
type fakeShim struct {
	testshim.Unimplemented
	id    string
	state *task.StateResponse // nil: no such task
	srv   *testshim.Server
	calls records
}

var _ task.TTRPCTaskService = (*fakeShim)(nil)

func startFakeShim(t *testing.T, socket, id string, state *task.StateResponse) *fakeShim {
	t.Helper()
	s := &fakeShim{id: id, state: state}
	s.srv = testshim.ServeTask(t, socket, s)
	return s
}

func (s *fakeShim) Connect(_ context.Context, r *task.ConnectRequest) (*task.ConnectResponse, error) {
	s.calls.add("Connect " + r.ID)
	return &task.ConnectResponse{ShimPid: 4242, TaskPid: 4243}, nil
}

func (s *fakeShim) State(_ context.Context, r *task.StateRequest) (*task.StateResponse, error) {
	s.calls.add("State " + r.ID)
	if s.state == nil || r.ID != s.id {
		return nil, errgrpc.ToGRPC(errdefs.ErrNotFound)
	}
	return s.state, nil
}

func (s *fakeShim) Delete(_ context.Context, r *task.DeleteRequest) (*task.DeleteResponse, error) {
	s.calls.add("Delete " + r.ID)
	if s.state == nil || r.ID != s.id {
		return nil, errgrpc.ToGRPC(errdefs.ErrNotFound)
	}
	return &task.DeleteResponse{Pid: s.state.Pid}, nil
}

func (s *fakeShim) Shutdown(_ context.Context, r *task.ShutdownRequest) (*emptypb.Empty, error) {
	s.calls.add("Shutdown " + r.ID)
	go s.srv.Shutdown()
	return &emptypb.Empty{}, nil
}

type published struct{ topic, id string }

// fakePublisher records the exit and delete events.
type fakePublisher struct {
	mu     sync.Mutex
	events []published
}

func (p *fakePublisher) Publish(_ context.Context, topic string, ev events.Event) error {
	var id string
	if v, ok := ev.(interface{ GetContainerID() string }); ok {
		id = v.GetContainerID()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, published{topic, id})
	return nil
}

func (p *fakePublisher) topics(id string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, e := range p.events {
		if e.id == id {
			out = append(out, e.topic)
		}
	}
	return out
}

// writeShimScript writes a shim binary whose `delete` succeeds, prints an
// empty DeleteResponse and logs its arguments.
func writeShimScript(t *testing.T, dir string) (binary, logFile string) {
	t.Helper()
	binary, logFile = filepath.Join(dir, "containerd-shim-fake-v2"), filepath.Join(dir, "shim-calls.log")
	script := "#!/bin/sh\necho \"$*\" >> " + logFile + "\n"
	if err := os.WriteFile(binary, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return binary, logFile
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// TestRunEndToEnd runs a recovery pass over real bundles with in-process
// fake shims speaking ttrpc: one live with its task (adopted), one live
// with none (reaped), one dead (cleaned up, exit published), one hung
// that dies later (kept and re-probed, then cleaned up), one dead whose
// binary is missing (kept untouched), an empty bundle, and an orphan work
// dir.
func TestRunEndToEnd(t *testing.T) {
	sock := testshim.SocketDir(t)
	f := newFixture(t)
	binary, shimLog := writeShimScript(t, f.outside)
	socketDir := filepath.Join(sock, "s")
	if err := os.Mkdir(socketDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// containerd's own address: WaitServing dials it before publishing.
	daemon, err := net.Listen("unix", filepath.Join(sock, "d.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer daemon.Close()
	go func() {
		for {
			c, err := daemon.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	pub := &fakePublisher{}
	env := newFakeEnv()
	m := manager.New(manager.Config{
		Address: "unix://" + filepath.Join(sock, "d.sock"), TTRPCAddress: filepath.Join(sock, "d.sock.ttrpc"),
		SocketDir: socketDir, Events: pub, Containers: &env.containers, Sandboxes: &env.sandboxes,
		Timeouts: manager.Timeouts{Start: 5 * time.Second, Load: 5 * time.Second, Cleanup: 5 * time.Second, Shutdown: 5 * time.Second},
	})

	addr := func(id string) string { return "unix://" + filepath.Join(socketDir, id) }
	bundle := func(id, runtime string) {
		f.bundle("default", id, map[string]string{
			"bootstrap.json":   `file:{"version":3,"address":"` + addr(id) + `","protocol":"ttrpc"}`,
			"shim-binary-path": "file:" + runtime,
			"config.json":      "file:{}",
			"rootfs":           "dir",
		})
		if err := os.MkdirAll(filepath.Join(f.root, "default", id), 0o711); err != nil {
			t.Fatal(err)
		}
	}
	bundle("adopt", binary)
	adopt := startFakeShim(t, filepath.Join(socketDir, "adopt"), "adopt", &task.StateResponse{ID: "adopt", Pid: 77, Status: tasktypes.Status_RUNNING})
	bundle("leak", binary)
	leak := startFakeShim(t, filepath.Join(socketDir, "leak"), "leak", nil)
	bundle("dead", binary)
	bundle("hung", binary)
	hung := testshim.ServeSilent(t, filepath.Join(socketDir, "hung"))
	bundle("nobin", "/nonexistent/containerd-shim-gone-v2")
	f.make("default/empty", "dir")
	if err := os.MkdirAll(filepath.Join(f.root, "default", "orphan", "sub"), 0o711); err != nil {
		t.Fatal(err)
	}
	nobinBefore := snapshotTree(t, filepath.Join(f.state, "default", "nobin"))

	bootID := filepath.Join(f.outside, "boot_id")
	if err := os.WriteFile(bootID, []byte("boot-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mon := &fakeMonitor{}
	m.SetTaskMonitor(mon)
	rec := Run(context.Background(), m, Options{
		StateDir: f.state, RootDir: f.root, Concurrency: 2,
		Deadline: 20 * time.Second, ProbeTimeout: 300 * time.Millisecond,
		RetryInitial: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		BootIDPath: bootID,
	})
	nsctx := namespaces.WithNamespace(context.Background(), "default")
	t.Cleanup(func() {
		if sh, err := m.Get(nsctx, "adopt"); err == nil {
			sh.Abandon() // disarm: closing it must not clean up
		}
	})

	// Run returned before judging (the hung shim's probe alone takes
	// 300ms): every bundle is pending, and calls naming one wait for its
	// verdict instead of finding nothing.
	if n := m.Pending(); n < 1 || n > 6 {
		t.Errorf("%d ids pending when Run returned, want 1 to 6 (the hung one at least)", n)
	}
	if rp := rec.Report(); rp.Found != 6 || rp.Judged != 0 || len(rp.Entries) != 0 {
		t.Errorf("report when Run returned: found %d, judged %s, %d entries; want 6, 0, 0", rp.Found, time.Duration(rp.Judged), len(rp.Entries))
	}
	// Each id stops pending at its own verdict: the live shim's comes at
	// once, the hung one's when its probe times out.
	if sh, err := m.Get(nsctx, "adopt"); err != nil || !sh.Armed() {
		t.Errorf("Get of a pending live shim: %v, %v; want it once adopted", sh, err)
	}
	getStart := time.Now()
	if sh, err := m.Get(nsctx, "hung"); err != nil || !sh.Unresponsive() {
		t.Errorf("Get of a pending hung shim: %v, %v; want its placeholder", sh, err)
	}
	if waited := time.Since(getStart); waited < 200*time.Millisecond {
		t.Errorf("Get of the pending hung shim returned after %s, before its probe could time out", waited)
	}
	if err := rec.Judged(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := m.Pending(); n != 0 {
		t.Errorf("%d ids still pending once judged", n)
	}
	// The adopted task, and only it, went to the task monitor (cgroup
	// metrics), which the task service may have listed tasks for before.
	if got := mon.ids(); len(got) != 1 || got[0] != "default/adopt" {
		t.Errorf("task monitor got %v, want [default/adopt]", got)
	}

	// Judged: live shims registered, the hung one behind a placeholder,
	// nothing destructive done yet or pending.
	ready := map[string]*Entry{}
	for _, e := range rec.Report().Entries {
		ready[e.ID] = e
	}
	for id, want := range map[string]struct {
		a       lifecycle.Action
		outcome string
	}{
		"adopt": {lifecycle.ActionAdopt, lifecycle.OutcomeDone}, "leak": {lifecycle.ActionReapLeaked, ""}, "dead": {lifecycle.ActionCleanupDead, ""},
		"hung": {lifecycle.ActionKeep, lifecycle.OutcomeProbing}, "nobin": {lifecycle.ActionKeep, lifecycle.OutcomeProbing}, "empty": {lifecycle.ActionRemoveEmpty, ""},
	} {
		e := ready[id]
		if e == nil {
			t.Errorf("%s: no report entry", id)
			continue
		}
		if e.Action != want.a || (want.outcome != "" && e.Outcome != want.outcome) {
			t.Errorf("%s: %s/%s (%q), want %s/%s", id, e.Action, e.Outcome, e.Reason, want.a, want.outcome)
		}
	}
	if len(ready) != 6 {
		t.Errorf("%d entries, want 6", len(ready))
	}
	if sh, err := m.Get(nsctx, "adopt"); err != nil || !sh.Armed() || sh.Unresponsive() {
		t.Errorf("adopt: registered %v (err %v)", sh, err)
	}
	if sh, err := m.Get(nsctx, "hung"); err != nil || !sh.Unresponsive() {
		t.Errorf("hung: placeholder %v (err %v)", sh, err)
	}

	rec.Wait()

	// Background work: leak reaped through the task API and `shim
	// delete`; dead cleaned up with its exit published; empty and orphan
	// removed; nobin untouched.
	if got := leak.calls.list(); !strings.Contains(strings.Join(got, ","), "Delete leak") || !strings.Contains(strings.Join(got, ","), "Shutdown leak") {
		t.Errorf("leaked shim got %q, want Delete and Shutdown", got)
	}
	for _, id := range []string{"leak", "dead", "empty"} {
		if exists(filepath.Join(f.state, "default", id)) || exists(filepath.Join(f.root, "default", id)) {
			t.Errorf("%s: bundle or work dir still there", id)
		}
	}
	if exists(filepath.Join(f.root, "default", "orphan")) {
		t.Error("orphan work dir not removed")
	}
	assertTreeUnchanged(t, nobinBefore, snapshotTree(t, filepath.Join(f.state, "default", "nobin")))
	if !exists(filepath.Join(f.root, "default", "adopt")) || !exists(filepath.Join(f.state, "default", "adopt", "bootstrap.json")) {
		t.Error("adopt: bundle or work dir removed")
	}
	if got := pub.topics("dead"); strings.Join(got, ",") != "/tasks/exit,/tasks/delete" {
		t.Errorf("dead: published %q", got)
	}
	if got := adopt.calls.list(); strings.Join(got, ",") != "State adopt" {
		t.Errorf("adopted shim got %q; recovery must only probe it", got)
	}
	if data, err := os.ReadFile(filepath.Join(f.root, layout.BootIDFile)); err != nil || string(data) != "boot-1\n" {
		t.Errorf("boot id recorded: %q, %v", data, err)
	}

	// Every probe of the hung shim that gave up closed its connection: at
	// most the one in flight is open, however many re-probes ran.
	testshim.Eventually(t, 10*time.Second, "re-probes of the hung shim to leave at most one connection open", func() bool {
		return hung.Accepted() >= 3 && hung.Open() <= 1
	})

	// The hung shim dies: the re-probe finds it gone and cleans it up, and
	// the report shows the facts that decision rests on.
	hung.Die()
	var e *Entry
	testshim.Eventually(t, 10*time.Second, "the hung shim's entry to be resolved", func() bool {
		for _, x := range rec.Report().Entries {
			if x.ID == "hung" && (x.Outcome == lifecycle.OutcomeDone || x.Outcome == lifecycle.OutcomeFailed) {
				e = x
				return true
			}
		}
		return false
	})
	if e.Action != lifecycle.ActionCleanupDead || e.Outcome != lifecycle.OutcomeDone || e.Liveness != lifecycle.LivenessGone {
		t.Errorf("hung after dying: %s/%s liveness %s (%q, %q)", e.Action, e.Outcome, e.Liveness, e.Reason, e.Error)
	}
	if d := lifecycle.Decide(e.Observation); d.Action != e.Action {
		t.Errorf("hung: report says %s, but its observation decides %s", e.Action, d.Action)
	}
	if exists(filepath.Join(f.state, "default", "hung")) {
		t.Error("hung: bundle not removed")
	}
	if _, err := m.Get(nsctx, "hung"); err == nil {
		t.Error("hung: placeholder still registered")
	}
	testshim.Eventually(t, 10*time.Second, "hung's exit to be published", func() bool { return len(pub.topics("hung")) == 2 })

	data, err := os.ReadFile(shimLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"leak", "dead", "hung"} {
		if !strings.Contains(string(data), "-id "+id+" -bundle "+filepath.Join(f.state, "default", id)+" delete") {
			t.Errorf("no `shim delete` for %s in:\n%s", id, data)
		}
	}
	if strings.Contains(string(data), "-id adopt ") || strings.Contains(string(data), "-id nobin ") {
		t.Errorf("`shim delete` ran for a kept shim:\n%s", data)
	}

	// The report on disk reads back, and catches up with the re-probe's
	// outcome (writes between milestones are coalesced).
	var rp *Report
	testshim.Eventually(t, 5*time.Second, "the report on disk to show hung cleaned up", func() bool {
		rp, err = ReadReport(f.state)
		return err == nil && rp.Totals[lifecycle.ActionCleanupDead.String()] == 2
	})
	if err != nil {
		t.Fatalf("ReadReport: %v", err)
	}
	if len(rp.Entries) != 6 || rp.Totals[lifecycle.ActionAdopt.String()] != 1 || rp.Totals[lifecycle.ActionCleanupDead.String()] != 2 ||
		strings.Join(rp.WorkDirsRemoved, ",") != "default/orphan" {
		t.Errorf("report on disk: %d entries, totals %v, work dirs %q", len(rp.Entries), rp.Totals, rp.WorkDirsRemoved)
	}
}

// connQueue is a net.Listener fed by hand: a hung shim that has started
// answering hands its new connections to a ttrpc server through it.
type connQueue struct {
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
	addr   net.Addr
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}
func (q *connQueue) Close() error   { q.once.Do(func() { close(q.closed) }); return nil }
func (q *connQueue) Addr() net.Addr { return q.addr }

// startWakingShim is a shim that accepts and ignores connections until
// wake is called, and from then on serves the task API as fake.
func startWakingShim(t *testing.T, socket, id string, state *task.StateResponse) (fake *fakeShim, wake func()) {
	t.Helper()
	l := testshim.Listen(t, socket)
	q := &connQueue{ch: make(chan net.Conn), closed: make(chan struct{}), addr: l.Addr()}
	fake = &fakeShim{id: id, state: state}
	fake.srv = testshim.Serve(t, q, func(s *ttrpc.Server) { task.RegisterTTRPCTaskService(s, fake) })
	var mu sync.Mutex
	awake := false
	var held []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if !awake {
				held = append(held, c)
				mu.Unlock()
				continue
			}
			mu.Unlock()
			select {
			case q.ch <- c:
			case <-q.closed:
				c.Close()
			}
		}
	}()
	t.Cleanup(func() {
		l.Close()
		fake.srv.Close()
		q.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return fake, func() {
		mu.Lock()
		defer mu.Unlock()
		awake = true
	}
}

// A shim kept as unresponsive is adopted by the re-probe once it answers,
// even if the first attempt to put it in service fails.
func TestRunReprobeAdopts(t *testing.T) {
	sock := testshim.SocketDir(t)
	f := newFixture(t)
	binary, _ := writeShimScript(t, f.outside)
	env := newFakeEnv()
	m := manager.New(manager.Config{
		Address: "unix://" + filepath.Join(sock, "d.sock"), TTRPCAddress: filepath.Join(sock, "d.sock.ttrpc"),
		SocketDir: sock, Containers: &env.containers, Sandboxes: &env.sandboxes,
		Timeouts: manager.Timeouts{Start: 5 * time.Second, Load: 5 * time.Second, Cleanup: 5 * time.Second, Shutdown: 5 * time.Second},
	})
	f.bundle("default", "slow", map[string]string{
		"bootstrap.json":   `file:{"version":3,"address":"unix://` + filepath.Join(sock, "slow") + `","protocol":"ttrpc"}`,
		"shim-binary-path": "file:" + binary,
		// Arm opens the log FIFO: a directory in its place makes it fail.
		"log": "dir",
	})
	fake, wake := startWakingShim(t, filepath.Join(sock, "slow"), "slow", &task.StateResponse{ID: "slow", Status: tasktypes.Status_RUNNING})

	mon := &fakeMonitor{}
	m.SetTaskMonitor(mon)
	rec := Run(context.Background(), m, Options{
		StateDir: f.state, RootDir: f.root, Concurrency: 1,
		Deadline: 20 * time.Second, ProbeTimeout: 200 * time.Millisecond,
		RetryInitial: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		BootIDPath: filepath.Join(f.outside, "no-boot-id"),
		HoldStart:  true,
	})
	// HoldStart: Run returned with the shim judged (kept, after its 200ms
	// probe timed out).
	if rp := rec.Report(); m.Pending() != 0 || rp.Judged == 0 || rp.Ready < rp.Judged || !rp.HeldStart {
		t.Errorf("HoldStart: Run returned with %d pending, ready %s, judged %s, held_start %v", m.Pending(), time.Duration(rp.Ready), time.Duration(rp.Judged), rp.HeldStart)
	}
	nsctx := namespaces.WithNamespace(context.Background(), "default")
	t.Cleanup(func() {
		if sh, err := m.Get(nsctx, "slow"); err == nil {
			sh.Abandon()
		}
	})
	// The task service's init hands the monitor every task listed: here
	// the placeholder.
	listed, err := manager.NewTaskManager(f.state, f.root, m, nil).Tasks(nsctx, true)
	if err != nil || len(listed) != 1 {
		t.Fatalf("tasks at init: %v, %v", listed, err)
	}
	mon.Monitor(listed[0], nil)
	entry := func() Entry {
		for _, e := range rec.Report().Entries {
			if e.ID == "slow" {
				return *e
			}
		}
		t.Fatal("no entry for slow")
		return Entry{}
	}
	if e := entry(); e.Action != lifecycle.ActionKeep || e.Outcome != lifecycle.OutcomeProbing {
		t.Fatalf("slow at ready: %s/%s (%q)", e.Action, e.Outcome, e.Reason)
	}

	// It answers, but cannot be put in service yet: it stays a
	// placeholder, and is probed again.
	wake()
	testshim.Eventually(t, 10*time.Second, "two probes that reached the shim", func() bool { return fake.calls.count("State slow") >= 2 })
	if e := entry(); e.Outcome != lifecycle.OutcomeProbing {
		t.Fatalf("slow after a failed arm: %s/%s (%q)", e.Action, e.Outcome, e.Reason)
	}
	if sh, err := m.Get(nsctx, "slow"); err != nil || !sh.Unresponsive() {
		t.Fatalf("slow: placeholder replaced by %v (err %v) though it could not be armed", sh, err)
	}

	// Once it can be armed, the next probe adopts it.
	if err := os.Remove(filepath.Join(f.state, "default", "slow", "log")); err != nil {
		t.Fatal(err)
	}
	testshim.Eventually(t, 10*time.Second, "slow to be adopted", func() bool { return entry().Outcome != lifecycle.OutcomeProbing })
	if e := entry(); e.Action != lifecycle.ActionAdopt || e.Outcome != lifecycle.OutcomeDone || e.Liveness != lifecycle.LivenessAlive {
		t.Errorf("slow: %s/%s liveness %s (%q)", e.Action, e.Outcome, e.Liveness, e.Reason)
	}
	if sh, err := m.Get(nsctx, "slow"); err != nil || sh.Unresponsive() || !sh.Armed() {
		t.Errorf("slow: registered %v (err %v)", sh, err)
	}
	// Race: the monitor kept the placeholder it was given first, and the
	// cgroups collector reported nothing of the adopted task.
	mt := mon.task("default/slow")
	if mt == nil {
		t.Fatalf("task monitor holds no task of slow (handed %v)", mon.ids())
	}
	if st, err := mt.State(nsctx); err != nil || st.Status != runtime.RunningStatus {
		t.Errorf("task monitor holds a task of slow in state %v (err %v), want the adopted, running one", st.Status, err)
	}
	if !exists(filepath.Join(f.state, "default", "slow", "bootstrap.json")) {
		t.Error("slow: bundle touched")
	}
}

// fakeMonitor is a task monitor that behaves as containerd's cgroups
// collectors do: tasks keyed by namespace/id, the first one handed over
// kept (a second Monitor of the id is ignored) until Stop.
type fakeMonitor struct {
	mu        sync.Mutex
	monitored []string
	tasks     map[string]runtime.Task
}

func (f *fakeMonitor) Monitor(t runtime.Task, _ map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := t.Namespace() + "/" + t.ID()
	f.monitored = append(f.monitored, k)
	if f.tasks == nil {
		f.tasks = map[string]runtime.Task{}
	}
	if _, ok := f.tasks[k]; !ok {
		f.tasks[k] = t
	}
	return nil
}

func (f *fakeMonitor) Stop(t runtime.Task) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.tasks, t.Namespace()+"/"+t.ID())
	return nil
}

func (f *fakeMonitor) task(k string) runtime.Task {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tasks[k]
}

func (f *fakeMonitor) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.monitored...)
}

// A work dir found orphaned is looked at again, under the lock Create takes
// while it makes a bundle, just before it is removed: a bundle made in
// between (a `ctr run` of the id while the pass works) keeps it.
func TestRunOrphanWorkDirRechecked(t *testing.T) {
	sock := testshim.SocketDir(t)
	f := newFixture(t)
	env := newFakeEnv()
	m := manager.New(manager.Config{
		// Nobody listens: the background work waits out CleanupAfterServing,
		// which leaves the window between listing and removal open.
		Address: "unix://" + filepath.Join(sock, "none.sock"), SocketDir: filepath.Join(sock, "s"),
		Containers: &env.containers, Sandboxes: &env.sandboxes,
		Timeouts: manager.Timeouts{Start: time.Second, Load: time.Second, Cleanup: time.Second, Shutdown: time.Second},
	})
	for _, id := range []string{"w", "gone"} {
		if err := os.MkdirAll(filepath.Join(f.root, "default", id, "sub"), 0o711); err != nil {
			t.Fatal(err)
		}
	}
	rec := Run(context.Background(), m, Options{
		StateDir: f.state, RootDir: f.root, Deadline: 5 * time.Second,
		CleanupAfterServing: time.Second, BootIDPath: filepath.Join(f.outside, "boot_id"),
	})
	if err := rec.Judged(context.Background()); err != nil {
		t.Fatal(err)
	}
	// What Create does: under the id's lock, make the bundle.
	unlock := m.LockID("default", "w")
	if err := os.MkdirAll(filepath.Join(f.state, "default", "w"), 0o711); err != nil {
		t.Fatal(err)
	}
	unlock()
	rec.Wait()
	if !exists(filepath.Join(f.root, "default", "w", "sub")) {
		t.Errorf("the work dir of w was removed after a bundle was made for it")
	}
	if exists(filepath.Join(f.root, "default", "gone")) {
		t.Errorf("the orphaned work dir of gone was not removed")
	}
	if got := rec.Report().WorkDirsRemoved; len(got) != 1 || got[0] != "default/gone" {
		t.Errorf("work dirs removed: %q, want [default/gone]", got)
	}
}

package manager

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	task "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"github.com/opencontainers/runtime-spec/specs-go"
	googleproto "google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/protobuf"

	"github.com/shimkeeper/shimkeeper/bootstrap"
	"github.com/shimkeeper/shimkeeper/internal/testshim"
	"github.com/shimkeeper/shimkeeper/lifecycle"
)

const fakeTaskID = "task-1"

var (
	// What the fake runtime's `shim delete` reports.
	shimDeleteExitedAt = time.Unix(1_700_000_000, 0).UTC()
	shimDeleteReply    = &taskv2.DeleteResponse{Pid: 42, ExitStatus: 7, ExitedAt: protobuf.ToTimestamp(shimDeleteExitedAt)}
	// What the fake shim's task Delete RPC reports.
	rpcDeleteExitedAt = time.Unix(1_700_000_100, 0).UTC()
)

// rig is a manager over temp plugin dirs, with a bundle for fakeTaskID.
type rig struct {
	m       *Manager
	tm      *TaskManager
	events  *recordingPublisher
	runtime *fakeRuntime
	bundle  *Bundle
}

func newRig(t *testing.T, load time.Duration) *rig {
	t.Helper()
	state, root := pluginDirs(t)
	r := &rig{events: &recordingPublisher{}, runtime: newFakeRuntime(t, shimDeleteReply)}
	r.m = New(Config{
		Address:      "/run/shimkeeper-test/containerd.sock",
		TTRPCAddress: "/run/shimkeeper-test/containerd.sock.ttrpc",
		SocketDir:    "/run/shimkeeper-test/s",
		Events:       r.events,
		Containers:   fakeContainers{ids: map[string]bool{fakeTaskID: true}},
		Timeouts:     Timeouts{Start: 5 * time.Second, Load: load, Cleanup: 5 * time.Second, Shutdown: 2 * time.Second},
	})
	r.tm = NewTaskManager(state, root, r.m, nil)
	b, err := NewBundle(nsCtx(), state, root, fakeTaskID, specAny(t, &specs.Spec{}))
	if err != nil {
		t.Fatal(err)
	}
	r.bundle = b
	return r
}

func (r *rig) writeBootstrap(t *testing.T, version int32, address string) {
	t.Helper()
	if err := bootstrap.Write(r.bundle.Path, &bootapi.BootstrapResult{Version: version, Address: address, Protocol: "ttrpc"}); err != nil {
		t.Fatal(err)
	}
}

// adopt reconnects to the bundle's shim and puts it in service, as
// recovery does for a live shim.
func (r *rig) adopt(t *testing.T) *Shim {
	t.Helper()
	s, err := reconnect(r.m, nsCtx(), r.bundle, r.runtime.path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Arm(); err != nil {
		t.Fatal(err)
	}
	if err := r.m.Add(nsCtx(), s); err != nil {
		t.Fatal(err)
	}
	abandonAtEnd(t, s)
	return s
}

// abandonAtEnd closes s when the test ends and waits for its close hook.
// Registered before the fake server's cleanup, so it runs first: stopping
// the server must not look like a shim death to a test that is over.
func abandonAtEnd(t *testing.T, s *Shim) {
	t.Cleanup(func() {
		s.Abandon()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.conn.UserOnCloseWait(ctx); err != nil {
			t.Errorf("close hook still running at cleanup: %v", err)
		}
	})
}

func (r *rig) task(t *testing.T) runtime.Task {
	t.Helper()
	tk, err := r.tm.Get(nsCtx(), fakeTaskID)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func newFakeTask() *fakeTask {
	return &fakeTask{
		connectPid: 4242,
		state: map[string]*task.StateResponse{
			"": {ID: fakeTaskID, Pid: 4242, Status: tasktypes.Status_RUNNING},
		},
		deleteResp: &task.DeleteResponse{Pid: 4242, ExitStatus: 137, ExitedAt: protobuf.ToTimestamp(rpcDeleteExitedAt)},
	}
}

func TestReconnectAdopts(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		name := "unix socket"
		if abstract {
			// Pre-1.5 shims advertise an address without a scheme, which
			// means an abstract socket.
			name = "abstract socket"
		}
		t.Run(name, func(t *testing.T) {
			r := newRig(t, 5*time.Second)
			f := newFakeTask()
			srv := serveTTRPC(t, abstract, func(s *ttrpc.Server) { task.RegisterTTRPCTaskService(s, f) })
			r.writeBootstrap(t, 3, srv.addr)
			before := testshim.Snapshot(t, r.bundle.Path)

			s, err := reconnect(r.m, nsCtx(), r.bundle, r.runtime.path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Abandon()
			if s.Version() != 3 {
				t.Errorf("version %d, want 3", s.Version())
			}
			if s.Armed() {
				t.Error("a reconnected shim is armed before anyone put it in service")
			}
			if ep, v := s.Endpoint(); ep != "ttrpc+"+srv.addr || v != 3 {
				t.Errorf("endpoint %s %d", ep, v)
			}
			// State is the whole probe: no Connect.
			if m := f.methods(); len(m) != 1 || m[0] != "State" {
				t.Errorf("probe calls %v, want [State]", m)
			}
			c := f.last(t, "State")
			if c.ns != testNS || c.req.(*task.StateRequest).ID != fakeTaskID {
				t.Errorf("State carried ns %q, request %v", c.ns, c.req)
			}
			// A probe reads: the bundle is as it was, and no `shim delete`.
			testshim.RequireSameSnapshot(t, before, testshim.Snapshot(t, r.bundle.Path))
			if runs := r.runtime.runs(t); len(runs) != 0 {
				t.Errorf("shim delete ran: %v", runs)
			}
			if _, err := r.m.Get(nsCtx(), fakeTaskID); !errdefs.IsNotFound(err) {
				t.Errorf("reconnected shim registered by Reconnect: %v", err)
			}
		})
	}
}

func TestReconnectDowngradesToTaskV2(t *testing.T) {
	r := newRig(t, 5*time.Second)
	f := &fakeTaskV2{state: &taskv2.StateResponse{ID: fakeTaskID, Pid: 777, Status: tasktypes.Status_PAUSED, ExitStatus: 3}}
	f.connectPid = 777
	f.pids = []*tasktypes.ProcessInfo{{Pid: 777}, {Pid: 778}}
	srv := serveV2(t, f)
	// A 1.7-era shim behind a 2.x binary prints version 3 but serves v2.
	r.writeBootstrap(t, 3, srv.addr)

	s := r.adopt(t)
	if s.Version() != 2 {
		t.Fatalf("version %d after a v3 Connect failed as unimplemented, want 2", s.Version())
	}
	tk := r.task(t)

	// Every call now goes through the v2 bridge.
	st, err := tk.State(nsCtx())
	if err != nil {
		t.Fatal(err)
	}
	if st.Pid != 777 || st.Status != runtime.PausedStatus || st.ExitStatus != 3 {
		t.Errorf("state %+v", st)
	}
	pid, err := tk.PID(nsCtx())
	if err != nil || pid != 777 {
		t.Errorf("PID %d, %v", pid, err)
	}
	pids, err := tk.Pids(nsCtx())
	if err != nil || len(pids) != 2 || pids[1].Pid != 778 {
		t.Errorf("Pids %v, %v", pids, err)
	}
	if err := tk.Kill(nsCtx(), 9, true); err != nil {
		t.Fatal(err)
	}
	kr := f.last(t, "Kill").req.(*taskv2.KillRequest)
	if kr.ID != fakeTaskID || kr.Signal != 9 || !kr.All {
		t.Errorf("v2 kill request %v", kr)
	}
	// Errors of the v2 shim keep their class through the bridge.
	if err := tk.Pause(nsCtx()); !errdefs.IsNotImplemented(err) {
		t.Errorf("Pause: %v, want NotImplemented", err)
	}
	for _, c := range f.calls {
		if c.ns != testNS {
			t.Errorf("%s carried namespace %q", c.method, c.ns)
		}
	}
}

func TestReconnectTaskV2Bootstrap(t *testing.T) {
	// A bootstrap.json that says version 2 uses the bridge from the start.
	r := newRig(t, 5*time.Second)
	f := &fakeTaskV2{state: &taskv2.StateResponse{ID: fakeTaskID, Pid: 5, Status: tasktypes.Status_RUNNING}}
	srv := serveV2(t, f)
	r.writeBootstrap(t, 2, srv.addr)
	s := r.adopt(t)
	if s.Version() != 2 {
		t.Fatalf("version %d", s.Version())
	}
	st, err := r.task(t).State(nsCtx())
	if err != nil || st.Status != runtime.RunningStatus {
		t.Fatalf("state %+v, %v", st, err)
	}
}

// settledGoroutines waits until the goroutine count stops changing (the
// previous connection's goroutines are winding down) and returns it.
func settledGoroutines() int {
	n, stable := goruntime.NumGoroutine(), 0
	for deadline := time.Now().Add(2 * time.Second); stable < 5 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		if m := goruntime.NumGoroutine(); m == n {
			stable++
		} else {
			n, stable = m, 0
		}
	}
	return n
}

func dumpGoroutines() string {
	var b bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
	return b.String()
}

func TestReconnectHungShim(t *testing.T) {
	const load = 300 * time.Millisecond
	r := newRig(t, load)

	// Warm up the client stack once, so that goroutines libraries start
	// on first use are not counted as leaks.
	{
		f := newFakeTask()
		srv := serveV3(t, f)
		r.writeBootstrap(t, 3, srv.addr)
		s, err := reconnect(r.m, nsCtx(), r.bundle, r.runtime.path)
		if err != nil {
			t.Fatal(err)
		}
		s.Abandon()
		srv.Close()
	}
	baseline := settledGoroutines()

	h := serveHang(t)
	r.writeBootstrap(t, 3, h.addr)
	before := testshim.Snapshot(t, r.bundle.Path)

	start := time.Now()
	s, err := reconnect(r.m, nsCtx(), r.bundle, r.runtime.path)
	elapsed := time.Since(start)
	if err == nil {
		s.Abandon()
		t.Fatal("Reconnect to a shim that never answers succeeded")
	}
	// It is the load budget that ended the wait, not something else.
	if elapsed < load*8/10 || elapsed > load+2*time.Second {
		t.Errorf("Reconnect returned after %v, want about %v", elapsed, load)
	}
	// Over ttrpc the deadline loses its class (errgrpc.ToNative makes it
	// Unknown), but the message must still say what happened.
	if !strings.Contains(err.Error(), "deadline") {
		t.Errorf("error %q does not mention the deadline", err)
	}

	// A shim that is slow is not a dead shim: nothing was deleted, no
	// `shim delete` ran.
	testshim.RequireSameSnapshot(t, before, testshim.Snapshot(t, r.bundle.Path))
	if runs := r.runtime.runs(t); len(runs) != 0 {
		t.Errorf("shim delete ran on a hung shim: %v", runs)
	}

	// The client hung up its end: no connection is left open.
	select {
	case <-h.HungUp():
	case <-time.After(5 * time.Second):
		t.Fatal("the client never closed its connection to the hung shim")
	}

	// Probe classes it as Unknown, which must never lead to removal.
	pctx, cancel := context.WithTimeout(nsCtx(), load)
	res := r.m.Probe(pctx, r.bundle, r.runtime.path, &bootapi.BootstrapResult{Version: 3, Address: h.addr, Protocol: "ttrpc"})
	cancel()
	if res.Liveness != lifecycle.LivenessUnknown || res.Shim != nil {
		t.Errorf("probe of a hung shim: liveness %v, shim %v, err %v", res.Liveness, res.Shim, res.Err)
	}
	select {
	case <-h.HungUp():
	case <-time.After(5 * time.Second):
		t.Fatal("the probe never closed its connection to the hung shim")
	}

	h.Die()
	deadline := time.Now().Add(5 * time.Second)
	for goruntime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d, baseline %d\n%s", goruntime.NumGoroutine(), baseline, dumpGoroutines())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReconnectDeadSocket(t *testing.T) {
	r := newRig(t, 5*time.Second)

	// A socket file that nobody listens on: a shim that died.
	p := filepath.Join(testshim.SocketDir(t), "s.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("socket file gone: %v", err)
	}

	for _, tc := range []struct {
		name, addr string
		errno      syscall.Errno
	}{
		{"refused", "unix://" + p, syscall.ECONNREFUSED},
		{"missing", "unix://" + filepath.Join(filepath.Dir(p), "missing.sock"), syscall.ENOENT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.writeBootstrap(t, 3, tc.addr)
			start := time.Now()
			_, err := reconnect(r.m, nsCtx(), r.bundle, r.runtime.path)
			if err == nil {
				t.Fatal("Reconnect to a dead socket succeeded")
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("took %v; a refused dial must fail fast", d)
			}
			if !errors.Is(err, tc.errno) {
				t.Errorf("error %v is not %v", err, tc.errno)
			}
			res := r.m.Probe(nsCtx(), r.bundle, r.runtime.path, &bootapi.BootstrapResult{Version: 3, Address: tc.addr, Protocol: "ttrpc"})
			if res.Liveness != lifecycle.LivenessGone {
				t.Errorf("probe liveness %v, want Gone (%v)", res.Liveness, res.Err)
			}
			if runs := r.runtime.runs(t); len(runs) != 0 {
				t.Errorf("shim delete ran: %v", runs)
			}
		})
	}
}

func TestTaskState(t *testing.T) {
	r := newRig(t, 5*time.Second)
	f := newFakeTask()
	serve := serveV3(t, f)
	r.writeBootstrap(t, 3, serve.addr)
	r.adopt(t)
	tk := r.task(t)

	exitedAt := time.Unix(1_700_000_200, 0).UTC()
	for _, tc := range []struct {
		in   tasktypes.Status
		want runtime.Status
	}{
		{tasktypes.Status_UNKNOWN, 0},
		{tasktypes.Status_CREATED, runtime.CreatedStatus},
		{tasktypes.Status_RUNNING, runtime.RunningStatus},
		{tasktypes.Status_STOPPED, runtime.StoppedStatus},
		{tasktypes.Status_PAUSED, runtime.PausedStatus},
		{tasktypes.Status_PAUSING, runtime.PausingStatus},
	} {
		t.Run(tc.in.String(), func(t *testing.T) {
			f.set(func(f *fakeTask) {
				f.state[""] = &task.StateResponse{
					ID: fakeTaskID, Pid: 4242, Status: tc.in, Stdin: "/in", Stdout: "/out", Stderr: "/err",
					Terminal: true, ExitStatus: 12, ExitedAt: protobuf.ToTimestamp(exitedAt),
				}
			})
			st, err := tk.State(nsCtx())
			if err != nil {
				t.Fatal(err)
			}
			want := runtime.State{
				Status: tc.want, Pid: 4242, ExitStatus: 12, ExitedAt: exitedAt,
				Stdin: "/in", Stdout: "/out", Stderr: "/err", Terminal: true,
			}
			if !st.ExitedAt.Equal(want.ExitedAt) {
				t.Errorf("exited at %v, want %v", st.ExitedAt, want.ExitedAt)
			}
			st.ExitedAt, want.ExitedAt = time.Time{}, time.Time{}
			if st != want {
				t.Errorf("state %+v, want %+v", st, want)
			}
		})
	}

	t.Run("shim error keeps its class", func(t *testing.T) {
		f.set(func(f *fakeTask) { f.stateErr = errdefs.ErrNotFound })
		defer f.set(func(f *fakeTask) { f.stateErr = nil })
		if _, err := tk.State(nsCtx()); !errdefs.IsNotFound(err) {
			t.Errorf("got %v, want NotFound", err)
		}
	})

	t.Run("exec process state", func(t *testing.T) {
		f.set(func(f *fakeTask) {
			f.state["exec-1"] = &task.StateResponse{ID: fakeTaskID, ExecID: "exec-1", Pid: 99, Status: tasktypes.Status_STOPPED}
		})
		p, err := tk.Process(nsCtx(), "exec-1")
		if err != nil {
			t.Fatal(err)
		}
		st, err := p.State(nsCtx())
		if err != nil || st.Pid != 99 || st.Status != runtime.StoppedStatus {
			t.Errorf("exec state %+v, %v", st, err)
		}
		if req := f.last(t, "State").req.(*task.StateRequest); req.ExecID != "exec-1" || req.ID != fakeTaskID {
			t.Errorf("request %v", req)
		}
		// An exec the shim does not know: Process checks with State.
		if _, err := tk.Process(nsCtx(), "nope"); !errdefs.IsNotFound(err) {
			t.Errorf("unknown exec: %v, want NotFound", err)
		}
	})
}

// A connection that closed under a shim we only probed (not armed, not
// registered): calls report NotFound and the close touches nothing.
func TestClosedConnectionState(t *testing.T) {
	r := newRig(t, 5*time.Second)
	f := newFakeTask()
	srv := serveV3(t, f)
	r.writeBootstrap(t, 3, srv.addr)
	s, err := reconnect(r.m, nsCtx(), r.bundle, r.runtime.path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abandon()
	before := testshim.Snapshot(t, r.bundle.Path)
	srv.l.cut()
	if err := s.conn.UserOnCloseWait(nsCtx()); err != nil {
		t.Fatal(err)
	}
	tk, err := newTask(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tk.State(nsCtx()); !errdefs.IsNotFound(err) {
		t.Errorf("State on a closed connection: %v, want NotFound", err)
	}
	testshim.RequireSameSnapshot(t, before, testshim.Snapshot(t, r.bundle.Path))
	if runs := r.runtime.runs(t); len(runs) != 0 {
		t.Errorf("shim delete ran for an unarmed shim: %v", runs)
	}
	if ev := r.events.all(); len(ev) != 0 {
		t.Errorf("events for an unarmed shim: %v", ev)
	}
}

func TestTaskCalls(t *testing.T) {
	r := newRig(t, 5*time.Second)
	f := newFakeTask()
	info, err := anypb.New(&tasktypes.ProcessInfo{Pid: 1})
	if err != nil {
		t.Fatal(err)
	}
	f.pids = []*tasktypes.ProcessInfo{{Pid: 4242, Info: info}, {Pid: 4243}}
	f.wait = &task.WaitResponse{ExitStatus: 3, ExitedAt: protobuf.ToTimestamp(rpcDeleteExitedAt)}
	srv := serveV3(t, f)
	r.writeBootstrap(t, 3, srv.addr)
	r.adopt(t)
	tk := r.task(t)
	ctx := nsCtx()

	if tk.ID() != fakeTaskID || tk.Namespace() != testNS {
		t.Errorf("task %s/%s", tk.Namespace(), tk.ID())
	}

	t.Run("Pids", func(t *testing.T) {
		pids, err := tk.Pids(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) != 2 || pids[0].Pid != 4242 || pids[1].Pid != 4243 {
			t.Fatalf("pids %v", pids)
		}
		got, ok := pids[0].Info.(*anypb.Any)
		if !ok || !googleproto.Equal(got, info) {
			t.Errorf("info %v, want the shim's Any %v", pids[0].Info, info)
		}
	})

	t.Run("Kill", func(t *testing.T) {
		if err := tk.Kill(ctx, 15, true); err != nil {
			t.Fatal(err)
		}
		kr := f.last(t, "Kill").req.(*task.KillRequest)
		if kr.ID != fakeTaskID || kr.ExecID != "" || kr.Signal != 15 || !kr.All {
			t.Errorf("kill request %v", kr)
		}
	})

	t.Run("Exec", func(t *testing.T) {
		spec, err := anypb.New(&tasktypes.ProcessInfo{Pid: 7})
		if err != nil {
			t.Fatal(err)
		}
		before := len(f.methods())
		for _, bad := range []string{"", "bad/id", ".hidden", strings.Repeat("x", 77)} {
			if _, err := tk.Exec(ctx, bad, runtime.ExecOpts{Spec: spec}); !errdefs.IsInvalidArgument(err) {
				t.Errorf("exec id %q: %v, want InvalidArgument", bad, err)
			}
		}
		if got := f.methods()[before:]; len(got) != 0 {
			t.Errorf("invalid exec ids reached the shim: %v", got)
		}

		p, err := tk.Exec(ctx, "exec-1", runtime.ExecOpts{Spec: spec, IO: runtime.IO{Stdin: "/in", Stdout: "/out", Stderr: "/err", Terminal: true}})
		if err != nil {
			t.Fatal(err)
		}
		er := f.last(t, "Exec").req.(*task.ExecProcessRequest)
		if er.ID != fakeTaskID || er.ExecID != "exec-1" || er.Stdin != "/in" || er.Stdout != "/out" || er.Stderr != "/err" ||
			!er.Terminal || !googleproto.Equal(er.Spec, spec) {
			t.Errorf("exec request %v", er)
		}
		if p.ID() != "exec-1" {
			t.Errorf("process id %s", p.ID())
		}
		// Stock drops `all` for an exec process.
		if err := p.Kill(ctx, 9, true); err != nil {
			t.Fatal(err)
		}
		kr := f.last(t, "Kill").req.(*task.KillRequest)
		if kr.ExecID != "exec-1" || kr.Signal != 9 || kr.All {
			t.Errorf("exec kill request %v", kr)
		}
		if err := p.CloseIO(ctx); err != nil {
			t.Fatal(err)
		}
		if cr := f.last(t, "CloseIO").req.(*task.CloseIORequest); cr.ExecID != "exec-1" || !cr.Stdin {
			t.Errorf("exec close-io request %v", cr)
		}
	})

	t.Run("CloseIO and ResizePty", func(t *testing.T) {
		if err := tk.CloseIO(ctx); err != nil {
			t.Fatal(err)
		}
		if cr := f.last(t, "CloseIO").req.(*task.CloseIORequest); cr.ID != fakeTaskID || cr.ExecID != "" || !cr.Stdin {
			t.Errorf("close-io request %v", cr)
		}
		if err := tk.ResizePty(ctx, runtime.ConsoleSize{Width: 80, Height: 24}); err != nil {
			t.Fatal(err)
		}
		if rr := f.last(t, "ResizePty").req.(*task.ResizePtyRequest); rr.Width != 80 || rr.Height != 24 {
			t.Errorf("resize request %v", rr)
		}
	})

	t.Run("Wait takes the pid from Connect", func(t *testing.T) {
		exit, err := tk.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if exit.Pid != 4242 || exit.Status != 3 || !exit.Timestamp.Equal(rpcDeleteExitedAt) {
			t.Errorf("exit %+v", exit)
		}
		m := f.methods()
		if len(m) < 2 || m[len(m)-2] != "Connect" || m[len(m)-1] != "Wait" {
			t.Errorf("calls end in %v, want Connect then Wait", m[max(0, len(m)-2):])
		}
	})

	for _, c := range f.calls {
		if c.ns != testNS {
			t.Errorf("%s carried namespace %q, want %q", c.method, c.ns, testNS)
		}
	}
}

// checkShimDeleteRan checks that the fake runtime ran `delete` once, from
// the bundle, with stock's argv.
func checkShimDeleteRan(t *testing.T, r *rig) {
	t.Helper()
	runs := r.runtime.runs(t)
	if len(runs) != 1 {
		t.Fatalf("shim delete ran %d times: %v", len(runs), runs)
	}
	fields := strings.Fields(runs[0])
	if len(fields) == 0 || fields[0] != r.bundle.Path {
		t.Errorf("shim delete ran in %v, want the bundle %s", fields, r.bundle.Path)
	}
	args := strings.Join(fields[1:], " ")
	for _, want := range []string{"-namespace " + testNS, "-id " + fakeTaskID, "-bundle " + r.bundle.Path, "-address /run/shimkeeper-test/containerd.sock"} {
		if !strings.Contains(args, want) {
			t.Errorf("shim delete args %q lack %q", args, want)
		}
	}
	if !strings.HasSuffix(args, " delete") {
		t.Errorf("shim delete args %q do not end in delete", args)
	}
}

func requireGone(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists (%v)", p, err)
		}
	}
}

func TestTaskDelete(t *testing.T) {
	r := newRig(t, 5*time.Second)
	f := newFakeTask()
	srv := serveV3(t, f)
	r.writeBootstrap(t, 3, srv.addr)
	r.adopt(t)
	ctx := nsCtx()

	// A Delete the shim refuses leaves everything in place for a retry.
	f.set(func(f *fakeTask) { f.deleteErr = errdefs.ErrFailedPrecondition })
	if _, err := r.tm.Delete(ctx, fakeTaskID); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("Delete: %v, want FailedPrecondition", err)
	}
	if slices.Contains(f.methods(), "Shutdown") {
		t.Error("Shutdown after a failed Delete")
	}
	if _, err := r.m.Get(ctx, fakeTaskID); err != nil {
		t.Fatalf("shim unregistered after a failed Delete: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r.bundle.Path, "config.json")); err != nil {
		t.Fatalf("bundle touched after a failed Delete: %v", err)
	}

	// A failed Shutdown also keeps everything, and the retry returns the
	// exit of the first, successful, Delete.
	f.set(func(f *fakeTask) { f.shutdown = errdefs.ErrUnavailable })
	if _, err := r.tm.Delete(ctx, fakeTaskID); err == nil {
		t.Fatal("Delete succeeded although Shutdown failed")
	}
	if _, err := r.m.Get(ctx, fakeTaskID); err != nil {
		t.Fatalf("shim unregistered after a failed Shutdown: %v", err)
	}
	if runs := r.runtime.runs(t); len(runs) != 0 {
		t.Fatalf("shim delete ran before the task was deleted: %v", runs)
	}

	exit, err := r.tm.Delete(ctx, fakeTaskID)
	if err != nil {
		t.Fatal(err)
	}
	// The RPC's exit, not the `shim delete` one.
	if exit.Pid != 4242 || exit.Status != 137 || !exit.Timestamp.Equal(rpcDeleteExitedAt) {
		t.Errorf("exit %+v, want the first Delete's", exit)
	}
	// Delete RPC, then Shutdown, then close.
	m := f.methods()
	var tail []string
	for _, x := range m {
		if x == "Delete" || x == "Shutdown" {
			tail = append(tail, x)
		}
	}
	if want := []string{"Delete", "Delete", "Shutdown", "Delete", "Shutdown"}; !slices.Equal(tail, want) {
		t.Errorf("delete/shutdown calls %v, want %v", tail, want)
	}
	for _, c := range srv.l.accepted() {
		select {
		case <-c.hungUp:
		case <-time.After(5 * time.Second):
			t.Fatal("the client kept its connection after Delete")
		}
	}
	// The close hook ran `shim delete` (stock does too), but published
	// nothing: the task's exit was reported by the shim itself.
	checkShimDeleteRan(t, r)
	if ev := r.events.all(); len(ev) != 0 {
		t.Errorf("events published after a task Delete: %v", ev)
	}
	requireGone(t, r.bundle.Path, r.bundle.WorkDir())
	if _, err := r.m.Get(ctx, fakeTaskID); !errdefs.IsNotFound(err) {
		t.Errorf("still registered: %v", err)
	}
	// A further Delete finds no task.
	if _, err := r.tm.Delete(ctx, fakeTaskID); !errdefs.IsNotFound(err) {
		t.Errorf("second Delete: %v, want NotFound", err)
	}
}

func TestUnexpectedShimExit(t *testing.T) {
	r := newRig(t, 5*time.Second)
	f := newFakeTask()
	srv := serveV3(t, f)
	r.writeBootstrap(t, 3, srv.addr)
	s := r.adopt(t)

	// The shim dies: its end of the connection goes away.
	srv.l.cut()
	testshim.Eventually(t, 5*time.Second, "the shim to be unregistered", func() bool {
		_, err := r.m.Get(nsCtx(), fakeTaskID)
		return errdefs.IsNotFound(err)
	})
	if err := s.conn.UserOnCloseWait(nsCtx()); err != nil {
		t.Fatal(err)
	}

	checkShimDeleteRan(t, r)
	requireGone(t, r.bundle.Path, r.bundle.WorkDir())

	ev := r.events.all()
	if len(ev) != 2 {
		t.Fatalf("%d events, want exactly /tasks/exit and /tasks/delete: %v", len(ev), ev)
	}
	at := protobuf.ToTimestamp(shimDeleteExitedAt)
	wantExit := &eventstypes.TaskExit{ContainerID: fakeTaskID, ID: fakeTaskID, Pid: 42, ExitStatus: 7, ExitedAt: at}
	wantDelete := &eventstypes.TaskDelete{ContainerID: fakeTaskID, Pid: 42, ExitStatus: 7, ExitedAt: at}
	for i, want := range []struct {
		topic string
		event googleproto.Message
	}{{runtime.TaskExitEventTopic, wantExit}, {runtime.TaskDeleteEventTopic, wantDelete}} {
		if ev[i].topic != want.topic || ev[i].ns != testNS {
			t.Errorf("event %d: %s in %q, want %s in %q", i, ev[i].topic, ev[i].ns, want.topic, testNS)
		}
		got, ok := ev[i].event.(googleproto.Message)
		if !ok || !googleproto.Equal(got, want.event) {
			t.Errorf("event %d: %v, want %v", i, ev[i].event, want.event)
		}
	}

	// Nothing more arrives later (a second hook run, say).
	time.Sleep(100 * time.Millisecond)
	if n := len(r.events.all()); n != 2 {
		t.Errorf("%d events after settling, want 2", n)
	}
}

// Abandon on a shim already in service (recovery armed it, then failed to
// register it) closes our connection only: the shim lives on, so no
// `shim delete`, no events, and the bundle stays.
func TestAbandonArmedShim(t *testing.T) {
	r := newRig(t, 5*time.Second)
	f := newFakeTask()
	srv := serveV3(t, f)
	r.writeBootstrap(t, 3, srv.addr)
	s, err := reconnect(r.m, nsCtx(), r.bundle, r.runtime.path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Arm(); err != nil {
		t.Fatal(err)
	}
	before := testshim.Snapshot(t, r.bundle.Path)
	s.Abandon()
	if err := s.conn.UserOnCloseWait(nsCtx()); err != nil {
		t.Fatal(err)
	}
	if runs := r.runtime.runs(t); len(runs) != 0 {
		t.Errorf("shim delete ran on an abandoned shim: %v", runs)
	}
	if ev := r.events.all(); len(ev) != 0 {
		t.Errorf("events for an abandoned shim: %v", ev)
	}
	testshim.RequireSameSnapshot(t, before, testshim.Snapshot(t, r.bundle.Path))
	// The shim itself is untouched and still answers a new connection.
	if s2, err := reconnect(r.m, nsCtx(), r.bundle, r.runtime.path); err != nil {
		t.Errorf("shim unreachable after Abandon: %v", err)
	} else {
		s2.Abandon()
	}
}

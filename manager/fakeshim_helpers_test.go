package manager

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	task "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/protobuf/proto"

	"github.com/shimkeeper/shimkeeper/bootstrap"
	"github.com/shimkeeper/shimkeeper/internal/testshim"
)

// call is one request a fake shim received.
type call struct {
	method string
	ns     string // the namespace header it carried
	req    any
}

// fakeTask is an in-process shim serving task API v3. Responses are
// fields; every request is recorded.
type fakeTask struct {
	mu    sync.Mutex
	calls []call

	connectPid uint32
	state      map[string]*task.StateResponse // by exec id; "" is the task
	stateErr   error
	pids       []*tasktypes.ProcessInfo
	wait       *task.WaitResponse
	deleteResp *task.DeleteResponse
	deleteErr  error // returned by the next Delete, then cleared
	deleted    bool  // a Delete succeeded: later ones answer NotFound, as runc's shim does
	shutdown   error // returned by the next Shutdown, then cleared
}

var _ task.TTRPCTaskService = (*fakeTask)(nil)

func (f *fakeTask) record(ctx context.Context, method string, req any) {
	ns, _ := namespaces.Namespace(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{method: method, ns: ns, req: req})
}

func (f *fakeTask) methods() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		out = append(out, c.method)
	}
	return out
}

// last returns the request of the last call of method.
func (f *fakeTask) last(t *testing.T, method string) call {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.calls) - 1; i >= 0; i-- {
		if f.calls[i].method == method {
			return f.calls[i]
		}
	}
	t.Fatalf("no %s call; calls: %v", method, f.calls)
	return call{}
}

func (f *fakeTask) set(fn func(*fakeTask)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeTask) State(ctx context.Context, r *task.StateRequest) (*task.StateResponse, error) {
	f.record(ctx, "State", r)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stateErr != nil {
		return nil, errgrpc.ToGRPC(f.stateErr)
	}
	s, ok := f.state[r.ExecID]
	if !ok {
		return nil, errgrpc.ToGRPC(errdefs.ErrNotFound)
	}
	return s, nil
}

func (f *fakeTask) Create(ctx context.Context, r *task.CreateTaskRequest) (*task.CreateTaskResponse, error) {
	f.record(ctx, "Create", r)
	return &task.CreateTaskResponse{Pid: f.connectPid}, nil
}

func (f *fakeTask) Start(ctx context.Context, r *task.StartRequest) (*task.StartResponse, error) {
	f.record(ctx, "Start", r)
	return &task.StartResponse{Pid: f.connectPid}, nil
}

func (f *fakeTask) Delete(ctx context.Context, r *task.DeleteRequest) (*task.DeleteResponse, error) {
	f.record(ctx, "Delete", r)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.deleteErr; err != nil {
		f.deleteErr = nil
		return nil, errgrpc.ToGRPC(err)
	}
	if f.deleted && r.ExecID == "" {
		return nil, errgrpc.ToGRPC(errdefs.ErrNotFound)
	}
	if r.ExecID == "" {
		f.deleted = true
	}
	return f.deleteResp, nil
}

func (f *fakeTask) Pids(ctx context.Context, r *task.PidsRequest) (*task.PidsResponse, error) {
	f.record(ctx, "Pids", r)
	return &task.PidsResponse{Processes: f.pids}, nil
}

func (f *fakeTask) Pause(ctx context.Context, r *task.PauseRequest) (*emptypb.Empty, error) {
	f.record(ctx, "Pause", r)
	return &emptypb.Empty{}, nil
}

func (f *fakeTask) Resume(ctx context.Context, r *task.ResumeRequest) (*emptypb.Empty, error) {
	f.record(ctx, "Resume", r)
	return &emptypb.Empty{}, nil
}

func (f *fakeTask) Checkpoint(ctx context.Context, r *task.CheckpointTaskRequest) (*emptypb.Empty, error) {
	f.record(ctx, "Checkpoint", r)
	return &emptypb.Empty{}, nil
}

func (f *fakeTask) Kill(ctx context.Context, r *task.KillRequest) (*emptypb.Empty, error) {
	f.record(ctx, "Kill", r)
	return &emptypb.Empty{}, nil
}

func (f *fakeTask) Exec(ctx context.Context, r *task.ExecProcessRequest) (*emptypb.Empty, error) {
	f.record(ctx, "Exec", r)
	return &emptypb.Empty{}, nil
}

func (f *fakeTask) ResizePty(ctx context.Context, r *task.ResizePtyRequest) (*emptypb.Empty, error) {
	f.record(ctx, "ResizePty", r)
	return &emptypb.Empty{}, nil
}

func (f *fakeTask) CloseIO(ctx context.Context, r *task.CloseIORequest) (*emptypb.Empty, error) {
	f.record(ctx, "CloseIO", r)
	return &emptypb.Empty{}, nil
}

func (f *fakeTask) Update(ctx context.Context, r *task.UpdateTaskRequest) (*emptypb.Empty, error) {
	f.record(ctx, "Update", r)
	return &emptypb.Empty{}, nil
}

func (f *fakeTask) Wait(ctx context.Context, r *task.WaitRequest) (*task.WaitResponse, error) {
	f.record(ctx, "Wait", r)
	return f.wait, nil
}

func (f *fakeTask) Stats(ctx context.Context, r *task.StatsRequest) (*task.StatsResponse, error) {
	f.record(ctx, "Stats", r)
	return &task.StatsResponse{}, nil
}

func (f *fakeTask) Connect(ctx context.Context, r *task.ConnectRequest) (*task.ConnectResponse, error) {
	f.record(ctx, "Connect", r)
	return &task.ConnectResponse{ShimPid: uint32(os.Getpid()), TaskPid: f.connectPid, Version: "3"}, nil
}

func (f *fakeTask) Shutdown(ctx context.Context, r *task.ShutdownRequest) (*emptypb.Empty, error) {
	f.record(ctx, "Shutdown", r)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.shutdown; err != nil {
		f.shutdown = nil
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// fakeTaskV2 serves only task API v2, as a containerd 1.7-era shim does
// (some of those print a version 3 bootstrap reply).
type fakeTaskV2 struct {
	fakeTask // for the call log
	state    *taskv2.StateResponse
}

var _ taskv2.TTRPCTaskService = (*fakeTaskV2)(nil)

func (f *fakeTaskV2) State(ctx context.Context, r *taskv2.StateRequest) (*taskv2.StateResponse, error) {
	f.record(ctx, "State", r)
	return f.state, nil
}
func (f *fakeTaskV2) Create(ctx context.Context, r *taskv2.CreateTaskRequest) (*taskv2.CreateTaskResponse, error) {
	f.record(ctx, "Create", r)
	return nil, testshim.ErrNotImplemented
}
func (f *fakeTaskV2) Start(ctx context.Context, r *taskv2.StartRequest) (*taskv2.StartResponse, error) {
	f.record(ctx, "Start", r)
	return nil, testshim.ErrNotImplemented
}
func (f *fakeTaskV2) Delete(ctx context.Context, r *taskv2.DeleteRequest) (*taskv2.DeleteResponse, error) {
	f.record(ctx, "Delete", r)
	return &taskv2.DeleteResponse{Pid: f.connectPid, ExitStatus: 9}, nil
}
func (f *fakeTaskV2) Pids(ctx context.Context, r *taskv2.PidsRequest) (*taskv2.PidsResponse, error) {
	f.record(ctx, "Pids", r)
	return &taskv2.PidsResponse{Processes: f.pids}, nil
}
func (f *fakeTaskV2) Pause(ctx context.Context, r *taskv2.PauseRequest) (*emptypb.Empty, error) {
	f.record(ctx, "Pause", r)
	return nil, testshim.ErrNotImplemented
}
func (f *fakeTaskV2) Resume(ctx context.Context, r *taskv2.ResumeRequest) (*emptypb.Empty, error) {
	f.record(ctx, "Resume", r)
	return nil, testshim.ErrNotImplemented
}
func (f *fakeTaskV2) Checkpoint(ctx context.Context, r *taskv2.CheckpointTaskRequest) (*emptypb.Empty, error) {
	f.record(ctx, "Checkpoint", r)
	return nil, testshim.ErrNotImplemented
}
func (f *fakeTaskV2) Kill(ctx context.Context, r *taskv2.KillRequest) (*emptypb.Empty, error) {
	f.record(ctx, "Kill", r)
	return &emptypb.Empty{}, nil
}
func (f *fakeTaskV2) Exec(ctx context.Context, r *taskv2.ExecProcessRequest) (*emptypb.Empty, error) {
	f.record(ctx, "Exec", r)
	return nil, testshim.ErrNotImplemented
}
func (f *fakeTaskV2) ResizePty(ctx context.Context, r *taskv2.ResizePtyRequest) (*emptypb.Empty, error) {
	f.record(ctx, "ResizePty", r)
	return nil, testshim.ErrNotImplemented
}
func (f *fakeTaskV2) CloseIO(ctx context.Context, r *taskv2.CloseIORequest) (*emptypb.Empty, error) {
	f.record(ctx, "CloseIO", r)
	return nil, testshim.ErrNotImplemented
}
func (f *fakeTaskV2) Update(ctx context.Context, r *taskv2.UpdateTaskRequest) (*emptypb.Empty, error) {
	f.record(ctx, "Update", r)
	return nil, testshim.ErrNotImplemented
}
func (f *fakeTaskV2) Wait(ctx context.Context, r *taskv2.WaitRequest) (*taskv2.WaitResponse, error) {
	f.record(ctx, "Wait", r)
	return nil, testshim.ErrNotImplemented
}
func (f *fakeTaskV2) Stats(ctx context.Context, r *taskv2.StatsRequest) (*taskv2.StatsResponse, error) {
	f.record(ctx, "Stats", r)
	return nil, testshim.ErrNotImplemented
}
func (f *fakeTaskV2) Connect(ctx context.Context, r *taskv2.ConnectRequest) (*taskv2.ConnectResponse, error) {
	f.record(ctx, "Connect", r)
	return &taskv2.ConnectResponse{ShimPid: uint32(os.Getpid()), TaskPid: f.connectPid, Version: "2"}, nil
}
func (f *fakeTaskV2) Shutdown(ctx context.Context, r *taskv2.ShutdownRequest) (*emptypb.Empty, error) {
	f.record(ctx, "Shutdown", r)
	return &emptypb.Empty{}, nil
}

// trackedConn reports when the peer (our client) hangs up.
type trackedConn struct {
	net.Conn
	once   sync.Once
	hungUp chan struct{}
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.once.Do(func() { close(c.hungUp) })
	}
	return n, err
}

// trackingListener keeps every accepted connection, so a test can cut
// them (the shim "dies") or see that the client closed them.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*trackedConn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, hungUp: make(chan struct{})}
	l.mu.Lock()
	l.conns = append(l.conns, tc)
	l.mu.Unlock()
	return tc, nil
}

func (l *trackingListener) accepted() []*trackedConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*trackedConn(nil), l.conns...)
}

// cut closes every accepted connection from the server side.
func (l *trackingListener) cut() {
	for _, c := range l.accepted() {
		c.Conn.Close()
	}
}

// fakeServer is a ttrpc server on a unix socket (or an abstract one).
type fakeServer struct {
	*testshim.Server
	addr string // as a shim advertises it
	l    *trackingListener
}

// serveTTRPC serves register's services on a new socket. abstract selects
// a pre-1.5-style address: no scheme, an abstract unix socket.
func serveTTRPC(t *testing.T, abstract bool, register func(*ttrpc.Server)) *fakeServer {
	t.Helper()
	var (
		l    net.Listener
		addr string
	)
	if abstract {
		name := "/shimkeeper-test/" + strings.ReplaceAll(t.Name(), "/", "_") + "/" + time.Now().Format("150405.000000000")
		l = testshim.Listen(t, "\x00"+name)
		addr = name
	} else {
		p := filepath.Join(testshim.SocketDir(t), "s.sock")
		l = testshim.Listen(t, p)
		addr = "unix://" + p
	}
	tl := &trackingListener{Listener: l}
	return &fakeServer{Server: testshim.Serve(t, tl, register), addr: addr, l: tl}
}

func serveV3(t *testing.T, f *fakeTask) *fakeServer {
	return serveTTRPC(t, false, func(s *ttrpc.Server) { task.RegisterTTRPCTaskService(s, f) })
}

func serveV2(t *testing.T, f *fakeTaskV2) *fakeServer {
	return serveTTRPC(t, false, func(s *ttrpc.Server) { taskv2.RegisterTTRPCTaskService(s, f) })
}

// hangServer accepts connections and never answers: a shim that is alive
// but stuck. It reports when the client hangs up.
type hangServer struct {
	*testshim.Silent
	addr string
}

func serveHang(t *testing.T) *hangServer {
	t.Helper()
	p := filepath.Join(testshim.SocketDir(t), "s.sock")
	return &hangServer{Silent: testshim.ServeSilent(t, p), addr: "unix://" + p}
}

// published is one event the manager published.
type published struct {
	ns, topic string
	event     events.Event
}

type recordingPublisher struct {
	mu     sync.Mutex
	events []published
}

var _ events.Publisher = (*recordingPublisher)(nil)

func (p *recordingPublisher) Publish(ctx context.Context, topic string, event events.Event) error {
	ns, _ := namespaces.Namespace(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, published{ns: ns, topic: topic, event: event})
	return nil
}

func (p *recordingPublisher) all() []published {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]published(nil), p.events...)
}

// fakeContainers knows a fixed set of container ids.
type fakeContainers struct{ ids map[string]bool }

var _ containers.Store = fakeContainers{}

func (f fakeContainers) Get(ctx context.Context, id string) (containers.Container, error) {
	if !f.ids[id] {
		return containers.Container{}, errdefs.ErrNotFound
	}
	return containers.Container{ID: id, Runtime: containers.RuntimeInfo{Name: "io.containerd.fake.v1"}}, nil
}
func (fakeContainers) List(context.Context, ...string) ([]containers.Container, error) {
	return nil, errdefs.ErrNotImplemented
}
func (fakeContainers) Create(context.Context, containers.Container) (containers.Container, error) {
	return containers.Container{}, errdefs.ErrNotImplemented
}
func (fakeContainers) Update(context.Context, containers.Container, ...string) (containers.Container, error) {
	return containers.Container{}, errdefs.ErrNotImplemented
}
func (fakeContainers) Delete(context.Context, string) error { return errdefs.ErrNotImplemented }

// fakeRuntime is a shell script standing in for the shim binary: its
// `delete` prints reply (a protobuf DeleteResponse) and appends
// "<cwd> <args>" to a log, one line per run.
type fakeRuntime struct {
	path string
	log  string
}

func newFakeRuntime(t *testing.T, reply *taskv2.DeleteResponse) *fakeRuntime {
	t.Helper()
	dir := t.TempDir()
	data, err := proto.Marshal(reply)
	if err != nil {
		t.Fatal(err)
	}
	replyFile := filepath.Join(dir, "reply.bin")
	if err := os.WriteFile(replyFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r := &fakeRuntime{path: filepath.Join(dir, "containerd-shim-fake-v1"), log: filepath.Join(dir, "runs.log")}
	script := "#!/bin/sh\necho \"$PWD $*\" >> " + r.log + "\nexec cat " + replyFile + "\n"
	if err := os.WriteFile(r.path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return r
}

// runs returns one "<cwd> <args>" line per run.
func (r *fakeRuntime) runs(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(r.log)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// reconnect reads the bundle's bootstrap.json (or legacy address file) and
// probes the shim under the load budget, as recovery does for one bundle; it
// returns the connected, unarmed shim when it answered.
func reconnect(m *Manager, ctx context.Context, b *Bundle, runtimePath string) (*Shim, error) {
	params, _, err := bootstrap.Read(b.Path)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeouts.Load)
	defer cancel()
	r := m.Probe(ctx, b, runtimePath, params)
	if r.Shim == nil {
		return nil, r.Err
	}
	return r.Shim, nil
}

// Command synthshim is the synthetic shim population of the recovery
// benchmark (`make bench`): one process serves the task API for thousands of
// shim sockets, so that a daemon can be restarted over thousands of "live"
// shims at almost no cost.
//
// It runs in two roles.
//
// Server:
//
//	synthshim serve -ctl DIR/synth.ctl
//
// listens on a control socket (JSON, one request and one reply per line) and
// serves every shim socket it is told about. Each shim has a mode:
//
//	live    answers like a runc shim with one running process: Connect gives the
//	        task pid, State RUNNING, Pids one process, Wait blocks.
//	hung    accepts connections and never answers.
//	dead    a stale socket file with no listener (connect is refused).
//	leaked  a shim whose task was never created: Connect gives TaskPid 0, State
//	        and Delete NotFound, Pids empty; Shutdown makes it exit.
//	exited  a task that exited with a status (e.g. 3): State STOPPED with that
//	        status, Pids empty, Wait returns at once, Delete returns the status.
//
// A live, leaked or exited shim holds its bundle's log FIFO open for writing,
// as a real shim does.
//
// Shim binary: the same executable, copied to DIR/containerd-shim-synth-v1 and
// passed to containerd as an absolute runtime path, implements the shim binary
// protocol against the server found at DIR/synth.ctl (DIR taken from argv[0]):
//
//	start   (stdin: protobuf BootstrapParams, cwd: the bundle) asks the server to
//	        listen at the address a stock shim would use and prints a protobuf
//	        BootstrapResult{Version: 3, Protocol: "ttrpc", Address: ...}.
//	delete  prints a protobuf task v2 DeleteResponse (exit 137, or the status of
//	        an exited shim) and exits 0.
//	-info   prints an empty protobuf RuntimeInfo.
//
// Control requests (field "op"):
//
//	open   {ns, id, addr, bundle}   start serving a new shim, mode live
//	exit   {ns, id}                 exit status a `shim delete` reports
//	reset  {shims: [...]}           close everything, zero the counters, then
//	                                serve exactly the given shims in their modes
//	list                            the shims and their modes
//	stats                           counters: calls per mode and method, execs
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	task "github.com/containerd/containerd/api/runtime/task/v3"
	apitypes "github.com/containerd/containerd/api/types"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shim"

	"github.com/shimkeeper/shimkeeper/bench/synthctl"
)

// Modes of a synthetic shim.
const (
	ModeLive   = "live"
	ModeHung   = "hung"
	ModeDead   = "dead"
	ModeLeaked = "leaked"
	ModeExited = "exited"
)

// CtlName is the control socket's name, next to the shim binary.
const CtlName = "synth.ctl"

// ExitKilled is what `shim delete` reports for a shim that is not exited:
// 128+SIGKILL, as the runc shim does after killing the container.
const ExitKilled = 137

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		fs := flag.NewFlagSet("serve", flag.ExitOnError)
		ctl := fs.String("ctl", "", "control socket path")
		_ = fs.Parse(os.Args[2:])
		if err := serve(*ctl); err != nil {
			fmt.Fprintln(os.Stderr, "synthshim serve:", err)
			os.Exit(1)
		}
		return
	}
	if err := shimMain(); err != nil {
		// start's stdout and stderr are read together by containerd; only
		// a failure writes anything besides the result.
		fmt.Fprintln(os.Stderr, "synthshim:", err)
		os.Exit(1)
	}
}

// --- shim binary role -------------------------------------------------------

func shimMain() error {
	fs := flag.NewFlagSet("shim", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ns := fs.String("namespace", "", "")
	id := fs.String("id", "", "")
	address := fs.String("address", "", "")
	_ = fs.String("publish-binary", "", "")
	bundle := fs.String("bundle", "", "")
	_ = fs.Bool("debug", false, "")
	info := fs.Bool("info", false, "")
	_ = fs.Bool("v", false, "")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if *info {
		out, err := proto.Marshal(&apitypes.RuntimeInfo{})
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(out)
		return err
	}
	ctl := filepath.Join(filepath.Dir(os.Args[0]), CtlName)
	switch fs.Arg(0) {
	case "start":
		return shimStart(ctl, *ns, *id, *address)
	case "delete":
		return shimDelete(ctl, *ns, *id, *bundle)
	default:
		return fmt.Errorf("unsupported action %q", fs.Arg(0))
	}
}

func shimStart(ctl, ns, id, grpcAddress string) error {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	var p bootapi.BootstrapParams
	if err := proto.Unmarshal(data, &p); err != nil {
		return fmt.Errorf("bootstrap params: %w", err)
	}
	if p.GetNamespace() != "" {
		ns = p.GetNamespace()
	}
	if p.GetInstanceID() != "" {
		id = p.GetInstanceID()
	}
	if p.GetContainerdGrpcAddress() != "" {
		grpcAddress = p.GetContainerdGrpcAddress()
	}
	socketDir := p.GetSocketDir()
	if socketDir == "" {
		return errors.New("no socket dir in bootstrap params")
	}
	addr, err := shim.CreateSocketAddress(namespaces.WithNamespace(context.Background(), ns), socketDir, grpcAddress, id, false)
	if err != nil {
		return err
	}
	bundle, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := synthctl.Call(ctl, synthctl.Request{Op: "open", NS: ns, ID: id, Addr: addr, Bundle: bundle}, 10*time.Second); err != nil {
		return err
	}
	out, err := proto.Marshal(&bootapi.BootstrapResult{Version: 3, Protocol: "ttrpc", Address: addr})
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(out)
	return err
}

func shimDelete(ctl, ns, id, bundle string) error {
	if ns == "" {
		ns = os.Getenv("NAMESPACE")
	}
	status := uint32(ExitKilled)
	if r, err := synthctl.Call(ctl, synthctl.Request{Op: "exit", NS: ns, ID: id, Bundle: bundle}, 2*time.Second); err == nil {
		status = r.Exit
	}
	out, err := proto.Marshal(&taskv2.DeleteResponse{Pid: 0, ExitStatus: status, ExitedAt: timestamppb.Now()})
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(out)
	return err
}

// --- server role --------------------------------------------------------------

type server struct {
	pid uint32

	mu    sync.Mutex
	shims map[string]*instance // "ns/id"
	stats map[string]int64
}

// instance is one served shim.
type instance struct {
	s *server
	e synthctl.Entry

	srv  *ttrpc.Server // live, leaked, exited
	hung *hungListener // hung
	logf *os.File      // the bundle's log FIFO, held open as a shim does

	mu      sync.Mutex
	deleted bool // the task was deleted through the task API
	closed  bool
}

func key(ns, id string) string { return ns + "/" + id }

func serve(ctl string) error {
	if ctl == "" {
		return errors.New("-ctl is required")
	}
	s := &server{pid: uint32(os.Getpid()), shims: map[string]*instance{}, stats: map[string]int64{}}
	_ = os.Remove(ctl)
	l, err := net.Listen("unix", ctl)
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		l.Close()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			continue
		}
		go s.handleCtl(c)
	}
	// Leave no socket file behind.
	s.mu.Lock()
	for _, in := range s.shims {
		in.close()
		if in.e.Mode == ModeDead {
			_ = os.Remove(sockPath(in.e.Addr))
		}
	}
	s.mu.Unlock()
	return nil
}

func (s *server) count(k string) {
	s.mu.Lock()
	s.stats[k]++
	s.mu.Unlock()
}

func (s *server) handleCtl(c net.Conn) {
	defer c.Close()
	var req synthctl.Request
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&req); err != nil {
		return
	}
	r := s.do(req)
	_ = json.NewEncoder(c).Encode(r)
}

func (s *server) do(req synthctl.Request) synthctl.Reply {
	switch req.Op {
	case "open":
		s.count("exec.start")
		e := synthctl.Entry{NS: req.NS, ID: req.ID, Addr: req.Addr, Bundle: req.Bundle, Mode: ModeLive}
		s.mu.Lock()
		defer s.mu.Unlock()
		if old := s.shims[key(e.NS, e.ID)]; old != nil {
			old.close()
		}
		in, err := s.start(e)
		if err != nil {
			return synthctl.Reply{Error: err.Error()}
		}
		s.shims[key(e.NS, e.ID)] = in
		return synthctl.Reply{}
	case "exit":
		s.mu.Lock()
		defer s.mu.Unlock()
		in := s.shims[key(req.NS, req.ID)]
		mode := "unknown"
		if in != nil {
			mode = in.e.Mode
		}
		s.stats["exec.delete."+mode]++
		if in != nil && in.e.Mode == ModeExited {
			return synthctl.Reply{Exit: in.e.Exit}
		}
		return synthctl.Reply{Exit: ExitKilled}
	case "reset":
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, in := range s.shims {
			in.close()
			_ = os.Remove(sockPath(in.e.Addr))
		}
		s.shims = map[string]*instance{}
		s.stats = map[string]int64{}
		var errs []string
		for _, e := range req.Shims {
			in, err := s.start(e)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s/%s: %v", e.NS, e.ID, err))
				continue
			}
			s.shims[key(e.NS, e.ID)] = in
		}
		return synthctl.Reply{Errors: errs, PID: int(s.pid)}
	case "list":
		s.mu.Lock()
		defer s.mu.Unlock()
		var out []synthctl.Entry
		for _, in := range s.shims {
			out = append(out, in.e)
		}
		sort.Slice(out, func(i, j int) bool { return key(out[i].NS, out[i].ID) < key(out[j].NS, out[j].ID) })
		return synthctl.Reply{Shims: out, PID: int(s.pid)}
	case "stats":
		s.mu.Lock()
		defer s.mu.Unlock()
		st := make(map[string]int64, len(s.stats))
		for k, v := range s.stats {
			st[k] = v
		}
		return synthctl.Reply{Stats: st, PID: int(s.pid)}
	}
	return synthctl.Reply{Error: "unknown op " + req.Op}
}

func sockPath(addr string) string { return strings.TrimPrefix(addr, "unix://") }

// start serves e according to its mode. Called with s.mu held.
func (s *server) start(e synthctl.Entry) (*instance, error) {
	in := &instance{s: s, e: e}
	path := sockPath(e.Addr)
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, err
	}
	_ = os.Remove(path)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	switch e.Mode {
	case ModeDead:
		// A stale socket file: bound once, nobody listening any more.
		l.SetUnlinkOnClose(false)
		l.Close()
		in.closed = true
		return in, nil
	case ModeHung:
		in.hung = &hungListener{l: l, conns: map[net.Conn]struct{}{}}
		go in.hung.run(func() { s.count("hung.accept") })
	case ModeLive, ModeLeaked, ModeExited:
		srv, err := ttrpc.NewServer()
		if err != nil {
			l.Close()
			return nil, err
		}
		task.RegisterTTRPCTaskService(srv, &taskService{in: in})
		in.srv = srv
		go func() { _ = srv.Serve(context.Background(), l) }()
	default:
		l.Close()
		return nil, fmt.Errorf("unknown mode %q", e.Mode)
	}
	if e.Bundle != "" {
		// O_RDWR never blocks on a FIFO; a real shim holds it O_WRONLY.
		if f, err := os.OpenFile(filepath.Join(e.Bundle, "log"), os.O_RDWR|syscall.O_NONBLOCK, 0); err == nil {
			in.logf = f
		}
	}
	return in, nil
}

// close stops serving: the shim "exits".
func (in *instance) close() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return
	}
	in.closed = true
	if in.srv != nil {
		_ = in.srv.Close()
	}
	if in.hung != nil {
		in.hung.close()
	}
	if in.logf != nil {
		_ = in.logf.Close()
	}
}

// hungListener accepts and never answers.
type hungListener struct {
	l     *net.UnixListener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
}

func (h *hungListener) run(onAccept func()) {
	for {
		c, err := h.l.Accept()
		if err != nil {
			return
		}
		onAccept()
		h.mu.Lock()
		if h.done {
			h.mu.Unlock()
			c.Close()
			return
		}
		h.conns[c] = struct{}{}
		h.mu.Unlock()
		go func() {
			_, _ = io.Copy(io.Discard, c)
			h.mu.Lock()
			delete(h.conns, c)
			h.mu.Unlock()
			c.Close()
		}()
	}
}

func (h *hungListener) close() {
	h.mu.Lock()
	h.done = true
	for c := range h.conns {
		c.Close()
	}
	h.mu.Unlock()
	h.l.Close()
}

// --- task API -----------------------------------------------------------------

// exitedAt is the exit time every exited shim reports.
var exitedAt = timestamppb.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))

type taskService struct{ in *instance }

var (
	errNotFound       = func(what string) error { return errgrpc.ToGRPCf(errdefs.ErrNotFound, "%s", what) }
	errNotImplemented = errgrpc.ToGRPC(errdefs.ErrNotImplemented)
)

func (t *taskService) count(method string) { t.in.s.count(t.in.e.Mode + "." + method) }

// hasTask reports whether the shim has the task id.
func (t *taskService) hasTask(id string) bool {
	t.in.mu.Lock()
	defer t.in.mu.Unlock()
	return t.in.e.Mode != ModeLeaked && !t.in.deleted && id == t.in.e.ID
}

func (t *taskService) Connect(ctx context.Context, r *task.ConnectRequest) (*task.ConnectResponse, error) {
	t.count("Connect")
	resp := &task.ConnectResponse{ShimPid: t.in.s.pid, Version: "synth"}
	if t.hasTask(r.ID) {
		resp.TaskPid = t.in.s.pid
	}
	return resp, nil
}

func (t *taskService) State(ctx context.Context, r *task.StateRequest) (*task.StateResponse, error) {
	t.count("State")
	if !t.hasTask(r.ID) || r.ExecID != "" {
		return nil, errNotFound("container " + r.ID + " not found")
	}
	resp := &task.StateResponse{ID: r.ID, Bundle: t.in.e.Bundle, Pid: t.in.s.pid, Status: tasktypes.Status_RUNNING}
	if t.in.e.Mode == ModeExited {
		resp.Status, resp.ExitStatus, resp.ExitedAt = tasktypes.Status_STOPPED, t.in.e.Exit, exitedAt
	}
	return resp, nil
}

func (t *taskService) Pids(ctx context.Context, r *task.PidsRequest) (*task.PidsResponse, error) {
	t.count("Pids")
	if t.in.e.Mode == ModeLive && t.hasTask(r.ID) {
		return &task.PidsResponse{Processes: []*tasktypes.ProcessInfo{{Pid: t.in.s.pid}}}, nil
	}
	return &task.PidsResponse{}, nil
}

func (t *taskService) Wait(ctx context.Context, r *task.WaitRequest) (*task.WaitResponse, error) {
	t.count("Wait")
	if !t.hasTask(r.ID) {
		return nil, errNotFound("container " + r.ID + " not found")
	}
	if t.in.e.Mode == ModeExited {
		return &task.WaitResponse{ExitStatus: t.in.e.Exit, ExitedAt: exitedAt}, nil
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (t *taskService) Delete(ctx context.Context, r *task.DeleteRequest) (*task.DeleteResponse, error) {
	t.count("Delete")
	if !t.hasTask(r.ID) || r.ExecID != "" {
		return nil, errNotFound("container not created")
	}
	t.in.mu.Lock()
	t.in.deleted = true
	t.in.mu.Unlock()
	resp := &task.DeleteResponse{Pid: t.in.s.pid, ExitStatus: ExitKilled, ExitedAt: timestamppb.Now()}
	if t.in.e.Mode == ModeExited {
		resp.ExitStatus, resp.ExitedAt = t.in.e.Exit, exitedAt
	}
	return resp, nil
}

func (t *taskService) Shutdown(ctx context.Context, r *task.ShutdownRequest) (*emptypb.Empty, error) {
	t.count("Shutdown")
	if t.hasTask(t.in.e.ID) {
		return &emptypb.Empty{}, nil // a shim with a task stays
	}
	// The shim exits once it has answered.
	go func() {
		time.Sleep(5 * time.Millisecond)
		t.in.close()
		_ = os.Remove(sockPath(t.in.e.Addr))
	}()
	return &emptypb.Empty{}, nil
}

func (t *taskService) Create(ctx context.Context, r *task.CreateTaskRequest) (*task.CreateTaskResponse, error) {
	t.count("Create")
	return &task.CreateTaskResponse{Pid: t.in.s.pid}, nil
}

func (t *taskService) Start(ctx context.Context, r *task.StartRequest) (*task.StartResponse, error) {
	t.count("Start")
	return &task.StartResponse{Pid: t.in.s.pid}, nil
}

func (t *taskService) Kill(ctx context.Context, r *task.KillRequest) (*emptypb.Empty, error) {
	t.count("Kill")
	if !t.hasTask(r.ID) {
		return nil, errNotFound("container " + r.ID + " not found")
	}
	return &emptypb.Empty{}, nil
}

func (t *taskService) Stats(ctx context.Context, r *task.StatsRequest) (*task.StatsResponse, error) {
	t.count("Stats")
	return nil, errNotImplemented
}

func (t *taskService) Pause(context.Context, *task.PauseRequest) (*emptypb.Empty, error) {
	return nil, errNotImplemented
}

func (t *taskService) Resume(context.Context, *task.ResumeRequest) (*emptypb.Empty, error) {
	return nil, errNotImplemented
}

func (t *taskService) Checkpoint(context.Context, *task.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, errNotImplemented
}

func (t *taskService) Exec(context.Context, *task.ExecProcessRequest) (*emptypb.Empty, error) {
	return nil, errNotImplemented
}

func (t *taskService) ResizePty(context.Context, *task.ResizePtyRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func (t *taskService) CloseIO(context.Context, *task.CloseIORequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func (t *taskService) Update(context.Context, *task.UpdateTaskRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

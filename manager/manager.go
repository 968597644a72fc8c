package manager

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	task "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/core/sandbox"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/plugins"

	"github.com/shimkeeper/shimkeeper/bootstrap"
	"github.com/shimkeeper/shimkeeper/gates"
	"github.com/shimkeeper/shimkeeper/knownstate"
	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/proc"
	"github.com/shimkeeper/shimkeeper/shimbin"
	"github.com/shimkeeper/shimkeeper/taskapi"
)

// Timeouts are the shim budgets, read once from containerd's [timeouts].
type Timeouts struct {
	// Start bounds `shim start` (stock: unbounded).
	Start time.Duration
	// Load bounds connecting to and probing one shim.
	Load time.Duration
	// Cleanup bounds each teardown step: `shim delete`, task delete.
	Cleanup time.Duration
	// Shutdown bounds the Shutdown call after a task delete.
	Shutdown time.Duration
}

// Config is what a Manager needs from the daemon.
type Config struct {
	// Address and TTRPCAddress are containerd's own, passed to shims. They
	// must be stock's: the runc shim derives its socket name from Address.
	Address, TTRPCAddress string
	SocketDir             string
	// Env is added to the environment of `shim start`.
	Env    []string
	Events events.Publisher
	// Subscriber, if set, is the event exchange the shims publish to: its
	// task events keep the states recovery learned true (knownstate).
	// Without it every State asks the shim.
	Subscriber events.Subscriber
	Containers containers.Store
	Sandboxes  sandbox.Store
	Timeouts   Timeouts
}

// Manager starts, connects and tracks shims. The task runtime and the
// sandbox controller share one Manager and one map of shims, as in stock.
type Manager struct {
	cfg      Config
	shims    *runtime.NSMap[*Shim]
	runtimes *shimbin.Resolver
	// holds: ids held by background cleanup (Hold); pending: ids
	// awaiting recovery's verdict (Pend).
	holds, pending gates.Set
	idLocks        gates.Locks
	// servingSeen: containerd's grpc address has accepted a connection.
	servingSeen atomic.Bool
	monitor     atomic.Pointer[runtime.TaskMonitor]
	// known: the task events seen, for the states recovery's probes
	// learned (nil without a Subscriber).
	known *knownstate.Book
}

// New returns a Manager. With cfg.Subscriber it subscribes to task events
// for the daemon's lifetime; it starts nothing else.
func New(cfg Config) *Manager {
	m := &Manager{cfg: cfg, shims: runtime.NewNSMap[*Shim](), runtimes: shimbin.NewResolver()}
	if cfg.Subscriber != nil {
		m.known = knownstate.NewBook()
		knownstate.Watch(context.Background(), cfg.Subscriber, m.known, m.forgetKnown)
	}
	return m
}

// forgetKnown drops the known state of the task registered under ns/id,
// if any: an event says it may have changed.
func (m *Manager) forgetKnown(ns, id string) {
	if s, err := m.shims.Get(namespaces.WithNamespace(context.Background(), ns), id); err == nil {
		s.known.Forget()
	}
}

// ID is the plugin id, io.containerd.shim.v1.manager.
func (m *Manager) ID() string { return plugins.ShimPlugin.String() + ".manager" }

// Env returns a copy of the configured shim environment. CRI reads the
// last PATH= entry to find criu.
func (m *Manager) Env() []string {
	if m.cfg.Env == nil {
		return nil
	}
	return append([]string(nil), m.cfg.Env...)
}

// Containers is the metadata container store.
func (m *Manager) Containers() containers.Store { return m.cfg.Containers }

// Sandboxes is the metadata sandbox store.
func (m *Manager) Sandboxes() sandbox.Store { return m.cfg.Sandboxes }

// ResolveRuntime finds the shim binary for a runtime name or path.
func (m *Manager) ResolveRuntime(name string) (string, error) { return m.runtimes.Resolve(name) }

// Get returns the shim registered under the context's namespace and id.
// If recovery has yet to judge a shim of that id, Get waits for it.
func (m *Manager) Get(ctx context.Context, id string) (*Shim, error) {
	if err := m.waitPendingCtx(ctx, id); err != nil {
		return nil, err
	}
	return m.shims.Get(ctx, id)
}

// Add registers s.
func (m *Manager) Add(ctx context.Context, s *Shim) error {
	return m.shims.AddWithNamespace(s.Namespace(), s)
}

// registered reports whether s is what is registered under its id.
func (m *Manager) registered(ctx context.Context, s *Shim) bool {
	cur, err := m.shims.Get(namespaces.WithNamespace(ctx, s.Namespace()), s.ID())
	return err == nil && cur == s
}

// Replace registers next in place of prev, if prev is still registered.
func (m *Manager) Replace(ctx context.Context, prev, next *Shim) bool {
	if !m.registered(ctx, prev) {
		return false
	}
	m.shims.Delete(namespaces.WithNamespace(ctx, prev.Namespace()), prev.ID())
	return m.shims.AddWithNamespace(next.Namespace(), next) == nil
}

// Remove unregisters id if it is still s.
func (m *Manager) Remove(ctx context.Context, s *Shim) {
	if m.registered(ctx, s) {
		m.shims.Delete(namespaces.WithNamespace(ctx, s.Namespace()), s.ID())
	}
}

func (m *Manager) binary(b *Bundle, runtimePath string) *shimbin.Binary {
	return &shimbin.Binary{
		Runtime:      runtimePath,
		Address:      m.cfg.Address,
		TTRPCAddress: m.cfg.TTRPCAddress,
		SocketDir:    m.cfg.SocketDir,
		Env:          m.cfg.Env,
		Namespace:    b.Namespace,
		ID:           b.ID,
		Bundle:       b.Path,
	}
}

// Start starts a shim for a new task or sandbox in bundle b, or joins the
// shim of the task's sandbox (task API v3 and newer), and registers it.
func (m *Manager) Start(ctx context.Context, id string, b *Bundle, opts runtime.CreateOpts) (*Shim, error) {
	params, join, err := m.joinParams(ctx, id, opts)
	if err != nil {
		return nil, err
	}
	var s *Shim
	if join {
		s, err = m.joinSandbox(ctx, b, opts, params)
	} else {
		s, err = m.startShim(ctx, b, opts)
	}
	if err != nil {
		return nil, err
	}
	if err := m.Add(ctx, s); err != nil {
		m.Discard(ctx, s)
		return nil, fmt.Errorf("failed to add task: %w", err)
	}
	return s, nil
}

// joinParams decides, as stock does, whether a task joins its sandbox's
// shim: the sandbox must be in the metadata store and its shim must speak
// task API v3. It returns the bootstrap params to connect with.
func (m *Manager) joinParams(ctx context.Context, id string, opts runtime.CreateOpts) (*bootapi.BootstrapResult, bool, error) {
	if opts.SandboxID == "" {
		return nil, false, nil
	}
	if _, err := m.cfg.Sandboxes.Get(ctx, opts.SandboxID); err != nil {
		if !errdefs.IsNotFound(err) {
			return nil, false, err
		}
		// A sandbox from containerd 1.x: its shim may not group, so start
		// a shim for the task.
		log.G(ctx).WithField("id", id).Warnf("sandbox (id=%s) not found, maybe created from v1.x", opts.SandboxID)
		return nil, false, nil
	}
	var params *bootapi.BootstrapResult
	if opts.Address != "" {
		protocol, address, ok := strings.Cut(opts.Address, "+")
		if !ok {
			return nil, false, fmt.Errorf("the scheme of sandbox address should be in the form of <protocol>+<unix|vsock|tcp>, i.e. ttrpc+unix or grpc+vsock: %w", errdefs.ErrInvalidArgument)
		}
		params = &bootapi.BootstrapResult{Version: int32(opts.Version), Protocol: protocol, Address: address}
		// The controller returns only where to connect; what the sandbox's
		// shim advertised is on the instance we already hold.
		if sb, err := m.Get(ctx, opts.SandboxID); err == nil && sb.bootstrap != nil {
			params.Extensions = sb.bootstrap.GetExtensions()
		}
	} else {
		sb, err := m.Get(ctx, opts.SandboxID)
		if err != nil {
			return nil, false, fmt.Errorf("can't find shim for sandbox %s: %w", opts.SandboxID, err)
		}
		p, _, err := bootstrap.Read(sb.Bundle())
		if err != nil {
			return nil, false, fmt.Errorf("failed to get bootstrap params of sandbox %s: %w", opts.SandboxID, err)
		}
		params = p
	}
	// Shims older than task API v3 need `start` and `delete` per container.
	if params.Version < 3 {
		return nil, false, nil
	}
	return params, true, nil
}

// joinSandbox connects the task to its sandbox's shim: no `start` runs and
// no shim-binary-path is written; sandbox and bootstrap.json are.
func (m *Manager) joinSandbox(ctx context.Context, b *Bundle, opts runtime.CreateOpts, params *bootapi.BootstrapResult) (*Shim, error) {
	if err := os.WriteFile(filepath.Join(b.Path, layout.FileSandbox), []byte(opts.SandboxID), 0o600); err != nil {
		return nil, err
	}
	if err := bootstrap.Write(b.Path, params); err != nil {
		return nil, fmt.Errorf("failed to write bootstrap.json for bundle %s: %w", b.Path, err)
	}
	runtimePath, err := m.runtimes.Resolve(opts.Runtime)
	if err != nil {
		return nil, fmt.Errorf("failed to resolve runtime path: %w", err)
	}
	s, err := m.Attach(ctx, b, m.binary(b, runtimePath), params)
	if err != nil {
		return nil, fmt.Errorf("failed to load sandbox task %q: %w", opts.SandboxID, err)
	}
	if err := s.Arm(); err != nil {
		m.Discard(ctx, s)
		return nil, err
	}
	return s, nil
}

// startShim runs `shim start`, records shim-binary-path and
// bootstrap.json, connects and probes the new shim.
func (m *Manager) startShim(ctx context.Context, b *Bundle, opts runtime.CreateOpts) (_ *Shim, retErr error) {
	runtimePath, err := m.runtimes.Resolve(opts.Runtime)
	if err != nil {
		return nil, fmt.Errorf("failed to resolve runtime path: %w", err)
	}
	bin := m.binary(b, runtimePath)
	topts := taskOptions(opts)

	stopLogs, err := drainShimLog(b.Path)
	if err != nil {
		return nil, err
	}
	started := false
	var params *bootapi.BootstrapResult
	// Processes that started after this are ones this start made.
	before := proc.NowTicks()
	defer func() {
		if retErr == nil {
			return
		}
		stopLogs()
		if started {
			// The shim may be running without anyone connected to it:
			// `shim delete` stops it and whatever it created.
			m.runShimDelete(ctx, bin)
		}
		if params != nil {
			// `shim delete` need not stop the shim's own server (the
			// runc shim's does not): stop the one this start made.
			m.stopStarted(ctx, b, params.Address, before)
		}
	}()

	sctx, cancel := context.WithTimeout(ctx, m.cfg.Timeouts.Start)
	defer cancel()
	params, err = bin.Start(sctx, typeurl.MarshalProto(topts))
	if err != nil {
		// A shim we killed on timeout may have forked before dying.
		started = sctx.Err() != nil
		return nil, fmt.Errorf("start failed: %w", err)
	}
	started = true
	if err := os.WriteFile(filepath.Join(b.Path, layout.FileBinaryPath), []byte(runtimePath), 0o600); err != nil {
		return nil, err
	}
	s := newShim(b, bin, params)
	s.closeLogs = stopLogs

	lctx, lcancel := context.WithTimeout(ctx, m.cfg.Timeouts.Load)
	defer lcancel()
	if err := m.dial(lctx, s); err != nil {
		return nil, fmt.Errorf("start failed: %w", err)
	}
	if err := s.arm(); err != nil {
		// The hook may have run unarmed: `shim delete` runs from the
		// deferred cleanup.
		return nil, fmt.Errorf("start failed: %w", err)
	}
	// From here on, closing the client runs `shim delete` through the hook.
	started = false
	if err := bootstrap.Write(b.Path, params); err != nil {
		m.Discard(ctx, s)
		return nil, fmt.Errorf("failed to write bootstrap.json: %w", err)
	}
	if err := m.probeNew(lctx, s); err != nil {
		m.Discard(ctx, s)
		return nil, fmt.Errorf("start failed: %w", err)
	}
	return s, nil
}

// probeNew checks that a freshly started shim answers the task API before
// the caller's unbounded Create: a shim that accepts connections but never
// answers fails here within the load budget. NotImplemented downgrades to
// task API v2. Other errors are left to Create: some shims know no task
// before Create.
func (m *Manager) probeNew(ctx context.Context, s *Shim) error {
	_, err := m.connectRPC(ctx, s)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("shim accepted the connection but did not answer within %s: %w", m.cfg.Timeouts.Load, ctx.Err())
	default:
		log.G(ctx).WithError(err).WithField("id", s.ID()).Debug("shim connect probe failed; continuing")
		return nil
	}
}

// connectRPC calls the task API Connect, downgrading to v2 once on
// NotImplemented, as stock does on load.
func (m *Manager) connectRPC(ctx context.Context, s *Shim) (*task.ConnectResponse, error) {
	return callDowngrading(ctx, s, func(tc taskapi.Client) (*task.ConnectResponse, error) {
		resp, err := tc.Connect(ctx, &task.ConnectRequest{ID: s.ID()})
		return resp, errgrpc.ToNative(err)
	})
}

// Attach connects to an existing shim described by params, without a
// `start`. The shim is neither armed nor registered, and nothing on disk is
// touched: call Arm to put it in service. bin may be nil when the shim's
// binary cannot be resolved; such a shim can be served but `shim delete`
// cannot run for it.
func (m *Manager) Attach(ctx context.Context, b *Bundle, bin *shimbin.Binary, params *bootapi.BootstrapResult) (*Shim, error) {
	s := newShim(b, bin, params)
	lctx, cancel := context.WithTimeout(ctx, m.cfg.Timeouts.Load)
	defer cancel()
	if err := m.dial(lctx, s); err != nil {
		return nil, fmt.Errorf("unable to make connection: %w", err)
	}
	return s, nil
}

package manager

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"

	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	ptypes "github.com/containerd/containerd/v2/pkg/protobuf/types"
)

// pendingTask stands for a task whose shim recovery has not judged yet, in
// a list taken while the daemon starts: the task service hands every task
// it finds at init to the task monitor (cgroup metrics), and waiting there
// would hold daemon start until every shim is judged. Each call waits for
// the verdict, then goes to the task registered under the id, or fails
// NotFound if there is none (the shim was gone).
type pendingTask struct {
	m      *Manager
	ns, id string
}

var _ runtime.Task = (*pendingTask)(nil)

// errNoTask is NotFound, and also ttrpc.ErrClosed, which is what the
// cgroup metrics collector expects, silently, of a task whose shim went
// away.
type errNoTask struct{ ns, id string }

func (e errNoTask) Error() string {
	return fmt.Sprintf("task %s in namespace %s: no shim answered for it after daemon restart: %v", e.id, e.ns, errdefs.ErrNotFound)
}

func (e errNoTask) Is(target error) bool {
	return target == errdefs.ErrNotFound || target == ttrpc.ErrClosed
}

func (p *pendingTask) resolve(ctx context.Context) (*Task, error) {
	if err := p.m.waitPending(ctx, p.ns, p.id); err != nil {
		return nil, err
	}
	s, err := p.m.shims.Get(namespaces.WithNamespace(ctx, p.ns), p.id)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, errNoTask{p.ns, p.id}
		}
		return nil, err
	}
	return newTask(s)
}

func (p *pendingTask) ID() string        { return p.id }
func (p *pendingTask) Namespace() string { return p.ns }

func (p *pendingTask) State(ctx context.Context) (runtime.State, error) {
	t, err := p.resolve(ctx)
	if err != nil {
		return runtime.State{}, err
	}
	return t.State(ctx)
}

func (p *pendingTask) Kill(ctx context.Context, signal uint32, all bool) error {
	t, err := p.resolve(ctx)
	if err != nil {
		return err
	}
	return t.Kill(ctx, signal, all)
}

func (p *pendingTask) ResizePty(ctx context.Context, size runtime.ConsoleSize) error {
	t, err := p.resolve(ctx)
	if err != nil {
		return err
	}
	return t.ResizePty(ctx, size)
}

func (p *pendingTask) CloseIO(ctx context.Context) error {
	t, err := p.resolve(ctx)
	if err != nil {
		return err
	}
	return t.CloseIO(ctx)
}

func (p *pendingTask) Start(ctx context.Context) error {
	t, err := p.resolve(ctx)
	if err != nil {
		return err
	}
	return t.Start(ctx)
}

func (p *pendingTask) Wait(ctx context.Context) (*runtime.Exit, error) {
	t, err := p.resolve(ctx)
	if err != nil {
		return nil, err
	}
	return t.Wait(ctx)
}

func (p *pendingTask) PID(ctx context.Context) (uint32, error) {
	t, err := p.resolve(ctx)
	if err != nil {
		return 0, err
	}
	return t.PID(ctx)
}

func (p *pendingTask) Pause(ctx context.Context) error {
	t, err := p.resolve(ctx)
	if err != nil {
		return err
	}
	return t.Pause(ctx)
}

func (p *pendingTask) Resume(ctx context.Context) error {
	t, err := p.resolve(ctx)
	if err != nil {
		return err
	}
	return t.Resume(ctx)
}

func (p *pendingTask) Exec(ctx context.Context, id string, opts runtime.ExecOpts) (runtime.ExecProcess, error) {
	t, err := p.resolve(ctx)
	if err != nil {
		return nil, err
	}
	return t.Exec(ctx, id, opts)
}

func (p *pendingTask) Pids(ctx context.Context) ([]runtime.ProcessInfo, error) {
	t, err := p.resolve(ctx)
	if err != nil {
		return nil, err
	}
	return t.Pids(ctx)
}

func (p *pendingTask) Checkpoint(ctx context.Context, path string, opts *ptypes.Any) error {
	t, err := p.resolve(ctx)
	if err != nil {
		return err
	}
	return t.Checkpoint(ctx, path, opts)
}

func (p *pendingTask) Update(ctx context.Context, resources *ptypes.Any, annotations map[string]string) error {
	t, err := p.resolve(ctx)
	if err != nil {
		return err
	}
	return t.Update(ctx, resources, annotations)
}

func (p *pendingTask) Process(ctx context.Context, id string) (runtime.ExecProcess, error) {
	t, err := p.resolve(ctx)
	if err != nil {
		return nil, err
	}
	return t.Process(ctx, id)
}

func (p *pendingTask) Stats(ctx context.Context) (*ptypes.Any, error) {
	t, err := p.resolve(ctx)
	if err != nil {
		return nil, err
	}
	return t.Stats(ctx)
}

// serving reports whether containerd's grpc address accepts connections:
// once it does, a list comes from a client and waits for the verdicts;
// before, it comes from a plugin's init and gets pendingTasks. A Manager
// without an address (tests) counts as serving.
func (m *Manager) serving() bool {
	if m.cfg.Address == "" || m.servingSeen.Load() {
		return true
	}
	c, err := net.DialTimeout("unix", strings.TrimPrefix(m.cfg.Address, "unix://"), 100*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	m.servingSeen.Store(true)
	return true
}

// tasks lists the registered tasks. Once the daemon serves, it waits until
// recovery has judged every shim it lists from. Before, it does not wait:
// it adds a pendingTask for each id not judged yet.
func (m *Manager) tasks(ctx context.Context, all bool) ([]runtime.Task, error) {
	ns := ""
	if !all {
		var err error
		if ns, err = namespaces.NamespaceRequired(ctx); err != nil {
			return nil, err
		}
	}
	var pend []string
	if m.serving() {
		if err := m.waitPending(ctx, ns, ""); err != nil {
			return nil, err
		}
	} else {
		pend = m.pendingKeys(ns)
	}
	shims, err := m.shims.GetAll(ctx, all)
	if err != nil {
		return nil, err
	}
	out := make([]runtime.Task, 0, len(shims)+len(pend))
	listed := make(map[string]bool, len(shims))
	for _, s := range shims {
		t, err := newTask(s)
		if err != nil {
			return nil, err
		}
		listed[holdKey(s.Namespace(), s.ID())] = true
		out = append(out, t)
	}
	for _, k := range pend {
		if listed[k] {
			continue // judged and registered between the two looks
		}
		pns, id, _ := strings.Cut(k, "/")
		out = append(out, &pendingTask{m: m, ns: pns, id: id})
	}
	return out, nil
}

// pendingKeys lists the pending ns/id keys of ns, or of every namespace.
func (m *Manager) pendingKeys(ns string) []string {
	m.pending.mu.Lock()
	defer m.pending.mu.Unlock()
	var keys []string
	for k := range m.pending.m {
		if kns, _, _ := strings.Cut(k, "/"); ns == "" || kns == ns {
			keys = append(keys, k)
		}
	}
	return keys
}

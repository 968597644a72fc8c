package manager

import (
	"context"
	"fmt"
	"sync"
	"time"

	task "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// NewUnresponsive returns a placeholder for a shim that recovery could not
// judge: it may be alive, so its task stays listed (with an unknown state)
// and its bundle untouched, while calls on it fail at once with a clear
// error. Recovery replaces it when the shim answers or is proven gone.
func (m *Manager) NewUnresponsive(b *Bundle, runtimePath string, since time.Time) *Shim {
	s := &Shim{bundle: b, binary: m.binaryFor(b, runtimePath)}
	s.unresponsiveSince = since
	return s
}

// Unresponsive reports whether s is a placeholder for a shim that did not
// answer.
func (s *Shim) Unresponsive() bool { return !s.unresponsiveSince.IsZero() }

// unresponsiveClient answers every task API call of a placeholder. State
// fails with a plain (unknown-class) error so that `ctr task ls` still
// lists the task, with status UNKNOWN; every other call fails as
// Unavailable.
type unresponsiveClient struct {
	id    string
	since time.Time
}

func (u unresponsiveClient) err(class error) error {
	return fmt.Errorf("shim of task %s has not answered since %s; shimkeeper keeps probing it and leaves its state untouched: %w",
		u.id, u.since.UTC().Format(time.RFC3339), class)
}

func (u unresponsiveClient) State(context.Context, *task.StateRequest) (*task.StateResponse, error) {
	return nil, u.err(errdefs.ErrUnknown)
}
func (u unresponsiveClient) Create(context.Context, *task.CreateTaskRequest) (*task.CreateTaskResponse, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Start(context.Context, *task.StartRequest) (*task.StartResponse, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Delete(context.Context, *task.DeleteRequest) (*task.DeleteResponse, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Pids(context.Context, *task.PidsRequest) (*task.PidsResponse, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Pause(context.Context, *task.PauseRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Resume(context.Context, *task.ResumeRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Checkpoint(context.Context, *task.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Kill(context.Context, *task.KillRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Exec(context.Context, *task.ExecProcessRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) ResizePty(context.Context, *task.ResizePtyRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) CloseIO(context.Context, *task.CloseIORequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Update(context.Context, *task.UpdateTaskRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Wait(context.Context, *task.WaitRequest) (*task.WaitResponse, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Stats(context.Context, *task.StatsRequest) (*task.StatsResponse, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Connect(context.Context, *task.ConnectRequest) (*task.ConnectResponse, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Shutdown(context.Context, *task.ShutdownRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}

// holds lets background recovery work own an id: a Create of the same id
// waits until the work on the old bundle is done instead of failing on it.
// Holds of one id nest: the id is free when the last is released.
type holds struct {
	mu sync.Mutex
	m  map[string]*hold
}

type hold struct {
	n  int
	ch chan struct{}
}

func holdKey(ns, id string) string { return ns + "/" + id }

// Hold marks ns/id as being cleaned up; release ends this hold.
func (m *Manager) Hold(ns, id string) (release func()) {
	m.holds.mu.Lock()
	defer m.holds.mu.Unlock()
	if m.holds.m == nil {
		m.holds.m = map[string]*hold{}
	}
	k := holdKey(ns, id)
	h, ok := m.holds.m[k]
	if !ok {
		h = &hold{ch: make(chan struct{})}
		m.holds.m[k] = h
	}
	h.n++
	var once sync.Once
	return func() {
		once.Do(func() {
			m.holds.mu.Lock()
			defer m.holds.mu.Unlock()
			if h.n--; h.n == 0 {
				delete(m.holds.m, k)
				close(h.ch)
			}
		})
	}
}

// WaitHeld waits until no cleanup holds ns/id, or ctx ends.
func (m *Manager) WaitHeld(ctx context.Context, ns, id string) error {
	m.holds.mu.Lock()
	h, ok := m.holds.m[holdKey(ns, id)]
	m.holds.mu.Unlock()
	if !ok {
		return nil
	}
	select {
	case <-h.ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for recovery to clean up the old bundle of %s: %w", id, ctx.Err())
	}
}

func (m *Manager) waitHeldCtx(ctx context.Context, id string) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	if err := m.waitPending(ctx, ns, id); err != nil {
		return err
	}
	return m.WaitHeld(ctx, ns, id)
}

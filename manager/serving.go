package manager

import (
	"context"
	"strings"
	"time"

	"github.com/containerd/log"

	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/shimkeeper/shimkeeper/shimconn"
)

// serving reports whether containerd's grpc address accepts connections:
// once it does, a list comes from a client and waits for the verdicts;
// before, it comes from a plugin's init. A Manager without an address
// (tests) counts as serving.
func (m *Manager) serving() bool {
	if m.cfg.Address == "" || m.servingSeen.Load() {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if shimconn.UnixAccepts(ctx, strings.TrimPrefix(m.cfg.Address, "unix://")) != nil {
		return false
	}
	m.servingSeen.Store(true)
	return true
}

// WaitServing waits until containerd's grpc address accepts connections,
// so that events published afterwards reach subscribers.
func (m *Manager) WaitServing(ctx context.Context) error {
	for !m.serving() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// tasks lists the registered tasks. Once the daemon serves, it waits until
// recovery has judged every shim it lists from. Before, it does not wait:
// the one such caller, the task service's init handing tasks to the task
// monitor, gets the tasks judged so far, and recovery hands each task it
// adopts to the monitor itself (see SetTaskMonitor).
func (m *Manager) tasks(ctx context.Context, all bool) ([]runtime.Task, error) {
	if m.serving() {
		ns := ""
		if !all {
			var err error
			if ns, err = namespaces.NamespaceRequired(ctx); err != nil {
				return nil, err
			}
		}
		if err := m.waitPending(ctx, ns, ""); err != nil {
			return nil, err
		}
	}
	shims, err := m.shims.GetAll(ctx, all)
	if err != nil {
		return nil, err
	}
	out := make([]runtime.Task, 0, len(shims))
	for _, s := range shims {
		t, err := newTask(s)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// SetTaskMonitor gives the manager the daemon's task monitor (cgroup
// metrics). The task service hands it the tasks it finds at its init;
// shims recovery adopts later are handed to it by Monitor.
func (m *Manager) SetTaskMonitor(tm runtime.TaskMonitor) {
	if tm != nil {
		m.monitor.Store(&tm)
	}
}

// monitorInPlaceOf hands the task of an adopted shim to the task monitor,
// if any, in place of prev's (a placeholder's) when prev is not nil.
func (m *Manager) monitorInPlaceOf(ctx context.Context, prev, s *Shim) {
	tm := m.monitor.Load()
	if tm == nil {
		return
	}
	logger := log.G(ctx).WithFields(log.Fields{"namespace": s.Namespace(), "id": s.ID()})
	if prev != nil {
		if pt, err := newTask(prev); err == nil {
			if err := (*tm).Stop(pt); err != nil {
				logger.WithError(err).Warn("failed to stop monitoring the placeholder of an adopted task")
			}
		}
	}
	t, err := newTask(s)
	if err == nil {
		err = (*tm).Monitor(t, nil)
	}
	if err != nil {
		logger.WithError(err).Warn("failed to monitor adopted task")
	}
}

package manager

import (
	"context"
	"strings"
	"time"

	"github.com/containerd/log"

	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/shimkeeper/shimkeeper/gates"
	"github.com/shimkeeper/shimkeeper/shimconn"
)

// serving reports whether containerd's grpc address accepts connections:
// once it does, a list comes from a client and shows the shims not yet
// judged too; before, it comes from a plugin's init. A Manager without an address
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

// tasks lists the registered tasks and never waits for recovery. Once
// the daemon serves, a shim recovery has not judged yet is listed too, at
// once, as a task whose state is unknown: a listing shows every task
// found, and a hung shim's probe delays nothing but its own entry (a call
// that names the id, Get, still waits for the verdict). Before serving,
// the one caller, the task service's init handing tasks to the task
// monitor, gets only the tasks judged so far; recovery hands each task it
// adopts to the monitor itself (see SetTaskMonitor).
func (m *Manager) tasks(ctx context.Context, all bool) ([]runtime.Task, error) {
	ns := ""
	if !all {
		var err error
		if ns, err = namespaces.NamespaceRequired(ctx); err != nil {
			return nil, err
		}
	}
	// Pending ids first: recovery registers a shim before it releases
	// its id, so an id judged between the two reads is in the second.
	var pending []gates.Key
	if m.serving() {
		pending = m.pending.Keys(ns)
	}
	shims, err := m.shims.GetAll(ctx, all)
	if err != nil {
		return nil, err
	}
	out := make([]runtime.Task, 0, len(shims)+len(pending))
	// The pending ids not registered yet. Built only while some are
	// pending: a listing after the pass (kubelet's every second) hashes
	// nothing.
	var unlisted map[gates.Key]bool
	if len(pending) > 0 {
		unlisted = make(map[gates.Key]bool, len(pending))
		for _, k := range pending {
			unlisted[k] = true
		}
	}
	for _, s := range shims {
		t, err := newTask(s)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
		if unlisted != nil {
			delete(unlisted, gates.Key{Namespace: s.Namespace(), ID: s.ID()})
		}
	}
	since := time.Now()
	for _, k := range pending {
		if !unlisted[k] {
			continue
		}
		delete(unlisted, k)
		t, err := newTask(notJudged(k, since))
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// notJudged is the listing entry of a shim recovery has not judged yet:
// its state is unknown, and a call on it fails Unavailable (never
// NotFound: it may be alive). Only a listing hands it out.
func notJudged(k gates.Key, since time.Time) *Shim {
	return &Shim{
		bundle:            &Bundle{ID: k.ID, Namespace: k.Namespace},
		unresponsiveSince: since,
		unresponsiveWhy:   "recovery has not judged it yet",
	}
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

package manager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	task "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"

	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/protobuf"

	"github.com/shimkeeper/shimkeeper/cleanup"
	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/proc"
	"github.com/shimkeeper/shimkeeper/shimbin"
)

// Every way a shim's life ends, in one place: the task delete a client
// asks for, a Create that failed after the shim started, a shim that died
// (its connection closed, or recovery proved it gone while the daemon was
// down), and a leaked shim recovery reaps. Each ends in the same steps, in
// the same order: task Delete, Shutdown, close the connection (the close
// hook runs `shim delete`), remove the bundle and work dir (cleanup/), and,
// where the exit was not reported by a task delete, publish /tasks/exit
// and /tasks/delete. Teardown runs detached from the caller's
// cancellation, each step under the cleanup budget: a caller that gives up
// must not leave a half torn-down shim.

// Shutdown asks the shim to exit once it serves no task. A closed
// connection means it already has.
func (t *Task) Shutdown(ctx context.Context) error {
	_, err := t.task.Shutdown(ctx, &task.ShutdownRequest{ID: t.ID()})
	if err != nil && !errors.Is(err, ttrpc.ErrClosed) {
		return native(err)
	}
	return nil
}

// deleteTask deletes the task in the shim, shuts the shim down and removes its
// bundle, as stock does. A Delete error other than NotFound or a closed
// connection, or a failed Shutdown, leaves everything in place for a
// retry, which then returns the cached exit.
func (m *Manager) deleteTask(ctx context.Context, t *Task, unregister func()) (*runtime.Exit, error) {
	t.known.Forget()
	resp, shimErr := t.task.Delete(ctx, &task.DeleteRequest{ID: t.ID()})
	if shimErr != nil {
		log.G(ctx).WithField("id", t.ID()).WithError(shimErr).Error("failed to delete task")
		if !errors.Is(shimErr, ttrpc.ErrClosed) {
			shimErr = native(shimErr)
			if !errdefs.IsNotFound(shimErr) {
				return nil, shimErr
			}
		}
	}
	var exit *runtime.Exit
	if shimErr == nil {
		exit = &runtime.Exit{Pid: resp.Pid, Status: resp.ExitStatus, Timestamp: protobuf.FromTimestamp(resp.ExitedAt)}
		cached := *exit
		t.deleteExit.Store(&cached)
	}
	sctx, cancel := context.WithTimeout(ctx, m.cfg.Timeouts.Shutdown)
	err := t.Shutdown(sctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("failed to invoke shutdown: %w", err)
	}
	if err := t.Shim.closeAndRemove(ctx); err != nil {
		log.G(ctx).WithField("id", t.ID()).WithError(err).Error("failed to delete shim")
	}
	unregister()
	if exit == nil {
		if cached := t.deleteExit.Load(); cached != nil {
			e := *cached
			exit = &e
		}
	}
	if exit == nil {
		return nil, shimErr
	}
	return exit, nil
}

// abortStarted tears down a shim whose task was not created: task
// Delete, Shutdown and close (the hook runs `shim delete`), each under the
// cleanup budget and detached from the caller.
func (m *Manager) abortStarted(ctx context.Context, s *Shim) {
	t, err := newTask(s)
	if err != nil {
		m.Discard(ctx, s)
		return
	}
	if err := m.reap(ctx, t); err != nil && !errdefs.IsNotFound(err) {
		log.G(ctx).WithError(err).WithField("id", s.ID()).Error("failed to clean up shim")
	}
}

// CloseShim ends the shim registered under id (a sandbox's): closes its
// client (the close hook runs `shim delete`), removes its bundle and
// unregisters it.
func (m *Manager) CloseShim(ctx context.Context, id string) error {
	s, err := m.shims.Get(ctx, id)
	if err != nil {
		return err
	}
	err = s.closeAndRemove(ctx)
	m.Remove(ctx, s)
	return err
}

// Discard tears down a shim that never became a task: close the client
// (the hook runs `shim delete` and removes the bundle) under the cleanup
// budget, detached from the caller, and unregister it.
func (m *Manager) Discard(ctx context.Context, s *Shim) {
	dctx, cancel := m.CleanupContext(ctx)
	defer cancel()
	if err := s.closeAndRemove(dctx); err != nil {
		log.G(ctx).WithError(err).WithField("id", s.ID()).Warn("failed to clean up shim")
	}
	m.Remove(ctx, s)
}

func (m *Manager) runShimDelete(ctx context.Context, bin *shimbin.Binary) (*runtime.Exit, error) {
	dctx, cancel := m.CleanupContext(ctx)
	defer cancel()
	exit, err := bin.Delete(dctx)
	if err != nil {
		log.G(ctx).WithError(err).WithField("id", bin.ID).Warn("failed to clean up after shim")
	}
	return exit, err
}

// onClose is the hook run when a shim's connection ends, locally or
// remotely. Like stock: run `shim delete` (which stops what is left of the
// container and unmounts it), remove the bundle, and, when the shim was a
// registered task whose delete had not already reported its exit, publish
// /tasks/exit and /tasks/delete and unregister it.
func (m *Manager) onClose(s *Shim) func() {
	return func() {
		ctx := namespaces.WithNamespace(context.Background(), s.Namespace())
		ctx = log.WithLogger(ctx, log.G(ctx).WithFields(log.Fields{"namespace": s.Namespace(), "id": s.ID()}))
		s.closed.Store(true)
		s.known.Forget()
		defer s.stopLogs()
		if !s.armed.Load() {
			return
		}
		log.G(ctx).Info("shim disconnected")

		var exit *runtime.Exit
		if s.binary != nil {
			var err error
			if exit, err = m.runShimDelete(ctx, s.binary); err == nil {
				if err := s.bundle.Delete(); err != nil {
					log.G(ctx).WithError(err).Warn("failed to delete bundle of dead shim")
				}
			}
		}
		if !m.registered(ctx, s) {
			return
		}
		defer m.shims.Delete(ctx, s.ID())
		if s.deleteExit.Load() != nil || m.cfg.Events == nil {
			return
		}
		if exit == nil {
			exit = UnknownExit()
		}
		m.publishExit(ctx, s.ID(), exit)
	}
}

// UnknownExit is the exit reported for a shim that died when `shim delete`
// could not say how its task ended: status 255, now, as stock reports it.
func UnknownExit() *runtime.Exit {
	return &runtime.Exit{Status: 255, Timestamp: time.Now()}
}

// publishExit publishes /tasks/exit and /tasks/delete for a task whose
// shim is gone.
func (m *Manager) publishExit(ctx context.Context, id string, exit *runtime.Exit) {
	at := protobuf.ToTimestamp(exit.Timestamp)
	if err := m.cfg.Events.Publish(ctx, runtime.TaskExitEventTopic, &eventstypes.TaskExit{
		ContainerID: id, ID: id, Pid: exit.Pid, ExitStatus: exit.Status, ExitedAt: at,
	}); err != nil {
		log.G(ctx).WithError(err).Warn("failed to publish task exit")
	}
	if err := m.cfg.Events.Publish(ctx, runtime.TaskDeleteEventTopic, &eventstypes.TaskDelete{
		ContainerID: id, Pid: exit.Pid, ExitStatus: exit.Status, ExitedAt: at,
	}); err != nil {
		log.G(ctx).WithError(err).Warn("failed to publish task delete")
	}
}

// CleanupContext bounds one teardown step by the cleanup budget, detached
// from ctx's cancellation: a caller that gives up must not leave a half
// torn-down shim.
func (m *Manager) CleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), m.cfg.Timeouts.Cleanup)
}

// reap tears down a task the daemon gives up on (after a failed Create, or
// a leaked shim): task Delete, Shutdown and close, detached from the
// caller under the cleanup budget. If Delete fails, Shutdown and close are
// still done, with a fresh budget if the first ran out. The bundle is
// removed only when `shim delete` (run by the close hook) succeeds or the
// task delete succeeded.
func (m *Manager) reap(ctx context.Context, t *Task) error {
	dctx, cancel := m.CleanupContext(ctx)
	defer cancel()
	_, err := m.deleteTask(dctx, t, func() {})
	if err == nil {
		return nil
	}
	// Over ttrpc a deadline comes back as ErrUnknown, so check the context
	// rather than the error.
	if dctx.Err() != nil {
		dctx, cancel = m.CleanupContext(ctx)
		defer cancel()
	}
	_ = t.Shutdown(dctx)
	if t.conn != nil {
		_ = t.conn.Close()
		_ = t.conn.UserOnCloseWait(dctx)
	}
	return err
}

// stopStarted kills and waits for the processes of a shim this Create
// started and gives up on: those listening at address, and those started
// as its shim instance (-namespace NS -id ID), that started after before
// (clock ticks since boot). A shim that was already running (a grouped
// shim whose `start` returned the address of the group's) started earlier
// and is left alone.
func (m *Manager) stopStarted(ctx context.Context, b *Bundle, address string, before uint64) {
	x, err := proc.Snapshot(proc.Root)
	if err != nil {
		log.G(ctx).WithError(err).Warn("failed to look for the processes of a failed shim")
		return
	}
	pids, err := x.ListenerPIDs(proc.Root, address)
	if err != nil {
		log.G(ctx).WithError(err).WithField("address", address).Warn("failed to look for the server of a failed shim")
	}
	pids = append(pids, x.ShimPIDs(b.Namespace, b.ID)...)
	seen := map[int]bool{}
	for _, pid := range pids {
		if seen[pid] {
			continue
		}
		seen[pid] = true
		st, err := proc.Stat(proc.Root, pid)
		if err != nil || !st.Exists || st.StartTicks+1 < before {
			continue
		}
		err = cleanup.KillStarted(pid, st.StartTicks, m.cfg.Timeouts.Cleanup)
		log.G(ctx).WithError(err).WithFields(log.Fields{"pid": pid, "address": address}).Warn("stopped the server of a shim whose start failed")
	}
}

// Reap tears down a live shim that has no task (a leak): task Delete,
// Shutdown, close (the armed hook runs `shim delete`), bundle removal.
func (m *Manager) Reap(ctx context.Context, s *Shim) error {
	if err := s.Arm(); err != nil {
		return err
	}
	t, err := newTask(s)
	if err != nil {
		return err
	}
	ctx = namespaces.WithNamespace(ctx, s.Namespace())
	err = m.reap(ctx, t)
	if err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return s.bundle.Delete()
}

// CleanupDead tears down what a shim proven gone left: `shim delete`
// (which stops what is left of the container and unmounts it), the bundle
// and work dir, and, unless the bundle joined a sandbox's shim, its
// socket files. It returns the exit `shim delete` reported. When `shim
// delete` fails nothing is removed: the container may still run.
func (m *Manager) CleanupDead(ctx context.Context, b *Bundle, runtimePath, address string, ownSocket bool) (*runtime.Exit, error) {
	bin := m.binaryFor(b, runtimePath)
	if bin == nil {
		return nil, fmt.Errorf("no shim binary for %s", b.ID)
	}
	ctx = namespaces.WithNamespace(ctx, b.Namespace)
	exit, err := m.runShimDelete(ctx, bin)
	if err != nil {
		return nil, err
	}
	if err := b.Delete(); err != nil {
		return nil, err
	}
	if ownSocket {
		if err := m.RemoveSocket(ctx, b, address); err != nil {
			log.G(ctx).WithError(err).WithField("id", b.ID).Warn("failed to remove shim socket")
		}
	}
	return exit, nil
}

// PublishExit publishes /tasks/exit and /tasks/delete for a task whose
// shim died while containerd was down.
func (m *Manager) PublishExit(ctx context.Context, ns, id string, exit *runtime.Exit) {
	if m.cfg.Events == nil {
		return
	}
	m.publishExit(namespaces.WithNamespace(ctx, ns), id, exit)
}

// RemoveSocket removes the socket files of a dead shim: the address it
// advertised, and the default and debug sockets of its id. Only files
// inside the socket dir are touched. Never call it for a bundle that joined
// a sandbox's shim: that socket is the sandbox's.
func (m *Manager) RemoveSocket(ctx context.Context, b *Bundle, address string) error {
	candidates := []string{address}
	if a, err := m.DefaultAddress(ctx, b); err == nil {
		candidates = append(candidates, a)
	}
	if a, err := debugAddress(ctx, m, b); err == nil {
		candidates = append(candidates, a)
	}
	var errs []error
	for _, a := range candidates {
		p, ok := layout.SocketPath(a)
		if !ok || !cleanup.Within(m.cfg.SocketDir, p) {
			continue // abstract, or not in the socket dir at all
		}
		if err := cleanup.RemoveSocket(m.cfg.SocketDir, p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// closeAndRemove closes the client, waits for the close hook (which runs `shim
// delete`), then removes the bundle and work dir.
func (s *Shim) closeAndRemove(ctx context.Context) error {
	var errs []error
	if s.conn != nil {
		if err := s.conn.Close(); err != nil && !errors.Is(err, io.EOF) {
			errs = append(errs, fmt.Errorf("close shim client: %w", err))
		}
		if err := s.conn.UserOnCloseWait(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close wait: %w", err))
		}
	}
	if err := s.bundle.Delete(); err != nil {
		log.G(ctx).WithError(err).WithField("id", s.ID()).Error("failed to delete bundle")
		errs = append(errs, fmt.Errorf("delete bundle: %w", err))
	}
	return errors.Join(errs...)
}

// Abandon closes the connection without touching the shim or its bundle.
func (s *Shim) Abandon() {
	s.armed.Store(false)
	if s.conn != nil {
		_ = s.conn.Close()
	}
	s.stopLogs()
}

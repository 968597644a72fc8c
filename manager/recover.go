package manager

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/shimkeeper/shimkeeper/cleanup"
)

// Operations recovery performs through the manager. Each one that removes
// or stops something is called only for a decision that allows it.

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

// Adopt puts a probed shim in service: armed, registered (in place of
// prev, a placeholder, when prev is not nil) and handed to the task
// monitor. The monitor drops prev's task first: monitors key tasks by id
// and keep the first they were given, and the task service hands them
// every task it lists at its init, placeholders included.
func (m *Manager) Adopt(ctx context.Context, prev, s *Shim) error {
	if err := s.Arm(); err != nil {
		return err
	}
	if prev == nil {
		if err := m.Add(ctx, s); err != nil {
			s.Abandon()
			return err
		}
	} else if !m.Replace(ctx, prev, s) {
		s.Abandon()
		return fmt.Errorf("placeholder of %s is no longer registered: %w", s.ID(), errdefs.ErrNotFound)
	}
	m.monitorInPlaceOf(ctx, prev, s)
	return nil
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
		p, ok := strings.CutPrefix(a, "unix://")
		if !ok || !cleanup.Within(m.cfg.SocketDir, p) {
			continue // abstract, or not in the socket dir at all
		}
		if err := cleanup.RemoveSocket(m.cfg.SocketDir, p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

package manager

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"

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

// ShimDelete runs `<runtime> delete` for bundle b under the cleanup
// budget.
func (m *Manager) ShimDelete(ctx context.Context, b *Bundle, runtimePath string) (*runtime.Exit, error) {
	bin := m.binaryFor(b, runtimePath)
	if bin == nil {
		return nil, fmt.Errorf("no shim binary for %s", b.ID)
	}
	return m.runShimDelete(namespaces.WithNamespace(ctx, b.Namespace), bin)
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

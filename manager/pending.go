package manager

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// Pend marks ns/id as awaiting recovery's verdict until done is called.
// The daemon serves while shims are judged; a call that names a pending id
// (Get, Create) or lists its namespace waits for its verdict, so that no
// client sees a recovering task as missing: a restart monitor that got
// NotFound would start a second one. Pends of one id nest (the task
// runtime's and the sandbox controller's passes may both find it).
func (m *Manager) Pend(ns, id string) (done func()) { return m.pending.Acquire(ns, id) }

// Pending counts the ids awaiting a verdict.
func (m *Manager) Pending() int { return m.pending.Count() }

// waitPending waits until no id matching ns/id is pending. An empty id
// matches the whole namespace, an empty ns every namespace.
func (m *Manager) waitPending(ctx context.Context, ns, id string) error {
	if err := m.pending.Wait(ctx, ns, id); err != nil {
		what := "the shims of namespace " + ns
		switch {
		case id != "":
			what = "the shim of " + id
		case ns == "":
			what = "the shims"
		}
		return fmt.Errorf("waiting for recovery to judge %s: %w", what, err)
	}
	return nil
}

// waitPendingCtx waits for the verdict on id in the context's namespace.
func (m *Manager) waitPendingCtx(ctx context.Context, id string) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	return m.waitPending(ctx, ns, id)
}

// Hold marks ns/id as being cleaned up by background recovery work: a
// Create of the same id waits until the work on the old bundle is done
// instead of failing on it. Holds of one id nest: the id is free when the
// last is released.
func (m *Manager) Hold(ns, id string) (release func()) { return m.holds.Acquire(ns, id) }

// WaitHeld waits until no cleanup holds ns/id, or ctx ends.
func (m *Manager) WaitHeld(ctx context.Context, ns, id string) error {
	if err := m.holds.Wait(ctx, ns, id); err != nil {
		return fmt.Errorf("waiting for recovery to clean up the old bundle of %s: %w", id, err)
	}
	return nil
}

// WaitHeldCtx is WaitHeld for the namespace of ctx.
func (m *Manager) WaitHeldCtx(ctx context.Context, id string) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	if err := m.waitPending(ctx, ns, id); err != nil {
		return err
	}
	return m.WaitHeld(ctx, ns, id)
}

// LockID holds ns/id exclusively until unlock is called: Create holds it
// while it makes the bundle, recovery while it checks that a work dir is
// still orphaned and removes it.
func (m *Manager) LockID(ns, id string) (unlock func()) { return m.idLocks.Lock(ns, id) }

// LockIDCtx is LockID in the context's namespace.
func (m *Manager) LockIDCtx(ctx context.Context, id string) (func(), error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	return m.LockID(ns, id), nil
}

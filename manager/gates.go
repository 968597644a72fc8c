package manager

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// gates is a set of ns/id keys, each closed while at least one holder has
// it and open again when the last lets go. The manager keeps two: ids
// held by background cleanup (Hold) and ids pending recovery's verdict
// (Pend).
type gates struct {
	mu sync.Mutex
	m  map[string]*gate
}

type gate struct {
	n  int
	ch chan struct{} // closed when n drops to 0
}

func gateKey(ns, id string) string { return ns + "/" + id }

// acquire closes the gate of ns/id until release is called (once; later
// calls do nothing).
func (g *gates) acquire(ns, id string) (release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = map[string]*gate{}
	}
	k := gateKey(ns, id)
	h, ok := g.m[k]
	if !ok {
		h = &gate{ch: make(chan struct{})}
		g.m[k] = h
	}
	h.n++
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			if h.n--; h.n == 0 {
				delete(g.m, k)
				close(h.ch)
			}
		})
	}
}

// matching returns the channels of the closed gates matching ns/id, to
// wait on. An empty id matches the whole namespace, an empty ns every
// namespace.
func (g *gates) matching(ns, id string) []chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ns != "" && id != "" {
		if h, ok := g.m[gateKey(ns, id)]; ok {
			return []chan struct{}{h.ch}
		}
		return nil
	}
	var chs []chan struct{}
	for k, h := range g.m {
		if kns, _, _ := strings.Cut(k, "/"); ns == "" || kns == ns {
			chs = append(chs, h.ch)
		}
	}
	return chs
}

// wait waits until every gate matching ns/id (as in matching) is open,
// or ctx ends.
func (g *gates) wait(ctx context.Context, ns, id string) error {
	for _, ch := range g.matching(ns, id) {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// count is the number of closed gates.
func (g *gates) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.m)
}

// Pend marks ns/id as awaiting recovery's verdict until done is called.
// The daemon serves while shims are judged; a call that names a pending id
// (Get, Create) or lists its namespace waits for its verdict, so that no
// client sees a recovering task as missing: a restart monitor that got
// NotFound would start a second one. Pends of one id nest (the task
// runtime's and the sandbox controller's passes may both find it).
func (m *Manager) Pend(ns, id string) (done func()) { return m.pending.acquire(ns, id) }

// Pending counts the ids awaiting a verdict.
func (m *Manager) Pending() int { return m.pending.count() }

// waitPending waits until no id matching ns/id is pending. An empty id
// matches the whole namespace, an empty ns every namespace.
func (m *Manager) waitPending(ctx context.Context, ns, id string) error {
	if err := m.pending.wait(ctx, ns, id); err != nil {
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
func (m *Manager) Hold(ns, id string) (release func()) { return m.holds.acquire(ns, id) }

// WaitHeld waits until no cleanup holds ns/id, or ctx ends.
func (m *Manager) WaitHeld(ctx context.Context, ns, id string) error {
	if err := m.holds.wait(ctx, ns, id); err != nil {
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

// idLocks serialise, per ns/id, making a bundle (Create) with recovery's
// last look before it removes what belongs to the id (an orphaned work
// dir): whichever comes second sees what the first did on disk.
type idLocks struct {
	mu sync.Mutex
	m  map[string]*idLock
}

type idLock struct {
	n  int
	mu sync.Mutex
}

func (l *idLocks) lock(ns, id string) (unlock func()) {
	k := gateKey(ns, id)
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*idLock{}
	}
	e, ok := l.m[k]
	if !ok {
		e = &idLock{}
		l.m[k] = e
	}
	e.n++
	l.mu.Unlock()
	e.mu.Lock()
	var once sync.Once
	return func() {
		once.Do(func() {
			e.mu.Unlock()
			l.mu.Lock()
			if e.n--; e.n == 0 {
				delete(l.m, k)
			}
			l.mu.Unlock()
		})
	}
}

// LockID holds ns/id exclusively until unlock is called: Create holds it
// while it makes the bundle, recovery while it checks that a work dir is
// still orphaned and removes it.
func (m *Manager) LockID(ns, id string) (unlock func()) { return m.idLocks.lock(ns, id) }

// LockIDCtx is LockID in the context's namespace.
func (m *Manager) LockIDCtx(ctx context.Context, id string) (func(), error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	return m.LockID(ns, id), nil
}

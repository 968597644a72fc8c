package manager

import (
	"context"
	"fmt"
	"sync"

	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// pending holds the ids whose shims recovery has found on disk but not yet
// judged. The daemon serves while they are probed; a call that names one
// of them (Get, Create) or lists their namespace (All) waits for its
// verdict, so that no client sees a recovering task as missing: a restart
// monitor that got NotFound would start a second one.
type pending struct {
	mu sync.Mutex
	m  map[string]*hold
}

// Pend marks ns/id as awaiting recovery's verdict until done is called.
// Pends of one id nest (the task runtime's and the sandbox controller's
// passes may both find it): it awaits until the last is done.
func (m *Manager) Pend(ns, id string) (done func()) {
	m.pending.mu.Lock()
	defer m.pending.mu.Unlock()
	if m.pending.m == nil {
		m.pending.m = map[string]*hold{}
	}
	k := holdKey(ns, id)
	p, ok := m.pending.m[k]
	if !ok {
		p = &hold{ch: make(chan struct{})}
		m.pending.m[k] = p
	}
	p.n++
	var once sync.Once
	return func() {
		once.Do(func() {
			m.pending.mu.Lock()
			defer m.pending.mu.Unlock()
			if p.n--; p.n == 0 {
				delete(m.pending.m, k)
				close(p.ch)
			}
		})
	}
}

// Pending counts the ids awaiting a verdict.
func (m *Manager) Pending() int {
	m.pending.mu.Lock()
	defer m.pending.mu.Unlock()
	return len(m.pending.m)
}

// waitPending waits until no id matching ns/id is pending. An empty id
// matches the whole namespace, an empty ns every namespace.
func (m *Manager) waitPending(ctx context.Context, ns, id string) error {
	m.pending.mu.Lock()
	var chs []chan struct{}
	switch {
	case ns != "" && id != "":
		if p, ok := m.pending.m[holdKey(ns, id)]; ok {
			chs = append(chs, p.ch)
		}
	default:
		for k, p := range m.pending.m {
			if ns == "" || (len(k) > len(ns) && k[:len(ns)] == ns && k[len(ns)] == '/') {
				chs = append(chs, p.ch)
			}
		}
	}
	m.pending.mu.Unlock()
	for _, ch := range chs {
		select {
		case <-ch:
		case <-ctx.Done():
			what := "the shims of namespace " + ns
			switch {
			case id != "":
				what = "the shim of " + id
			case ns == "":
				what = "the shims"
			}
			return fmt.Errorf("waiting for recovery to judge %s: %w", what, ctx.Err())
		}
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

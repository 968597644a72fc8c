// Package gates keeps per-id gates: sets of namespace/id keys that callers
// wait on while recovery judges or cleans up an id, and per-id locks. It
// touches nothing on disk.
package gates

import (
	"context"
	"strings"
	"sync"
)

// Set is a set of ns/id keys, each closed while at least one holder has
// it and open again when the last lets go. The zero Set is empty.
type Set struct {
	mu sync.Mutex
	m  map[string]*gate
}

type gate struct {
	n  int
	ch chan struct{} // closed when n drops to 0
}

func key(ns, id string) string { return ns + "/" + id }

// Acquire closes the gate of ns/id until release is called (once; later
// calls do nothing).
func (g *Set) Acquire(ns, id string) (release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = map[string]*gate{}
	}
	k := key(ns, id)
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
func (g *Set) matching(ns, id string) []chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ns != "" && id != "" {
		if h, ok := g.m[key(ns, id)]; ok {
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

// Wait waits until every gate matching ns/id (as in matching) is open,
// or ctx ends.
func (g *Set) Wait(ctx context.Context, ns, id string) error {
	for _, ch := range g.matching(ns, id) {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Key is one ns/id of a Set.
type Key struct{ Namespace, ID string }

// Keys lists the closed gates of namespace ns, or of every namespace
// when ns is empty.
func (g *Set) Keys(ns string) []Key {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []Key
	for k := range g.m {
		if kns, id, _ := strings.Cut(k, "/"); ns == "" || kns == ns {
			out = append(out, Key{kns, id})
		}
	}
	return out
}

// Count is the number of closed gates.
func (g *Set) Count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.m)
}

// Locks serialise, per ns/id, making a bundle (Create) with recovery's
// last look before it removes what belongs to the id (an orphaned work
// dir): whichever comes second sees what the first did on disk.
type Locks struct {
	mu sync.Mutex
	m  map[string]*idLock
}

type idLock struct {
	n  int
	mu sync.Mutex
}

// Lock holds ns/id exclusively until unlock is called (once; later calls
// do nothing).
func (l *Locks) Lock(ns, id string) (unlock func()) {
	k := key(ns, id)
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

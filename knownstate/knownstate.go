// Package knownstate keeps what recovery's probe learned of each task's
// state, so that a State call or a task listing shortly after a restart is
// answered without asking every shim again. Stock asks each shim on every
// listing, one after the other: on a node of thousands of tasks, the
// listing right after recovery then costs as much as recovery itself.
//
// A known state is only ever a shim's own answer, from this daemon's
// probe. It stops being used as soon as anything may have changed it:
//   - any task event for the task reaches the daemon's event exchange
//     (the shim publishes /tasks/exit, /tasks/paused and the rest there;
//     Watch turns each into Forget);
//   - a call that may change the task goes through the task runtime
//     (Start, Kill, Pause, Resume, Checkpoint, Delete, and Wait returning);
//   - the shim's connection closes;
//   - TTL after the probe, whatever happened.
//
// An event that arrives while the probe's State call is on the wire could
// otherwise be lost: a Ticket, taken before the call, says whether an
// event for the task was seen since, and Keep then keeps nothing.
//
// The package touches nothing on disk.
package knownstate

import (
	"context"
	"hash/maphash"
	"strings"
	"sync/atomic"
	"time"

	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"

	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/core/runtime"
)

// TTL bounds how long a probe's answer is used at all. It is longer than
// a pass over 10000 shims on two cores, so that the listing at the end of
// such a pass still uses the answers of its first probes, and short
// enough that a lost event costs seconds, not the daemon's lifetime.
const TTL = 10 * time.Second

// buckets is the size of the event counter table. Two tasks whose keys
// share a bucket only make a Ticket fail more often (the state is then
// asked of the shim, as stock does): never a wrong answer.
const buckets = 4096

// Book counts the task events seen, per task (hashed into buckets).
type Book struct {
	seed maphash.Seed
	seen [buckets]atomic.Uint64
	// off: the event subscription ended, so no known state is used.
	off atomic.Bool
	now func() time.Time
}

// NewBook returns an empty Book.
func NewBook() *Book {
	return &Book{seed: maphash.MakeSeed(), now: time.Now}
}

func (b *Book) bucket(ns, id string) *atomic.Uint64 {
	var h maphash.Hash
	h.SetSeed(b.seed)
	h.WriteString(ns)
	h.WriteByte(0)
	h.WriteString(id)
	return &b.seen[h.Sum64()%buckets]
}

// Ticket is taken before a shim is asked for a task's state.
type Ticket struct {
	book  *Book
	seen  *atomic.Uint64
	count uint64
	at    time.Time
}

// Ticket returns a ticket for ns/id as of now. A nil Book gives a ticket
// that keeps nothing.
func (b *Book) Ticket(ns, id string) Ticket {
	if b == nil || b.off.Load() {
		return Ticket{}
	}
	c := b.bucket(ns, id)
	return Ticket{book: b, seen: c, count: c.Load(), at: b.now()}
}

// Saw records an event for ns/id: every Ticket for it taken before now
// keeps nothing any more.
func (b *Book) Saw(ns, id string) { b.bucket(ns, id).Add(1) }

// State is a known state, with when it stops being used.
type State struct {
	State   runtime.State
	expires time.Time
	book    *Book
}

// Slot is where a task's known state lives (on its shim).
type Slot struct{ p atomic.Pointer[State] }

// Keep stores st, the answer to the call t was taken for, in s; then, if
// an event for the task was seen since t was taken, it takes it back. The
// caller must have made the task findable (registered its shim) first, so
// that an event that comes after this check finds s and clears it
// (Forget).
func (s *Slot) Keep(t Ticket, st runtime.State) {
	if t.book == nil {
		return
	}
	s.p.Store(&State{State: st, expires: t.at.Add(TTL), book: t.book})
	if t.seen.Load() != t.count {
		s.p.Store(nil)
	}
}

// Get returns the known state, if there is one still in use.
func (s *Slot) Get() (runtime.State, bool) {
	k := s.p.Load()
	if k == nil {
		return runtime.State{}, false
	}
	if k.book.off.Load() || !k.book.now().Before(k.expires) {
		s.p.CompareAndSwap(k, nil)
		return runtime.State{}, false
	}
	return k.State, true
}

// Forget drops the known state: the next State asks the shim.
func (s *Slot) Forget() { s.p.Store(nil) }

// Watch feeds every task event the exchange publishes to b.Saw, then to
// forget (which clears the registered task's Slot), until ctx ends. It
// returns once the subscription is in place, so that events published
// after it returns are seen.
func Watch(ctx context.Context, sub events.Subscriber, b *Book, forget func(ns, id string)) {
	evs, errs := sub.Subscribe(ctx)
	go func() {
		for {
			select {
			case env := <-evs:
				if env == nil || !strings.HasPrefix(env.Topic, "/tasks/") {
					continue
				}
				id := containerID(env)
				if id == "" {
					continue
				}
				b.Saw(env.Namespace, id)
				forget(env.Namespace, id)
			case err := <-errs:
				if err != nil && ctx.Err() == nil {
					// The known states can no longer be kept true: stop
					// using them.
					log.G(ctx).WithError(err).Error("task event subscription ended; task states are asked of the shims from now on")
					b.off.Store(true)
				}
				return
			case <-ctx.Done():
				return
			}
		}
	}()
}

// containerID is the task id an event is about: every /tasks/ event
// carries it.
func containerID(env *events.Envelope) string {
	if env.Event == nil {
		return ""
	}
	v, err := typeurl.UnmarshalAny(env.Event)
	if err != nil {
		return ""
	}
	if e, ok := v.(interface{ GetContainerID() string }); ok {
		return e.GetContainerID()
	}
	return ""
}

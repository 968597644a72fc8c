package knownstate

import (
	"context"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"

	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/core/events/exchange"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/namespaces"
)

var running = runtime.State{Pid: 42, Status: runtime.RunningStatus}

func TestKeepAndGet(t *testing.T) {
	b := NewBook()
	var s Slot
	if _, ok := s.Get(); ok {
		t.Fatal("empty slot answers")
	}
	s.Keep(b.Ticket("ns", "a"), running)
	if st, ok := s.Get(); !ok || st != running {
		t.Fatalf("Get = %v, %v; want the kept state", st, ok)
	}
	s.Forget()
	if _, ok := s.Get(); ok {
		t.Fatal("forgotten slot answers")
	}
}

func TestEventBeforeKeepKeepsNothing(t *testing.T) {
	b := NewBook()
	var s Slot
	tk := b.Ticket("ns", "a")
	b.Saw("ns", "a") // the task exited while State was on the wire
	s.Keep(tk, running)
	if _, ok := s.Get(); ok {
		t.Fatal("a state older than an event was kept")
	}
	// Another task's event does not matter (unless it shares the bucket).
	tk = b.Ticket("ns", "a")
	b.Saw("other", "b")
	s.Keep(tk, running)
	if b.bucket("ns", "a") != b.bucket("other", "b") {
		if _, ok := s.Get(); !ok {
			t.Fatal("another task's event dropped the state")
		}
	}
}

func TestExpires(t *testing.T) {
	b := NewBook()
	now := time.Now()
	b.now = func() time.Time { return now }
	var s Slot
	s.Keep(b.Ticket("ns", "a"), running)
	now = now.Add(TTL - time.Millisecond)
	if _, ok := s.Get(); !ok {
		t.Fatal("expired early")
	}
	now = now.Add(time.Millisecond)
	if _, ok := s.Get(); ok {
		t.Fatal("used after TTL")
	}
}

func TestNilBookKeepsNothing(t *testing.T) {
	var b *Book
	var s Slot
	s.Keep(b.Ticket("ns", "a"), running)
	if _, ok := s.Get(); ok {
		t.Fatal("kept without a book")
	}
}

func TestWatch(t *testing.T) {
	ex := exchange.NewExchange()
	b := NewBook()
	forgot := make(chan string, 10)
	ctx, cancel := context.WithCancel(context.Background())
	Watch(ctx, ex, b, func(ns, id string) { forgot <- ns + "/" + id })

	var s Slot
	tk := b.Ticket("k8s.io", "c1")
	pctx := namespaces.WithNamespace(context.Background(), "k8s.io")
	if err := ex.Publish(pctx, "/containers/create", &eventstypes.ContainerCreate{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if err := ex.Publish(pctx, runtime.TaskExitEventTopic, &eventstypes.TaskExit{ContainerID: "c1", ID: "c1", Pid: 42, ExitStatus: 137}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-forgot:
		if got != "k8s.io/c1" {
			t.Fatalf("forgot %s, want k8s.io/c1 (and nothing for a container event)", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("task exit event not seen")
	}
	s.Keep(tk, running)
	if _, ok := s.Get(); ok {
		t.Fatal("a ticket taken before the exit event kept its state")
	}

	// Once the subscription ends, nothing is used any more.
	s.Keep(b.Ticket("k8s.io", "c2"), running)
	cancel()
	if _, ok := s.Get(); !ok {
		t.Fatal("a cancelled watch (daemon stopping) is not a failed one")
	}
}

func TestSubscriptionErrorStopsUse(t *testing.T) {
	b := NewBook()
	var s Slot
	s.Keep(b.Ticket("ns", "a"), running)
	errs := make(chan error, 1)
	Watch(context.Background(), failing{errs}, b, func(string, string) {})
	errs <- context.DeadlineExceeded
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := s.Get(); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("known state still used after the subscription failed")
		}
		time.Sleep(time.Millisecond)
	}
	s.Keep(b.Ticket("ns", "a"), running)
	if _, ok := s.Get(); ok {
		t.Fatal("kept after the subscription failed")
	}
}

type failing struct{ errs chan error }

func (f failing) Subscribe(ctx context.Context, _ ...string) (<-chan *events.Envelope, <-chan error) {
	return make(chan *events.Envelope), f.errs
}

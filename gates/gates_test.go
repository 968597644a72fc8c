package gates

import (
	"context"
	"testing"
	"time"
)

func waitFor(s *Set, ns, id string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return s.Wait(ctx, ns, id)
}

// A gate stays closed until its last holder lets go; a second release of
// one hold is harmless.
func TestSetNests(t *testing.T) {
	var s Set
	r1, r2 := s.Acquire("ns", "a"), s.Acquire("ns", "a")
	r1()
	r1()
	if err := waitFor(&s, "ns", "a", 20*time.Millisecond); err == nil {
		t.Fatal("open while a holder remains")
	}
	r2()
	if err := waitFor(&s, "ns", "a", time.Second); err != nil || s.Count() != 0 {
		t.Fatalf("still closed after the last release: %v, count %d", err, s.Count())
	}
}

// An empty id waits for the whole namespace, an empty ns for every one.
func TestSetWaitMatches(t *testing.T) {
	var s Set
	r := s.Acquire("ns1", "a")
	for _, c := range []struct{ ns, id string }{{"ns1", ""}, {"", ""}, {"ns1", "a"}} {
		if err := waitFor(&s, c.ns, c.id, 20*time.Millisecond); err == nil {
			t.Errorf("wait(%q, %q) did not wait for ns1/a", c.ns, c.id)
		}
	}
	for _, c := range []struct{ ns, id string }{{"ns2", ""}, {"ns1", "b"}} {
		if err := waitFor(&s, c.ns, c.id, time.Second); err != nil {
			t.Errorf("wait(%q, %q) waited for ns1/a: %v", c.ns, c.id, err)
		}
	}
	r()
}

// A lock of one id excludes a second locker of it, not of another id.
func TestLocksExclude(t *testing.T) {
	var l Locks
	unlock := l.Lock("ns", "a")
	l.Lock("ns", "b")() // another id: not blocked
	got := make(chan struct{})
	go func() {
		l.Lock("ns", "a")()
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("second lock of ns/a while the first is held")
	case <-time.After(20 * time.Millisecond):
	}
	unlock()
	unlock()
	select {
	case <-got:
	case <-time.After(time.Second):
		t.Fatal("second lock not granted after unlock")
	}
}

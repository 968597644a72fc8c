package manager

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/shimkeeper/shimkeeper/gates"
)

func TestPendingWaits(t *testing.T) {
	m := New(Config{})
	a := namespaces.WithNamespace(context.Background(), "a")
	b := namespaces.WithNamespace(context.Background(), "b")
	// "a/x" must not match namespace "a/" prefixes of other names.
	doneX := m.Pend("a", "x")
	doneAB := m.Pend("ab", "y")
	// The task runtime's and the sandbox controller's passes may both
	// find an id: it awaits both verdicts.
	again := m.Pend("a", "x")
	if m.Pending() != 2 {
		t.Fatalf("pending %d after pending a/x twice, want 2 ids", m.Pending())
	}
	again()
	again()
	if m.Pending() != 2 {
		t.Fatalf("one of two Pends of a/x ended it")
	}

	short := func(ctx context.Context) (context.Context, context.CancelFunc) {
		return context.WithTimeout(ctx, 50*time.Millisecond)
	}

	// Ids and namespaces that are not pending answer at once.
	if _, err := m.Get(b, "x"); !errdefs.IsNotFound(err) {
		t.Errorf("Get b/x: %v, want NotFound at once", err)
	}
	if _, err := m.Get(a, "other"); !errdefs.IsNotFound(err) {
		t.Errorf("Get a/other: %v, want NotFound at once", err)
	}
	if _, err := m.tasks(b, false); err != nil {
		t.Errorf("All in b: %v", err)
	}

	// A call that names a pending id waits; a listing does not (it lists
	// the id with an unknown state: TestPendingTasksBeforeServing).
	for _, all := range []bool{false, true} {
		ctx, cancel := short(a)
		ts, err := m.tasks(ctx, all)
		cancel()
		if err != nil || len(ts) != 1+btoi(all) {
			t.Errorf("tasks (all %v) while a/x and ab/y pend: %d, %v; want them listed at once", all, len(ts), err)
		}
	}
	for name, call := range map[string]func(context.Context) error{
		"Get a/x":    func(ctx context.Context) error { _, err := m.Get(ctx, "x"); return err },
		"waitHeld x": func(ctx context.Context) error { return m.WaitHeldCtx(ctx, "x") },
	} {
		ctx, cancel := short(a)
		err := call(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s while pending: %v, want it to wait until the deadline", name, err)
		}
	}
	doneAB()
	ctx, cancel := short(namespaces.WithNamespace(context.Background(), "ab"))
	if _, err := m.tasks(ctx, false); err != nil {
		t.Errorf("All in ab once judged: %v", err)
	}
	cancel()

	// The verdict releases the waiters.
	got := make(chan error, 1)
	go func() { _, err := m.Get(a, "x"); got <- err }()
	time.Sleep(20 * time.Millisecond)
	doneX()
	select {
	case err := <-got:
		if !errdefs.IsNotFound(err) {
			t.Errorf("Get a/x after the verdict: %v, want NotFound (nothing registered)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Get a/x still waiting after the verdict")
	}
	if m.Pending() != 0 {
		t.Errorf("pending %d at the end", m.Pending())
	}
}

func TestPendingTasksBeforeServing(t *testing.T) {
	dir := t.TempDir()
	addr := filepath.Join(dir, "containerd.sock")
	m := New(Config{Address: "unix://" + addr})
	done := m.Pend("a", "x")
	defer done()
	ctx := namespaces.WithNamespace(context.Background(), "a")

	// Not serving (nothing listens at the address): the task service's
	// init lists without waiting, and gets what is judged so far.
	start := time.Now()
	ts, err := m.tasks(ctx, true)
	if err != nil || len(ts) != 0 {
		t.Fatalf("tasks before serving: %v, %v; want none, at once", ts, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("tasks before serving took %s", d)
	}

	// Serving: a list answers at once, with a/x listed as a task whose
	// state is unknown and whose calls fail Unavailable; b's list has none.
	l, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	ts, err = m.tasks(sctx, false)
	if err != nil || len(ts) != 1 || ts[0].ID() != "x" || ts[0].Namespace() != "a" {
		t.Fatalf("tasks while serving with a/x pending: %v, %v; want a/x, at once", ts, err)
	}
	st, err := ts[0].State(sctx)
	if err != nil || st.Status != 0 {
		t.Errorf("state of a task not judged yet: %+v, %v; want unknown, no error", st, err)
	}
	if _, err := ts[0].Pids(sctx); !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "not judged") {
		t.Errorf("pids of a task not judged yet: %v, want Unavailable, saying why", err)
	}
	if ts, err := m.tasks(namespaces.WithNamespace(sctx, "b"), false); err != nil || len(ts) != 0 {
		t.Errorf("tasks of namespace b: %v, %v; want none", ts, err)
	}
	// Get, which names the id, still waits for the verdict.
	if _, err := m.Get(sctx, "x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("get of a pending id: %v, want it to wait", err)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// An id registered while still pending (recovery registers before it
// releases the id) is listed once, as registered; the other pending ids
// are listed as not judged; once none is pending, only the registered.
func TestTasksPendingAndRegistered(t *testing.T) {
	dir := t.TempDir()
	addr := filepath.Join(dir, "containerd.sock")
	l, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	m := New(Config{Address: "unix://" + addr})
	doneX, doneY := m.Pend("a", "x"), m.Pend("a", "y")
	ctx := namespaces.WithNamespace(context.Background(), "a")
	registered := notJudged(gates.Key{Namespace: "a", ID: "x"}, time.Now())
	registered.unresponsiveWhy = "registered"
	if err := m.shims.Add(ctx, registered); err != nil {
		t.Fatal(err)
	}
	list := func() map[string]string {
		ts, err := m.tasks(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, tk := range ts {
			if _, dup := got[tk.ID()]; dup {
				t.Errorf("%s listed twice", tk.ID())
			}
			got[tk.ID()] = tk.(*Task).unresponsiveWhy
		}
		return got
	}
	if got := list(); len(got) != 2 || got["x"] != "registered" || got["y"] != "recovery has not judged it yet" {
		t.Errorf("with x registered and x, y pending: %v", got)
	}
	doneX()
	doneY()
	if got := list(); len(got) != 1 || got["x"] != "registered" {
		t.Errorf("with nothing pending: %v", got)
	}
}

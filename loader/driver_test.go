package loader

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/runtime"

	"github.com/shimkeeper/shimkeeper/internal/testshim"
	"github.com/shimkeeper/shimkeeper/lifecycle"
)

// fakeActuator records what the driver asks of it, in order, and answers
// from scripts: the interleavings the races below need are set up in its
// hooks, not with sleeps.
type fakeActuator struct {
	mu    sync.Mutex
	calls []string
	// observe answers the n'th observation (from 0) of id.
	observe func(id string, n int) lifecycle.Observation
	// adoptErr answers the n'th adoption of id.
	adoptErr func(id string, n int) error
	// lockID runs while LockID holds the id's lock.
	lockID func(ns, id string)
	n      map[string]int
	// placeholder: ids whose placeholder is registered.
	placeholder map[string]bool
}

var _ Actuator = (*fakeActuator)(nil)

func newFakeActuator(observe func(id string, n int) lifecycle.Observation) *fakeActuator {
	return &fakeActuator{observe: observe, n: map[string]int{}, placeholder: map[string]bool{}}
}

func (f *fakeActuator) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

// count returns how many times key was called (and bumps it when bump).
func (f *fakeActuator) count(key string, bump bool) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.n[key]
	if bump {
		f.n[key]++
	}
	return n
}

// callsOf returns the calls naming id, in order.
func (f *fakeActuator) callsOf(id string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if strings.HasSuffix(c, " "+id) {
			out = append(out, strings.TrimSuffix(c, " "+id))
		}
	}
	return out
}

func (f *fakeActuator) Observe(_ context.Context, t *Target, _ time.Time) {
	o := f.observe(t.ID, f.count("observe "+t.ID, true))
	o.Namespace, o.ID = t.NS, t.ID
	t.scan = &scanned{obs: o, bundle: t.bundle}
	f.record("observe %s", t.ID)
}

func (f *fakeActuator) Pend(_, id string) func() {
	f.record("pend %s", id)
	return func() { f.record("release-pending %s", id) }
}

func (f *fakeActuator) Hold(_, id string) func() {
	f.record("hold %s", id)
	return func() { f.record("release-hold %s", id) }
}

func (f *fakeActuator) Adopt(_ context.Context, t *Target, replace bool) error {
	var err error
	if f.adoptErr != nil {
		err = f.adoptErr(t.ID, f.count("adopt "+t.ID, true))
	}
	verb := "adopt"
	if replace {
		verb = "adopt(replace)"
	}
	if err != nil {
		verb += " failed"
	} else {
		f.mu.Lock()
		delete(f.placeholder, t.ID)
		f.mu.Unlock()
	}
	f.record("%s %s", verb, t.ID)
	return err
}

func (f *fakeActuator) RegisterPlaceholder(_ context.Context, t *Target, _ string) error {
	f.mu.Lock()
	f.placeholder[t.ID] = true
	f.mu.Unlock()
	f.record("register-placeholder %s", t.ID)
	return nil
}

func (f *fakeActuator) UnregisterPlaceholder(_ context.Context, t *Target) {
	f.mu.Lock()
	delete(f.placeholder, t.ID)
	f.mu.Unlock()
	f.record("unregister-placeholder %s", t.ID)
}

func (f *fakeActuator) Listed(_ context.Context, t *Target) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.placeholder[t.ID]
}

func (f *fakeActuator) Destroy(_ context.Context, t *Target, a lifecycle.Action) (*runtime.Exit, error) {
	f.record("destroy(%s) %s", a, t.ID)
	return &runtime.Exit{Status: 137}, nil
}

func (f *fakeActuator) PublishExit(_ context.Context, t *Target, exit *runtime.Exit) {
	f.record("publish-exit(%d) %s", exit.Status, t.ID)
}

func (f *fakeActuator) Abandon(*Target)                   {}
func (f *fakeActuator) WaitServing(context.Context) error { return nil }

func (f *fakeActuator) LockID(ns, id string) func() {
	f.record("lock %s", id)
	if f.lockID != nil {
		f.lockID(ns, id)
	}
	return func() { f.record("unlock %s", id) }
}

// runFake runs a pass over f's state dir with act.
func runFake(t *testing.T, f *fixture, act Actuator, obs Observer) *Recovery {
	t.Helper()
	opts := Options{
		StateDir: f.state, RootDir: f.root, Observer: obs,
		RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond,
		BootIDPath: filepath.Join(f.outside, "no-boot-id"),
	}.withDefaults()
	return run(context.Background(), act, opts, time.Now())
}

var (
	fakeAlive = lifecycle.Observation{Kind: lifecycle.KindDir, ValidName: true, Liveness: lifecycle.LivenessAlive, Task: lifecycle.TaskLive, Runtime: lifecycle.PresenceFound}
	fakeGone  = lifecycle.Observation{Kind: lifecycle.KindDir, ValidName: true, Liveness: lifecycle.LivenessGone, ShimProcess: lifecycle.PresenceAbsent, Runtime: lifecycle.PresenceFound}
)

// inOrder reports whether want appear in calls in that order.
func inOrder(calls []string, want ...string) bool {
	i := 0
	for _, c := range calls {
		if i < len(want) && c == want[i] {
			i++
		}
	}
	return i == len(want)
}

// Race: the exit of a shim that died while the daemon was down was
// published after its id's hold was released, so a subscriber could see it
// after the events of a new task of the same id. The exit goes out first.
func TestDriverExitPublishedUnderHold(t *testing.T) {
	f := newFixture(t)
	f.make("default/dead", "dir")
	act := newFakeActuator(func(string, int) lifecycle.Observation { return fakeGone })
	rec := runFake(t, f, act, nil)
	rec.Wait()
	calls := act.callsOf("dead")
	if !inOrder(calls, "pend", "observe", "hold", "release-pending", "destroy(cleanup-dead)", "publish-exit(137)", "release-hold") {
		t.Errorf("dead: calls %q: the exit must be published before the hold is released", calls)
	}
}

// Race: a shim that answered its probe but could not be adopted was left
// unregistered, and nobody probed it again. It is listed as a placeholder
// at once, probed again, and adopted in the placeholder's place; the
// counters move when the re-probe settles.
func TestDriverFailedAdoptionRetried(t *testing.T) {
	f := newFixture(t)
	f.make("default/live", "dir")
	act := newFakeActuator(func(string, int) lifecycle.Observation { return fakeAlive })
	act.adoptErr = func(_ string, n int) error {
		if n == 0 {
			return errors.New("open log fifo: boom")
		}
		return nil
	}
	obs := &countingObserver{}
	rec := runFake(t, f, act, obs)
	testshim.Eventually(t, 10*time.Second, "live to be adopted on re-probe", func() bool {
		return slices.Contains(act.callsOf("live"), "adopt(replace)")
	})
	rec.Wait()
	calls := act.callsOf("live")
	if !inOrder(calls, "observe", "adopt failed", "register-placeholder", "release-pending", "observe", "adopt(replace)") {
		t.Errorf("live: calls %q", calls)
	}
	testshim.Eventually(t, 5*time.Second, "the report to show live adopted", func() bool {
		e := rec.Report().Entries
		return len(e) == 1 && e[0].Action == lifecycle.ActionAdopt && e[0].Outcome == lifecycle.OutcomeDone
	})
	if got := obs.get("finished adopt/done"); got != 1 {
		t.Errorf("finished adopt/done counted %d times, want 1 (counters: %v)", got, obs.snapshot())
	}
	if got := obs.get("unresponsive"); got != 0 {
		t.Errorf("unresponsive gauge at %d after the re-probe settled, want 0", got)
	}
}

// Race: the work-dir GC decided that a work dir was orphaned, and removed
// it later, after a Create (which held the id's lock while the GC listed)
// had made a bundle for it. The GC looks again under that lock.
func TestDriverWorkDirRecheckedUnderLock(t *testing.T) {
	f := newFixture(t)
	for _, id := range []string{"raced", "orphan"} {
		if err := os.MkdirAll(filepath.Join(f.root, "default", id, "sub"), 0o711); err != nil {
			t.Fatal(err)
		}
	}
	act := newFakeActuator(func(string, int) lifecycle.Observation { return fakeAlive })
	// The Create of "raced" holds the lock when the GC asks for it, and
	// makes the bundle before it lets go.
	act.lockID = func(_, id string) {
		if id == "raced" {
			if err := os.MkdirAll(filepath.Join(f.state, "default", "raced"), 0o711); err != nil {
				t.Error(err)
			}
		}
	}
	rec := runFake(t, f, act, nil)
	rec.Wait()
	if !exists(filepath.Join(f.root, "default", "raced", "sub")) {
		t.Error("the work dir of raced was removed after a bundle was made for it")
	}
	if exists(filepath.Join(f.root, "default", "orphan")) {
		t.Error("the orphaned work dir was not removed")
	}
	if calls := act.callsOf("raced"); !inOrder(calls, "hold", "lock", "unlock", "release-hold") {
		t.Errorf("raced: calls %q: the work dir is looked at again under the lock, with the id held", calls)
	}
}

// Race: a placeholder whose re-probe found the shim gone was unregistered
// before its id was held, so a Create could meet the old bundle. The hold
// comes first, and the bundle is destroyed on that proof only.
func TestDriverReprobeGoneHoldsBeforeUnregistering(t *testing.T) {
	f := newFixture(t)
	f.make("default/hung", "dir")
	unknown := lifecycle.Observation{Kind: lifecycle.KindDir, ValidName: true, Liveness: lifecycle.LivenessUnknown, Runtime: lifecycle.PresenceFound}
	act := newFakeActuator(func(_ string, n int) lifecycle.Observation {
		if n < 2 {
			return unknown
		}
		return fakeGone
	})
	rec := runFake(t, f, act, nil)
	testshim.Eventually(t, 10*time.Second, "hung to be cleaned up", func() bool {
		return slices.Contains(act.callsOf("hung"), "release-hold")
	})
	rec.Wait()
	calls := act.callsOf("hung")
	if !inOrder(calls, "register-placeholder", "observe", "observe", "hold", "unregister-placeholder", "destroy(cleanup-dead)", "publish-exit(137)", "release-hold") {
		t.Errorf("hung: calls %q", calls)
	}
	if n := strings.Count(strings.Join(calls, ","), "destroy"); n != 1 {
		t.Errorf("hung destroyed %d times", n)
	}
}

// countingObserver counts what it is told.
type countingObserver struct {
	nopObserver
	mu sync.Mutex
	c  map[string]int
}

func (o *countingObserver) add(k string, d int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.c == nil {
		o.c = map[string]int{}
	}
	o.c[k] += d
}

func (o *countingObserver) get(k string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.c[k]
}

func (o *countingObserver) snapshot() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.c)
}

func (o *countingObserver) Finished(_ string, a lifecycle.Action, outcome string) {
	o.add("finished "+a.String()+"/"+outcome, 1)
}

func (o *countingObserver) Unresponsive(_ string, d int) { o.add("unresponsive", d) }

// The report is not rewritten for every bundle's outcome: a pass over
// 10000 bundles, each cleaned up, writes it a bounded number of times
// (its milestones, and once per coalescing interval in between), so the
// bytes written grow linearly with the bundles, not with their square.
func TestDriverReportWritesCoalesced(t *testing.T) {
	f := newFixture(t)
	const n = 10000
	for i := range n {
		if err := os.MkdirAll(filepath.Join(f.state, "default", fmt.Sprintf("b%05d", i)), 0o711); err != nil {
			t.Fatal(err)
		}
	}
	act := newFakeActuator(func(string, int) lifecycle.Observation { return fakeGone })
	start := time.Now()
	rec := runFake(t, f, act, nil)
	rec.Wait()
	took := time.Since(start)
	if got := len(rec.Report().Entries); got != n {
		t.Fatalf("%d entries, want %d", got, n)
	}
	// ready, judged, finished, plus one per interval the pass ran.
	bound := int64(3 + took/coalesceInterval + 1)
	if w := rec.rep.writes.Load(); w > bound {
		t.Errorf("report written %d times for %d bundles in %s, want at most %d", w, n, took, bound)
	}
}

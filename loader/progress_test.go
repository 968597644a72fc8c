package loader

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"

	"github.com/shimkeeper/shimkeeper/internal/testshim"
	"github.com/shimkeeper/shimkeeper/lifecycle"
)

func progressContext(buf *testshim.SyncBuffer) context.Context {
	l := logrus.New()
	l.SetOutput(buf)
	l.SetLevel(logrus.InfoLevel)
	l.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true, DisableQuote: true})
	return log.WithLogger(context.Background(), logrus.NewEntry(l))
}

// recordingObserver records every event, as "<method> <args>".
type recordingObserver struct {
	mu     sync.Mutex
	events []string
}

func (r *recordingObserver) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, s)
}

func (r *recordingObserver) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

func (r *recordingObserver) Probed(_ string, l lifecycle.Liveness, _ time.Duration) {
	r.add("probed " + l.String())
}
func (r *recordingObserver) Decided(_ string, a lifecycle.Action) { r.add("decided " + a.String()) }
func (r *recordingObserver) Finished(_ string, a lifecycle.Action, o string) {
	r.add("finished " + a.String() + " " + o)
}
func (r *recordingObserver) Ready(string, time.Duration)  { r.add("ready") }
func (r *recordingObserver) Judged(string, time.Duration) { r.add("judged") }
func (r *recordingObserver) Unresponsive(_ string, d int) {
	r.add("unresponsive " + map[bool]string{true: "+", false: "-"}[d > 0])
}
func (r *recordingObserver) Queue(_ string, d int) {
	r.add("queue " + map[bool]string{true: "+", false: "-"}[d > 0])
}
func (r *recordingObserver) PassDone(string, time.Duration) { r.add("pass done") }

// waitFor polls the log until it holds every one of subs in one line.
func waitFor(t *testing.T, buf *testshim.SyncBuffer, subs ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, line := range strings.Split(buf.String(), "\n") {
			ok := true
			for _, s := range subs {
				ok = ok && strings.Contains(line, s)
			}
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q in:\n%s", subs, buf.String())
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

func TestProgressLogsWhileRunning(t *testing.T) {
	var buf testshim.SyncBuffer
	inner := &recordingObserver{}
	p := startProgress(progressContext(&buf), "/state", inner, 10*time.Millisecond)
	defer p.stop()

	p.Probed("/state", lifecycle.LivenessAlive, time.Millisecond)
	waitFor(t, &buf, "recovery progress", "phase=list", "probed=1", "state=/state")

	p.setTotal(3)
	p.Decided("/state", lifecycle.ActionAdopt)
	p.Finished("/state", lifecycle.ActionAdopt, lifecycle.OutcomeDone)
	waitFor(t, &buf, "recovery progress", "phase=judge", "done=1/3", "adopt=1/1")
	p.Decided("/state", lifecycle.ActionCleanupDead)
	p.Decided("/state", lifecycle.ActionCleanupDead)
	waitFor(t, &buf, "recovery progress", "phase=cleanup", "done=1/3", "adopt=1/1", "cleanup-dead=0/2")
	if strings.Contains(buf.String(), "keep=") {
		t.Errorf("an action nothing was decided for is logged:\n%s", buf.String())
	}

	p.Finished("/state", lifecycle.ActionCleanupDead, lifecycle.OutcomeDone)
	p.Finished("/state", lifecycle.ActionCleanupDead, lifecycle.OutcomeFailed)
	waitFor(t, &buf, "done=3/3", "cleanup-dead=2/2")

	// stop returns once the logging goroutine has: nothing logs after it.
	p.stop()
	if p.quit == nil || !isClosed(p.stopped) {
		t.Fatal("stop returned with the logging goroutine still running")
	}
	// Events after stop (re-probes) are still passed on.
	p.Unresponsive("/state", -1)

	want := []string{"probed alive", "decided adopt", "finished adopt done", "decided cleanup-dead", "decided cleanup-dead",
		"finished cleanup-dead done", "finished cleanup-dead failed", "pass done", "unresponsive -"}
	if got := inner.list(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("inner observer got\n%q\nwant\n%q", got, want)
	}
}

// A pass shorter than the interval logs no progress at all.
func TestProgressQuietWhenShort(t *testing.T) {
	var buf testshim.SyncBuffer
	inner := &recordingObserver{}
	p := startProgress(progressContext(&buf), "/state", inner, time.Hour)
	p.setTotal(1)
	p.Decided("/state", lifecycle.ActionAdopt)
	p.Finished("/state", lifecycle.ActionAdopt, lifecycle.OutcomeDone)
	p.stop()
	p.stop() // idempotent
	if s := buf.String(); s != "" {
		t.Errorf("short pass logged:\n%s", s)
	}
	if got := inner.list(); len(got) != 3 || got[2] != "pass done" {
		t.Errorf("inner observer got %q", got)
	}
}

// An observer without PassDone is fine.
func TestProgressPlainObserver(t *testing.T) {
	var buf testshim.SyncBuffer
	p := startProgress(progressContext(&buf), "/state", nopObserver{}, time.Hour)
	p.Queue("/state", 1)
	stopProgress(p)
	stopProgress(nopObserver{}) // not a progress: nothing to stop
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

package loader

import (
	"github.com/shimkeeper/shimkeeper/lifecycle"

	"context"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/log"
)

// progressInterval is how often a recovery pass that is still running
// logs its progress: a pass shorter than that logs nothing but its
// summary lines.
const progressInterval = time.Second

// progress wraps a pass's Observer: it passes every event on and counts
// them, and logs "recovery progress" every interval until stop: while
// scanning, how many shims were probed; then entries finished out of the
// total, by action.
type progress struct {
	inner    Observer
	stateDir string
	start    time.Time

	mu       sync.Mutex
	total    int // -1 until the scan has listed the entries
	probed   int
	decided  map[lifecycle.Action]int
	finished map[lifecycle.Action]int

	quit     chan struct{}
	stopOnce sync.Once
	stopped  chan struct{} // closed when the logging goroutine has returned
}

var _ Observer = (*progress)(nil)

// startProgress starts logging the progress of the pass on stateDir, with
// ctx's logger, every interval.
func startProgress(ctx context.Context, stateDir string, inner Observer, interval time.Duration) *progress {
	p := &progress{
		inner: inner, stateDir: stateDir, start: time.Now(), total: -1,
		decided: map[lifecycle.Action]int{}, finished: map[lifecycle.Action]int{},
		quit: make(chan struct{}), stopped: make(chan struct{}),
	}
	logger := log.G(ctx).WithField("state", stateDir)
	go func() {
		defer close(p.stopped)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-p.quit:
				return
			case <-t.C:
				logger.WithFields(p.fields()).Info("recovery progress")
			}
		}
	}()
	return p
}

// setTotal records how many entries the scan found.
func (p *progress) setTotal(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total = n
}

// stop ends the logging (waiting for a log line being written) and tells
// the inner observer that the pass is done. Events still arriving (from
// re-probes) are passed on, not logged.
func (p *progress) stop() {
	p.stopOnce.Do(func() {
		close(p.quit)
		<-p.stopped
		if po, ok := p.inner.(PassObserver); ok {
			po.PassDone(p.stateDir, time.Since(p.start))
		}
	})
}

// stopProgress stops o if it is a pass's progress logger.
func stopProgress(o Observer) {
	if p, ok := o.(*progress); ok {
		p.stop()
	}
}

// fields is one progress line: phase, elapsed, probed, done/total and,
// per action decided so far, finished/decided.
func (p *progress) fields() log.Fields {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := log.Fields{"elapsed": time.Since(p.start).Round(time.Millisecond).String(), "probed": p.probed}
	if p.total < 0 {
		f["phase"] = "list"
		return f
	}
	done, decided := 0, 0
	for _, a := range lifecycle.Actions {
		if n := p.decided[a]; n > 0 {
			f[a.String()] = fmt.Sprintf("%d/%d", p.finished[a], n)
			done += p.finished[a]
			decided += n
		}
	}
	// judge: shims are still being probed and decided (calls naming them
	// wait); cleanup: every one has its verdict, removals are under way.
	f["phase"] = "judge"
	if decided >= p.total {
		f["phase"] = "cleanup"
	}
	f["done"] = fmt.Sprintf("%d/%d", done, p.total)
	return f
}

func (p *progress) Probed(stateDir string, l lifecycle.Liveness, took time.Duration) {
	p.inner.Probed(stateDir, l, took)
	p.mu.Lock()
	p.probed++
	p.mu.Unlock()
}

func (p *progress) Decided(stateDir string, a lifecycle.Action) {
	p.inner.Decided(stateDir, a)
	p.mu.Lock()
	p.decided[a]++
	p.mu.Unlock()
}

func (p *progress) Finished(stateDir string, a lifecycle.Action, outcome string) {
	p.inner.Finished(stateDir, a, outcome)
	p.mu.Lock()
	p.finished[a]++
	p.mu.Unlock()
}

func (p *progress) Ready(stateDir string, d time.Duration) { p.inner.Ready(stateDir, d) }

func (p *progress) Judged(stateDir string, d time.Duration) { p.inner.Judged(stateDir, d) }

func (p *progress) Unresponsive(stateDir string, delta int) { p.inner.Unresponsive(stateDir, delta) }

func (p *progress) Queue(stateDir string, delta int) { p.inner.Queue(stateDir, delta) }

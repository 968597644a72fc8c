package loader

import (
	"context"
	"math/rand/v2"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/containerd/log"

	"github.com/shimkeeper/shimkeeper/lifecycle"
)

// maxRemovals: removals yield to the daemon's foreground work. Each may
// spawn a `shim delete` (a fork and exec, and the shim binary's own
// start): one CPU fewer than the daemon has, so that serving (the
// listing clients wait for, above all) keeps a CPU while the dead are
// cleaned up; one at least. The ids stay held meanwhile.
func maxRemovals() int { return max(1, goruntime.GOMAXPROCS(0)-1) }

// background carries out the removals the pass decided (the held
// bundles) and the work-dir GC, then closes the pass.
func (r *Recovery) background(ctx context.Context, held []*bundleRun, orphans []string, orphanHolds []func()) {
	if d := r.opts.CleanupAfterServing; d > 0 && (len(held) > 0 || len(orphans) > 0) {
		wctx, cancel := context.WithTimeout(ctx, d)
		if err := r.act.WaitServing(wctx); err != nil {
			log.G(ctx).WithError(err).Debug("daemon not serving yet; cleaning up anyway")
		}
		cancel()
	}
	close(r.cleanupOpen)
	forEach(cap(r.removals), len(held), func(i int) { r.destroy(ctx, held[i]) })

	var removed []string
	for i, o := range orphans {
		ns, id, _ := strings.Cut(o, "/")
		// Looked at again just before the removal, under the lock that
		// Create holds while it makes a bundle: a bundle made since the
		// work dir was listed keeps it.
		unlock := r.act.LockID(ns, id)
		switch still, err := orphanedWorkDir(r.opts, ns, id); {
		case err != nil:
			r.rep.update(func(rp *Report) { rp.Warnings = append(rp.Warnings, "look at work dir "+o+" again: "+err.Error()) })
		case !still:
			log.G(ctx).WithField("work_dir", o).Info("work dir has a bundle again; kept")
		default:
			if err := removeWorkDir(r.opts, ns, id); err != nil {
				r.rep.update(func(rp *Report) { rp.Warnings = append(rp.Warnings, "remove work dir "+o+": "+err.Error()) })
			} else {
				removed = append(removed, o)
			}
		}
		unlock()
		orphanHolds[i]()
	}
	r.rep.update(func(rp *Report) { rp.WorkDirsRemoved = append(rp.WorkDirsRemoved, removed...) })

	stopProgress(r.opts.Observer) // before Finished: observers see the pass end first
	r.rep.update(func(rp *Report) { rp.Finished = time.Now() })
	r.rep.flush(ctx)
	r.logSummary(ctx, "recovery finished")
}

// destroy starts the removal of a held bundle, within the bound on
// removals running at once.
func (r *Recovery) destroy(ctx context.Context, b *bundleRun) {
	r.removals <- struct{}{}
	defer func() { <-r.removals }()
	r.apply(ctx, b, lifecycle.Event{Kind: lifecycle.EvStart})
}

// scheduleProbe sends b a re-probe after the attempt'th backoff delay,
// with jitter, or tells it that its placeholder is no longer listed. A
// re-probe that proves the shim gone holds the id and removes the bundle
// once background removals are open.
func (r *Recovery) scheduleProbe(ctx context.Context, b *bundleRun, attempt int) {
	delay := r.opts.RetryInitial
	for i := 0; i < attempt && delay < r.opts.RetryMax; i++ {
		delay *= 2
	}
	delay = min(delay, r.opts.RetryMax)
	time.AfterFunc(jitter(delay), func() {
		ev := lifecycle.Event{Kind: lifecycle.EvProbeDue}
		if !r.listed(ctx, b) {
			ev.Kind = lifecycle.EvUnlisted
		}
		r.apply(ctx, b, ev)
		if b.state() == lifecycle.StateHeld {
			<-r.cleanupOpen
			r.destroy(ctx, b)
		}
	})
}

func (r *Recovery) listed(ctx context.Context, b *bundleRun) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return r.act.Listed(ctx, &b.t)
}

// jitter spreads re-probes of many shims kept at once over ±20% of d.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d - d/5 + rand.N(2*d/5+1)
}

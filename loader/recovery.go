package loader

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/containerd/log"

	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/lifecycle"
	"github.com/shimkeeper/shimkeeper/manager"
)

// Recovery is one pass over one plugin's state dir. Run returns once the
// shims found on disk are registered as pending; judging them (probe,
// decide, adopt or keep) goes on while the daemon serves, and calls that
// name a pending shim wait for its verdict. Background work (cleanup of
// dead and leaked shims, work-dir GC, re-probing) follows; Wait waits for
// it, except for re-probes, which last until their shims are judged.
//
// Each bundle is owned by its lifecycle.Machine; the Recovery only feeds
// it events and carries out the effects it returns, through its Actuator
// (driver.go).
type Recovery struct {
	act  Actuator
	opts Options
	rep  *report
	bg   sync.WaitGroup
	// judged is closed when every bundle of the pass has its verdict.
	judged chan struct{}
	// cleanupOpen is closed when background removals may start: a
	// re-probe that proves a shim gone before then waits for it.
	cleanupOpen chan struct{}
	// removals bounds the removals running at once.
	removals chan struct{}
	start    time.Time
}

// Run starts a recovery pass. It lists the bundles (two directory reads),
// marks each as pending in the manager and returns; with
// Options.HoldStart it returns only once every one is judged. Judging is
// bounded by Options.Deadline. ctx's values are kept; its cancellation is
// not: the pass outlives daemon start.
func Run(ctx context.Context, m *manager.Manager, opts Options) *Recovery {
	start := time.Now()
	opts = opts.withDefaults()
	bctx := log.WithLogger(context.WithoutCancel(ctx), log.G(ctx))
	// Progress: a pass still running after a second logs what it has done.
	opts.Observer = startProgress(bctx, opts.StateDir, orNop(opts.Observer), progressInterval)
	_, rebooted := bootState(opts)
	act := &managerActuator{m: m, so: opts.scanOptions(start, rebooted, opts.Observer)}
	return run(ctx, act, opts, start)
}

func orNop(o Observer) Observer {
	if o == nil {
		return nopObserver{}
	}
	return o
}

// run is Run with any Actuator (tests pass a fake one); opts has its
// defaults.
func run(ctx context.Context, act Actuator, opts Options, start time.Time) *Recovery {
	opts.Observer = orNop(opts.Observer)
	removeStaleTemps(opts.StateDir)
	removeStaleTemps(opts.RootDir)
	bctx := log.WithLogger(context.WithoutCancel(ctx), log.G(ctx))
	r := &Recovery{
		act: act, opts: opts, start: start,
		rep:         newReport(layout.ReportPath(opts.StateDir)),
		judged:      make(chan struct{}),
		cleanupOpen: make(chan struct{}),
		removals:    make(chan struct{}, max(1, min(opts.Concurrency, maxRemovals()))),
	}
	bootID, rebooted := bootState(opts)
	r.rep.update(func(rp *Report) {
		rp.StateDir, rp.RootDir, rp.StartedAt, rp.BootID, rp.Rebooted = opts.StateDir, opts.RootDir, start, bootID, rebooted
		rp.HeldStart = opts.HoldStart
	})

	// The record is written before the daemon serves. It is evidence of
	// nothing (a stock daemon does not update it); it only lets the
	// report say that the boot changed.
	if bootID != "" {
		if err := layout.WriteFileAtomic(layout.BootIDPath(opts.RootDir), []byte(bootID+"\n"), 0o644); err != nil {
			log.G(ctx).WithError(err).Error("failed to record boot id")
			r.rep.update(func(rp *Report) { rp.Errors = append(rp.Errors, "record boot id: "+err.Error()) })
		}
	}

	runs, warnings := r.list(bctx, rebooted)
	if p, ok := opts.Observer.(*progress); ok {
		p.setTotal(len(runs))
	}
	r.rep.update(func(rp *Report) { rp.Found = len(runs) })

	if !opts.HoldStart {
		r.ready(ctx, len(runs))
	}
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		r.pass(bctx, runs, warnings)
	}()
	if opts.HoldStart {
		<-r.judged
		r.ready(ctx, len(runs))
	}
	return r
}

// list lists the bundles and makes each one's machine, which marks the id
// pending before the daemon can serve a call naming it.
func (r *Recovery) list(ctx context.Context, rebooted bool) ([]*bundleRun, []string) {
	entries, warnings := list(scanOptions{stateDir: r.opts.StateDir, rootDir: r.opts.RootDir, rebooted: rebooted})
	runs := make([]*bundleRun, len(entries))
	for i, s := range entries {
		b := &bundleRun{t: Target{NS: s.obs.Namespace, ID: s.obs.ID, bundle: s.bundle, scan: s}, entry: &Entry{Observation: s.obs}}
		r.apply(ctx, b, lifecycle.Event{Kind: lifecycle.EvListed})
		runs[i] = b
	}
	return runs, warnings
}

// ready records that the pass stops holding daemon start.
func (r *Recovery) ready(ctx context.Context, found int) {
	d := time.Since(r.start)
	r.rep.update(func(rp *Report) { rp.Ready = Millis(d) })
	// The report of this pass replaces the last one now, so that nobody
	// reads the last pass's verdicts as this one's.
	r.rep.flush(ctx)
	r.opts.Observer.Ready(r.opts.StateDir, d)
	log.G(ctx).WithFields(log.Fields{"state": r.opts.StateDir, "ready": d.String(), "found": found, "hold_start": r.opts.HoldStart}).Info("recovery no longer holds daemon start")
}

// pass judges every bundle, opts.Concurrency at a time within the pass's
// deadline: each one's first observation and what follows from it up to
// its verdict. Then the background work.
func (r *Recovery) pass(ctx context.Context, runs []*bundleRun, warnings []string) {
	var mu sync.Mutex
	var held []*bundleRun
	forEach(r.opts.Concurrency, len(runs), func(i int) {
		b := runs[i]
		r.apply(ctx, b, lifecycle.Event{Kind: lifecycle.EvProbeDue})
		if b.state() == lifecycle.StateHeld {
			mu.Lock()
			held = append(held, b)
			mu.Unlock()
		}
	})
	// Work dirs whose bundle is absent, listed now, removed in the
	// background under a hold so that a Create of the same id waits.
	orphans, err := cleanupOrphans(r.opts)
	if err != nil {
		warnings = append(warnings, "list work dirs: "+err.Error())
	}
	orphanHolds := make([]func(), len(orphans))
	for i, o := range orphans {
		ns, id, _ := strings.Cut(o, "/")
		orphanHolds[i] = r.act.Hold(ns, id)
	}

	judged := time.Since(r.start)
	entries := make([]*Entry, len(runs))
	for i, b := range runs {
		entries[i] = b.entry
	}
	r.rep.update(func(rp *Report) {
		rp.Entries = entries
		rp.Warnings = warnings
		rp.Judged = Millis(judged)
	})
	r.opts.Observer.Judged(r.opts.StateDir, judged)
	// With HoldStart, ready writes the report right after this, with the
	// time start was held.
	if !r.opts.HoldStart {
		r.rep.flush(ctx)
	}
	r.logSummary(ctx, "recovery judged")
	close(r.judged)

	r.background(ctx, held, orphans, orphanHolds)
}

// Judged waits until every entry of the pass has its verdict, or ctx ends.
func (r *Recovery) Judged(ctx context.Context) error {
	select {
	case <-r.judged:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Wait waits for the background work, re-probes excepted.
func (r *Recovery) Wait() { r.bg.Wait() }

// Report returns a copy of the report as it stands.
func (r *Recovery) Report() Report { return r.rep.snapshot() }

func (r *Recovery) logSummary(ctx context.Context, msg string) {
	rp := r.rep.snapshot()
	f := log.Fields{"state": rp.StateDir, "ready": time.Duration(rp.Ready).String(), "judged": time.Duration(rp.Judged).String(), "rebooted": rp.Rebooted, "entries": len(rp.Entries)}
	for k, v := range rp.Totals {
		f[k] = v
	}
	for k, v := range rp.Outcomes {
		f["outcome_"+k] = v
	}
	log.G(ctx).WithFields(f).Info(msg)
}

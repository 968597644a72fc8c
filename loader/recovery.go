package loader

import (
	"github.com/shimkeeper/shimkeeper/lifecycle"

	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"time"

	"github.com/containerd/log"

	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/shimkeeper/shimkeeper/manager"
)

// BootIDFile, in the plugin's root dir (which survives reboots), holds the
// boot id of the last recovery.
const BootIDFile = "shimkeeper-boot-id"

// Options configure a recovery pass.
type Options struct {
	// StateDir and RootDir are the plugin's dirs.
	StateDir, RootDir string
	// Concurrency bounds the bundles scanned and judged at once; background
	// removals also stay within GOMAXPROCS.
	Concurrency int
	// Deadline bounds judging: scanning, probing and registering. Shims
	// not judged by then are kept and re-probed.
	Deadline time.Duration
	// ProbeTimeout bounds one shim's probe.
	ProbeTimeout time.Duration
	// RetryInitial and RetryMax are the backoff of background re-probes.
	RetryInitial, RetryMax time.Duration
	// BootIDPath is /proc/sys/kernel/random/boot_id unless set (tests).
	BootIDPath string
	// Observer, if set, is told of probes, decisions and outcomes.
	Observer Observer
	// CleanupAfterServing, if positive, is how long background cleanup
	// (dead and leaked shims, work dirs) waits for the daemon to serve
	// before it starts, so that spawning `shim delete`s does not slow the
	// rest of daemon start. The ids stay held meanwhile.
	CleanupAfterServing time.Duration
	// HoldStart makes Run return only once every shim found is judged, as
	// stock containerd does (bounded by Deadline). Otherwise the daemon
	// serves while shims are judged.
	HoldStart bool
}

// Defaults of the Options (and of the recovery_* config keys).
const (
	DefaultConcurrency  = 64
	DefaultDeadline     = 10 * time.Second
	DefaultProbeTimeout = 2 * time.Second
	DefaultRetryInitial = time.Second
	DefaultRetryMax     = 30 * time.Second
)

// withDefaults fills in zero or negative values, so that a caller that
// leaves a field unset gets sane behaviour rather than a tight re-probe
// loop or a pass that probes nothing.
func (o Options) withDefaults() Options {
	if o.BootIDPath == "" {
		o.BootIDPath = "/proc/sys/kernel/random/boot_id"
	}
	if o.Concurrency < 1 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Deadline <= 0 {
		o.Deadline = DefaultDeadline
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = DefaultProbeTimeout
	}
	if o.RetryInitial <= 0 {
		o.RetryInitial = DefaultRetryInitial
	}
	if o.RetryMax < o.RetryInitial {
		o.RetryMax = max(DefaultRetryMax, o.RetryInitial)
	}
	return o
}

// bootState reads the current boot id and says whether it differs from
// the one recorded by the last pass (a reboot in between).
func bootState(o Options) (bootID string, rebooted bool) {
	bootID = readTrimmed(o.BootIDPath)
	last := readTrimmed(filepath.Join(o.RootDir, BootIDFile))
	return bootID, bootID != "" && last != "" && bootID != last
}

// scanOptions are the scan's settings for a pass that started at start.
func (o Options) scanOptions(start time.Time, rebooted bool, observer Observer) scanOptions {
	return scanOptions{
		stateDir:     o.StateDir,
		rootDir:      o.RootDir,
		rebooted:     rebooted,
		concurrency:  o.Concurrency,
		probeTimeout: o.ProbeTimeout,
		deadline:     start.Add(o.Deadline),
		observer:     observer,
		procs:        &procSource{},
	}
}

// Recovery is one pass over one plugin's state dir. Run returns once the
// shims found on disk are registered as pending; judging them (probe,
// decide, adopt or keep) goes on while the daemon serves, and calls that
// name a pending shim wait for its verdict. Background work (cleanup of
// dead and leaked shims, work-dir GC, re-probing) follows; Wait waits for
// it, except for re-probes, which last until their shims are judged.
type Recovery struct {
	m    *manager.Manager
	opts Options
	rep  *report
	bg   sync.WaitGroup
	// judged is closed when every entry has its verdict.
	judged chan struct{}
	start  time.Time
	// probing counts shims being re-probed.
	probing sync.WaitGroup
}

// Run starts a recovery pass. It lists the bundles (two directory reads),
// marks each as pending in the manager and returns; with
// Options.HoldStart it returns only once every one is judged. Judging is
// bounded by Options.Deadline. ctx's values are kept; its cancellation is
// not: the pass outlives daemon start.
func Run(ctx context.Context, m *manager.Manager, opts Options) *Recovery {
	start := time.Now()
	opts = opts.withDefaults()
	removeStaleTemps(opts.StateDir)
	removeStaleTemps(opts.RootDir)
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	bctx := log.WithLogger(context.WithoutCancel(ctx), log.G(ctx))
	// Progress: a pass still running after a second logs what it has done.
	prog := startProgress(bctx, opts.StateDir, opts.Observer, progressInterval)
	opts.Observer = prog
	r := &Recovery{m: m, opts: opts, rep: &report{path: filepath.Join(opts.StateDir, ReportFile)}, judged: make(chan struct{}), start: start}
	bootID, rebooted := bootState(opts)
	r.rep.update(func(rp *Report) {
		rp.StateDir, rp.RootDir, rp.StartedAt, rp.BootID, rp.Rebooted = opts.StateDir, opts.RootDir, start, bootID, rebooted
		rp.HeldStart = opts.HoldStart
	})

	// The record is written before the daemon serves. It is evidence of
	// nothing (a stock daemon does not update it); it only lets the
	// report say that the boot changed.
	if bootID != "" {
		if err := writeFileAtomic(filepath.Join(opts.RootDir, BootIDFile), []byte(bootID+"\n")); err != nil {
			log.G(ctx).WithError(err).Error("failed to record boot id")
			r.rep.update(func(rp *Report) { rp.Errors = append(rp.Errors, "record boot id: "+err.Error()) })
		}
	}

	so := opts.scanOptions(start, rebooted, opts.Observer)
	entries, warnings := list(so)
	pend := make([]func(), len(entries))
	for i, s := range entries {
		pend[i] = m.Pend(s.obs.Namespace, s.obs.ID)
	}
	prog.setTotal(len(entries))
	r.rep.update(func(rp *Report) { rp.Found = len(entries) })

	if !opts.HoldStart {
		r.ready(ctx, len(entries))
	}
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		r.judge(bctx, so, entries, warnings, pend)
	}()
	if opts.HoldStart {
		<-r.judged
		r.ready(ctx, len(entries))
	}
	return r
}

// ready records that the pass stops holding daemon start.
func (r *Recovery) ready(ctx context.Context, found int) {
	d := time.Since(r.start)
	r.rep.update(func(rp *Report) { rp.Ready = Millis(d) })
	// The report of this pass replaces the last one now, so that nobody
	// reads the last pass's verdicts as this one's.
	if err := r.rep.write(); err != nil {
		log.G(ctx).WithError(err).Warn("failed to write recovery report")
	}
	r.opts.Observer.Ready(r.opts.StateDir, d)
	log.G(ctx).WithFields(log.Fields{"state": r.opts.StateDir, "ready": d.String(), "found": found, "hold_start": r.opts.HoldStart}).Info("recovery no longer holds daemon start")
}

// judge probes and decides every entry, carries out the non-destructive
// decisions and ends each entry's pending state, then goes on with the
// background work.
func (r *Recovery) judge(ctx context.Context, so scanOptions, entries []*scanned, warnings []string, pend []func()) {
	opts, m, obsv := r.opts, r.m, r.opts.Observer
	// Each entry is decided and acted on as soon as it is observed, in the
	// worker that observed it, and stops pending then.
	reports := make([]*Entry, len(entries))
	// holds[i] is set for the entries whose destructive action waits for
	// the background work.
	holds := make([]func(), len(entries))
	observeAll(ctx, m, so, entries, func(i int, s *scanned) {
		d := lifecycle.Decide(s.obs)
		e := &Entry{Observation: s.obs, Action: d.Action, Reason: d.Reason, Notes: s.notes, Duration: Millis(s.scanDur)}
		reports[i] = e
		obsv.Decided(opts.StateDir, d.Action)
		r.actNow(ctx, so, s, e)
		if d.Action.Destructive() {
			// Held before it stops pending, so that a Create of the same
			// id waits for the cleanup rather than meeting the old bundle.
			holds[i] = m.Hold(s.obs.Namespace, s.obs.ID)
			obsv.Queue(opts.StateDir, 1)
		} else {
			obsv.Finished(opts.StateDir, d.Action, e.Outcome)
		}
		pend[i]()
	})
	// Work dirs whose bundle is absent, decided now, removed in the
	// background under a hold so that a Create of the same id waits.
	orphans, err := cleanupOrphans(opts)
	if err != nil {
		warnings = append(warnings, "list work dirs: "+err.Error())
	}
	orphanHolds := make([]func(), len(orphans))
	for i, o := range orphans {
		ns, id, _ := strings.Cut(o, "/")
		orphanHolds[i] = m.Hold(ns, id)
	}

	judged := time.Since(r.start)
	r.rep.update(func(rp *Report) {
		rp.Entries = reports
		rp.Warnings = warnings
		rp.Judged = Millis(judged)
	})
	obsv.Judged(opts.StateDir, judged)
	// With HoldStart, ready writes the report right after this, with the
	// time start was held.
	if !opts.HoldStart {
		if err := r.rep.write(); err != nil {
			log.G(ctx).WithError(err).Warn("failed to write recovery report")
		}
	}
	r.logSummary(ctx, "recovery judged")
	close(r.judged)

	r.background(ctx, entries, reports, holds, orphans, orphanHolds)
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

// actNow performs the non-destructive part of a decision, on the
// readiness path. Every bundle kept, and every one whose adoption failed,
// is registered as a placeholder and re-probed: none is left unlisted.
func (r *Recovery) actNow(ctx context.Context, so scanOptions, s *scanned, e *Entry) {
	logger := log.G(ctx).WithFields(log.Fields{"namespace": s.obs.Namespace, "id": s.obs.ID, "action": e.Action.String(), "reason": e.Reason})
	keepConn := false
	defer func() {
		if !keepConn && s.probe.Shim != nil {
			s.probe.Shim.Abandon()
		}
	}()
	switch e.Action {
	case lifecycle.ActionAdopt:
		if err := r.adopt(ctx, s); err != nil {
			// Not in service: listed as a placeholder and probed again,
			// never abandoned.
			e.Notes = append(e.Notes, "adopt: "+err.Error())
			logger.WithError(err).Warn("failed to adopt shim; probing it again")
			r.keep(ctx, logger, so, s, e, "adoption failed: "+err.Error())
			break
		}
		keepConn = true
		e.Outcome = OutcomeDone
		logger.Debug("adopted shim")
	case lifecycle.ActionReapLeaked:
		keepConn = true
		e.Outcome = OutcomePending
	case lifecycle.ActionCleanupDead, lifecycle.ActionRemoveEmpty:
		e.Outcome = OutcomePending
	case lifecycle.ActionKeep:
		r.keep(ctx, logger, so, s, e, e.Reason)
		logger.Warn("kept shim state untouched")
	case lifecycle.ActionIgnore:
		e.Outcome = OutcomeDone
		if s.obs.Kind != lifecycle.KindDir || !s.obs.ValidName {
			logger.Warn("ignored entry in state dir")
		}
	}
}

// adopt puts the probed shim in service: armed, registered, monitored,
// and its bootstrap.json brought up to date.
func (r *Recovery) adopt(ctx context.Context, s *scanned) error {
	sh := s.probe.Shim
	if sh == nil {
		return errors.New("no connection to the shim")
	}
	if err := sh.Arm(); err != nil {
		return err
	}
	if err := r.m.Add(ctx, sh); err != nil {
		return err
	}
	r.m.Monitor(ctx, sh)
	if s.migrate || s.probe.Downgraded {
		// Record what the shim speaks so the next start need not
		// rediscover it.
		if err := r.m.WriteBootstrapFor(sh); err != nil {
			s.note("write bootstrap.json: " + err.Error())
		}
	}
	return nil
}

// keep registers a placeholder for a bundle that may be alive, so that its
// task is listed (UNKNOWN) and calls on it fail naming why, and re-probes
// it in the background until it is adopted or proven gone.
func (r *Recovery) keep(ctx context.Context, logger *log.Entry, so scanOptions, s *scanned, e *Entry, why string) {
	e.Outcome = OutcomeDone
	ph := r.m.NewUnresponsive(s.bundle, s.runtimePath, time.Now(), why)
	if err := r.m.Add(ctx, ph); err != nil {
		// Another pass (the sandbox controller's) registered the id.
		e.Notes = append(e.Notes, "register placeholder: "+err.Error())
		return
	}
	e.Outcome = OutcomeProbing
	r.probing.Add(1)
	r.opts.Observer.Unresponsive(r.opts.StateDir, 1)
	go r.reprobe(log.WithLogger(context.WithoutCancel(ctx), logger), so, s, ph, e)
}

// background performs the destructive decisions (the entries with a hold)
// and the work-dir GC.
func (r *Recovery) background(ctx context.Context, entries []*scanned, reports []*Entry, holds []func(), orphans []string, orphanHolds []func()) {
	var destructive []int
	for i, h := range holds {
		if h != nil {
			destructive = append(destructive, i)
		}
	}
	if d := r.opts.CleanupAfterServing; d > 0 && (len(destructive) > 0 || len(orphans) > 0) {
		wctx, cancel := context.WithTimeout(ctx, d)
		if err := r.m.WaitServing(wctx); err != nil {
			log.G(ctx).WithError(err).Debug("daemon not serving yet; cleaning up anyway")
		}
		cancel()
	}
	// Removals yield to the daemon's foreground work: each may spawn a
	// `shim delete`, and a CPU's worth of them at a time keeps the rest
	// of the daemon responsive (the ids stay held meanwhile).
	forEach(min(r.opts.Concurrency, goruntime.GOMAXPROCS(0)), len(destructive), func(k int) {
		i := destructive[k]
		defer holds[i]()
		s, e := entries[i], reports[i]
		start := time.Now()
		publish, err := r.destroy(ctx, s, e.Action)
		r.opts.Observer.Queue(r.opts.StateDir, -1)
		outcome := OutcomeDone
		if err != nil {
			outcome = OutcomeFailed
		}
		r.opts.Observer.Finished(r.opts.StateDir, e.Action, outcome)
		r.rep.update(func(*Report) {
			e.Duration += Millis(time.Since(start))
			if err != nil {
				e.Outcome, e.Error = OutcomeFailed, err.Error()
			} else {
				e.Outcome = OutcomeDone
			}
		})
		// The exit and delete events go out before the id is released,
		// so that no subscriber sees them after a new task of the id.
		r.publish(ctx, publish)
	})

	var removed []string
	for i, o := range orphans {
		ns, id, _ := strings.Cut(o, "/")
		// Looked at again just before the removal, under the lock that
		// Create holds while it makes a bundle: a bundle made since the
		// work dir was listed keeps it.
		unlock := r.m.LockID(ns, id)
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
	if err := r.rep.write(); err != nil {
		log.G(ctx).WithError(err).Warn("failed to write recovery report")
	}
	r.logSummary(ctx, "recovery finished")
}

// publish sends a dead shim's events once the daemon serves
// (subscribers connect then), or after two minutes in any case.
func (r *Recovery) publish(ctx context.Context, publish func()) {
	if publish == nil {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := r.m.WaitServing(sctx); err != nil {
		log.G(ctx).WithError(err).Warn("daemon not serving; publishing exit events anyway")
	}
	publish()
}

// destroy carries out a destructive decision. It returns the events to
// publish once the daemon serves.
func (r *Recovery) destroy(ctx context.Context, s *scanned, a lifecycle.Action) (func(), error) {
	logger := log.G(ctx).WithFields(log.Fields{"namespace": s.obs.Namespace, "id": s.obs.ID, "action": a.String()})
	switch a {
	case lifecycle.ActionRemoveEmpty:
		return nil, s.bundle.Delete()
	case lifecycle.ActionReapLeaked:
		err := r.m.Reap(ctx, s.probe.Shim)
		if err == nil {
			logger.Info("reaped leaked shim")
		}
		return nil, err
	case lifecycle.ActionCleanupDead:
		exit, err := r.m.ShimDelete(ctx, s.bundle, s.runtimePath)
		if err != nil && !(s.obs.Rebooted && s.runtimePath == "") {
			if !s.obs.Rebooted {
				// `shim delete` could not confirm the container is gone:
				// keep the bundle, retry at the next start.
				return nil, err
			}
			logger.WithError(err).Warn("shim delete failed after reboot; removing bundle anyway")
		}
		if err := s.bundle.Delete(); err != nil {
			return nil, err
		}
		if !s.obs.Joined {
			address := ""
			if s.params != nil {
				address = s.params.Address
			}
			if err := r.m.RemoveSocket(ctx, s.bundle, address); err != nil {
				logger.WithError(err).Warn("failed to remove shim socket")
			}
		}
		logger.Info("cleaned up dead shim")
		if exit == nil {
			exit = manager.UnknownExit()
		}
		ns, id := s.obs.Namespace, s.obs.ID
		return func() { r.m.PublishExit(ctx, ns, id, exit) }, nil
	}
	return nil, nil
}

// reprobe observes a kept bundle again, with backoff and jitter, until it
// is adopted in place of its placeholder or proven gone (then destroyed
// under the id's hold, its events published before the hold is released).
func (r *Recovery) reprobe(ctx context.Context, so scanOptions, s *scanned, ph *manager.Shim, e *Entry) {
	defer r.probing.Done()
	defer r.opts.Observer.Unresponsive(r.opts.StateDir, -1)
	delay := r.opts.RetryInitial
	for {
		time.Sleep(jitter(delay))
		delay = min(delay*2, r.opts.RetryMax)
		if cur, err := r.m.Get(nsContext(ctx, s), s.obs.ID); err != nil || cur != ph {
			return // deleted or replaced meanwhile
		}
		// A fresh observation: the facts may have changed in any way.
		n := &scanned{obs: lifecycle.Observation{Namespace: s.obs.Namespace, ID: s.obs.ID, Rebooted: s.obs.Rebooted}, bundle: s.bundle}
		po := so
		po.deadline = time.Now().Add(r.opts.ProbeTimeout)
		po.observer = nil
		pstart := time.Now()
		observe(nsContext(ctx, n), r.m, po, n)
		r.opts.Observer.Probed(r.opts.StateDir, n.obs.Liveness, time.Since(pstart))
		d := lifecycle.Decide(n.obs)
		switch {
		case n.obs.Kind != lifecycle.KindDir:
			// Someone removed (or replaced) the bundle: nothing is left
			// to keep listed.
			r.m.Remove(ctx, ph)
			r.settle(e, n, d, "kept bundle was removed: "+d.Reason, OutcomeDone, nil)
			log.G(ctx).Warn("kept bundle was removed; no longer listed")
			return
		case d.Action == lifecycle.ActionAdopt:
			if err := n.probe.Shim.Arm(); err != nil {
				// Not in service yet: the placeholder stays, and so does
				// the probing, rather than leaving it unprobed for good.
				n.probe.Shim.Abandon()
				log.G(ctx).WithError(err).Warn("unresponsive shim answered but could not be armed; probing again")
				continue
			}
			if !r.m.Replace(ctx, ph, n.probe.Shim) {
				n.probe.Shim.Abandon()
				return
			}
			r.m.Monitor(ctx, n.probe.Shim)
			r.settle(e, n, d, "unresponsive shim answered", OutcomeDone, nil)
			log.G(ctx).Info("unresponsive shim answered; adopted")
			return
		case d.Action.Destructive():
			release := r.m.Hold(s.obs.Namespace, s.obs.ID)
			r.m.Remove(ctx, ph)
			publish, err := r.destroy(ctx, n, d.Action)
			outcome := OutcomeDone
			if err != nil {
				outcome = OutcomeFailed
			}
			r.settle(e, n, d, "unresponsive shim is gone: "+d.Reason, outcome, err)
			r.publish(ctx, publish)
			release()
			return
		}
		if n.probe.Shim != nil {
			n.probe.Shim.Abandon()
		}
	}
}

// settle records a re-probe's verdict in the entry of the report.
func (r *Recovery) settle(e *Entry, n *scanned, d lifecycle.Decision, reason, outcome string, err error) {
	r.rep.update(func(*Report) {
		// The entry shows the facts the new decision rests on.
		e.Observation = n.obs
		e.Action, e.Reason, e.Outcome = d.Action, reason, outcome
		e.Notes = append(e.Notes, n.notes...)
		if err != nil {
			e.Error = err.Error()
		}
	})
	_ = r.rep.write()
}

// jitter spreads re-probes of many shims kept at once over ±20% of d.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d - d/5 + rand.N(2*d/5+1)
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

func readTrimmed(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

func nsContext(ctx context.Context, s *scanned) context.Context {
	return namespaces.WithNamespace(ctx, s.obs.Namespace)
}

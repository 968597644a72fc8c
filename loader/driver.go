package loader

import (
	"context"
	"sync"
	"time"

	"github.com/containerd/log"

	"github.com/shimkeeper/shimkeeper/lifecycle"
)

// bundleRun is one bundle in the pass: its machine, the target the
// actuator works on, and its entry in the report. mu is held while an
// event is applied and its effects carried out, so the machine has one
// owner at a time whoever sends the event (the pass's worker, the
// background, a re-probe timer).
type bundleRun struct {
	mu sync.Mutex
	m  lifecycle.Machine
	t  Target
	// The gates the machine holds, as the actuator handed them out.
	releasePending, releaseHold func()
	entry                       *Entry
	// reported is what the observer was last told of the entry.
	reportedAction  lifecycle.Action
	reportedOutcome string
	decided         bool
	// worked is the time spent removing, added to the entry's duration.
	worked time.Duration
}

func (b *bundleRun) state() lifecycle.State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m.State()
}

// apply steps b's machine with ev and carries out the effects, feeding
// the results of those that answer (observe, adopt, register, destroy)
// back in, until the machine waits for something from outside.
func (r *Recovery) apply(ctx context.Context, b *bundleRun, ev lifecycle.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ctx = log.WithLogger(ctx, log.G(ctx).WithFields(log.Fields{"namespace": b.t.NS, "id": b.t.ID}))
	queue := []lifecycle.Event{ev}
	for len(queue) > 0 {
		ev, queue = queue[0], queue[1:]
		before := b.m.State()
		effs, err := b.m.Step(ev)
		if err != nil {
			// A bug, never a fact about the bundle: say so loudly and
			// leave the machine where it is.
			log.G(ctx).WithError(err).Error("recovery: event out of order")
			continue
		}
		r.gauges(before, b.m.State())
		for _, e := range effs {
			if next, ok := r.do(ctx, b, e); ok {
				queue = append(queue, next)
			}
		}
	}
}

// gauges moves the observer's gauges on a change of state.
func (r *Recovery) gauges(before, after lifecycle.State) {
	if before == after {
		return
	}
	o, dir := r.opts.Observer, r.opts.StateDir
	switch {
	case after == lifecycle.StateProbing:
		o.Unresponsive(dir, 1)
	case before == lifecycle.StateProbing:
		o.Unresponsive(dir, -1)
	}
	switch {
	case after == lifecycle.StateHeld:
		o.Queue(dir, 1)
	case before == lifecycle.StateDestroying:
		o.Queue(dir, -1)
	}
}

// do carries out one effect. It returns the event that answers it, if
// any.
func (r *Recovery) do(ctx context.Context, b *bundleRun, e lifecycle.Effect) (lifecycle.Event, bool) {
	t := &b.t
	switch e.Kind {
	case lifecycle.DoPend:
		b.releasePending = r.act.Pend(t.NS, t.ID)
	case lifecycle.DoReleasePending:
		release(&b.releasePending)
	case lifecycle.DoHold:
		b.releaseHold = r.act.Hold(t.NS, t.ID)
	case lifecycle.DoReleaseHold:
		release(&b.releaseHold)
	case lifecycle.DoObserve:
		// A pass's first look shares the pass's deadline; a re-probe has
		// its own probe timeout.
		deadline := r.start.Add(r.opts.Deadline)
		if b.m.State() != lifecycle.StatePending {
			deadline = time.Now().Add(r.opts.ProbeTimeout)
		}
		r.act.Observe(ctx, t, deadline)
		return lifecycle.Event{Kind: lifecycle.EvObserved, Obs: t.scan.obs}, true
	case lifecycle.DoAdopt:
		err := r.act.Adopt(ctx, t, e.Replace)
		if err != nil {
			log.G(ctx).WithError(err).Warn("failed to adopt shim; keeping it listed and probing it again")
		}
		return lifecycle.Event{Kind: lifecycle.EvRegistered, Err: err}, true
	case lifecycle.DoRegisterPlaceholder:
		err := r.act.RegisterPlaceholder(ctx, t, e.Reason)
		if err == nil {
			log.G(ctx).WithField("reason", e.Reason).Warn("kept shim state untouched; listed as unknown and probed again")
		}
		return lifecycle.Event{Kind: lifecycle.EvRegistered, Err: err}, true
	case lifecycle.DoUnregisterPlaceholder:
		r.act.UnregisterPlaceholder(ctx, t)
	case lifecycle.DoAbandon:
		r.act.Abandon(t)
	case lifecycle.DoDestroy:
		start := time.Now()
		exit, err := r.act.Destroy(ctx, t, e.Action)
		b.worked += time.Since(start)
		t.exit = exit
		if err != nil {
			// Counted as it happens: the machine then keeps the bundle
			// listed and probes it again, an outcome of its own.
			r.opts.Observer.Finished(r.opts.StateDir, e.Action, lifecycle.OutcomeFailed)
			log.G(ctx).WithError(err).WithField("action", e.Action.String()).Warn("recovery removal failed")
		}
		return lifecycle.Event{Kind: lifecycle.EvDestroyed, Err: err}, true
	case lifecycle.DoPublishExit:
		r.act.PublishExit(ctx, t, t.exit)
	case lifecycle.DoScheduleProbe:
		r.scheduleProbe(ctx, b, e.Attempt)
	case lifecycle.DoReport:
		r.report(ctx, b)
	}
	return lifecycle.Event{}, false
}

func release(f *func()) {
	if *f != nil {
		(*f)()
		*f = nil
	}
}

// report brings b's entry up to date with its machine, tells the observer
// of a new verdict or outcome, and asks for the report to be written
// (coalesced with others).
func (r *Recovery) report(ctx context.Context, b *bundleRun) {
	m := &b.m
	action, outcome := m.Action(), m.Outcome()
	r.rep.update(func(*Report) {
		e := b.entry
		e.Observation = m.Observation()
		e.Action, e.Reason, e.Outcome = action, m.Reason(), outcome
		e.Error = ""
		if err := m.Err(); err != nil {
			e.Error = err.Error()
		}
		if b.t.scan != nil {
			e.Notes = b.t.scan.notes
			e.Duration = Millis(b.t.scan.scanDur + b.worked)
		}
	})
	o, dir := r.opts.Observer, r.opts.StateDir
	if !b.decided || action != b.reportedAction {
		o.Decided(dir, action)
	}
	if outcome != lifecycle.OutcomePending && (!b.decided || action != b.reportedAction || outcome != b.reportedOutcome) {
		o.Finished(dir, action, outcome)
	}
	b.decided, b.reportedAction, b.reportedOutcome = true, action, outcome
	if outcome == lifecycle.OutcomeFailed {
		log.G(ctx).WithField("action", action.String()).WithError(m.Err()).Warn("recovery action failed")
	}
	r.rep.changed()
}

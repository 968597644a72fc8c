package loader

import (
	"context"
	"errors"
	"time"

	"github.com/containerd/log"

	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/shimkeeper/shimkeeper/lifecycle"
	"github.com/shimkeeper/shimkeeper/manager"
)

// Target is one bundle as the driver and its actuator see it: its name
// and the handles its last observation left (the probe's connection, the
// registered placeholder, the exit to publish). Its state is not here:
// only its lifecycle.Machine holds that.
type Target struct {
	NS, ID string
	bundle *manager.Bundle
	// scan is the last observation, with what acting on it needs.
	scan        *scanned
	placeholder *manager.Shim
	exit        *runtime.Exit
}

// Actuator carries out the machines' effects. The driver calls it from the
// goroutine that owns the target at the time; tests fake it to drive any
// interleaving.
type Actuator interface {
	// Observe looks at the target afresh (names, records, probe, /proc) by
	// deadline and leaves the result in t.scan.
	Observe(ctx context.Context, t *Target, deadline time.Time)
	// Pend and Hold close the id's gates; the returned funcs reopen them.
	Pend(ns, id string) (release func())
	Hold(ns, id string) (release func())
	// Adopt puts the probed shim in service: armed, registered (in place
	// of t's placeholder when replace), handed to the task monitor in the
	// placeholder's place, its bootstrap.json brought up to date.
	Adopt(ctx context.Context, t *Target, replace bool) error
	// RegisterPlaceholder lists the task UNKNOWN, its calls failing with
	// why.
	RegisterPlaceholder(ctx context.Context, t *Target, why string) error
	UnregisterPlaceholder(ctx context.Context, t *Target)
	// Listed reports whether t's placeholder is still what is registered.
	Listed(ctx context.Context, t *Target) bool
	// Destroy carries out a destructive action; for a dead shim it returns
	// the exit to publish.
	Destroy(ctx context.Context, t *Target, a lifecycle.Action) (*runtime.Exit, error)
	PublishExit(ctx context.Context, t *Target, exit *runtime.Exit)
	// Abandon closes the probe's connection, touching nothing else.
	Abandon(t *Target)
	// WaitServing waits until the daemon serves (subscribers connect).
	WaitServing(ctx context.Context) error
	// LockID serialises with Create's making of a bundle of ns/id.
	LockID(ns, id string) (unlock func())
}

// managerActuator is the Actuator of a daemon: the shim manager and the
// scan.
type managerActuator struct {
	m  *manager.Manager
	so scanOptions
}

var _ Actuator = (*managerActuator)(nil)

func (a *managerActuator) Observe(ctx context.Context, t *Target, deadline time.Time) {
	o := a.so
	o.deadline = deadline
	s := &scanned{obs: lifecycle.Observation{Namespace: t.NS, ID: t.ID, Rebooted: o.rebooted}, bundle: t.bundle}
	if t.scan != nil {
		// The listing's type of the entry, on the first look.
		s.listedDir = t.scan.listedDir
	}
	start := time.Now()
	observe(namespaces.WithNamespace(ctx, t.NS), a.m, o, s)
	s.scanDur = time.Since(start)
	t.scan = s
}

func (a *managerActuator) Pend(ns, id string) func() { return a.m.Pend(ns, id) }
func (a *managerActuator) Hold(ns, id string) func() { return a.m.Hold(ns, id) }

func (a *managerActuator) Adopt(ctx context.Context, t *Target, replace bool) error {
	s := t.scan
	sh := s.probe.Shim
	if sh == nil {
		return errors.New("no connection to the shim")
	}
	var prev *manager.Shim
	if replace {
		prev = t.placeholder
	}
	if err := a.m.Adopt(ctx, prev, sh); err != nil {
		return err
	}
	s.probe.Shim = nil // in service now: never abandoned
	t.placeholder = nil
	if s.migrate || s.probe.Downgraded {
		// Record what the shim speaks so the next start need not
		// rediscover it.
		if err := a.m.WriteBootstrapFor(sh); err != nil {
			s.note("write bootstrap.json: " + err.Error())
		}
	}
	return nil
}

func (a *managerActuator) RegisterPlaceholder(ctx context.Context, t *Target, why string) error {
	ph := a.m.NewUnresponsive(t.bundle, t.scan.runtimePath, time.Now(), why)
	if err := a.m.Add(ctx, ph); err != nil {
		return err
	}
	t.placeholder = ph
	return nil
}

func (a *managerActuator) UnregisterPlaceholder(ctx context.Context, t *Target) {
	if t.placeholder != nil {
		a.m.Remove(ctx, t.placeholder)
		t.placeholder = nil
	}
}

func (a *managerActuator) Listed(ctx context.Context, t *Target) bool {
	cur, err := a.m.Get(namespaces.WithNamespace(ctx, t.NS), t.ID)
	return err == nil && t.placeholder != nil && cur == t.placeholder
}

func (a *managerActuator) Destroy(ctx context.Context, t *Target, act lifecycle.Action) (*runtime.Exit, error) {
	s := t.scan
	logger := log.G(ctx).WithFields(log.Fields{"namespace": t.NS, "id": t.ID, "action": act.String()})
	switch act {
	case lifecycle.ActionRemoveEmpty:
		return nil, t.bundle.Delete()
	case lifecycle.ActionReapLeaked:
		sh := s.probe.Shim
		s.probe.Shim = nil
		if sh == nil {
			return nil, errors.New("no connection to the leaked shim")
		}
		if err := a.m.Reap(ctx, sh); err != nil {
			return nil, err
		}
		logger.Info("reaped leaked shim")
		return nil, nil
	case lifecycle.ActionCleanupDead:
		address := ""
		if s.params != nil {
			address = s.params.Address
		}
		exit, err := a.m.CleanupDead(ctx, t.bundle, s.runtimePath, address, !s.obs.Joined)
		if err != nil {
			return nil, err
		}
		logger.Info("cleaned up dead shim")
		return exit, nil
	}
	return nil, errors.New("not a destructive action: " + act.String())
}

// PublishExit sends a dead shim's events once the daemon serves
// (subscribers connect then), or after two minutes in any case.
func (a *managerActuator) PublishExit(ctx context.Context, t *Target, exit *runtime.Exit) {
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := a.m.WaitServing(sctx); err != nil {
		log.G(ctx).WithError(err).Warn("daemon not serving; publishing exit events anyway")
	}
	if exit == nil {
		exit = manager.UnknownExit()
	}
	a.m.PublishExit(ctx, t.NS, t.ID, exit)
}

func (a *managerActuator) Abandon(t *Target) {
	if t.scan != nil && t.scan.probe.Shim != nil {
		t.scan.probe.Shim.Abandon()
		t.scan.probe.Shim = nil
	}
}

func (a *managerActuator) WaitServing(ctx context.Context) error { return a.m.WaitServing(ctx) }

func (a *managerActuator) LockID(ns, id string) func() { return a.m.LockID(ns, id) }

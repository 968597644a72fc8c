package loader

import (
	"time"

	"github.com/shimkeeper/shimkeeper/lifecycle"
)

// Observer is told what a recovery pass does, as it does it: for metrics
// and progress logging. Methods may be called concurrently and must not
// block.
type Observer interface {
	// Probed: one shim probe ended with the given liveness.
	Probed(stateDir string, liveness lifecycle.Liveness, took time.Duration)
	// Decided: an entry got its action (once per entry per pass).
	Decided(stateDir string, a lifecycle.Action)
	// Finished: an entry's action ended with an outcome (done, failed,
	// probing, pending is not reported).
	Finished(stateDir string, a lifecycle.Action, outcome string)
	// Ready: the pass held daemon start for d.
	Ready(stateDir string, d time.Duration)
	// Judged: every entry had its verdict d after the pass started.
	Judged(stateDir string, d time.Duration)
	// Unresponsive: the number of shims being re-probed changed by delta.
	Unresponsive(stateDir string, delta int)
	// Queue: the number of pending background cleanups changed by delta.
	Queue(stateDir string, delta int)
}

type nopObserver struct{}

func (nopObserver) Probed(string, lifecycle.Liveness, time.Duration) {}
func (nopObserver) Decided(string, lifecycle.Action)                 {}
func (nopObserver) Finished(string, lifecycle.Action, string)        {}
func (nopObserver) Ready(string, time.Duration)                      {}
func (nopObserver) Judged(string, time.Duration)                     {}
func (nopObserver) Unresponsive(string, int)                         {}
func (nopObserver) Queue(string, int)                                {}

// PassObserver is an Observer that also wants to know when a pass's
// background work (cleanups, work-dir GC) has ended; re-probes of
// unresponsive shims may go on after it. Checked with a type assertion.
type PassObserver interface {
	PassDone(stateDir string, d time.Duration)
}

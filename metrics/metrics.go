package metrics

import (
	"path/filepath"
	"sync"
	"time"

	gometrics "github.com/docker/go-metrics"

	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/lifecycle"
	"github.com/shimkeeper/shimkeeper/loader"
)

// probeBuckets span a local ttrpc round trip (well under a millisecond)
// to the default probe timeout and beyond.
var probeBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2, 5, 10}

// Observer records recovery passes in Prometheus metrics. It implements
// loader.Observer; its methods never block.
type Observer struct {
	ready        gometrics.LabeledGauge
	judged       gometrics.LabeledGauge
	pass         gometrics.LabeledGauge
	decisions    gometrics.LabeledCounter
	bundles      gometrics.LabeledCounter
	probes       gometrics.LabeledTimer
	unresponsive gometrics.LabeledGauge
	queue        gometrics.LabeledGauge
	failures     gometrics.LabeledCounter
}

var (
	_ loader.Observer     = (*Observer)(nil)
	_ loader.PassObserver = (*Observer)(nil)
)

// New creates the metrics in ns and returns their observer. It registers
// nothing: the caller registers ns (tests use a fresh registry).
func New(ns *gometrics.Namespace) *Observer {
	return &Observer{
		ready: ns.NewLabeledGauge("ready", "Time the last recovery pass held daemon start (listing bundles; judging them too with recovery_hold_start)",
			gometrics.Seconds, "plugin"),
		judged: ns.NewLabeledGauge("judged", "Time until the last recovery pass had judged every shim it found (probe, decide, register)",
			gometrics.Seconds, "plugin"),
		pass: ns.NewLabeledGauge("pass", "Duration of the last recovery pass, background cleanup included",
			gometrics.Seconds, "plugin"),
		decisions: ns.NewLabeledCounter("decisions", "Bundles by the action recovery decided",
			"plugin", "action"),
		bundles: ns.NewLabeledCounter("bundles", "Bundles by action and the outcome of carrying it out",
			"plugin", "action", "outcome"),
		probes: ns.NewLabeledTimerWithBuckets("probe", "Latency of one shim probe, by the liveness it found",
			probeBuckets, "plugin", "liveness"),
		unresponsive: ns.NewLabeledGauge("unresponsive_shims", "Shims kept because they did not answer, being re-probed",
			"", "plugin"),
		queue: ns.NewLabeledGauge("cleanup_queue", "Background removals (dead, leaked, empty bundles) not yet finished",
			"", "plugin"),
		failures: ns.NewLabeledCounter("cleanup_failures", "Background removals that failed",
			"plugin", "action"),
	}
}

// NewNamespace returns the namespace the metrics live in:
// shimkeeper_recovery_*.
func NewNamespace() *gometrics.Namespace {
	return gometrics.NewNamespace("shimkeeper", "recovery", nil)
}

var (
	defaultOnce sync.Once
	defaultObs  *Observer
)

// Default returns the process's observer, registered with the default
// Prometheus registry (the one containerd's metrics endpoint serves) on
// first use. The task runtime and the sandbox controller share it.
func Default() *Observer {
	defaultOnce.Do(func() {
		ns := NewNamespace()
		defaultObs = New(ns)
		gometrics.Register(ns)
	})
	return defaultObs
}

// PluginLabel names the plugin whose state dir a pass works on: "task",
// "sandbox", or else the dir's base name.
func PluginLabel(stateDir string) string {
	switch base := filepath.Base(stateDir); base {
	case layout.TaskPluginDir:
		return "task"
	case layout.SandboxPluginDir:
		return "sandbox"
	default:
		return base
	}
}

// Probed implements loader.Observer.
func (o *Observer) Probed(stateDir string, l lifecycle.Liveness, took time.Duration) {
	o.probes.WithValues(PluginLabel(stateDir), l.String()).Update(took)
}

// Decided implements loader.Observer.
func (o *Observer) Decided(stateDir string, a lifecycle.Action) {
	o.decisions.WithValues(PluginLabel(stateDir), a.String()).Inc()
}

// Finished implements loader.Observer.
func (o *Observer) Finished(stateDir string, a lifecycle.Action, outcome string) {
	p := PluginLabel(stateDir)
	o.bundles.WithValues(p, a.String(), outcome).Inc()
	if outcome == lifecycle.OutcomeFailed && a.Destructive() {
		o.failures.WithValues(p, a.String()).Inc()
	}
}

// Ready implements loader.Observer.
func (o *Observer) Ready(stateDir string, d time.Duration) {
	p := PluginLabel(stateDir)
	o.ready.WithValues(p).Set(d.Seconds())
	// Create the gauges a dashboard expects at zero rather than absent.
	o.unresponsive.WithValues(p).Add(0)
	o.queue.WithValues(p).Add(0)
}

// Judged implements loader.Observer.
func (o *Observer) Judged(stateDir string, d time.Duration) {
	o.judged.WithValues(PluginLabel(stateDir)).Set(d.Seconds())
}

// Unresponsive implements loader.Observer.
func (o *Observer) Unresponsive(stateDir string, delta int) {
	o.unresponsive.WithValues(PluginLabel(stateDir)).Add(float64(delta))
}

// Queue implements loader.Observer.
func (o *Observer) Queue(stateDir string, delta int) {
	o.queue.WithValues(PluginLabel(stateDir)).Add(float64(delta))
}

// PassDone implements loader.PassObserver.
func (o *Observer) PassDone(stateDir string, d time.Duration) {
	o.pass.WithValues(PluginLabel(stateDir)).Set(d.Seconds())
}

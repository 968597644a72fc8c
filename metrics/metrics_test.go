package metrics

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/shimkeeper/shimkeeper/lifecycle"
)

const (
	taskState    = "/run/containerd/io.containerd.runtime.v2.task"
	sandboxState = "/run/containerd/io.containerd.sandbox.controller.v1.shim"
)

func newTestObserver(t *testing.T) (*Observer, *prometheus.Registry) {
	t.Helper()
	ns := NewNamespace()
	o := New(ns)
	reg := prometheus.NewRegistry()
	if err := reg.Register(ns); err != nil {
		t.Fatal(err)
	}
	return o, reg
}

// A pass as loader.Run reports it: two adopted, one dead shim cleaned up,
// one failed removal, one kept and re-probed.
func TestObserverCounts(t *testing.T) {
	o, reg := newTestObserver(t)
	for _, a := range []lifecycle.Action{lifecycle.ActionAdopt, lifecycle.ActionAdopt, lifecycle.ActionCleanupDead, lifecycle.ActionRemoveEmpty, lifecycle.ActionKeep} {
		o.Decided(taskState, a)
	}
	o.Finished(taskState, lifecycle.ActionAdopt, lifecycle.OutcomeDone)
	o.Finished(taskState, lifecycle.ActionAdopt, lifecycle.OutcomeDone)
	o.Finished(taskState, lifecycle.ActionKeep, lifecycle.OutcomeProbing)
	o.Unresponsive(taskState, 1)
	o.Queue(taskState, 1)
	o.Queue(taskState, 1)
	o.Ready(taskState, 1500*time.Millisecond)
	o.Ready(sandboxState, 2*time.Millisecond)
	o.Judged(taskState, 2500*time.Millisecond)
	o.Queue(taskState, -1)
	o.Finished(taskState, lifecycle.ActionCleanupDead, lifecycle.OutcomeDone)
	o.Queue(taskState, -1)
	o.Finished(taskState, lifecycle.ActionRemoveEmpty, lifecycle.OutcomeFailed)
	o.PassDone(taskState, 3*time.Second)

	const want = `
# HELP shimkeeper_recovery_bundles_total Bundles by action and the outcome of carrying it out
# TYPE shimkeeper_recovery_bundles_total counter
shimkeeper_recovery_bundles_total{action="adopt",outcome="done",plugin="task"} 2
shimkeeper_recovery_bundles_total{action="cleanup-dead",outcome="done",plugin="task"} 1
shimkeeper_recovery_bundles_total{action="keep",outcome="probing",plugin="task"} 1
shimkeeper_recovery_bundles_total{action="remove-empty",outcome="failed",plugin="task"} 1
# HELP shimkeeper_recovery_cleanup_failures_total Background removals that failed
# TYPE shimkeeper_recovery_cleanup_failures_total counter
shimkeeper_recovery_cleanup_failures_total{action="remove-empty",plugin="task"} 1
# HELP shimkeeper_recovery_cleanup_queue Background removals (dead, leaked, empty bundles) not yet finished
# TYPE shimkeeper_recovery_cleanup_queue gauge
shimkeeper_recovery_cleanup_queue{plugin="sandbox"} 0
shimkeeper_recovery_cleanup_queue{plugin="task"} 0
# HELP shimkeeper_recovery_decisions_total Bundles by the action recovery decided
# TYPE shimkeeper_recovery_decisions_total counter
shimkeeper_recovery_decisions_total{action="adopt",plugin="task"} 2
shimkeeper_recovery_decisions_total{action="cleanup-dead",plugin="task"} 1
shimkeeper_recovery_decisions_total{action="keep",plugin="task"} 1
shimkeeper_recovery_decisions_total{action="remove-empty",plugin="task"} 1
# HELP shimkeeper_recovery_judged_seconds Time until the last recovery pass had judged every shim it found (probe, decide, register)
# TYPE shimkeeper_recovery_judged_seconds gauge
shimkeeper_recovery_judged_seconds{plugin="task"} 2.5
# HELP shimkeeper_recovery_pass_seconds Duration of the last recovery pass, background cleanup included
# TYPE shimkeeper_recovery_pass_seconds gauge
shimkeeper_recovery_pass_seconds{plugin="task"} 3
# HELP shimkeeper_recovery_ready_seconds Time the last recovery pass held daemon start (listing bundles; judging them too with recovery_hold_start)
# TYPE shimkeeper_recovery_ready_seconds gauge
shimkeeper_recovery_ready_seconds{plugin="sandbox"} 0.002
shimkeeper_recovery_ready_seconds{plugin="task"} 1.5
# HELP shimkeeper_recovery_unresponsive_shims Shims kept because they did not answer, being re-probed
# TYPE shimkeeper_recovery_unresponsive_shims gauge
shimkeeper_recovery_unresponsive_shims{plugin="sandbox"} 0
shimkeeper_recovery_unresponsive_shims{plugin="task"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"shimkeeper_recovery_bundles_total", "shimkeeper_recovery_cleanup_failures_total",
		"shimkeeper_recovery_cleanup_queue", "shimkeeper_recovery_decisions_total",
		"shimkeeper_recovery_judged_seconds", "shimkeeper_recovery_pass_seconds", "shimkeeper_recovery_ready_seconds",
		"shimkeeper_recovery_unresponsive_shims"); err != nil {
		t.Fatal(err)
	}
}

func TestObserverProbeHistogram(t *testing.T) {
	o, reg := newTestObserver(t)
	o.Probed(taskState, lifecycle.LivenessAlive, 300*time.Microsecond)
	o.Probed(taskState, lifecycle.LivenessAlive, 2*time.Millisecond)
	o.Probed(taskState, lifecycle.LivenessUnknown, 2*time.Second)
	o.Probed(sandboxState, lifecycle.LivenessGone, time.Millisecond)

	got := histograms(t, reg, "shimkeeper_recovery_probe_seconds")
	for key, want := range map[string]struct {
		count uint64
		sum   float64
	}{
		"task/alive":    {2, 0.0023},
		"task/unknown":  {1, 2},
		"sandbox/gone":  {1, 0.001},
		"task/gone":     {0, 0},
		"sandbox/alive": {0, 0},
	} {
		h := got[key]
		if h == nil {
			if want.count != 0 {
				t.Errorf("%s: no histogram", key)
			}
			continue
		}
		if h.GetSampleCount() != want.count || abs(h.GetSampleSum()-want.sum) > 1e-9 {
			t.Errorf("%s: count %d sum %g, want %d %g", key, h.GetSampleCount(), h.GetSampleSum(), want.count, want.sum)
		}
	}
	// A 300µs probe lands in the first bucket: the buckets resolve local
	// ttrpc round trips.
	if b := got["task/alive"].GetBucket()[0]; b.GetUpperBound() != 0.0005 || b.GetCumulativeCount() != 1 {
		t.Errorf("first bucket %g holds %d", b.GetUpperBound(), b.GetCumulativeCount())
	}
}

// histograms returns the histograms of family name by "plugin/liveness".
func histograms(t *testing.T, reg *prometheus.Registry, name string) map[string]*dto.Histogram {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.Histogram{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			out[labels["plugin"]+"/"+labels["liveness"]] = m.GetHistogram()
		}
	}
	return out
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

func TestPluginLabel(t *testing.T) {
	for dir, want := range map[string]string{
		"/run/containerd/io.containerd.runtime.v2.task":            "task",
		"/run/containerd/io.containerd.runtime.v2.task/":           "task",
		"/tmp/x/state/io.containerd.sandbox.controller.v1.shim":    "sandbox",
		"/var/run/other/io.containerd.runtime.v2.task-not-ours":    "io.containerd.runtime.v2.task-not-ours",
		"/run/containerd/io.containerd.sandbox.controller.v1.shim": "sandbox",
	} {
		if got := PluginLabel(dir); got != want {
			t.Errorf("PluginLabel(%q) = %q, want %q", dir, got, want)
		}
	}
}

// Default registers with the default registry exactly once, however many
// plugins ask for it and from how many goroutines.
func TestDefaultRegistersOnce(t *testing.T) {
	var wg sync.WaitGroup
	obs := make([]*Observer, 8)
	for i := range obs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			obs[i] = Default()
		}()
	}
	wg.Wait()
	for _, o := range obs {
		if o != obs[0] || o == nil {
			t.Fatal("Default returned different observers")
		}
	}
	// A second registration of the same metrics would be refused.
	dup := NewNamespace()
	New(dup)
	if err := prometheus.DefaultRegisterer.Register(dup); err == nil {
		t.Fatal("the metrics were not registered with the default registry")
	}
	obs[0].Decided(taskState, lifecycle.ActionAdopt)
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "shimkeeper_recovery_decisions_total" {
			return
		}
	}
	t.Fatal("shimkeeper_recovery_decisions_total not served by the default registry")
}

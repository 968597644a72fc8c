package main

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// runResult is one start of one daemon.
type runResult struct {
	daemon      string
	round       int
	ready, list time.Duration
	// criReady is the CRI cases': time from exec to CRI Status with
	// RuntimeReady and NetworkReady (ready is Version answering, list
	// every pod READY and container RUNNING).
	criReady time.Duration
	// settled is the time from exec until the daemon's work was done:
	// the latest of list, the last change of the bundle set and, for
	// ours, the report's finished_at (settle.go). unsettled: ours did
	// not finish within cleanupTimeout of list.
	settled   time.Duration
	unsettled bool
	cpu       time.Duration // daemon CPU time (user+sys) when every live task was listed
	shimCPU   time.Duration // synthshim server CPU time from exec to then
	// pollCPU is the bench's own CPU from exec to then: mostly its
	// polls (Version, then Tasks.List every pollInterval).
	pollCPU       time.Duration
	rssKiB        int64
	recoveryReady float64 // ours: the report's ready_ms
	// recoveryJudged is ours: the report's judged_ms, when every shim had
	// its verdict.
	recoveryJudged float64
	failures       []string
	invalid        []string // stock: live state lost, the run measures nothing
	behaviour      []string // what became of each kind of shim
	stats          map[string]int64
	runcCalls      map[string]int
}

func (r *runResult) fail(format string, a ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, a...))
}

func (r *runResult) ok() bool { return len(r.failures) == 0 && len(r.invalid) == 0 && r.ready > 0 }

func (r *runResult) line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "   round %d %-5s: ", r.round, r.daemon)
	if r.ready == 0 {
		fmt.Fprintf(&b, "no answer")
	} else {
		if r.criReady > 0 {
			fmt.Fprintf(&b, "serves %7.3fs  CRI ready %7.3fs  ", r.ready.Seconds(), r.criReady.Seconds())
		} else {
			fmt.Fprintf(&b, "ready %7.3fs  ", r.ready.Seconds())
		}
		fmt.Fprintf(&b, "listed %7.3fs  settled %7.3fs", r.list.Seconds(), r.settled.Seconds())
		if r.unsettled {
			fmt.Fprintf(&b, " (report not finished within %s)", cleanupTimeout)
		}
		fmt.Fprintf(&b, "  cpu %6.2fs  rss %6.1f MiB", r.cpu.Seconds(), float64(r.rssKiB)/1024)
	}
	if r.shimCPU > 0 {
		fmt.Fprintf(&b, "  shims cpu %.2fs", r.shimCPU.Seconds())
	}
	if r.pollCPU > 0 {
		fmt.Fprintf(&b, "  bench cpu %.2fs", r.pollCPU.Seconds())
	}
	if r.recoveryReady > 0 {
		fmt.Fprintf(&b, "  (recovery held start %.0f ms, judged every shim at %.0f ms)", r.recoveryReady, r.recoveryJudged)
	}
	switch {
	case len(r.failures) > 0:
		fmt.Fprintf(&b, "  CHECK FAILED")
	case len(r.invalid) > 0:
		fmt.Fprintf(&b, "  INVALID: %s", strings.Join(r.invalid, "; "))
	default:
		fmt.Fprintf(&b, "  post-state ok")
	}
	if s := statsLine(r.stats); s != "" {
		fmt.Fprintf(&b, "\n      shim calls: %s", s)
	}
	if r.runcCalls != nil {
		fmt.Fprintf(&b, "\n      runc execs while starting: %s", runcLine(r.runcCalls))
	}
	for _, bh := range r.behaviour {
		fmt.Fprintf(&b, "\n      %s", bh)
	}
	return b.String()
}

// statsLine summarises the synthshim counters: `shim delete` execs and task
// API calls per method.
func statsLine(st map[string]int64) string {
	if len(st) == 0 {
		return ""
	}
	per := map[string]int64{}
	var deletes int64
	var accepts int64
	for k, v := range st {
		switch {
		case strings.HasPrefix(k, "exec.delete."):
			deletes += v
		case k == "hung.accept":
			accepts += v
		case strings.HasPrefix(k, "exec."):
		default:
			_, m, _ := strings.Cut(k, ".")
			per[m] += v
		}
	}
	var parts []string
	for _, m := range []string{"Connect", "State", "Pids", "Wait", "Delete", "Shutdown"} {
		if per[m] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", m, per[m]))
		}
	}
	parts = append(parts, fmt.Sprintf("`shim delete` execs %d", deletes))
	if accepts > 0 {
		parts = append(parts, fmt.Sprintf("hung connections %d", accepts))
	}
	return strings.Join(parts, ", ")
}

func runcLine(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var k []string
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	var parts []string
	for _, s := range k {
		parts = append(parts, fmt.Sprintf("%s %d", s, m[s]))
	}
	return strings.Join(parts, ", ")
}

// caseResult is every run of one case.
type caseResult struct {
	def      caseDef
	setupErr error
	// notRun: the host cannot run the case (its open-file limit); printed
	// with the reason, not a failure.
	notRun error
	runs   map[string][]*runResult
	floor  map[int][]time.Duration
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minOf(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	m := d[0]
	for _, x := range d {
		m = min(m, x)
	}
	return m
}

// series extracts one measurement of the valid runs.
func (c *caseResult) series(daemon string, f func(*runResult) time.Duration) []time.Duration {
	var out []time.Duration
	for _, r := range c.runs[daemon] {
		if r.ok() {
			out = append(out, f(r))
		}
	}
	return out
}

// daemonSeries are one daemon's figures over its valid runs of a case.
type daemonSeries struct {
	ready, list, settled, cpu []time.Duration
	criReady                  []time.Duration
	// rss is in KiB, carried in a Duration so that median/min apply.
	rss []time.Duration
	// held and judged are ours only: the report's ready_ms and judged_ms.
	held, judged []time.Duration
}

func (c *caseResult) seriesOf(daemon string) daemonSeries {
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	return daemonSeries{
		ready:    c.series(daemon, func(r *runResult) time.Duration { return r.ready }),
		list:     c.series(daemon, func(r *runResult) time.Duration { return r.list }),
		settled:  c.series(daemon, func(r *runResult) time.Duration { return r.settled }),
		criReady: c.series(daemon, func(r *runResult) time.Duration { return r.criReady }),
		cpu:      c.series(daemon, func(r *runResult) time.Duration { return r.cpu }),
		rss:      c.series(daemon, func(r *runResult) time.Duration { return time.Duration(r.rssKiB) }),
		held:     c.series(daemon, func(r *runResult) time.Duration { return ms(r.recoveryReady) }),
		judged:   c.series(daemon, func(r *runResult) time.Duration { return ms(r.recoveryJudged) }),
	}
}

func (c *caseResult) oursFailed() bool {
	if c.setupErr != nil {
		return true
	}
	for _, r := range c.runs["ours"] {
		if len(r.failures) > 0 || r.ready == 0 {
			return true
		}
	}
	return false
}

func ratio(a, b time.Duration) string {
	if a == 0 || b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}

func secs(d time.Duration) string {
	if d == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.3f", d.Seconds())
}

func mib(d time.Duration) string {
	if d == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f", float64(d)/1024)
}

func verdict(r string, target float64) string {
	if target == 0 {
		return ""
	}
	var v float64
	if _, err := fmt.Sscanf(r, "%f", &v); err != nil {
		return fmt.Sprintf("target <= %.1f: n/a", target)
	}
	if v <= target {
		return fmt.Sprintf("target <= %.1f: met", target)
	}
	return fmt.Sprintf("target <= %.1f: MISSED", target)
}

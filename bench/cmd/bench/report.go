package main

import (
	"fmt"
	"io"
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
	settled       time.Duration
	unsettled     bool
	cpu           time.Duration // daemon CPU time (user+sys) when every live task was listed
	shimCPU       time.Duration // synthshim server CPU time from exec to then
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
	runs     map[string][]*runResult
	floor    map[int][]time.Duration
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

// printSummary prints every case's min/median per daemon, the ratios and
// the targets, then the same as a markdown table. It reports whether our
// daemon failed anything.
func printSummary(w io.Writer, results []*caseResult, rounds int) bool {
	failed := false
	fmt.Fprintf(w, "\n== summary: seconds from exec; min / median of %d runs per daemon; ratio = ours/stock of the medians\n", rounds)
	for _, c := range results {
		fmt.Fprintf(w, "\n%s\n", c.def.name)
		if c.setupErr != nil {
			fmt.Fprintf(w, "  setup failed: %v\n", c.setupErr)
			failed = true
			continue
		}
		o, st := c.seriesOf("ours"), c.seriesOf("stock")
		or, sr, ol, sl, om, sm := o.ready, st.ready, o.list, st.list, o.rss, st.rss
		fmt.Fprintf(w, "  ready (Version answers)   ours %s / %s   stock %s / %s   ratio %s   %s\n",
			secs(minOf(or)), secs(median(or)), secs(minOf(sr)), secs(median(sr)), ratio(median(or), median(sr)), verdict(ratio(median(or), median(sr)), c.def.target))
		listed := "every live task listed   "
		if c.def.cri > 0 {
			ocr, scr := o.criReady, st.criReady
			fmt.Fprintf(w, "  CRI Runtime+NetworkReady  ours %s / %s   stock %s / %s   ratio %s\n",
				secs(minOf(ocr)), secs(median(ocr)), secs(minOf(scr)), secs(median(scr)), ratio(median(ocr), median(scr)))
			listed = "every pod and ctr listed "
		}
		fmt.Fprintf(w, "  %s ours %s / %s   stock %s / %s   ratio %s\n", listed,
			secs(minOf(ol)), secs(median(ol)), secs(minOf(sl)), secs(median(sl)), ratio(median(ol), median(sl)))
		os, ss := o.settled, st.settled
		fmt.Fprintf(w, "  settled (cleanup done)    ours %s / %s   stock %s / %s   ratio %s\n",
			secs(minOf(os)), secs(median(os)), secs(minOf(ss)), secs(median(ss)), ratio(median(os), median(ss)))
		oc, sc := o.cpu, st.cpu
		fmt.Fprintf(w, "  daemon CPU until listed   ours %s / %s   stock %s / %s   ratio %s\n",
			secs(minOf(oc)), secs(median(oc)), secs(minOf(sc)), secs(median(sc)), ratio(median(oc), median(sc)))
		fmt.Fprintf(w, "  RSS after settling (MiB)  ours %s / %s   stock %s / %s   ratio %s   %s\n",
			mib(minOf(om)), mib(median(om)), mib(minOf(sm)), mib(median(sm)), ratio(median(om), median(sm)), verdict(ratio(median(om), median(sm)), c.def.rssTarget))
		held, judged := o.held, o.judged
		fmt.Fprintf(w, "  ours: recovery held start %s / %s (report's ready_ms); judged every shim %s / %s after the pass started (judged_ms)\n",
			secs(minOf(held)), secs(median(held)), secs(minOf(judged)), secs(median(judged)))
		if len(c.floor) > 0 {
			f2, f64 := c.floor[2], c.floor[64]
			fmt.Fprintf(w, "  floor (read bootstrap.json, dial, Connect; exec to exit)  c=2 %s / %s   c=64 %s / %s\n",
				secs(minOf(f2)), secs(median(f2)), secs(minOf(f64)), secs(median(f64)))
			fmt.Fprintf(w, "    ours / floor(c=64): ready %s %s   judged %s   listed %s\n",
				ratio(median(or), median(f64)), verdict(ratio(median(or), median(f64)), 1.5),
				ratio(median(judged), median(f64)), ratio(median(ol), median(f64)))
		}
		n := map[string]int{}
		for _, d := range daemons {
			for _, r := range c.runs[d] {
				if r.ok() {
					n[d]++
				}
			}
		}
		fmt.Fprintf(w, "  post-state checks         ours %d/%d ok   stock %d/%d valid\n", n["ours"], len(c.runs["ours"]), n["stock"], len(c.runs["stock"]))
		if c.oursFailed() {
			failed = true
			for _, r := range c.runs["ours"] {
				for _, f := range r.failures {
					fmt.Fprintf(w, "    ours round %d: %s\n", r.round, f)
				}
			}
		}
		if rs := c.runs["stock"]; len(rs) > 0 {
			last := rs[len(rs)-1]
			for _, bh := range last.behaviour {
				fmt.Fprintf(w, "  stock: %s\n", bh)
			}
		}
		if rs := c.runs["ours"]; len(rs) > 0 {
			last := rs[len(rs)-1]
			for _, bh := range last.behaviour {
				fmt.Fprintf(w, "  ours:  %s\n", bh)
			}
		}
	}

	fmt.Fprintf(w, "\n== markdown\n\n")
	var shimCases []*caseResult // the CRI cases have their own table below
	for _, c := range results {
		if c.def.cri == 0 {
			shimCases = append(shimCases, c)
		}
	}
	if len(shimCases) > 0 {
		fmt.Fprintln(w, "| case | ours ready min / median (s) | stock ready min / median (s) | ratio | target | ours listed (s) | stock listed (s) | ours RSS (MiB) | stock RSS (MiB) | RSS ratio | checks (ours) |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	}
	for _, c := range shimCases {
		if c.setupErr != nil {
			fmt.Fprintf(w, "| %s | setup failed | | | | | | | | | |\n", c.def.name)
			continue
		}
		o, st := c.seriesOf("ours"), c.seriesOf("stock")
		or, sr, ol, sl, om, sm := o.ready, st.ready, o.list, st.list, o.rss, st.rss
		rr := ratio(median(or), median(sr))
		tgt := ""
		if c.def.target > 0 {
			tgt = fmt.Sprintf("≤ %.1f %s", c.def.target, map[bool]string{true: "met", false: "**missed**"}[strings.HasSuffix(verdict(rr, c.def.target), "met")])
		}
		checks := "ok"
		if c.oursFailed() {
			checks = "**FAILED**"
		}
		fmt.Fprintf(w, "| %s | %s / %s | %s / %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			c.def.name, secs(minOf(or)), secs(median(or)), secs(minOf(sr)), secs(median(sr)), rr, tgt,
			secs(median(ol)), secs(median(sl)), mib(median(om)), mib(median(sm)), ratio(median(om), median(sm)), checks)
	}
	var cris []string
	for _, c := range results {
		if c.def.cri == 0 {
			continue
		}
		if c.setupErr != nil {
			cris = append(cris, fmt.Sprintf("| %s | setup failed | | | | | | | | | |", c.def.name))
			continue
		}
		o, st := c.seriesOf("ours"), c.seriesOf("stock")
		checks := "ok"
		if c.oursFailed() {
			checks = "**FAILED**"
		}
		cris = append(cris, fmt.Sprintf("| %s | %s / %s | %s / %s | %s / %s | %s | %s / %s | %s / %s | %s | %s | %s | %s |", c.def.name,
			secs(median(o.ready)), secs(median(st.ready)),
			secs(minOf(o.criReady)), secs(median(o.criReady)), secs(minOf(st.criReady)), secs(median(st.criReady)), ratio(median(o.criReady), median(st.criReady)),
			secs(minOf(o.list)), secs(median(o.list)), secs(minOf(st.list)), secs(median(st.list)), ratio(median(o.list), median(st.list)),
			mib(median(o.rss)), mib(median(st.rss)), checks))
	}
	if len(cris) > 0 {
		fmt.Fprintln(w, "\n| CRI case | serves (Version), median ours / stock (s) | ours CRI ready min / median (s) | stock CRI ready min / median (s) | ratio | ours all listed min / median (s) | stock all listed min / median (s) | ratio | ours RSS (MiB) | stock RSS (MiB) | checks (ours) |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
		for _, l := range cris {
			fmt.Fprintln(w, l)
		}
	}
	var floors []string
	for _, c := range results {
		if len(c.floor) == 0 {
			continue
		}
		o := c.seriesOf("ours")
		or, ol, judged := o.ready, o.list, o.judged
		f64 := median(c.floor[64])
		floors = append(floors, fmt.Sprintf("| %s | %s / %s | %s / %s | %s / %s | %s | %s | %s | %s | %s |", c.def.name,
			secs(minOf(c.floor[2])), secs(median(c.floor[2])), secs(minOf(c.floor[64])), secs(f64),
			secs(minOf(or)), secs(median(or)), ratio(median(or), f64),
			secs(median(judged)), ratio(median(judged), f64),
			secs(median(ol)), ratio(median(ol), f64)))
	}
	if len(floors) > 0 {
		fmt.Fprintln(w, "\n| floor | c=2 min / median (s) | c=64 min / median (s) | ours ready min / median (s) | ready / floor c=64 (target ≤ 1.5) | ours every shim judged (s, median) | judged / floor | ours listed (s, median) | listed / floor |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
		for _, f := range floors {
			fmt.Fprintln(w, f)
		}
	}
	return failed
}

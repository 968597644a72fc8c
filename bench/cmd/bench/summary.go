package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// printSummary prints every case's min/median per daemon, the ratios and
// the targets, then the scaling table and the markdown tables. It reports
// whether our daemon failed anything.
func printSummary(w io.Writer, results []*caseResult, rounds int) bool {
	failed := false
	fmt.Fprintf(w, "\n== summary: seconds from exec; min / median of %d runs per daemon; ratio = ours/stock of the medians\n", rounds)
	for _, c := range results {
		fmt.Fprintf(w, "\n%s\n", c.def.name)
		if c.notRun != nil {
			fmt.Fprintf(w, "  %v\n", c.notRun)
			continue
		}
		if c.setupErr != nil {
			fmt.Fprintf(w, "  setup failed: %v\n", c.setupErr)
			failed = true
			continue
		}
		printCase(w, c, results)
		if c.oursFailed() {
			failed = true
		}
	}
	printScaling(w, results)
	printMarkdown(w, results)
	return failed
}

// printCase prints one case: the headline (every live task listed) first,
// then serving, settled, CPU and RSS, then ours' own figures, the floor and
// the post-state checks.
func printCase(w io.Writer, c *caseResult, results []*caseResult) {
	o, st := c.seriesOf("ours"), c.seriesOf("stock")
	if c.def.cri > 0 {
		row(w, "every pod and ctr listed", o.list, st.list, secs, c.def.target)
		row(w, "serving (Version answers)", o.ready, st.ready, secs, 0)
		row(w, "CRI Runtime+NetworkReady", o.criReady, st.criReady, secs, 0)
	} else {
		row(w, "every live task listed", o.list, st.list, secs, c.def.target)
		row(w, "serving (Version answers)", o.ready, st.ready, secs, 0)
	}
	row(w, "settled (cleanup done)", o.settled, st.settled, secs, 0)
	row(w, "daemon CPU until listed", o.cpu, st.cpu, secs, 0)
	row(w, "RSS after settling (MiB)", o.rss, st.rss, mib, c.def.rssTarget)
	if ref, r, ok := relGoal(c, results); ok {
		fmt.Fprintf(w, "  ours listed / ours listed in %q: %s   %s\n", ref, r, verdict(r, c.def.relFactor))
	}
	fmt.Fprintf(w, "  ours: recovery held start %s (report's ready_ms); judged every shim %s after the pass started (judged_ms)\n",
		minMed(o.held, secs), minMed(o.judged, secs))
	if n := c.unsettled("ours"); n > 0 {
		fmt.Fprintf(w, "  ours: %d runs whose report did not say finished within %s of listed (settled is then a lower bound)\n", n, cleanupTimeout)
	}
	if len(c.floor) > 0 {
		f64 := median(c.floor[64])
		fmt.Fprintf(w, "  floor (read bootstrap.json, dial, Connect; exec to exit)  c=2 %s   c=64 %s\n",
			minMed(c.floor[2], secs), minMed(c.floor[64], secs))
		lr := ratio(median(o.list), f64)
		fmt.Fprintf(w, "    ours / floor(c=64): listed %s %s   ready %s   judged %s\n",
			lr, verdict(lr, c.def.floorTarget), ratio(median(o.ready), f64), ratio(median(o.judged), f64))
	}
	n := map[string]int{}
	for _, d := range daemons {
		for _, r := range c.runs[d] {
			if r.ok() {
				n[d]++
			}
		}
	}
	fmt.Fprintf(w, "  post-state checks           ours %d/%d ok   stock %d/%d valid\n", n["ours"], len(c.runs["ours"]), n["stock"], len(c.runs["stock"]))
	if c.oursFailed() {
		for _, r := range c.runs["ours"] {
			for _, f := range r.failures {
				fmt.Fprintf(w, "    ours round %d: %s\n", r.round, f)
			}
		}
	}
	for _, d := range []string{"stock", "ours"} {
		if rs := c.runs[d]; len(rs) > 0 {
			for _, bh := range rs[len(rs)-1].behaviour {
				fmt.Fprintf(w, "  %-6s %s\n", d+":", bh)
			}
		}
	}
}

// row prints one measure of both daemons, min / median each, the ratio of
// the medians and its verdict against target (0: none).
func row(w io.Writer, label string, o, s []time.Duration, f func(time.Duration) string, target float64) {
	r := ratio(median(o), median(s))
	line := fmt.Sprintf("  %-27s ours %s   stock %s   ratio %s   %s", label, minMed(o, f), minMed(s, f), r, verdict(r, target))
	fmt.Fprintln(w, strings.TrimRight(line, " "))
}

func minMed(d []time.Duration, f func(time.Duration) string) string {
	return f(minOf(d)) + " / " + f(median(d))
}

// relGoal is case c's goal relative to another case of ours: the other
// case's name and the ratio of ours' listed medians. ok is false when c has
// no such goal or the other case did not run.
func relGoal(c *caseResult, results []*caseResult) (ref, r string, ok bool) {
	if c.def.relTo == "" {
		return "", "", false
	}
	for _, x := range results {
		if x.def.key == c.def.relTo && x.setupErr == nil && x.notRun == nil {
			return x.def.name, ratio(median(c.seriesOf("ours").list), median(x.seriesOf("ours").list)), true
		}
	}
	return "", "", false
}

// unsettled counts daemon's valid runs that did not settle in time.
func (c *caseResult) unsettled(daemon string) int {
	n := 0
	for _, r := range c.runs[daemon] {
		if r.ok() && r.unsettled {
			n++
		}
	}
	return n
}

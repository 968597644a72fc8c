package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// printMarkdown prints the summary as markdown tables: the shim cases
// (headline: every live task listed), the CRI cases, the floor, and the
// scaling table.
func printMarkdown(w io.Writer, results []*caseResult) {
	fmt.Fprintf(w, "\n== markdown\n")
	var shims, cris, floors []string
	for _, c := range results {
		if c.notRun != nil {
			shims = append(shims, fmt.Sprintf("| %s | %s |", c.def.name, c.notRun))
			continue
		}
		if c.setupErr != nil {
			failedRow := fmt.Sprintf("| %s | setup failed |", c.def.name)
			if c.def.cri > 0 {
				cris = append(cris, failedRow)
			} else {
				shims = append(shims, failedRow)
			}
			continue
		}
		o, st := c.seriesOf("ours"), c.seriesOf("stock")
		checks := "ok"
		if c.oursFailed() {
			checks = "**FAILED**"
		}
		if c.def.cri > 0 {
			cris = append(cris, fmt.Sprintf("| %s | %s | %s | %s | %s / %s | %s / %s | %s / %s | %s | %s | %s |", c.def.name,
				minMed(o.list, secs), minMed(st.list, secs), ratio(median(o.list), median(st.list)),
				secs(median(o.ready)), secs(median(st.ready)),
				secs(median(o.criReady)), secs(median(st.criReady)),
				secs(median(o.settled)), secs(median(st.settled)),
				mib(median(o.rss)), mib(median(st.rss)), checks))
			continue
		}
		lr := ratio(median(o.list), median(st.list))
		goals := []string{mdVerdict(lr, c.def.target, "")}
		if ref, r, ok := relGoal(c, results); ok {
			goals = append(goals, fmt.Sprintf("%s (%s)", mdVerdict(r, c.def.relFactor, " × "+ref+" (ours)"), r))
		}
		shims = append(shims, fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", c.def.name,
			minMed(o.list, secs), minMed(st.list, secs), lr, strings.Join(nonEmpty(goals), "; "),
			secs(median(o.ready)), secs(median(st.ready)),
			secs(median(o.settled)), secs(median(st.settled)),
			mib(median(o.rss)), mib(median(st.rss)), mdRatio(median(o.rss), median(st.rss), c.def.rssTarget), checks))
		if len(c.floor) > 0 {
			f64 := median(c.floor[64])
			fr := ratio(median(o.list), f64)
			floors = append(floors, fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", c.def.name,
				minMed(c.floor[2], secs), minMed(c.floor[64], secs),
				minMed(o.list, secs), fr, mdVerdict(fr, c.def.floorTarget, ""),
				secs(median(o.ready)), ratio(median(o.ready), f64),
				secs(median(o.judged)), ratio(median(o.judged), f64)))
		}
	}
	table(w, "| case | ours listed min / median (s) | stock listed min / median (s) | ratio | target | ours ready (s) | stock ready (s) | ours settled (s) | stock settled (s) | ours RSS (MiB) | stock RSS (MiB) | RSS ratio | checks (ours) |", shims)
	table(w, "| CRI case | ours all listed min / median (s) | stock all listed min / median (s) | ratio | serves (Version), median ours / stock (s) | CRI ready, median ours / stock (s) | settled, median ours / stock (s) | ours RSS (MiB) | stock RSS (MiB) | checks (ours) |", cris)
	table(w, "| floor | c=2 min / median (s) | c=64 min / median (s) | ours listed min / median (s) | listed / floor c=64 | target | ours ready (s, median) | ready / floor | ours every shim judged (s, median) | judged / floor |", floors)
	if rows, base := scalingRows(results); rows != nil {
		fmt.Fprintf(w, "\nPer shim, medians; RSS per shim is %s.\n", base)
		table(w, "| case | ours listed (ms/shim) | stock listed (ms/shim) | ours daemon CPU (ms/shim) | stock daemon CPU (ms/shim) | ours RSS (KiB/shim) | stock RSS (KiB/shim) |", rows)
	}
}

// table prints a markdown table of rows under header, if there are rows.
func table(w io.Writer, header string, rows []string) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s\n|%s\n", header, strings.Repeat("---|", strings.Count(header, "|")-1))
	for _, r := range rows {
		fmt.Fprintln(w, r)
	}
}

// mdVerdict is "≤ <target><what> met" or "**missed**" ("" without a
// target).
func mdVerdict(r string, target float64, what string) string {
	if target == 0 {
		return ""
	}
	v := "**missed**"
	if strings.HasSuffix(verdict(r, target), ": met") {
		v = "met"
	}
	return fmt.Sprintf("≤ %.1f%s %s", target, what, v)
}

// mdRatio is the ratio of a and b, with its verdict if there is a target.
func mdRatio(a, b time.Duration, target float64) string {
	r := ratio(a, b)
	if target == 0 {
		return r
	}
	return fmt.Sprintf("%s (%s)", r, mdVerdict(r, target, ""))
}

func nonEmpty(s []string) []string {
	var out []string
	for _, x := range s {
		if x != "" {
			out = append(out, x)
		}
	}
	return out
}

package main

import (
	"fmt"
	"io"
	"time"
)

// scalePoint is one case of live shims alone, per shim, from the medians of
// each daemon (index 0 ours, 1 stock).
type scalePoint struct {
	name   string
	shims  int
	listed [2]float64 // ms per shim
	cpu    [2]float64 // daemon CPU until listed, ms per shim
	rss    [2]float64 // KiB per shim
}

// scaling gives the scaling table's points: every case of live shims alone
// that ran, when at least two of them have 1000 shims or more (nil
// otherwise). RSS per shim is (RSS − RSS of the no-shim case) / shims when
// that case ran, else RSS / shims; base says which.
func scaling(results []*caseResult) (pts []scalePoint, base string) {
	var cases []*caseResult
	var empty *caseResult
	big := 0
	for _, c := range results {
		d := c.def
		switch {
		case c.setupErr != nil || c.notRun != nil || d.runc > 0 || d.cri > 0 || d.hung+d.dead+d.leaked+d.exited > 0:
		case d.live == 0:
			empty = c
		default:
			cases = append(cases, c)
			if d.live >= 1000 {
				big++
			}
		}
	}
	if big < 2 {
		return nil, ""
	}
	base = "RSS / shims (the no-shim case did not run)"
	var rss0 [2]time.Duration
	if empty != nil {
		base = `(RSS − RSS of "` + empty.def.name + `") / shims`
		for i, d := range daemons {
			rss0[i] = median(empty.seriesOf(d).rss)
		}
	}
	perShim := func(d time.Duration, n int) float64 { return d.Seconds() * 1000 / float64(n) }
	for _, c := range cases {
		p := scalePoint{name: c.def.name, shims: c.def.live}
		for i, d := range daemons {
			s := c.seriesOf(d)
			p.listed[i] = perShim(median(s.list), p.shims)
			p.cpu[i] = perShim(median(s.cpu), p.shims)
			if rss := median(s.rss); rss > 0 {
				p.rss[i] = float64(rss-rss0[i]) / float64(p.shims)
			}
		}
		pts = append(pts, p)
	}
	return pts, base
}

// printScaling prints the scaling table, if there is one.
func printScaling(w io.Writer, results []*caseResult) {
	pts, base := scaling(results)
	if pts == nil {
		return
	}
	fmt.Fprintf(w, "\n== scaling: per shim, medians (ours / stock); RSS per shim is %s\n", base)
	fmt.Fprintf(w, "  %-12s %-22s %-22s %s\n", "case", "listed (ms/shim)", "daemon CPU (ms/shim)", "RSS (KiB/shim)")
	for _, p := range pts {
		fmt.Fprintf(w, "  %-12s %-22s %-22s %s\n", p.name, pair(p.listed, "%.3f"), pair(p.cpu, "%.3f"), pair(p.rss, "%.1f"))
	}
}

// scalingRows are the scaling table's markdown rows and its RSS base (nil
// when there is no table).
func scalingRows(results []*caseResult) ([]string, string) {
	pts, base := scaling(results)
	var rows []string
	for _, p := range pts {
		rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s |", p.name,
			num(p.listed[0], "%.3f"), num(p.listed[1], "%.3f"), num(p.cpu[0], "%.3f"), num(p.cpu[1], "%.3f"),
			num(p.rss[0], "%.1f"), num(p.rss[1], "%.1f")))
	}
	return rows, base
}

func pair(v [2]float64, f string) string { return num(v[0], f) + " / " + num(v[1], f) }

// num formats v, or n/a for a figure that was not measured.
func num(v float64, f string) string {
	if v == 0 {
		return "n/a"
	}
	return fmt.Sprintf(f, v)
}

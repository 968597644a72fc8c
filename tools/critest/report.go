package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// outcome is what became of one spec on one daemon.
type outcome string

const (
	passed  outcome = "passed"
	failed  outcome = "failed"
	skipped outcome = "skipped"
)

// result is one daemon's specs by outcome, from ginkgo's JSON report.
type result struct {
	Daemon   string
	Outcome  map[string]outcome // spec name → outcome
	Reason   map[string]string  // failed or skipped spec → first line of its message
	Duration time.Duration
}

// ginkgoReport is the part of ginkgo v2's JSON report read here.
type ginkgoReport []struct {
	SpecReports []struct {
		ContainerHierarchyTexts []string
		LeafNodeType            string
		LeafNodeText            string
		State                   string
		Failure                 struct{ Message string }
	}
}

func readReport(path, daemon string) (*result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("no critest report: %w", err)
	}
	return parseReport(b, daemon)
}

// parseReport turns the report into outcomes. A spec's name is its
// containers' texts and its own, joined by spaces: the text ginkgo
// matches -focus and -skip against (after the suite's description). A
// suite node that did not pass (a BeforeSuite, say) is a failed entry of
// its own, named after its type.
func parseReport(b []byte, daemon string) (*result, error) {
	var rep ginkgoReport
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("critest report: %w", err)
	}
	r := &result{Daemon: daemon, Outcome: map[string]outcome{}, Reason: map[string]string{}}
	for _, suite := range rep {
		for _, s := range suite.SpecReports {
			if s.LeafNodeType != "It" {
				if s.State != "passed" && s.State != "skipped" {
					name := "[" + s.LeafNodeType + "]"
					r.Outcome[name] = failed
					r.Reason[name] = s.State + ": " + firstLine(s.Failure.Message)
				}
				continue
			}
			name := strings.Join(append(append([]string(nil), s.ContainerHierarchyTexts...), s.LeafNodeText), " ")
			switch s.State {
			case "passed":
				r.Outcome[name] = passed
			case "skipped", "pending":
				r.Outcome[name] = skipped
				if m := firstLine(s.Failure.Message); m != "" {
					r.Reason[name] = m
				}
			default: // failed, panicked, timedout, interrupted, aborted
				r.Outcome[name] = failed
				r.Reason[name] = s.State + ": " + firstLine(s.Failure.Message)
			}
		}
	}
	return r, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// specs lists every spec name of rs, sorted.
func specs(rs []*result) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range rs {
		for name := range r.Outcome {
			if !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		}
	}
	sort.Strings(out)
	return out
}

// with lists r's specs of outcome o, sorted.
func (r *result) with(o outcome) []string {
	var out []string
	for name, got := range r.Outcome {
		if got == o {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// printTable prints one line per spec with each daemon's outcome, with
// the message of each failure and of each skip at run time (Skip in the
// spec: a feature the host lacks). Specs no daemon ran (skipped by name,
// critest's benchmarks, specs outside -focus) are only counted here;
// printSkips lists the first two.
func printTable(w io.Writer, rs []*result) {
	fmt.Fprintf(w, "\n== outcome per spec (%s)\n", daemonNames(rs))
	notRun := 0
	for _, name := range specs(rs) {
		if notRunAnywhere(rs, name) {
			notRun++
			continue
		}
		var cols []string
		for _, r := range rs {
			cols = append(cols, fmt.Sprintf("%-7s", or(string(r.Outcome[name]), "-")))
		}
		fmt.Fprintf(w, "  %s  %s\n", strings.Join(cols, " "), name)
		for _, r := range rs {
			if why := r.Reason[name]; why != "" && r.Outcome[name] != passed {
				fmt.Fprintf(w, "      %s: %s\n", r.Daemon, why)
			}
		}
	}
	fmt.Fprintf(w, "  (%d specs run by no daemon: skipped by name, benchmarks, or outside -focus)\n", notRun)
}

// notRunAnywhere reports whether every daemon skipped name without
// running it: by a -skip or -focus filter, which leaves no message.
func notRunAnywhere(rs []*result, name string) bool {
	for _, r := range rs {
		if r.Outcome[name] != skipped || r.Reason[name] != "" {
			return false
		}
	}
	return true
}

// printSkips prints each skip of ours with its reason and how many specs
// it covers, and the benchmarks critest skips itself. A skip that covers
// no spec, or a spec that some daemon ran anyway, is said so.
func printSkips(w io.Writer, rs []*result, skips []skip) {
	fmt.Fprintf(w, "\n== skipped by name, for every daemon (%d skips)\n", len(skips))
	all := specs(rs)
	for _, s := range skips {
		n := 0
		for _, name := range all {
			if s.matches(name) {
				n++
				if !notRunAnywhere(rs, name) {
					fmt.Fprintf(w, "  RUN DESPITE THE SKIP: %s\n", name)
				}
			}
		}
		fmt.Fprintf(w, "  %s (%d specs)\n      %s\n", s.spec, n, s.why)
	}
	bench := 0
	for _, name := range all {
		if isBenchmark(name) && notRunAnywhere(rs, name) {
			bench++
		}
	}
	fmt.Fprintf(w, "  and %d benchmark specs: critest runs them only with -benchmark\n", bench)
}

// isBenchmark reports whether name is one of critest's benchmarks, which
// it skips itself unless run with -benchmark (its -ginkgo.skip "benchmark").
func isBenchmark(name string) bool { return strings.Contains(name, "benchmark") }

// printSummary prints r's counts.
func (r *result) printSummary(w io.Writer) {
	fmt.Fprintf(w, "== %s: %d passed, %d failed, %d skipped (%s)\n", r.Daemon,
		len(r.with(passed)), len(r.with(failed)), len(r.with(skipped)), r.Duration.Round(time.Second))
}

// compare prints the specs stock passes and ours does not (lost) and the
// other way round, and returns lost.
func compare(w io.Writer, stock, ours *result) (lost []string) {
	var gained []string
	for _, name := range stock.with(passed) {
		if ours.Outcome[name] != passed {
			lost = append(lost, name)
		}
	}
	for _, name := range ours.with(passed) {
		if stock.Outcome[name] != passed {
			gained = append(gained, name)
		}
	}
	fmt.Fprintf(w, "\n== passed by stock, not by ours: %d\n", len(lost))
	for _, name := range lost {
		fmt.Fprintf(w, "  %s\n      ours: %s %s\n", name, or(string(ours.Outcome[name]), "not run"), ours.Reason[name])
	}
	fmt.Fprintf(w, "== passed by ours, not by stock: %d\n", len(gained))
	for _, name := range gained {
		fmt.Fprintf(w, "  %s\n      stock: %s %s\n", name, or(string(stock.Outcome[name]), "not run"), stock.Reason[name])
	}
	if len(lost) > 0 {
		fmt.Fprintln(w, "FAIL: ours does not pass every spec stock passes")
	} else {
		fmt.Fprintf(w, "ok: ours passes every spec stock passes (stock %d, ours %d)\n", len(stock.with(passed)), len(ours.with(passed)))
	}
	return lost
}

func daemonNames(rs []*result) string {
	var names []string
	for _, r := range rs {
		names = append(names, r.Daemon)
	}
	return strings.Join(names, " | ")
}

func or(s, dflt string) string {
	if s == "" {
		return dflt
	}
	return s
}

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// result is one daemon's specs by outcome, from ginkgo's JSON report.
type result struct {
	Passed, Failed, Skipped []string
	Reasons                 map[string]string // failed or skipped spec → first line of its message
	Duration                time.Duration
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

func readReport(path string) (*result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("no critest report: %w", err)
	}
	var rep ginkgoReport
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("critest report %s: %w", path, err)
	}
	r := &result{Reasons: map[string]string{}}
	for _, suite := range rep {
		for _, s := range suite.SpecReports {
			if s.LeafNodeType != "It" {
				if s.State != "passed" && s.State != "skipped" { // a failed BeforeSuite fails everything
					r.Failed = append(r.Failed, "["+s.LeafNodeType+"]")
					r.Reasons["["+s.LeafNodeType+"]"] = firstLine(s.Failure.Message)
				}
				continue
			}
			name := strings.TrimSpace(strings.Join(append(s.ContainerHierarchyTexts, s.LeafNodeText), " "))
			switch s.State {
			case "passed":
				r.Passed = append(r.Passed, name)
			case "skipped", "pending":
				r.Skipped = append(r.Skipped, name)
				if m := firstLine(s.Failure.Message); m != "" {
					r.Reasons[name] = m
				}
			default: // failed, panicked, timedout, interrupted, aborted
				r.Failed = append(r.Failed, name)
				r.Reasons[name] = s.State + ": " + firstLine(s.Failure.Message)
			}
		}
	}
	sort.Strings(r.Passed)
	sort.Strings(r.Failed)
	sort.Strings(r.Skipped)
	return r, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

func (r *result) print(name string) {
	fmt.Printf("\n== %s: %d passed, %d failed, %d skipped (%s)\n", name,
		len(r.Passed), len(r.Failed), len(r.Skipped), r.Duration.Round(time.Second))
	for _, group := range []struct {
		label string
		specs []string
	}{{"passed", r.Passed}, {"failed", r.Failed}, {"skipped", r.Skipped}} {
		for _, s := range group.specs {
			if why := r.Reasons[s]; why != "" {
				fmt.Printf("  %-7s %s\n          (%s)\n", group.label, s, why)
			} else {
				fmt.Printf("  %-7s %s\n", group.label, s)
			}
		}
	}
}

// compare prints the set differences and returns 1 if ours fails (or does
// not pass) a spec that stock passes.
func compare(stock, ours *result) int {
	oursPassed := set(ours.Passed)
	stockPassed := set(stock.Passed)
	var lost, gained []string
	for _, s := range stock.Passed {
		if !oursPassed[s] {
			lost = append(lost, s)
		}
	}
	for _, s := range ours.Passed {
		if !stockPassed[s] {
			gained = append(gained, s)
		}
	}
	fmt.Printf("\n== passed by stock, not by ours: %d\n", len(lost))
	for _, s := range lost {
		fmt.Printf("  %s\n          (ours: %s)\n", s, or(ours.Reasons[s], "not run"))
	}
	fmt.Printf("== passed by ours, not by stock: %d\n", len(gained))
	for _, s := range gained {
		fmt.Printf("  %s\n          (stock: %s)\n", s, or(stock.Reasons[s], "not run"))
	}
	if len(lost) > 0 {
		fmt.Println("FAIL: ours does not pass every spec stock passes")
		return 1
	}
	fmt.Printf("ok: ours passes every spec stock passes (%d passed, %d failed)\n", len(ours.Passed), len(ours.Failed))
	return 0
}

func set(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

func or(s, dflt string) string {
	if s == "" {
		return dflt
	}
	return s
}

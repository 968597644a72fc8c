package operator

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shimkeeper/shimkeeper/lifecycle"
	"github.com/shimkeeper/shimkeeper/loader"
)

// writeJSON writes the reports as one indented JSON array.
func writeJSON(w io.Writer, rs []PluginReport) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rs)
}

// writePlan writes a plan as a table, one row per bundle, then per
// plugin the totals, the work dirs that would be removed and any warning.
func writePlan(w io.Writer, rs []PluginReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PLUGIN\tNAMESPACE\tID\tLIVENESS\tTASK\tACTION\tREASON")
	for _, r := range rs {
		for _, e := range sortedEntries(r.Entries) {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Plugin, e.Namespace, e.ID, liveness(e), task(e), e.Action, e.Reason)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rs {
		fmt.Fprintf(w, "\n%s: %s: %d entries%s\n", r.Plugin, r.StateDir, len(r.Entries), totals(r.Totals))
		if r.Rebooted {
			fmt.Fprintf(w, "%s: the boot id differs from the last recovery's record (now %s); noted only: every shim is probed as always\n", r.Plugin, r.BootID)
		}
		if len(r.WorkDirsRemoved) > 0 {
			fmt.Fprintf(w, "%s: work dirs that would be removed (no bundle): %s\n", r.Plugin, strings.Join(r.WorkDirsRemoved, " "))
		}
		for _, warn := range r.Warnings {
			fmt.Fprintf(w, "%s: warning: %s\n", r.Plugin, warn)
		}
	}
	return nil
}

// writeReports writes the last reports: per plugin a summary, then one
// row per bundle with the outcome.
func writeReports(w io.Writer, rs []PluginReport) error {
	for i, r := range rs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if r.Err != "" {
			fmt.Fprintf(w, "%s: no report in %s: %s\n", r.Plugin, r.StateDir, r.Err)
			continue
		}
		finished := "still running (unresponsive shims are re-probed after that)"
		if !r.Finished.IsZero() {
			finished = r.Finished.Format(time.RFC3339Nano)
		}
		fmt.Fprintf(w, "%s: %s\n", r.Plugin, r.StateDir)
		judged := "not yet"
		if r.Judged > 0 {
			judged = "after " + time.Duration(r.Judged).String()
		}
		fmt.Fprintf(w, "  started %s, held the daemon %s, every shim judged %s, background finished %s\n",
			r.StartedAt.Format(time.RFC3339Nano), time.Duration(r.Ready), judged, finished)
		fmt.Fprintf(w, "  boot id %s, differs from the last record %t (noted, not evidence), %d entries%s%s\n", r.BootID, r.Rebooted, len(r.Entries), totals(r.Totals), outcomes(r.Outcomes))
		if len(r.WorkDirsRemoved) > 0 {
			fmt.Fprintf(w, "  work dirs removed: %s\n", strings.Join(r.WorkDirsRemoved, " "))
		}
		for _, e := range r.Errors {
			fmt.Fprintf(w, "  ERROR: %s\n", e)
		}
		for _, warn := range r.Warnings {
			fmt.Fprintf(w, "  warning: %s\n", warn)
		}
		if len(r.Entries) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAMESPACE\tID\tLIVENESS\tTASK\tACTION\tOUTCOME\tDURATION\tREASON")
		for _, e := range sortedEntries(r.Entries) {
			reason := e.Reason
			if e.Error != "" {
				reason += " (error: " + oneLine(e.Error) + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Namespace, e.ID, liveness(e), task(e), e.Action, e.Outcome,
				time.Duration(e.Duration).Round(time.Microsecond), reason)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func sortedEntries(es []*loader.Entry) []*loader.Entry {
	out := append([]*loader.Entry(nil), es...)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// liveness is "-" for entries that are not bundles or were not probed.
func liveness(e *loader.Entry) string {
	if e.Kind != lifecycle.KindDir || !e.ValidName || e.Empty {
		return "-"
	}
	return e.Liveness.String()
}

// task is "-" unless a live shim was asked.
func task(e *loader.Entry) string {
	if e.Liveness != lifecycle.LivenessAlive || e.Kind != lifecycle.KindDir {
		return "-"
	}
	return e.Task.String()
}

// totals is ": adopt=1 keep=2", non-zero counts in action order.
func totals(m map[string]int) string {
	var b strings.Builder
	for _, a := range lifecycle.Actions {
		if n := m[a.String()]; n > 0 {
			fmt.Fprintf(&b, " %s=%d", a, n)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return ":" + b.String()
}

// outcomes is "; outcomes: done=3 probing=1", sorted by name.
func outcomes(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k, n := range m {
		if n > 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return "; outcomes: " + strings.Join(parts, " ")
}

// oneLine joins the lines of a message, so every error is one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

package loader

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/lifecycle"
)

// A report written by a pass reads back as the same values: integration
// tests and operators read it with ReadReport.
func TestReportRoundTrip(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	rp := &report{path: filepath.Join(dir, layout.ReportFile)}
	obs := lifecycle.Observation{
		Namespace: "default", ID: "c1", Kind: lifecycle.KindDir, ValidName: true, Joined: true,
		Runtime: lifecycle.PresenceAbsent, Container: lifecycle.PresenceFound, Sandbox: lifecycle.PresenceUnknown,
		Rebooted: true, Liveness: lifecycle.LivenessGone, Task: lifecycle.TaskExited,
	}
	rp.update(func(r *Report) {
		r.StateDir, r.RootDir, r.StartedAt, r.BootID, r.Rebooted = dir, dir+"/root", start, "boot-1", true
		r.Ready = Millis(1234567 * time.Nanosecond) // 1.234 ms: fractional
		r.Finished = start.Add(time.Second)
		r.Entries = []*Entry{
			{Observation: obs, Action: lifecycle.ActionCleanupDead, Reason: "shim gone", Outcome: lifecycle.OutcomeDone, Duration: Millis(3 * time.Millisecond / 2)},
			{Observation: lifecycle.Observation{Namespace: "default", ID: "x", Kind: lifecycle.KindSymlink}, Action: lifecycle.ActionIgnore, Reason: "not a directory: symlink", Outcome: lifecycle.OutcomeDone, Notes: []string{"n"}},
		}
		r.WorkDirsRemoved = []string{"default/old"}
		r.Warnings = []string{"w"}
	})
	if err := rp.write(); err != nil {
		t.Fatal(err)
	}
	got, err := ReadReport(dir)
	if err != nil {
		t.Fatalf("ReadReport: %v", err)
	}
	want := rp.snapshot()
	// Durations are kept to the microsecond.
	want.Ready = Millis(time.Duration(want.Ready).Truncate(time.Microsecond))
	for _, e := range want.Entries {
		e.Duration = Millis(time.Duration(e.Duration).Truncate(time.Microsecond))
	}
	if !reflect.DeepEqual(*got, want) {
		a, _ := json.MarshalIndent(got, "", " ")
		b, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("read back:\n%s\nwant:\n%s", a, b)
	}
	if got.Totals[lifecycle.ActionCleanupDead.String()] != 1 || got.Totals[lifecycle.ActionAdopt.String()] != 0 || len(got.Totals) != len(lifecycle.Actions) {
		t.Errorf("totals %v", got.Totals)
	}
	if got.Outcomes[lifecycle.OutcomeDone] != 2 {
		t.Errorf("outcomes %v", got.Outcomes)
	}
}

func TestMillisJSON(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		json string
	}{
		{0, "0"},
		{time.Millisecond, "1"},
		{1500 * time.Microsecond, "1.5"},
		{1234567 * time.Nanosecond, "1.234"}, // below a microsecond is dropped
		{2 * time.Hour, "7200000"},
	} {
		b, err := json.Marshal(Millis(tc.d))
		if err != nil || string(b) != tc.json {
			t.Errorf("Marshal(%v) = %s, %v; want %s", tc.d, b, err, tc.json)
		}
		var m Millis
		if err := json.Unmarshal(b, &m); err != nil || time.Duration(m) != tc.d.Truncate(time.Microsecond) {
			t.Errorf("Unmarshal(%s) = %v, %v", b, time.Duration(m), err)
		}
	}
	var m Millis
	if err := json.Unmarshal([]byte(`"1ms"`), &m); err == nil {
		t.Error("Unmarshal accepted a string")
	}
}

func TestReadReportMissing(t *testing.T) {
	if _, err := ReadReport(t.TempDir()); !os.IsNotExist(err) {
		t.Errorf("ReadReport of an empty dir: %v", err)
	}
}

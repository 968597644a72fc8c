package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/loader"
)

func TestBundleWatch(t *testing.T) {
	st := t.TempDir()
	dir := layout.PluginDir(st, layout.TaskPluginDir)
	ns := filepath.Join(dir, "skbench")
	for _, id := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(ns, id), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w := newBundleWatch(st)
	w.start = time.Now().Add(-time.Second) // so that a change is seen at a time > 0
	for _, c := range []struct {
		name   string
		change func() error
		seen   bool
	}{
		{"nothing", func() error { return nil }, false},
		// A file written inside a bundle is no change of the set.
		{"file in a bundle", func() error { return os.WriteFile(filepath.Join(ns, "a", "x"), nil, 0o644) }, false},
		// Stock's atomic delete: rename to a dot-name, then remove.
		{"rename to a dot-name", func() error { return os.Rename(filepath.Join(ns, "b"), filepath.Join(ns, ".b")) }, true},
		{"dot-name removed", func() error { return os.Remove(filepath.Join(ns, ".b")) }, true},
		{"bundle made", func() error { return os.Mkdir(filepath.Join(ns, "c"), 0o755) }, true},
		{"namespace made", func() error { return os.Mkdir(filepath.Join(dir, "other"), 0o755) }, true},
		{"bundle in the new namespace", func() error { return os.Mkdir(filepath.Join(dir, "other", "d"), 0o755) }, true},
	} {
		w.changed = 0
		if err := c.change(); err != nil {
			t.Fatal(err)
		}
		w.sample()
		if seen := w.changed > 0; seen != c.seen {
			t.Errorf("%s: change seen %v, want %v", c.name, seen, c.seen)
		}
	}
}

func TestReportWatch(t *testing.T) {
	st := t.TempDir()
	path := layout.ReportPath(layout.PluginDir(st, layout.TaskPluginDir))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	write := func(started, finished time.Time) {
		t.Helper()
		data, err := json.Marshal(loader.Report{StartedAt: started, Finished: finished})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rw := newReportWatch(st, since)
	if _, ok := rw.finished(); ok {
		t.Fatal("finished without a report")
	}
	// A previous run's report (the runc and CRI cases keep the state).
	write(since.Add(-time.Minute), since.Add(-time.Second))
	if _, ok := rw.finished(); ok {
		t.Fatal("a previous run's report taken as this run's")
	}
	write(since.Add(time.Millisecond), time.Time{})
	if _, ok := rw.finished(); ok {
		t.Fatal("finished while the report has no finished_at")
	}
	fin := since.Add(2 * time.Second)
	write(since.Add(time.Millisecond), fin)
	if got, ok := rw.finished(); !ok || !got.Equal(fin) {
		t.Fatalf("finished = %v, %v; want %v", got, ok, fin)
	}
}

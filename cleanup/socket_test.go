package cleanup

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/shimkeeper/shimkeeper/internal/testshim"
	"github.com/shimkeeper/shimkeeper/proc"
)

func TestRemoveSocket(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "s")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{dir, filepath.Join(dir, "sub"), filepath.Join(outside, "in")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(outside, "in"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "own"), filepath.Join(dir, "sub", "own"), filepath.Join(dir, "canary"), filepath.Join(outside, "canary"), filepath.Join(outside, "in", "x")} {
		testshim.StaleSocket(t, p)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		path    string
		outside bool // refused as leading outside
		err     bool
		gone    string
	}{
		{path: filepath.Join(dir, "own"), gone: filepath.Join(dir, "own")},
		{path: filepath.Join(dir, "sub", "own"), gone: filepath.Join(dir, "sub", "own")},
		{path: filepath.Join(dir, "missing")},
		{path: dir + "/link/../canary", outside: true},
		{path: dir + "/sub/../canary", outside: true},
		{path: filepath.Join(dir, "link", "x"), outside: true},
		{path: filepath.Join(outside, "canary"), outside: true},
		{path: filepath.Join(dir, "file"), err: true},
	} {
		err := RemoveSocket(dir, tc.path)
		switch {
		case tc.outside && !errors.Is(err, ErrOutside):
			t.Errorf("RemoveSocket(%q) = %v, want ErrOutside", tc.path, err)
		case tc.err && err == nil:
			t.Errorf("RemoveSocket(%q) removed a non-socket", tc.path)
		case !tc.outside && !tc.err && err != nil:
			t.Errorf("RemoveSocket(%q) = %v", tc.path, err)
		}
		if tc.gone != "" {
			if _, err := os.Lstat(tc.gone); err == nil {
				t.Errorf("%s not removed", tc.gone)
			}
		}
	}
	for _, p := range []string{filepath.Join(dir, "canary"), filepath.Join(outside, "canary"), filepath.Join(outside, "in", "x"), filepath.Join(dir, "file"), filepath.Join(dir, "link")} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("canary %s: %v", p, err)
		}
	}
}

func TestKillStarted(t *testing.T) {
	cmd := exec.Command("/bin/sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	waited := make(chan struct{})
	go func() { _, _ = cmd.Process.Wait(); close(waited) }()
	st, err := proc.Stat(proc.Root, cmd.Process.Pid)
	if err != nil || !st.Exists {
		t.Fatalf("stat: %+v %v", st, err)
	}
	// Another start time: not the process meant; left alone.
	if err := KillStarted(cmd.Process.Pid, st.StartTicks+100, time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waited:
		t.Fatalf("killed a process whose start time did not match")
	case <-time.After(100 * time.Millisecond):
	}
	if err := KillStarted(cmd.Process.Pid, st.StartTicks, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatalf("process not killed")
	}
	if err := KillStarted(cmd.Process.Pid, st.StartTicks, time.Second); err != nil {
		t.Fatalf("a gone process: %v", err)
	}
}

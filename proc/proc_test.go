package proc

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestShimInstance(t *testing.T) {
	for _, tc := range []struct {
		cmd    string
		ns, id string
		ok     bool
	}{
		{"shim\x00-namespace\x00k8s.io\x00-id\x00abc\x00-address\x00/run/c.sock\x00", "k8s.io", "abc", true},
		{"shim\x00--namespace=default\x00--id=c1\x00", "default", "c1", true},
		{"shim\x00-namespace\x00default\x00", "default", "", false},
		{"sleep\x00100\x00", "", "", false},
		{"shim\x00-id\x00", "", "", false},
	} {
		ns, id, ok := ShimInstance([]byte(tc.cmd))
		if ns != tc.ns || id != tc.id || ok != tc.ok {
			t.Errorf("ShimInstance(%q) = %q, %q, %v; want %q, %q, %v", tc.cmd, ns, id, ok, tc.ns, tc.id, tc.ok)
		}
	}
}

// A listener keeps its bound name in /proc/net/unix after its file is
// removed, and the process holding it is found through its fds.
func TestListeningAfterUnlink(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	x, err := Snapshot(Root)
	if err != nil {
		t.Fatal(err)
	}
	if !x.Listening("unix://" + path) {
		t.Fatalf("listener on removed %s not found", path)
	}
	if x.Listening("unix://" + path + ".other") {
		t.Fatalf("listener found for a path nobody bound")
	}
	pids, err := x.ListenerPIDs(Root, path)
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) != 1 || pids[0] != os.Getpid() {
		t.Fatalf("ListenerPIDs = %v, want [%d]", pids, os.Getpid())
	}
}

func TestShimPIDsAndStat(t *testing.T) {
	// A namespace of this run's own: another run of this test (another
	// checkout on the host) must not be counted.
	ns := fmt.Sprintf("ns-%d", os.Getpid())
	cmd := exec.Command("/bin/sh", "-c", "sleep 30", "-namespace", ns, "-id", "c1")
	// sh -c CMD NAME ARGS...: the flags stay in sh's argv.
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() }()
	before := NowTicks()
	var pids []int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		x, err := Snapshot(Root)
		if err != nil {
			t.Fatal(err)
		}
		if pids = x.ShimPIDs(ns, "other", "c1"); len(pids) > 0 {
			break
		}
	}
	if len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Fatalf("ShimPIDs = %v, want [%d]", pids, cmd.Process.Pid)
	}
	st, err := Stat(Root, cmd.Process.Pid)
	if err != nil || !st.Exists || st.Zombie || st.StartTicks > before+1 {
		t.Fatalf("Stat = %+v, %v; want a live process started by tick %d", st, err, before)
	}
	_ = cmd.Process.Kill()
	_, _ = cmd.Process.Wait()
	if st, err := Stat(Root, cmd.Process.Pid); err != nil || st.Exists {
		t.Fatalf("Stat of a reaped process = %+v, %v", st, err)
	}
}

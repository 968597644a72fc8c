package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestRestartShims checks the test's pkill and pidof: they act on the
// process in the pid file only, and pidof leaves the marker the restart
// loop waits for once that process is gone.
func TestRestartShims(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "daemon.pid")
	if code := shimPidof(pidFile); code != 1 {
		t.Errorf("pidof without a pid file: %d, want 1", code)
	}
	if code := shimPkill([]string{"-15", "-x", "^containerd$"}, pidFile); code != 1 {
		t.Errorf("pkill without a pid file: %d, want 1 (nothing matched)", code)
	}
	_ = os.Remove(pidFile + goneMarker)

	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep:", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	if code := shimPidof(pidFile); code != 0 {
		t.Errorf("pidof of a live process: %d, want 0", code)
	}
	if code := shimPkill([]string{"-" + strconv.Itoa(int(syscall.SIGTERM)), "-x", "^containerd$"}, pidFile); code != 0 {
		t.Errorf("pkill: %d, want 0", code)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("pkill did not stop the process in the pid file")
	}
	if code := shimPidof(pidFile); code != 1 {
		t.Errorf("pidof of a gone process: %d, want 1", code)
	}
	if _, err := os.Stat(pidFile + goneMarker); err != nil {
		t.Errorf("no marker after pidof found the process gone: %v", err)
	}
}

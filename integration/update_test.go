//go:build integration

package integration

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestTaskUpdate changes a running task's memory limit (the Update RPC
// through the runtime and shim) and checks the result with ctr task metrics
// and the cgroup.
//
// ctr v2.4.2 has no `task update` command, so the update itself is sent
// with the Go client; every assertion still goes through ctr or the kernel.
func TestTaskUpdate(t *testing.T) {
	t.Parallel()
	d := newDaemon(t)
	const (
		id       = "c1"
		initial  = 128 << 20
		updated  = 64 << 20
		limitKey = "memory.limit_in_bytes"
	)
	r := d.ctr(d.runArgs([]string{"-d", "--memory-limit", strconv.Itoa(initial)}, id, "/bin/sleep", "3600")...)
	if r.ExitCode != 0 {
		t.Fatalf("%s", r)
	}
	d.waitTask(d.NS, id, "RUNNING")
	if got := parseMetrics(d.mustCtr("task", "metrics", id))[limitKey]; got != strconv.Itoa(initial) {
		t.Fatalf("%s = %s before update, want %d", limitKey, got, initial)
	}

	if err := updateMemoryLimit(d, d.NS, id, updated); err != nil {
		t.Fatalf("update: %v", err)
	}
	if got := parseMetrics(d.mustCtr("task", "metrics", id))[limitKey]; got != strconv.Itoa(updated) {
		t.Errorf("%s = %s after update, want %d", limitKey, got, updated)
	}
	if isDir(filepath.Join(cgroupRoot, "memory")) { // cgroup v1
		b, err := os.ReadFile(filepath.Join(cgroupRoot, "memory", d.NS, id, limitKey))
		if err != nil {
			t.Fatalf("container cgroup: %v", err)
		}
		if got := strings.TrimSpace(string(b)); got != strconv.Itoa(updated) {
			t.Errorf("cgroup %s = %s after update, want %d", limitKey, got, updated)
		}
	}
	if got := d.tasks(d.NS)[id]; got.Status != "RUNNING" {
		t.Errorf("task is %s after update, want RUNNING", got.Status)
	}
	d.removeContainer(d.NS, id)
	assertNoLeaks(t, d)
}

// updateMemoryLimit sends a task Update with a new memory limit.
func updateMemoryLimit(d *Daemon, ns, id string, limit int64) error {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 30*time.Second)
	defer cancel()
	c, err := client.New(d.Address, client.WithDefaultNamespace(ns))
	if err != nil {
		return err
	}
	defer c.Close()
	container, err := c.LoadContainer(ctx, id)
	if err != nil {
		return err
	}
	tk, err := container.Task(ctx, nil)
	if err != nil {
		return err
	}
	return tk.Update(ctx, client.WithResources(&specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &limit},
	}))
}

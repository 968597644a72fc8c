package main

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	task "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"

	"github.com/shimkeeper/shimkeeper/bench/synthctl"
)

// TestModes checks what each synthetic shim answers: the benchmark's
// post-state checks rely on it.
func TestModes(t *testing.T) {
	dir := t.TempDir()
	s := &server{pid: 4242, shims: map[string]*instance{}, stats: map[string]int64{}}
	mk := func(id, mode string, exit uint32) synthctl.Entry {
		b := filepath.Join(dir, id)
		if err := os.Mkdir(b, 0o700); err != nil {
			t.Fatal(err)
		}
		return synthctl.Entry{NS: "ns", ID: id, Addr: "unix://" + filepath.Join(dir, id+".sock"), Bundle: b, Mode: mode, Exit: exit}
	}
	shims := []synthctl.Entry{mk("live", ModeLive, 0), mk("hung", ModeHung, 0), mk("dead", ModeDead, 0), mk("leak", ModeLeaked, 0), mk("exit", ModeExited, 3)}
	if r := s.do(synthctl.Request{Op: "reset", Shims: shims}); r.Error != "" || len(r.Errors) > 0 {
		t.Fatalf("reset: %+v", r)
	}
	t.Cleanup(func() { s.do(synthctl.Request{Op: "reset"}) })

	client := func(id string) task.TTRPCTaskService {
		c, err := net.Dial("unix", filepath.Join(dir, id+".sock"))
		if err != nil {
			t.Fatalf("dial %s: %v", id, err)
		}
		tc := ttrpc.NewClient(c)
		t.Cleanup(func() { tc.Close() })
		return task.NewTTRPCTaskClient(tc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// live: a runc shim with one running process.
	live := client("live")
	if r, err := live.Connect(ctx, &task.ConnectRequest{ID: "live"}); err != nil || r.TaskPid != 4242 {
		t.Fatalf("live Connect: %+v, %v", r, err)
	}
	if r, err := live.State(ctx, &task.StateRequest{ID: "live"}); err != nil || r.Status != tasktypes.Status_RUNNING || r.Pid != 4242 {
		t.Fatalf("live State: %+v, %v", r, err)
	}
	if r, err := live.Pids(ctx, &task.PidsRequest{ID: "live"}); err != nil || len(r.Processes) != 1 {
		t.Fatalf("live Pids: %+v, %v", r, err)
	}
	if _, err := live.State(ctx, &task.StateRequest{ID: "other"}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Fatalf("live State of another id: %v, want NotFound", err)
	}

	// leaked: no task; Shutdown makes it exit.
	leak := client("leak")
	if r, err := leak.Connect(ctx, &task.ConnectRequest{ID: "leak"}); err != nil || r.TaskPid != 0 {
		t.Fatalf("leaked Connect: %+v, %v", r, err)
	}
	if _, err := leak.State(ctx, &task.StateRequest{ID: "leak"}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Fatalf("leaked State: %v, want NotFound", err)
	}
	if r, err := leak.Pids(ctx, &task.PidsRequest{ID: "leak"}); err != nil || len(r.Processes) != 0 {
		t.Fatalf("leaked Pids: %+v, %v", r, err)
	}
	if _, err := leak.Delete(ctx, &task.DeleteRequest{ID: "leak"}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Fatalf("leaked Delete: %v, want NotFound", err)
	}
	if _, err := leak.Shutdown(ctx, &task.ShutdownRequest{ID: "leak"}); err != nil {
		t.Fatalf("leaked Shutdown: %v", err)
	}
	waitRefused(t, filepath.Join(dir, "leak.sock"))

	// exited: STOPPED with its status, Delete returns it.
	exit := client("exit")
	if r, err := exit.State(ctx, &task.StateRequest{ID: "exit"}); err != nil || r.Status != tasktypes.Status_STOPPED || r.ExitStatus != 3 {
		t.Fatalf("exited State: %+v, %v", r, err)
	}
	if r, err := exit.Wait(ctx, &task.WaitRequest{ID: "exit"}); err != nil || r.ExitStatus != 3 {
		t.Fatalf("exited Wait: %+v, %v", r, err)
	}
	if r, err := exit.Delete(ctx, &task.DeleteRequest{ID: "exit"}); err != nil || r.ExitStatus != 3 {
		t.Fatalf("exited Delete: %+v, %v", r, err)
	}
	if _, err := exit.State(ctx, &task.StateRequest{ID: "exit"}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Fatalf("State after Delete: %v, want NotFound", err)
	}

	// hung: accepts, never answers.
	hctx, hcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer hcancel()
	if _, err := client("hung").Connect(hctx, &task.ConnectRequest{ID: "hung"}); err == nil {
		t.Fatal("hung Connect answered")
	}

	// dead: a socket file nobody listens on.
	if fi, err := os.Lstat(filepath.Join(dir, "dead.sock")); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("dead socket file: %v, %v", fi, err)
	}
	if _, err := net.Dial("unix", filepath.Join(dir, "dead.sock")); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial dead: %v, want ECONNREFUSED", err)
	}

	// `shim delete` reports the exited status, 137 otherwise.
	if r := s.do(synthctl.Request{Op: "exit", NS: "ns", ID: "exit"}); r.Exit != 3 {
		t.Fatalf("exit status of exited shim: %d", r.Exit)
	}
	if r := s.do(synthctl.Request{Op: "exit", NS: "ns", ID: "dead"}); r.Exit != ExitKilled {
		t.Fatalf("exit status of dead shim: %d", r.Exit)
	}
	st := s.do(synthctl.Request{Op: "stats"}).Stats
	if st["exec.delete.exited"] != 1 || st["exec.delete.dead"] != 1 || st["live.Connect"] != 1 || st["hung.accept"] != 1 {
		t.Fatalf("stats: %v", st)
	}
}

func waitRefused(t *testing.T, path string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		c, err := net.Dial("unix", path)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s still accepts after Shutdown", path)
}

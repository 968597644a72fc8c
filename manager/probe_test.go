package manager

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/containerd/containerd/v2/core/containers"

	"github.com/shimkeeper/shimkeeper/bootstrap"
	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/lifecycle"
)

func TestShimAnswered(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{status.Error(codes.NotFound, "no task"), true},
		{status.Error(codes.Unknown, "boom"), true},
		{status.Error(codes.Unimplemented, "service containerd.task.v3.Task"), true},
		{status.Error(codes.Unavailable, "connection refused"), false},
		{status.Error(codes.DeadlineExceeded, "deadline"), false},
		{status.Error(codes.Canceled, "canceled"), false},
		{context.DeadlineExceeded, false},
		{ttrpc.ErrClosed, false},
	} {
		if got := shimAnswered(tc.err); got != tc.want {
			t.Errorf("shimAnswered(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// A shim that answers State with an error of its own is alive; what its
// task is stays unknown.
func TestProbeStateError(t *testing.T) {
	r := newRig(t, 5*time.Second)
	f := newFakeTask()
	f.stateErr = errors.New("runc state: boom")
	srv := serveV3(t, f)
	r.writeBootstrap(t, 3, srv.addr)
	params, _, err := bootstrap.Read(r.bundle.Path)
	if err != nil {
		t.Fatal(err)
	}
	p := r.m.Probe(nsCtx(), r.bundle, r.runtime.path, params)
	if p.Shim != nil {
		defer p.Shim.Abandon()
	}
	if p.Liveness != lifecycle.LivenessAlive || p.Task != lifecycle.TaskUnknown || p.Shim == nil {
		t.Fatalf("probe = liveness %v task %v shim %v (%v); want alive, task unknown", p.Liveness, p.Task, p.Shim, p.Err)
	}
}

// RuntimeName reads shim-binary-path only if it is a regular file: a FIFO
// would block the scan for ever, a symlink would lead out of the bundle.
// Either is an error that says so, at once; a missing file falls back to
// the container record.
func TestRuntimeNameReadsOnlyRegularFiles(t *testing.T) {
	r := newRig(t, 5*time.Second)
	m, b := r.m, r.bundle
	sbp := filepath.Join(b.Path, layout.FileBinaryPath)
	rec := containers.Container{Runtime: containers.RuntimeInfo{Name: "io.containerd.runc.v2"}}
	looked := 0
	record := func() (containers.Container, error) { looked++; return rec, nil }

	if name, found, err := m.RuntimeName(b, record); err != nil || !found || name != "io.containerd.runc.v2" {
		t.Fatalf("no file: %q %v %v, want the record's runtime", name, found, err)
	}
	if err := os.WriteFile(sbp, []byte("/usr/bin/containerd-shim-runc-v2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if name, found, err := m.RuntimeName(b, record); err != nil || !found || name != "/usr/bin/containerd-shim-runc-v2" {
		t.Fatalf("file: %q %v %v", name, found, err)
	}
	if looked != 1 {
		t.Fatalf("container record looked up %d times, want once (only with no file)", looked)
	}
	os.Remove(sbp)
	if err := syscall.Mkfifo(sbp, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, _, err := m.RuntimeName(b, record); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, layout.ErrNotRegular) {
			t.Fatalf("FIFO: %v, want ErrNotRegular", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RuntimeName blocked on a FIFO shim-binary-path")
	}
	os.Remove(sbp)
	if err := os.Symlink("/etc/hostname", sbp); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.RuntimeName(b, record); !errors.Is(err, layout.ErrNotRegular) {
		t.Fatalf("symlink: %v, want ErrNotRegular", err)
	}
}

package manager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	task "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc/status"

	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	ptypes "github.com/containerd/containerd/v2/pkg/protobuf/types"

	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/taskapi"
)

// rootfsDiffTar is written next to a checkpoint by CRIU tooling.
const rootfsDiffTar = "rootfs-diff.tar"

// Task is a runtime.Task served by a shim.
type Task struct {
	*Shim
	task taskapi.Client
}

var _ runtime.Task = (*Task)(nil)

func newTask(s *Shim) (*Task, error) {
	tc, err := s.TaskClient()
	if err != nil {
		return nil, err
	}
	return &Task{Shim: s, task: tc}, nil
}

// native converts a shim error to containerd's error classes. A
// placeholder's error (not from a shim: no grpc status) is Unavailable
// already, and keeps that class: a client must never take a task that may
// be alive for one that is gone, nor see it as an unknown failure.
func native(err error) error {
	if _, isStatus := status.FromError(err); !isStatus && errdefs.IsUnavailable(err) {
		return err
	}
	return errgrpc.ToNative(err)
}

// PID is the task's pid, from the task API Connect.
func (t *Task) PID(ctx context.Context) (uint32, error) {
	resp, err := t.task.Connect(ctx, &task.ConnectRequest{ID: t.ID()})
	if err != nil {
		return 0, native(err)
	}
	return resp.TaskPid, nil
}

// taskOptions are the options a task is created with: its own, or else
// the runtime's.
func taskOptions(opts runtime.CreateOpts) typeurl.Any {
	if opts.TaskOptions == nil || opts.TaskOptions.GetValue() == nil {
		return opts.RuntimeOptions
	}
	return opts.TaskOptions
}

// create sends the task API Create (and Start, when restoring from a
// checkpoint).
func (t *Task) create(ctx context.Context, opts runtime.CreateOpts) error {
	topts := taskOptions(opts)
	req := &task.CreateTaskRequest{
		ID:         t.ID(),
		Bundle:     t.Bundle(),
		Stdin:      opts.IO.Stdin,
		Stdout:     opts.IO.Stdout,
		Stderr:     opts.IO.Stderr,
		Terminal:   opts.IO.Terminal,
		Checkpoint: opts.Checkpoint,
		Options:    typeurl.MarshalProto(topts),
	}
	for _, m := range opts.Rootfs {
		req.Rootfs = append(req.Rootfs, &types.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	if _, err := t.task.Create(ctx, req); err != nil {
		return native(err)
	}
	if opts.RestoreFromPath {
		if err := t.applyRootfsDiff(ctx, opts.Checkpoint); err != nil {
			return err
		}
		return t.Start(ctx)
	}
	return nil
}

// applyRootfsDiff unpacks <checkpoint>/../rootfs-diff.tar into the
// bundle's rootfs, between Create and Start of a restore.
func (t *Task) applyRootfsDiff(ctx context.Context, checkpoint string) error {
	path := filepath.Join(checkpoint, "..", rootfsDiffTar)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to open rootfs-diff archive %s for import: %w", path, err)
	}
	defer f.Close()
	r, err := compression.DecompressStream(f)
	if err != nil {
		return fmt.Errorf("failed to decompress archive %s for import: %w", path, err)
	}
	defer r.Close()
	rootfs := filepath.Join(t.Bundle(), layout.DirRootfs)
	if _, err := archive.Apply(ctx, rootfs, r); err != nil {
		return fmt.Errorf("unpacking of rootfs-diff archive %s into %s failed: %w", path, rootfs, err)
	}
	return nil
}

func (t *Task) Pause(ctx context.Context) error {
	t.known.Forget()
	_, err := t.task.Pause(ctx, &task.PauseRequest{ID: t.ID()})
	return native(err)
}

func (t *Task) Resume(ctx context.Context) error {
	t.known.Forget()
	_, err := t.task.Resume(ctx, &task.ResumeRequest{ID: t.ID()})
	return native(err)
}

func (t *Task) Start(ctx context.Context) error {
	t.known.Forget()
	_, err := t.task.Start(ctx, &task.StartRequest{ID: t.ID()})
	return native(err)
}

func (t *Task) Kill(ctx context.Context, signal uint32, all bool) error {
	t.known.Forget()
	_, err := t.task.Kill(ctx, &task.KillRequest{ID: t.ID(), Signal: signal, All: all})
	return native(err)
}

func (t *Task) Exec(ctx context.Context, id string, opts runtime.ExecOpts) (runtime.ExecProcess, error) {
	if err := identifiers.Validate(id); err != nil {
		return nil, fmt.Errorf("invalid exec id %s: %w", id, err)
	}
	_, err := t.task.Exec(ctx, &task.ExecProcessRequest{
		ID:       t.ID(),
		ExecID:   id,
		Stdin:    opts.IO.Stdin,
		Stdout:   opts.IO.Stdout,
		Stderr:   opts.IO.Stderr,
		Terminal: opts.IO.Terminal,
		Spec:     opts.Spec,
	})
	if err != nil {
		return nil, native(err)
	}
	return &process{id: id, t: t}, nil
}

func (t *Task) Pids(ctx context.Context) ([]runtime.ProcessInfo, error) {
	resp, err := t.task.Pids(ctx, &task.PidsRequest{ID: t.ID()})
	if err != nil {
		return nil, native(err)
	}
	out := make([]runtime.ProcessInfo, 0, len(resp.Processes))
	for _, p := range resp.Processes {
		out = append(out, runtime.ProcessInfo{Pid: p.Pid, Info: p.Info})
	}
	return out, nil
}

func (t *Task) ResizePty(ctx context.Context, size runtime.ConsoleSize) error {
	_, err := t.task.ResizePty(ctx, &task.ResizePtyRequest{ID: t.ID(), Width: size.Width, Height: size.Height})
	return native(err)
}

func (t *Task) CloseIO(ctx context.Context) error {
	_, err := t.task.CloseIO(ctx, &task.CloseIORequest{ID: t.ID(), Stdin: true})
	return native(err)
}

// Wait waits for the task to exit. The Wait reply carries no pid, so it is
// taken from Connect first.
func (t *Task) Wait(ctx context.Context) (*runtime.Exit, error) {
	pid, err := t.PID(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := t.task.Wait(ctx, &task.WaitRequest{ID: t.ID()})
	// Whatever Wait says, the task may have changed meanwhile.
	t.known.Forget()
	if err != nil {
		return nil, native(err)
	}
	return &runtime.Exit{Pid: pid, Status: resp.ExitStatus, Timestamp: protobuf.FromTimestamp(resp.ExitedAt)}, nil
}

func (t *Task) Checkpoint(ctx context.Context, path string, options *ptypes.Any) error {
	t.known.Forget()
	_, err := t.task.Checkpoint(ctx, &task.CheckpointTaskRequest{ID: t.ID(), Path: path, Options: options})
	return native(err)
}

func (t *Task) Update(ctx context.Context, resources *ptypes.Any, annotations map[string]string) error {
	_, err := t.task.Update(ctx, &task.UpdateTaskRequest{ID: t.ID(), Resources: resources, Annotations: annotations})
	return native(err)
}

func (t *Task) Stats(ctx context.Context) (*ptypes.Any, error) {
	resp, err := t.task.Stats(ctx, &task.StatsRequest{ID: t.ID()})
	if err != nil {
		return nil, native(err)
	}
	return resp.Stats, nil
}

// Process returns the exec process id, checking that the shim knows it.
func (t *Task) Process(ctx context.Context, id string) (runtime.ExecProcess, error) {
	p := &process{id: id, t: t}
	if _, err := p.State(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// State of the task: what recovery's probe learned while that still
// holds (knownstate), else the shim's answer. A closed connection means
// the task is gone.
func (t *Task) State(ctx context.Context) (runtime.State, error) {
	if st, ok := t.known.Get(); ok {
		return st, nil
	}
	resp, err := t.task.State(ctx, &task.StateRequest{ID: t.ID()})
	if err != nil {
		if errdefs.IsDeadlineExceeded(err) {
			return runtime.State{}, err
		}
		if errors.Is(err, ttrpc.ErrClosed) {
			return runtime.State{}, errdefs.ErrNotFound
		}
		return runtime.State{}, native(err)
	}
	return stateFromProto(resp), nil
}

func stateFromProto(r *task.StateResponse) runtime.State {
	return runtime.State{
		Pid:        r.Pid,
		Status:     statusFromProto(r.Status),
		Stdin:      r.Stdin,
		Stdout:     r.Stdout,
		Stderr:     r.Stderr,
		Terminal:   r.Terminal,
		ExitStatus: r.ExitStatus,
		ExitedAt:   protobuf.FromTimestamp(r.ExitedAt),
	}
}

func statusFromProto(s tasktypes.Status) runtime.Status {
	switch s {
	case tasktypes.Status_CREATED:
		return runtime.CreatedStatus
	case tasktypes.Status_RUNNING:
		return runtime.RunningStatus
	case tasktypes.Status_STOPPED:
		return runtime.StoppedStatus
	case tasktypes.Status_PAUSED:
		return runtime.PausedStatus
	case tasktypes.Status_PAUSING:
		return runtime.PausingStatus
	}
	return 0
}

package manager

import (
	"context"
	"errors"

	task "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"

	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/protobuf"
)

// process is an exec process inside a task.
type process struct {
	id string
	t  *Task
}

var _ runtime.ExecProcess = (*process)(nil)

func (p *process) ID() string { return p.id }

// Kill signals the exec process. Like stock, `all` does not apply to exec
// processes.
func (p *process) Kill(ctx context.Context, signal uint32, _ bool) error {
	_, err := p.t.task.Kill(ctx, &task.KillRequest{ID: p.t.ID(), ExecID: p.id, Signal: signal})
	return native(err)
}

func (p *process) State(ctx context.Context) (runtime.State, error) {
	resp, err := p.t.task.State(ctx, &task.StateRequest{ID: p.t.ID(), ExecID: p.id})
	if err != nil {
		if errors.Is(err, ttrpc.ErrClosed) {
			return runtime.State{}, errdefs.ErrNotFound
		}
		return runtime.State{}, native(err)
	}
	return stateFromProto(resp), nil
}

func (p *process) ResizePty(ctx context.Context, size runtime.ConsoleSize) error {
	_, err := p.t.task.ResizePty(ctx, &task.ResizePtyRequest{ID: p.t.ID(), ExecID: p.id, Width: size.Width, Height: size.Height})
	return native(err)
}

func (p *process) CloseIO(ctx context.Context) error {
	_, err := p.t.task.CloseIO(ctx, &task.CloseIORequest{ID: p.t.ID(), ExecID: p.id, Stdin: true})
	return native(err)
}

func (p *process) Start(ctx context.Context) error {
	_, err := p.t.task.Start(ctx, &task.StartRequest{ID: p.t.ID(), ExecID: p.id})
	return native(err)
}

func (p *process) Wait(ctx context.Context) (*runtime.Exit, error) {
	resp, err := p.t.task.Wait(ctx, &task.WaitRequest{ID: p.t.ID(), ExecID: p.id})
	if err != nil {
		return nil, native(err)
	}
	return &runtime.Exit{Status: resp.ExitStatus, Timestamp: protobuf.FromTimestamp(resp.ExitedAt)}, nil
}

func (p *process) Delete(ctx context.Context) (*runtime.Exit, error) {
	resp, err := p.t.task.Delete(ctx, &task.DeleteRequest{ID: p.t.ID(), ExecID: p.id})
	if err != nil {
		return nil, native(err)
	}
	return &runtime.Exit{Pid: resp.Pid, Status: resp.ExitStatus, Timestamp: protobuf.FromTimestamp(resp.ExitedAt)}, nil
}

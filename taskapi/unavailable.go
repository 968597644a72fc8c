package taskapi

import (
	"context"
	"fmt"
	"time"

	task "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Unavailable answers every task API call of a placeholder, a shim that
// recovery could not reach or judge. State
// answers with status UNKNOWN and no error, so that `ctr task ls` and CRI
// still list the task (a failed State would also make the tasks service
// log an error at every listing; its "unknown status" warning is dropped
// by the daemon's log filter); every other call fails as Unavailable, naming
// the reason.
type Unavailable struct {
	ID    string
	Since time.Time
	// Why is recovery's reason for keeping it.
	Why string
}

func (u Unavailable) err(class error) error {
	why := ""
	if u.Why != "" {
		why = " (" + u.Why + ")"
	}
	return fmt.Errorf("shim of task %s has not answered since %s%s; shimkeeper keeps probing it and leaves its state untouched: %w",
		u.ID, u.Since.UTC().Format(time.RFC3339), why, class)
}

func (u Unavailable) State(_ context.Context, r *task.StateRequest) (*task.StateResponse, error) {
	return &task.StateResponse{ID: r.ID, ExecID: r.ExecID, Status: tasktypes.Status_UNKNOWN}, nil
}
func (u Unavailable) Create(context.Context, *task.CreateTaskRequest) (*task.CreateTaskResponse, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u Unavailable) Start(context.Context, *task.StartRequest) (*task.StartResponse, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u Unavailable) Delete(context.Context, *task.DeleteRequest) (*task.DeleteResponse, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u Unavailable) Pids(context.Context, *task.PidsRequest) (*task.PidsResponse, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u Unavailable) Pause(context.Context, *task.PauseRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u Unavailable) Resume(context.Context, *task.ResumeRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u Unavailable) Checkpoint(context.Context, *task.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u Unavailable) Kill(context.Context, *task.KillRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u Unavailable) Exec(context.Context, *task.ExecProcessRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u Unavailable) ResizePty(context.Context, *task.ResizePtyRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u Unavailable) CloseIO(context.Context, *task.CloseIORequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u Unavailable) Update(context.Context, *task.UpdateTaskRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u Unavailable) Wait(context.Context, *task.WaitRequest) (*task.WaitResponse, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u Unavailable) Stats(context.Context, *task.StatsRequest) (*task.StatsResponse, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u Unavailable) Connect(context.Context, *task.ConnectRequest) (*task.ConnectResponse, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u Unavailable) Shutdown(context.Context, *task.ShutdownRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}

var _ Client = Unavailable{}

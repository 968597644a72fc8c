package testshim

import (
	"context"

	task "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// ErrNotImplemented is NotImplemented as a shim sends it over ttrpc.
var ErrNotImplemented = errgrpc.ToGRPC(errdefs.ErrNotImplemented)

// Unimplemented answers every task API v3 call with ErrNotImplemented.
// Embed it in a fake that overrides the calls it answers.
type Unimplemented struct{}

var _ task.TTRPCTaskService = Unimplemented{}

func (Unimplemented) State(context.Context, *task.StateRequest) (*task.StateResponse, error) {
	return nil, ErrNotImplemented
}
func (Unimplemented) Create(context.Context, *task.CreateTaskRequest) (*task.CreateTaskResponse, error) {
	return nil, ErrNotImplemented
}
func (Unimplemented) Start(context.Context, *task.StartRequest) (*task.StartResponse, error) {
	return nil, ErrNotImplemented
}
func (Unimplemented) Delete(context.Context, *task.DeleteRequest) (*task.DeleteResponse, error) {
	return nil, ErrNotImplemented
}
func (Unimplemented) Pids(context.Context, *task.PidsRequest) (*task.PidsResponse, error) {
	return nil, ErrNotImplemented
}
func (Unimplemented) Pause(context.Context, *task.PauseRequest) (*emptypb.Empty, error) {
	return nil, ErrNotImplemented
}
func (Unimplemented) Resume(context.Context, *task.ResumeRequest) (*emptypb.Empty, error) {
	return nil, ErrNotImplemented
}
func (Unimplemented) Checkpoint(context.Context, *task.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, ErrNotImplemented
}
func (Unimplemented) Kill(context.Context, *task.KillRequest) (*emptypb.Empty, error) {
	return nil, ErrNotImplemented
}
func (Unimplemented) Exec(context.Context, *task.ExecProcessRequest) (*emptypb.Empty, error) {
	return nil, ErrNotImplemented
}
func (Unimplemented) ResizePty(context.Context, *task.ResizePtyRequest) (*emptypb.Empty, error) {
	return nil, ErrNotImplemented
}
func (Unimplemented) CloseIO(context.Context, *task.CloseIORequest) (*emptypb.Empty, error) {
	return nil, ErrNotImplemented
}
func (Unimplemented) Update(context.Context, *task.UpdateTaskRequest) (*emptypb.Empty, error) {
	return nil, ErrNotImplemented
}
func (Unimplemented) Wait(context.Context, *task.WaitRequest) (*task.WaitResponse, error) {
	return nil, ErrNotImplemented
}
func (Unimplemented) Stats(context.Context, *task.StatsRequest) (*task.StatsResponse, error) {
	return nil, ErrNotImplemented
}
func (Unimplemented) Connect(context.Context, *task.ConnectRequest) (*task.ConnectResponse, error) {
	return nil, ErrNotImplemented
}
func (Unimplemented) Shutdown(context.Context, *task.ShutdownRequest) (*emptypb.Empty, error) {
	return nil, ErrNotImplemented
}

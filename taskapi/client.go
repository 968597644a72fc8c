package taskapi

import (
	"context"
	"errors"
	"fmt"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	task "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Client is the task API as spoken to a shim: task v3 over ttrpc or
// grpc, or task v2 over ttrpc through v2Bridge.
type Client interface {
	State(context.Context, *task.StateRequest) (*task.StateResponse, error)
	Create(context.Context, *task.CreateTaskRequest) (*task.CreateTaskResponse, error)
	Start(context.Context, *task.StartRequest) (*task.StartResponse, error)
	Delete(context.Context, *task.DeleteRequest) (*task.DeleteResponse, error)
	Pids(context.Context, *task.PidsRequest) (*task.PidsResponse, error)
	Pause(context.Context, *task.PauseRequest) (*emptypb.Empty, error)
	Resume(context.Context, *task.ResumeRequest) (*emptypb.Empty, error)
	Checkpoint(context.Context, *task.CheckpointTaskRequest) (*emptypb.Empty, error)
	Kill(context.Context, *task.KillRequest) (*emptypb.Empty, error)
	Exec(context.Context, *task.ExecProcessRequest) (*emptypb.Empty, error)
	ResizePty(context.Context, *task.ResizePtyRequest) (*emptypb.Empty, error)
	CloseIO(context.Context, *task.CloseIORequest) (*emptypb.Empty, error)
	Update(context.Context, *task.UpdateTaskRequest) (*emptypb.Empty, error)
	Wait(context.Context, *task.WaitRequest) (*task.WaitResponse, error)
	Stats(context.Context, *task.StatsRequest) (*task.StatsResponse, error)
	Connect(context.Context, *task.ConnectRequest) (*task.ConnectResponse, error)
	Shutdown(context.Context, *task.ShutdownRequest) (*emptypb.Empty, error)
}

// New picks the task API client for a connection and version:
// ttrpc v3, ttrpc v2 (bridged), or grpc v3.
func New(client any, version int) (Client, error) {
	switch c := client.(type) {
	case *ttrpc.Client:
		switch version {
		case 2:
			return v2Bridge{taskv2.NewTTRPCTaskClient(c)}, nil
		case 3:
			return task.NewTTRPCTaskClient(c), nil
		}
		return nil, fmt.Errorf("containerd client supports only v2 and v3 TTRPC task client (got %d)", version)
	case grpc.ClientConnInterface:
		if version != 3 {
			return nil, fmt.Errorf("containerd client supports only v3 GRPC task service (got %d)", version)
		}
		return grpcTask{task.NewTaskClient(c)}, nil
	case nil:
		return nil, ErrNoClient
	}
	return nil, fmt.Errorf("unsupported shim client type %T", client)
}

// ErrNoClient: the shim has no connection to speak the task API over.
var ErrNoClient = errors.New("shim has no client")

// grpcTask drops the variadic grpc.CallOption from the generated client.
type grpcTask struct{ c task.TaskClient }

func (g grpcTask) State(ctx context.Context, r *task.StateRequest) (*task.StateResponse, error) {
	return g.c.State(ctx, r)
}
func (g grpcTask) Create(ctx context.Context, r *task.CreateTaskRequest) (*task.CreateTaskResponse, error) {
	return g.c.Create(ctx, r)
}
func (g grpcTask) Start(ctx context.Context, r *task.StartRequest) (*task.StartResponse, error) {
	return g.c.Start(ctx, r)
}
func (g grpcTask) Delete(ctx context.Context, r *task.DeleteRequest) (*task.DeleteResponse, error) {
	return g.c.Delete(ctx, r)
}
func (g grpcTask) Pids(ctx context.Context, r *task.PidsRequest) (*task.PidsResponse, error) {
	return g.c.Pids(ctx, r)
}
func (g grpcTask) Pause(ctx context.Context, r *task.PauseRequest) (*emptypb.Empty, error) {
	return g.c.Pause(ctx, r)
}
func (g grpcTask) Resume(ctx context.Context, r *task.ResumeRequest) (*emptypb.Empty, error) {
	return g.c.Resume(ctx, r)
}
func (g grpcTask) Checkpoint(ctx context.Context, r *task.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return g.c.Checkpoint(ctx, r)
}
func (g grpcTask) Kill(ctx context.Context, r *task.KillRequest) (*emptypb.Empty, error) {
	return g.c.Kill(ctx, r)
}
func (g grpcTask) Exec(ctx context.Context, r *task.ExecProcessRequest) (*emptypb.Empty, error) {
	return g.c.Exec(ctx, r)
}
func (g grpcTask) ResizePty(ctx context.Context, r *task.ResizePtyRequest) (*emptypb.Empty, error) {
	return g.c.ResizePty(ctx, r)
}
func (g grpcTask) CloseIO(ctx context.Context, r *task.CloseIORequest) (*emptypb.Empty, error) {
	return g.c.CloseIO(ctx, r)
}
func (g grpcTask) Update(ctx context.Context, r *task.UpdateTaskRequest) (*emptypb.Empty, error) {
	return g.c.Update(ctx, r)
}
func (g grpcTask) Wait(ctx context.Context, r *task.WaitRequest) (*task.WaitResponse, error) {
	return g.c.Wait(ctx, r)
}
func (g grpcTask) Stats(ctx context.Context, r *task.StatsRequest) (*task.StatsResponse, error) {
	return g.c.Stats(ctx, r)
}
func (g grpcTask) Connect(ctx context.Context, r *task.ConnectRequest) (*task.ConnectResponse, error) {
	return g.c.Connect(ctx, r)
}
func (g grpcTask) Shutdown(ctx context.Context, r *task.ShutdownRequest) (*emptypb.Empty, error) {
	return g.c.Shutdown(ctx, r)
}

// v2Bridge speaks task API v2 (shims from containerd 1.x) behind the v3
// interface. The v2 and v3 messages carry the same fields; each method
// copies them across.
type v2Bridge struct{ c taskv2.TTRPCTaskService }

func (b v2Bridge) State(ctx context.Context, r *task.StateRequest) (*task.StateResponse, error) {
	resp, err := b.c.State(ctx, &taskv2.StateRequest{ID: r.GetID(), ExecID: r.GetExecID()})
	if err != nil {
		return nil, err
	}
	return &task.StateResponse{
		ID: resp.GetID(), Bundle: resp.GetBundle(), Pid: resp.GetPid(), Status: resp.GetStatus(),
		Stdin: resp.GetStdin(), Stdout: resp.GetStdout(), Stderr: resp.GetStderr(), Terminal: resp.GetTerminal(),
		ExitStatus: resp.GetExitStatus(), ExitedAt: resp.GetExitedAt(), ExecID: resp.GetExecID(),
	}, nil
}

func (b v2Bridge) Create(ctx context.Context, r *task.CreateTaskRequest) (*task.CreateTaskResponse, error) {
	resp, err := b.c.Create(ctx, &taskv2.CreateTaskRequest{
		ID: r.GetID(), Bundle: r.GetBundle(), Rootfs: r.GetRootfs(), Terminal: r.GetTerminal(),
		Stdin: r.GetStdin(), Stdout: r.GetStdout(), Stderr: r.GetStderr(),
		Checkpoint: r.GetCheckpoint(), ParentCheckpoint: r.GetParentCheckpoint(), Options: r.GetOptions(),
	})
	if err != nil {
		return nil, err
	}
	return &task.CreateTaskResponse{Pid: resp.GetPid()}, nil
}

func (b v2Bridge) Start(ctx context.Context, r *task.StartRequest) (*task.StartResponse, error) {
	resp, err := b.c.Start(ctx, &taskv2.StartRequest{ID: r.GetID(), ExecID: r.GetExecID()})
	if err != nil {
		return nil, err
	}
	return &task.StartResponse{Pid: resp.GetPid()}, nil
}

func (b v2Bridge) Delete(ctx context.Context, r *task.DeleteRequest) (*task.DeleteResponse, error) {
	resp, err := b.c.Delete(ctx, &taskv2.DeleteRequest{ID: r.GetID(), ExecID: r.GetExecID()})
	if err != nil {
		return nil, err
	}
	return &task.DeleteResponse{Pid: resp.GetPid(), ExitStatus: resp.GetExitStatus(), ExitedAt: resp.GetExitedAt()}, nil
}

func (b v2Bridge) Pids(ctx context.Context, r *task.PidsRequest) (*task.PidsResponse, error) {
	resp, err := b.c.Pids(ctx, &taskv2.PidsRequest{ID: r.GetID()})
	if err != nil {
		return nil, err
	}
	return &task.PidsResponse{Processes: resp.GetProcesses()}, nil
}

func (b v2Bridge) Pause(ctx context.Context, r *task.PauseRequest) (*emptypb.Empty, error) {
	return b.c.Pause(ctx, &taskv2.PauseRequest{ID: r.GetID()})
}

func (b v2Bridge) Resume(ctx context.Context, r *task.ResumeRequest) (*emptypb.Empty, error) {
	return b.c.Resume(ctx, &taskv2.ResumeRequest{ID: r.GetID()})
}

func (b v2Bridge) Checkpoint(ctx context.Context, r *task.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return b.c.Checkpoint(ctx, &taskv2.CheckpointTaskRequest{ID: r.GetID(), Path: r.GetPath(), Options: r.GetOptions()})
}

func (b v2Bridge) Kill(ctx context.Context, r *task.KillRequest) (*emptypb.Empty, error) {
	return b.c.Kill(ctx, &taskv2.KillRequest{ID: r.GetID(), ExecID: r.GetExecID(), Signal: r.GetSignal(), All: r.GetAll()})
}

func (b v2Bridge) Exec(ctx context.Context, r *task.ExecProcessRequest) (*emptypb.Empty, error) {
	return b.c.Exec(ctx, &taskv2.ExecProcessRequest{
		ID: r.GetID(), ExecID: r.GetExecID(), Terminal: r.GetTerminal(),
		Stdin: r.GetStdin(), Stdout: r.GetStdout(), Stderr: r.GetStderr(), Spec: r.GetSpec(),
	})
}

func (b v2Bridge) ResizePty(ctx context.Context, r *task.ResizePtyRequest) (*emptypb.Empty, error) {
	return b.c.ResizePty(ctx, &taskv2.ResizePtyRequest{ID: r.GetID(), ExecID: r.GetExecID(), Width: r.GetWidth(), Height: r.GetHeight()})
}

func (b v2Bridge) CloseIO(ctx context.Context, r *task.CloseIORequest) (*emptypb.Empty, error) {
	return b.c.CloseIO(ctx, &taskv2.CloseIORequest{ID: r.GetID(), ExecID: r.GetExecID(), Stdin: r.GetStdin()})
}

func (b v2Bridge) Update(ctx context.Context, r *task.UpdateTaskRequest) (*emptypb.Empty, error) {
	return b.c.Update(ctx, &taskv2.UpdateTaskRequest{ID: r.GetID(), Resources: r.GetResources(), Annotations: r.GetAnnotations()})
}

func (b v2Bridge) Wait(ctx context.Context, r *task.WaitRequest) (*task.WaitResponse, error) {
	resp, err := b.c.Wait(ctx, &taskv2.WaitRequest{ID: r.GetID(), ExecID: r.GetExecID()})
	if err != nil {
		return nil, err
	}
	return &task.WaitResponse{ExitStatus: resp.GetExitStatus(), ExitedAt: resp.GetExitedAt()}, nil
}

func (b v2Bridge) Stats(ctx context.Context, r *task.StatsRequest) (*task.StatsResponse, error) {
	resp, err := b.c.Stats(ctx, &taskv2.StatsRequest{ID: r.GetID()})
	if err != nil {
		return nil, err
	}
	return &task.StatsResponse{Stats: resp.GetStats()}, nil
}

func (b v2Bridge) Connect(ctx context.Context, r *task.ConnectRequest) (*task.ConnectResponse, error) {
	resp, err := b.c.Connect(ctx, &taskv2.ConnectRequest{ID: r.GetID()})
	if err != nil {
		return nil, err
	}
	return &task.ConnectResponse{ShimPid: resp.GetShimPid(), TaskPid: resp.GetTaskPid(), Version: resp.GetVersion()}, nil
}

func (b v2Bridge) Shutdown(ctx context.Context, r *task.ShutdownRequest) (*emptypb.Empty, error) {
	return b.c.Shutdown(ctx, &taskv2.ShutdownRequest{ID: r.GetID(), Now: r.GetNow()})
}

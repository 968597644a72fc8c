package manager

import (
	"context"
	"fmt"
	"time"

	task "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/emptypb"
)

// NewUnresponsive returns a placeholder for a shim that recovery could not
// judge: it may be alive, so its task stays listed (with an unknown state)
// and its bundle untouched, while calls on it fail at once with a clear
// error. Recovery replaces it when the shim answers or is proven gone.
func (m *Manager) NewUnresponsive(b *Bundle, runtimePath string, since time.Time) *Shim {
	s := &Shim{bundle: b, binary: m.binaryFor(b, runtimePath)}
	s.unresponsiveSince = since
	return s
}

// Unresponsive reports whether s is a placeholder for a shim that did not
// answer.
func (s *Shim) Unresponsive() bool { return !s.unresponsiveSince.IsZero() }

// unresponsiveClient answers every task API call of a placeholder. State
// fails with a plain (unknown-class) error so that `ctr task ls` still
// lists the task, with status UNKNOWN; every other call fails as
// Unavailable.
type unresponsiveClient struct {
	id    string
	since time.Time
}

func (u unresponsiveClient) err(class error) error {
	return fmt.Errorf("shim of task %s has not answered since %s; shimkeeper keeps probing it and leaves its state untouched: %w",
		u.id, u.since.UTC().Format(time.RFC3339), class)
}

func (u unresponsiveClient) State(context.Context, *task.StateRequest) (*task.StateResponse, error) {
	return nil, u.err(errdefs.ErrUnknown)
}
func (u unresponsiveClient) Create(context.Context, *task.CreateTaskRequest) (*task.CreateTaskResponse, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Start(context.Context, *task.StartRequest) (*task.StartResponse, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Delete(context.Context, *task.DeleteRequest) (*task.DeleteResponse, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Pids(context.Context, *task.PidsRequest) (*task.PidsResponse, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Pause(context.Context, *task.PauseRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Resume(context.Context, *task.ResumeRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Checkpoint(context.Context, *task.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Kill(context.Context, *task.KillRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Exec(context.Context, *task.ExecProcessRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) ResizePty(context.Context, *task.ResizePtyRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) CloseIO(context.Context, *task.CloseIORequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Update(context.Context, *task.UpdateTaskRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Wait(context.Context, *task.WaitRequest) (*task.WaitResponse, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Stats(context.Context, *task.StatsRequest) (*task.StatsResponse, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Connect(context.Context, *task.ConnectRequest) (*task.ConnectResponse, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}
func (u unresponsiveClient) Shutdown(context.Context, *task.ShutdownRequest) (*emptypb.Empty, error) {
	return nil, u.err(errdefs.ErrUnavailable)
}

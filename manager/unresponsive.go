package manager

import (
	"context"
	"fmt"
	"time"

	task "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/emptypb"
)

// NewUnresponsive returns a placeholder for a shim that recovery could not
// judge or reach: it may be alive, so its task stays listed (with an
// unknown state) and its bundle untouched, while calls on it fail at once
// with a clear error that gives why (recovery's reason). Recovery replaces
// it when the shim answers or is proven gone.
func (m *Manager) NewUnresponsive(b *Bundle, runtimePath string, since time.Time, why string) *Shim {
	s := &Shim{bundle: b, binary: m.binaryFor(b, runtimePath)}
	s.unresponsiveSince = since
	s.unresponsiveWhy = why
	return s
}

// Unresponsive reports whether s is a placeholder for a shim that did not
// answer.
func (s *Shim) Unresponsive() bool { return !s.unresponsiveSince.IsZero() }

// unresponsiveClient answers every task API call of a placeholder. State
// answers with status UNKNOWN and no error, so that `ctr task ls` and CRI
// still list the task (a failed State would also make the tasks service
// log an error at every listing; its "unknown status" warning is dropped
// by plugin/logfilter.go); every other call fails as Unavailable, naming
// the reason.
type unresponsiveClient struct {
	id    string
	since time.Time
	why   string
}

func (u unresponsiveClient) err(class error) error {
	why := ""
	if u.why != "" {
		why = " (" + u.why + ")"
	}
	return fmt.Errorf("shim of task %s has not answered since %s%s; shimkeeper keeps probing it and leaves its state untouched: %w",
		u.id, u.since.UTC().Format(time.RFC3339), why, class)
}

func (u unresponsiveClient) State(_ context.Context, r *task.StateRequest) (*task.StateResponse, error) {
	return &task.StateResponse{ID: r.ID, ExecID: r.ExecID, Status: tasktypes.Status_UNKNOWN}, nil
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

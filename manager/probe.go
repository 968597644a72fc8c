package manager

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	task "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/containerd/containerd/v2/core/containers"

	"github.com/shimkeeper/shimkeeper/bootstrap"
	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/lifecycle"
	"github.com/shimkeeper/shimkeeper/shimbin"
	"github.com/shimkeeper/shimkeeper/taskapi"
)

// RuntimeName returns the runtime recorded for an existing bundle: the
// shim-binary-path file, or else the container record's runtime name,
// which record looks up (only then). found is false when neither names
// one. shim-binary-path must be a regular file (layout.ReadRegular): a
// FIFO would block the read for ever.
func (m *Manager) RuntimeName(b *Bundle, record func() (containers.Container, error)) (name string, found bool, err error) {
	data, err := layout.ReadRegular(filepath.Join(b.Path, layout.FileBinaryPath))
	if name := strings.TrimSpace(string(data)); err == nil && name != "" {
		return name, true, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("read %s: %w", layout.FileBinaryPath, err)
	}
	c, cerr := record()
	if errdefs.IsNotFound(cerr) {
		return "", false, nil
	}
	if cerr != nil {
		return "", false, cerr
	}
	return c.Runtime.Name, c.Runtime.Name != "", nil
}

// DefaultAddress is where a stock-protocol shim started for this bundle
// listens when it is not grouped: unix://<socket dir>/<sha256 of
// grpc-address/ns/id>. It lets recovery find a shim whose bootstrap.json
// was never written (containerd crashed right after `shim start`).
func (m *Manager) DefaultAddress(ctx context.Context, b *Bundle) (string, error) {
	return layout.ShimSocketAddress(m.cfg.SocketDir, m.cfg.Address, b.Namespace, b.ID, false), nil
}

// ProbeResult is what a probe learned. Shim is connected (unarmed, not
// registered) only when the shim answered.
type ProbeResult struct {
	Liveness lifecycle.Liveness
	Shim     *Shim
	// Downgraded: the shim answered only task API v2.
	Downgraded bool
	// Task is what the shim said of the bundle's task (TaskUnknown unless
	// the shim is alive and answered State clearly).
	Task lifecycle.TaskState
	// StateErr is why State gave no task, when it did not.
	StateErr error
	Err      error
}

// ClassifyState classes the shim's answer to State: a task (live or exited),
// NotFound (no task), or anything else (unknown).
func ClassifyState(st *task.StateResponse, err error) lifecycle.TaskState {
	switch {
	case err == nil && st.Status == tasktypes.Status_STOPPED:
		return lifecycle.TaskExited
	case err == nil:
		return lifecycle.TaskLive
	case errdefs.IsNotFound(err):
		return lifecycle.TaskNone
	}
	return lifecycle.TaskUnknown
}

// Probe dials the shim at params and asks it for the task's State (with
// the v2 downgrade). Nothing on disk is touched. A refused or missing
// socket is Gone; a shim that answers, with a state or with an error of
// its own (NotFound: it has no such task), is Alive; anything else,
// timeouts included, is Unknown. ctx bounds the whole probe.
//
// State alone is the probe: an answer proves the shim serves the task API
// as well as Connect's would, and it says what the verdict needs (live,
// exited or no task). Connect's pids are not needed, so one call per shim
// is spared (stock makes three: Connect, Pids, and State per listing).
func (m *Manager) Probe(ctx context.Context, b *Bundle, runtimePath string, params *bootapi.BootstrapResult) ProbeResult {
	s := newShim(b, m.binaryFor(b, runtimePath), params)
	if err := m.dial(ctx, s); err != nil {
		return ProbeResult{Liveness: dialLiveness(err), Err: err}
	}
	v := s.Version()
	ticket := m.known.Ticket(b.Namespace, b.ID)
	st, err := m.stateRPC(ctx, s)
	if err != nil && !shimAnswered(err) {
		s.Abandon()
		return ProbeResult{Liveness: lifecycle.LivenessUnknown, Err: fmt.Errorf("task API state: %w", err)}
	}
	r := ProbeResult{Liveness: lifecycle.LivenessAlive, Shim: s, Downgraded: s.Version() != v}
	r.StateErr = errgrpc.ToNative(err)
	r.Task = ClassifyState(st, r.StateErr)
	if err == nil {
		s.probed = &probedState{ticket: ticket, state: stateFromProto(st)}
	}
	return r
}

// stateRPC calls the task API State, downgrading to v2 once on
// NotImplemented. The error is the client's, unconverted.
func (m *Manager) stateRPC(ctx context.Context, s *Shim) (*task.StateResponse, error) {
	return callDowngrading(ctx, s, func(tc taskapi.Client) (*task.StateResponse, error) {
		return tc.State(ctx, &task.StateRequest{ID: s.ID()})
	})
}

// callDowngrading calls fn with the shim's task API client and, if the
// shim answers NotImplemented (a 1.7-era shim behind a binary that says
// v3), once more at v2, as stock does on load.
func callDowngrading[T any](ctx context.Context, s *Shim, fn func(taskapi.Client) (T, error)) (T, error) {
	call := func() (T, error) {
		tc, err := s.TaskClient()
		if err != nil {
			var zero T
			return zero, err
		}
		return fn(tc)
	}
	resp, err := call()
	if err != nil && errdefs.IsNotImplemented(errgrpc.ToNative(err)) && ctx.Err() == nil {
		if derr := s.Downgrade(); derr == nil {
			log.G(ctx).WithError(err).WithField("id", s.ID()).Warn("shim does not serve task API v3, downgrading to v2")
			resp, err = call()
		}
	}
	return resp, err
}

// shimAnswered reports whether err is the shim's own answer: a status it
// sent. A context error, a closed connection, or a status a grpc client
// makes up for a broken transport or a deadline (Unavailable,
// DeadlineExceeded, Canceled) is not: it proves nothing about the shim.
func shimAnswered(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return false
	}
	return true
}

// dialLiveness classes a dial error: no socket, or nobody listening on it,
// proves the shim gone; anything else (a timeout above all) proves
// nothing.
func dialLiveness(err error) lifecycle.Liveness {
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, os.ErrNotExist) {
		return lifecycle.LivenessGone
	}
	return lifecycle.LivenessUnknown
}

// WriteBootstrapFor records what a recovered shim speaks now (after a
// v3→v2 downgrade or a legacy address migration) in its bootstrap.json,
// so the next start does not repeat the failed probe.
func (m *Manager) WriteBootstrapFor(s *Shim) error {
	p := &bootapi.BootstrapResult{}
	if s.bootstrap != nil {
		*p = bootapi.BootstrapResult{
			Version: s.bootstrap.Version, Address: s.bootstrap.Address, Protocol: s.bootstrap.Protocol,
			Capabilities: s.bootstrap.Capabilities, Metadata: s.bootstrap.Metadata, Extensions: s.bootstrap.Extensions,
		}
	}
	p.Version = int32(s.Version())
	return bootstrap.Write(s.Bundle(), p)
}

// binaryFor returns the `shim delete` runner for bundle b, or nil when
// runtimePath is empty.
func (m *Manager) binaryFor(b *Bundle, runtimePath string) *shimbin.Binary {
	if runtimePath == "" {
		return nil
	}
	return m.binary(b, runtimePath)
}

func debugAddress(ctx context.Context, m *Manager, b *Bundle) (string, error) {
	return layout.ShimSocketAddress(m.cfg.SocketDir, m.cfg.Address, b.Namespace, b.ID, true), nil
}

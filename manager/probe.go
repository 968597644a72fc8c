package manager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	task "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"

	"github.com/containerd/containerd/v2/core/containers"

	"github.com/shimkeeper/shimkeeper/bootstrap"
	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/lifecycle"
	"github.com/shimkeeper/shimkeeper/shimbin"
)

// RuntimeName returns the runtime recorded for an existing bundle: the
// shim-binary-path file, or else the container record's runtime name. c
// and cerr are the caller's lookup of the bundle's container record. found
// is false when neither names one.
func (m *Manager) RuntimeName(b *Bundle, c containers.Container, cerr error) (name string, found bool, err error) {
	data, err := os.ReadFile(filepath.Join(b.Path, layout.FileBinaryPath))
	if name := strings.TrimSpace(string(data)); err == nil && name != "" {
		return name, true, nil
	}
	if err != nil && !os.IsNotExist(err) {
		return "", false, fmt.Errorf("read %s: %w", layout.FileBinaryPath, err)
	}
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

// Probe dials the shim at params and asks it for the task: Connect (with
// the v2 downgrade), then State. Nothing on disk is touched. A refused or
// missing socket is Gone; a shim that answers is Alive; anything else,
// timeouts included, is Unknown. ctx bounds the whole probe.
func (m *Manager) Probe(ctx context.Context, b *Bundle, runtimePath string, params *bootapi.BootstrapResult) ProbeResult {
	s := newShim(b, m.binaryFor(b, runtimePath), params)
	if err := m.dial(ctx, s); err != nil {
		return ProbeResult{Liveness: dialLiveness(err), Err: err}
	}
	v := s.Version()
	if _, err := m.connectRPC(ctx, s); err != nil {
		s.Abandon()
		return ProbeResult{Liveness: lifecycle.LivenessUnknown, Err: fmt.Errorf("task API connect: %w", err)}
	}
	r := ProbeResult{Liveness: lifecycle.LivenessAlive, Shim: s, Downgraded: s.Version() != v}
	tc, err := s.TaskClient()
	if err != nil {
		r.StateErr = err
		return r
	}
	ticket := m.known.Ticket(b.Namespace, b.ID)
	st, err := tc.State(ctx, &task.StateRequest{ID: b.ID})
	r.StateErr = errgrpc.ToNative(err)
	r.Task = ClassifyState(st, r.StateErr)
	if err == nil {
		s.probed = &probedState{ticket: ticket, state: stateFromProto(st)}
	}
	return r
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

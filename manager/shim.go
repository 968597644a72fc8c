package manager

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"

	"github.com/containerd/containerd/v2/core/runtime"

	"github.com/shimkeeper/shimkeeper/bootstrap"
	"github.com/shimkeeper/shimkeeper/knownstate"
	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/shimbin"
	"github.com/shimkeeper/shimkeeper/shimconn"
	"github.com/shimkeeper/shimkeeper/shimlog"
	"github.com/shimkeeper/shimkeeper/taskapi"
)

// Shim is one connected shim process: the bundle it serves, its client
// and what it advertised at start. A Shim is registered in the manager's
// map under the task (or sandbox) id.
type Shim struct {
	bundle *Bundle
	// binary runs `shim delete` for this bundle. It is nil for a shim that
	// was adopted while its binary could not be resolved.
	binary  *shimbin.Binary
	client  any
	conn    shimconn.Conn
	version atomic.Int32
	// bootstrap is what the shim advertised, where it listens included
	// (nil on a placeholder).
	bootstrap *bootapi.BootstrapResult

	// deleteExit caches the exit of the first successful task Delete, so
	// a retry after a failed Shutdown still returns it, and so the close
	// hook knows the shim already published the exit.
	deleteExit atomic.Pointer[runtime.Exit]

	logMu     sync.Mutex
	logOnce   sync.Once
	closeLogs func()

	// closed is set by the close hook before it looks at armed, and Arm
	// checks it after setting armed: whichever comes second sees the other,
	// so a shim that died between its probe and its adoption is never
	// registered without its cleanup.
	closed atomic.Bool

	// armed: the shim is in service, so losing its connection means it
	// died: the close hook then runs `shim delete` and reports the exit. A
	// shim that is only being probed (recovery) is not armed, and closing
	// its connection, locally or remotely, touches nothing.
	armed atomic.Bool

	// unresponsiveSince is set on a placeholder for a shim that recovery
	// could not judge (see NewUnresponsive).
	unresponsiveSince time.Time
	// unresponsiveWhy is the reason recovery kept it, for its errors.
	unresponsiveWhy string

	// known answers State while what recovery's probe learned still holds
	// (knownstate); probed is that answer, from Probe until Adopt.
	known  knownstate.Slot
	probed *probedState
}

// probedState is a probe's State answer and the ticket taken before it.
type probedState struct {
	ticket knownstate.Ticket
	state  runtime.State
}

// ID of the task or sandbox the shim serves.
func (s *Shim) ID() string { return s.bundle.ID }

// Namespace of the shim.
func (s *Shim) Namespace() string { return s.bundle.Namespace }

// Bundle path, <state>/<ns>/<id>.
func (s *Shim) Bundle() string { return s.bundle.Path }

// Client is the *ttrpc.Client or grpc.ClientConnInterface.
func (s *Shim) Client() any { return s.client }

// newShim is a Shim for the shim params describe, not yet connected.
func newShim(b *Bundle, bin *shimbin.Binary, params *bootapi.BootstrapResult) *Shim {
	s := &Shim{bundle: b, binary: bin, bootstrap: params}
	s.version.Store(params.Version)
	return s
}

// dial connects s to its shim, with the manager's close hook.
func (m *Manager) dial(ctx context.Context, s *Shim) (err error) {
	s.client, s.conn, err = shimconn.Connect(ctx, s.bootstrap, m.onClose(s))
	return err
}

// Endpoint is "<protocol>+<address>" and the task API version.
func (s *Shim) Endpoint() (string, int) {
	return s.bootstrap.GetProtocol() + "+" + s.bootstrap.GetAddress(), int(s.version.Load())
}

// BootstrapResult is what the shim advertised when it started.
func (s *Shim) BootstrapResult() *bootapi.BootstrapResult { return s.bootstrap }

// Version is the task API version in use.
func (s *Shim) Version() int { return int(s.version.Load()) }

// Downgrade lowers the task API version from v3 to v2, for 1.7-era shims
// behind a 2.x binary that prints version 3.
func (s *Shim) Downgrade() error {
	if v := s.version.Load(); v >= bootstrap.CurrentVersion {
		s.version.CompareAndSwap(v, v-1)
		return nil
	}
	return fmt.Errorf("unable to downgrade because shim version (%d) is lower than bootstrap.CurrentVersion (%d)", s.version.Load(), bootstrap.CurrentVersion)
}

// TaskClient is the task API client of the shim's connection at its version;
// a placeholder's answers UNKNOWN and fails the rest (unresponsive.go).
func (s *Shim) TaskClient() (taskapi.Client, error) {
	if s.Unresponsive() {
		return taskapi.Unavailable{ID: s.ID(), Since: s.unresponsiveSince, Why: s.unresponsiveWhy}, nil
	}
	return taskapi.New(s.client, s.Version())
}

// Arm puts a probed shim in service: its log FIFO is drained from now on,
// and losing its connection runs the dead-shim cleanup. It fails if the
// connection has already closed: the shim is gone.
func (s *Shim) Arm() error {
	s.logMu.Lock()
	if s.closeLogs == nil {
		stop, err := drainShimLog(s.Bundle())
		if err != nil {
			s.logMu.Unlock()
			return err
		}
		s.closeLogs = stop
	}
	s.logMu.Unlock()
	return s.arm()
}

func (s *Shim) arm() error {
	s.armed.Store(true)
	if s.closed.Load() {
		s.stopLogs()
		return fmt.Errorf("connection to shim of %s closed before it was put in service: %w", s.ID(), errShimGone)
	}
	return nil
}

// Armed reports whether the shim is in service.
func (s *Shim) Armed() bool { return s.armed.Load() }

// stopLogs stops copying the shim's log FIFO.
func (s *Shim) stopLogs() {
	s.logMu.Lock()
	stop := s.closeLogs
	s.logMu.Unlock()
	if stop == nil {
		return
	}
	s.logOnce.Do(stop)
}

// drainShimLog copies what the shim writes to <bundle>/log (a FIFO, made
// if missing) to containerd's stderr until stop is called (shimlog). A
// FIFO that is never read blocks the shim once the pipe buffer fills.
func drainShimLog(bundle string) (stop func(), err error) {
	stop, err = shimlog.Default.Drain(filepath.Join(bundle, layout.FileLog))
	if err != nil {
		return nil, fmt.Errorf("open shim log pipe: %w", err)
	}
	return stop, nil
}

var errShimGone = errors.New("shim is gone")

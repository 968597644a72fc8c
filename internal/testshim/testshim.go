// Package testshim holds fakes of shims for tests: task API servers and
// hung shims on unix sockets, in process, and small helpers around them.
// It is for tests only; production code must not import it.
package testshim

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	task "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/ttrpc"
)

// SocketDir is a new temp dir with a path short enough for unix sockets
// (sun_path holds 107 bytes; t.TempDir() paths can be longer). It is
// removed when the test ends.
func SocketDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("/tmp", "sk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Eventually polls cond every 10ms until it holds, and fails the test if
// it does not within timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Server is a ttrpc server that serves until the test ends.
type Server struct {
	srv  *ttrpc.Server
	done chan struct{}
}

// Serve serves the services register adds over ttrpc on l, until Close or
// the end of the test.
func Serve(t testing.TB, l net.Listener, register func(*ttrpc.Server)) *Server {
	t.Helper()
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	register(srv)
	s := &Server{srv: srv, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if err := srv.Serve(context.Background(), l); err != nil && !errors.Is(err, ttrpc.ErrServerClosed) {
			t.Logf("fake shim server: %v", err)
		}
	}()
	t.Cleanup(s.Close)
	return s
}

// ServeTask serves svc as task API v3 on a new unix socket at path.
func ServeTask(t testing.TB, path string, svc task.TTRPCTaskService) *Server {
	t.Helper()
	return Serve(t, Listen(t, path), func(s *ttrpc.Server) { task.RegisterTTRPCTaskService(s, svc) })
}

// Shutdown stops serving as a shim that exits does: it closes the
// listener, and each connection once it is idle. A handler must call it
// in a new goroutine, as its own connection is busy until it returns.
func (s *Server) Shutdown() {
	_ = s.srv.Shutdown(context.Background())
}

// Close closes the listener and every connection at once, and waits until
// the server no longer serves.
func (s *Server) Close() {
	s.srv.Close()
	<-s.done
}

// Listen listens on a new unix socket at path. Closing it is up to the
// caller; Serve and ServeSilent close theirs.
func Listen(t testing.TB, path string) net.Listener {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

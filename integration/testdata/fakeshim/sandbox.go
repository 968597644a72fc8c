//go:build integration

package main

// Mode "sandbox": a working sandbox shim for the "shim" sandbox controller.
//
// start reads the BootstrapParams on stdin, re-executes the binary as a
// detached server (action "serve") listening on
// <socket_dir>/<sha256(grpc address/namespace/id)> (stock's socket name),
// waits until it accepts and prints a protobuf BootstrapResult (version 3,
// ttrpc). It records the server's pid in <bundle>/fake.pid and its socket
// path in <bundle>/fake.sockpath.
//
// The server serves, on one ttrpc socket, containerd.runtime.sandbox.v1.Sandbox
// (every method) and the part of containerd.task.v3.Task the daemon needs
// from any shim: Connect (shim and task pid = the server's pid) and State,
// which says NotFound (a sandbox shim runs no task); the other task methods
// are not registered, so they answer Unimplemented. StartSandbox returns
// the server's pid. WaitSandbox blocks until StopSandbox. ShutdownSandbox
// answers, then the server stops serving (letting the reply out), removes
// its socket and exits. SandboxStatus reports, in Info, what the shim was
// given: the bundle path of CreateSandbox, the timeout of the last
// StopSandbox and the labels of the last UpdateSandbox.
//
// If FAKESHIM_CALLS is set (the wrapper script sets it), the server appends
// one line per call, "<Method> <id>", to that file.
//
// delete kills the server recorded in fake.pid (if it is still the fake
// server), removes its socket and prints an empty DeleteResponse.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	sandboxapi "github.com/containerd/containerd/api/runtime/sandbox/v1"
	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	sandboxMode     = "sandbox"
	sockPathName    = "fake.sockpath"
	envSandboxSock  = "FAKESHIM_SOCKET"
	envSandboxCalls = "FAKESHIM_CALLS"
)

// startSandbox is `start` in sandbox mode.
func startSandbox() error {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	var params bootapi.BootstrapParams
	if err := proto.Unmarshal(data, &params); err != nil {
		return fmt.Errorf("decode bootstrap params: %w", err)
	}
	bundle, err := os.Getwd()
	if err != nil {
		return err
	}
	socketDir := params.GetSocketDir()
	if socketDir == "" {
		return errors.New("no socket_dir in the bootstrap params")
	}
	if err := os.MkdirAll(socketDir, 0o700); err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(filepath.Join(params.GetContainerdGrpcAddress(), params.GetNamespace(), params.GetInstanceID())))
	sock := filepath.Join(socketDir, hex.EncodeToString(sum[:]))
	if err := os.WriteFile(sockPathName, []byte(sock), 0o600); err != nil {
		return err
	}

	if err := spawnServer(bundle, sock, []string{envSandboxSock + "=" + sock}, "sandbox server"); err != nil {
		return err
	}
	out, err := proto.Marshal(&bootapi.BootstrapResult{Version: 3, Protocol: "ttrpc", Address: "unix://" + sock})
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(out)
	return err
}

// fakeSandbox is the server's state; one sandbox per server.
type fakeSandbox struct {
	pid   uint32
	calls string // FAKESHIM_CALLS

	mu          sync.Mutex
	id          string
	bundle      string
	state       string
	createdAt   time.Time
	exitedAt    time.Time
	stopTimeout string
	labels      map[string]string
	stopped     chan struct{}
	shutdown    func()
}

func (s *fakeSandbox) record(method, id string) {
	if s.calls == "" {
		return
	}
	f, err := os.OpenFile(s.calls, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", method, id)
}

func (s *fakeSandbox) CreateSandbox(ctx context.Context, r *sandboxapi.CreateSandboxRequest) (*sandboxapi.CreateSandboxResponse, error) {
	s.record("CreateSandbox", r.SandboxID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.id != "" {
		return nil, errgrpc.ToGRPCf(errdefs.ErrAlreadyExists, "sandbox %s already created", s.id)
	}
	s.id, s.bundle, s.state = r.SandboxID, r.BundlePath, "created"
	return &sandboxapi.CreateSandboxResponse{}, nil
}

func (s *fakeSandbox) StartSandbox(ctx context.Context, r *sandboxapi.StartSandboxRequest) (*sandboxapi.StartSandboxResponse, error) {
	s.record("StartSandbox", r.SandboxID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(r.SandboxID); err != nil {
		return nil, err
	}
	s.state, s.createdAt = "running", time.Now()
	return &sandboxapi.StartSandboxResponse{Pid: s.pid, CreatedAt: timestamppb.New(s.createdAt)}, nil
}

func (s *fakeSandbox) Platform(ctx context.Context, r *sandboxapi.PlatformRequest) (*sandboxapi.PlatformResponse, error) {
	s.record("Platform", r.SandboxID)
	return &sandboxapi.PlatformResponse{Platform: &types.Platform{OS: goruntime.GOOS, Architecture: goruntime.GOARCH}}, nil
}

func (s *fakeSandbox) StopSandbox(ctx context.Context, r *sandboxapi.StopSandboxRequest) (*sandboxapi.StopSandboxResponse, error) {
	s.record("StopSandbox", r.SandboxID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(r.SandboxID); err != nil {
		return nil, err
	}
	s.stopTimeout = strconv.FormatUint(uint64(r.TimeoutSecs), 10)
	if s.state != "stopped" {
		s.state, s.exitedAt = "stopped", time.Now()
		close(s.stopped)
	}
	return &sandboxapi.StopSandboxResponse{}, nil
}

func (s *fakeSandbox) WaitSandbox(ctx context.Context, r *sandboxapi.WaitSandboxRequest) (*sandboxapi.WaitSandboxResponse, error) {
	s.record("WaitSandbox", r.SandboxID)
	s.mu.Lock()
	err := s.check(r.SandboxID)
	stopped := s.stopped
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case <-stopped:
	case <-ctx.Done():
		return nil, errgrpc.ToGRPC(ctx.Err())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &sandboxapi.WaitSandboxResponse{ExitStatus: 0, ExitedAt: timestamppb.New(s.exitedAt)}, nil
}

func (s *fakeSandbox) SandboxStatus(ctx context.Context, r *sandboxapi.SandboxStatusRequest) (*sandboxapi.SandboxStatusResponse, error) {
	s.record("SandboxStatus", r.SandboxID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(r.SandboxID); err != nil {
		return nil, err
	}
	info := map[string]string{"bundle": s.bundle, "stop_timeout": s.stopTimeout}
	var labels []string
	for k, v := range s.labels {
		labels = append(labels, k+"="+v)
	}
	sort.Strings(labels)
	info["labels"] = strings.Join(labels, ",")
	resp := &sandboxapi.SandboxStatusResponse{SandboxID: s.id, Pid: s.pid, State: s.state, Info: info}
	if !s.createdAt.IsZero() {
		resp.CreatedAt = timestamppb.New(s.createdAt)
	}
	if !s.exitedAt.IsZero() {
		resp.ExitedAt = timestamppb.New(s.exitedAt)
	}
	return resp, nil
}

func (s *fakeSandbox) PingSandbox(ctx context.Context, r *sandboxapi.PingRequest) (*sandboxapi.PingResponse, error) {
	s.record("PingSandbox", r.SandboxID)
	return &sandboxapi.PingResponse{}, nil
}

func (s *fakeSandbox) ShutdownSandbox(ctx context.Context, r *sandboxapi.ShutdownSandboxRequest) (*sandboxapi.ShutdownSandboxResponse, error) {
	s.record("ShutdownSandbox", r.SandboxID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(r.SandboxID); err != nil {
		return nil, err
	}
	s.shutdown()
	return &sandboxapi.ShutdownSandboxResponse{}, nil
}

func (s *fakeSandbox) SandboxMetrics(ctx context.Context, r *sandboxapi.SandboxMetricsRequest) (*sandboxapi.SandboxMetricsResponse, error) {
	s.record("SandboxMetrics", r.SandboxID)
	return &sandboxapi.SandboxMetricsResponse{Metrics: &types.Metric{ID: r.SandboxID, Timestamp: timestamppb.Now()}}, nil
}

func (s *fakeSandbox) UpdateSandbox(ctx context.Context, r *sandboxapi.UpdateSandboxRequest) (*sandboxapi.UpdateSandboxResponse, error) {
	s.record("UpdateSandbox", r.SandboxID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(r.SandboxID); err != nil {
		return nil, err
	}
	s.labels = r.GetSandbox().GetLabels()
	return &sandboxapi.UpdateSandboxResponse{}, nil
}

// check requires id to be the created sandbox (s.mu held).
func (s *fakeSandbox) check(id string) error {
	if s.id == "" || id != s.id {
		return errgrpc.ToGRPCf(errdefs.ErrNotFound, "sandbox %s not found", id)
	}
	return nil
}

// serveSandbox is the sandbox server (action "serve" in sandbox mode).
func serveSandbox() error {
	sock := os.Getenv(envSandboxSock)
	if sock == "" {
		return errors.New(envSandboxSock + " not set")
	}
	if err := os.WriteFile(pidName, []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return err
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		return err
	}
	done := make(chan struct{})
	var once sync.Once
	sb := &fakeSandbox{pid: uint32(os.Getpid()), calls: os.Getenv(envSandboxCalls), stopped: make(chan struct{})}
	sb.shutdown = func() {
		once.Do(func() {
			go func() {
				// Shutdown lets the reply out, then closes every
				// connection once it is idle.
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(ctx)
				close(done)
			}()
		})
	}
	sandboxapi.RegisterTTRPCSandboxService(srv, sb)
	srv.RegisterService("containerd.task.v3.Task", &ttrpc.ServiceDesc{
		Methods: map[string]ttrpc.Method{
			"Connect": func(ctx context.Context, unmarshal func(any) error) (any, error) {
				var req taskapi.ConnectRequest
				if err := unmarshal(&req); err != nil {
					return nil, err
				}
				sb.record("Connect", req.ID)
				return &taskapi.ConnectResponse{ShimPid: sb.pid, TaskPid: sb.pid, Version: "fakeshim-sandbox"}, nil
			},
			"State": func(ctx context.Context, unmarshal func(any) error) (any, error) {
				var req taskapi.StateRequest
				if err := unmarshal(&req); err != nil {
					return nil, err
				}
				sb.record("State", req.ID)
				return nil, errgrpc.ToGRPCf(errdefs.ErrNotFound, "task %s not found: this shim runs a sandbox", req.ID)
			},
		},
	})

	_ = os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		return err
	}
	err = srv.Serve(context.Background(), l)
	if errors.Is(err, ttrpc.ErrServerClosed) {
		<-done
		err = nil
	}
	_ = os.Remove(sock)
	return err
}

// delSandbox is `delete` in sandbox mode.
func delSandbox() error {
	if b, err := os.ReadFile(pidName); err == nil {
		pid, err := strconv.Atoi(string(b))
		if err != nil || pid <= 1 {
			return fmt.Errorf("bad %s %q", pidName, b)
		}
		// Only a live fake server: the pid may have been reused.
		if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil &&
			strings.HasSuffix(string(cmdline), "\x00serve\x00") {
			err := syscall.Kill(pid, syscall.SIGKILL)
			fmt.Fprintf(os.Stderr, "fakeshim: delete killed sandbox server %d: %v\n", pid, err)
		}
	}
	if b, err := os.ReadFile(sockPathName); err == nil {
		_ = os.Remove(string(b))
	}
	return nil
}

package sandboxctl

import (
	"context"
	"errors"
	"fmt"
	"time"

	runtimeapi "github.com/containerd/containerd/api/runtime/sandbox/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	imagespec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/core/sandbox"

	"github.com/shimkeeper/shimkeeper/manager"
)

// Controller is the "shim" sandbox controller: each sandbox runs in
// a shim started in the controller's own dirs and driven through the
// sandbox API. It shares the shim map with the task runtime.
type Controller struct {
	stateDir, rootDir string
	m                 *manager.Manager
}

var _ sandbox.Controller = (*Controller)(nil)

// New returns the controller for the given dirs.
func New(stateDir, rootDir string, m *manager.Manager) *Controller {
	return &Controller{stateDir: stateDir, rootDir: rootDir, m: m}
}

func (c *Controller) client(ctx context.Context, id string) (runtimeapi.TTRPCSandboxService, error) {
	s, err := c.m.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return sandbox.NewClient(s.Client())
}

// cleanup shuts a failed sandbox down and deletes its shim.
func (c *Controller) cleanup(ctx context.Context, id string, svc runtimeapi.TTRPCSandboxService) {
	ctx, cancel := c.m.CleanupContext(ctx)
	defer cancel()
	if _, err := svc.ShutdownSandbox(ctx, &runtimeapi.ShutdownSandboxRequest{SandboxID: id}); err != nil {
		log.G(ctx).WithError(err).WithField("id", id).Error("failed to shutdown sandbox")
	}
	if err := c.m.CloseShim(ctx, id); err != nil {
		log.G(ctx).WithError(err).WithField("id", id).Error("failed to delete shim")
	}
}

func (c *Controller) Create(ctx context.Context, info sandbox.Sandbox, opts ...sandbox.CreateOpt) (retErr error) {
	var co sandbox.CreateOptions
	for _, o := range opts {
		o(&co)
	}
	id := info.ID
	if err := c.m.WaitHeldCtx(ctx, id); err != nil {
		return err
	}
	if _, err := c.m.Get(ctx, id); err == nil {
		return fmt.Errorf("sandbox %s already running: %w", id, errdefs.ErrAlreadyExists)
	}
	unlock, err := c.m.LockIDCtx(ctx, id)
	if err != nil {
		return err
	}
	b, err := manager.NewBundle(ctx, c.stateDir, c.rootDir, id, info.Spec)
	unlock()
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			_ = b.Delete()
		}
	}()
	s, err := c.m.Start(ctx, id, b, runtime.CreateOpts{
		Spec:           info.Spec,
		RuntimeOptions: info.Runtime.Options,
		Runtime:        info.Runtime.Name,
	})
	if err != nil {
		return fmt.Errorf("failed to start new shim for sandbox %s: %w", id, err)
	}
	svc, err := sandbox.NewClient(s.Client())
	if err != nil {
		c.m.Discard(ctx, s)
		return err
	}
	if _, err := svc.CreateSandbox(ctx, &runtimeapi.CreateSandboxRequest{
		SandboxID:   id,
		BundlePath:  s.Bundle(),
		Rootfs:      mount.ToProto(co.Rootfs),
		Options:     typeurl.MarshalProto(co.Options),
		NetnsPath:   co.NetNSPath,
		Annotations: co.Annotations,
	}); err != nil {
		c.cleanup(ctx, id, svc)
		return fmt.Errorf("failed to create sandbox %s: %w", id, errgrpc.ToNative(err))
	}
	return nil
}

func (c *Controller) Start(ctx context.Context, id string) (sandbox.ControllerInstance, error) {
	s, err := c.m.Get(ctx, id)
	if err != nil {
		return sandbox.ControllerInstance{}, fmt.Errorf("unable to find sandbox %q: %w", id, err)
	}
	svc, err := sandbox.NewClient(s.Client())
	if err != nil {
		return sandbox.ControllerInstance{}, err
	}
	resp, err := svc.StartSandbox(ctx, &runtimeapi.StartSandboxRequest{SandboxID: id})
	if err != nil {
		c.cleanup(ctx, id, svc)
		return sandbox.ControllerInstance{}, fmt.Errorf("failed to start sandbox %s: %w", id, errgrpc.ToNative(err))
	}
	address, version := s.Endpoint()
	return sandbox.ControllerInstance{
		SandboxID: id,
		Pid:       resp.GetPid(),
		Address:   address,
		Version:   uint32(version),
		CreatedAt: resp.GetCreatedAt().AsTime(),
		Spec:      resp.GetSpec(),
	}, nil
}

func (c *Controller) Platform(ctx context.Context, id string) (imagespec.Platform, error) {
	svc, err := c.client(ctx, id)
	if err != nil {
		return imagespec.Platform{}, err
	}
	resp, err := svc.Platform(ctx, &runtimeapi.PlatformRequest{SandboxID: id})
	if err != nil {
		return imagespec.Platform{}, fmt.Errorf("failed to get sandbox platform: %w", errgrpc.ToNative(err))
	}
	var p imagespec.Platform
	if pp := resp.GetPlatform(); pp != nil {
		p.OS, p.Architecture, p.Variant = pp.OS, pp.Architecture, pp.Variant
	}
	return p, nil
}

// Stop stops the sandbox; a sandbox or shim that is already gone counts as
// stopped.
func (c *Controller) Stop(ctx context.Context, id string, opts ...sandbox.StopOpt) error {
	var so sandbox.StopOptions
	for _, o := range opts {
		o(&so)
	}
	req := &runtimeapi.StopSandboxRequest{SandboxID: id}
	if so.Timeout != nil {
		req.TimeoutSecs = uint32(so.Timeout.Seconds())
	}
	svc, err := c.client(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := svc.StopSandbox(ctx, req); err != nil {
		err = errgrpc.ToNative(err)
		if !errdefs.IsNotFound(err) && !errdefs.IsUnavailable(err) {
			return fmt.Errorf("failed to stop sandbox: %w", err)
		}
	}
	return nil
}

func (c *Controller) Shutdown(ctx context.Context, id string) error {
	svc, err := c.client(ctx, id)
	if err != nil {
		return err
	}
	// A shim may exit as soon as it has shut the sandbox down, before its
	// reply reaches us: a connection closed under the call means it did.
	if _, err := svc.ShutdownSandbox(ctx, &runtimeapi.ShutdownSandboxRequest{SandboxID: id}); err != nil && !errors.Is(err, ttrpc.ErrClosed) {
		return fmt.Errorf("failed to shutdown sandbox: %w", errgrpc.ToNative(err))
	}
	// The close hook may have cleaned up and unregistered the shim already.
	if err := c.m.CloseShim(ctx, id); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("failed to delete sandbox shim: %w", err)
	}
	return nil
}

func (c *Controller) Wait(ctx context.Context, id string) (sandbox.ExitStatus, error) {
	svc, err := c.client(ctx, id)
	if err != nil {
		return sandbox.ExitStatus{}, err
	}
	resp, err := svc.WaitSandbox(ctx, &runtimeapi.WaitSandboxRequest{SandboxID: id})
	if err != nil {
		return sandbox.ExitStatus{}, fmt.Errorf("failed to wait sandbox %s: %w", id, errgrpc.ToNative(err))
	}
	return sandbox.ExitStatus{ExitStatus: resp.GetExitStatus(), ExitedAt: resp.GetExitedAt().AsTime()}, nil
}

// Status of the sandbox. A sandbox whose shim is not registered is
// reported as exited now, as stock does.
func (c *Controller) Status(ctx context.Context, id string, verbose bool) (sandbox.ControllerStatus, error) {
	s, err := c.m.Get(ctx, id)
	if errdefs.IsNotFound(err) {
		return sandbox.ControllerStatus{SandboxID: id, ExitedAt: time.Now()}, nil
	}
	if err != nil {
		return sandbox.ControllerStatus{}, err
	}
	svc, err := sandbox.NewClient(s.Client())
	if err != nil {
		return sandbox.ControllerStatus{}, err
	}
	resp, err := svc.SandboxStatus(ctx, &runtimeapi.SandboxStatusRequest{SandboxID: id, Verbose: verbose})
	if err != nil {
		return sandbox.ControllerStatus{}, fmt.Errorf("failed to query sandbox %s status: %w", id, errgrpc.ToNative(err))
	}
	address, version := s.Endpoint()
	return sandbox.ControllerStatus{
		SandboxID: resp.GetSandboxID(),
		Pid:       resp.GetPid(),
		State:     resp.GetState(),
		Info:      resp.GetInfo(),
		CreatedAt: resp.GetCreatedAt().AsTime(),
		ExitedAt:  resp.GetExitedAt().AsTime(),
		Extra:     resp.GetExtra(),
		Address:   address,
		Version:   uint32(version),
	}, nil
}

func (c *Controller) Metrics(ctx context.Context, id string) (*types.Metric, error) {
	svc, err := c.client(ctx, id)
	if err != nil {
		return nil, err
	}
	resp, err := svc.SandboxMetrics(ctx, &runtimeapi.SandboxMetricsRequest{SandboxID: id})
	if err != nil {
		return nil, errgrpc.ToNative(err)
	}
	return resp.Metrics, nil
}

func (c *Controller) Update(ctx context.Context, id string, sb sandbox.Sandbox, fields ...string) error {
	svc, err := c.client(ctx, id)
	if err != nil {
		return err
	}
	if _, err := svc.UpdateSandbox(ctx, &runtimeapi.UpdateSandboxRequest{
		SandboxID: id,
		Sandbox:   sandbox.ToProto(&sb),
		Fields:    fields,
	}); err != nil {
		return fmt.Errorf("failed to update sandbox %s: %w", id, errgrpc.ToNative(err))
	}
	return nil
}

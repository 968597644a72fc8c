// Package mountctl activates a task's rootfs through containerd's mount manager
// as stock v2.4.2 does, leaving to the shim the mounts it claims. It
// mounts nothing itself; the mount manager does.
package mountctl

import (
	"context"
	"fmt"
	"strings"
	"sync"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/containerd/containerd/v2/core/mount"
)

// deprecatedAllowMounts is the RuntimeInfo annotation through which shims
// declared, before the MountCapabilities extension, the mounts they
// perform themselves ("type" or "transform/*", comma-separated).
const deprecatedAllowMounts = "containerd.io/runtime-allow-mounts"

// Controller activates a task's rootfs through containerd's mount
// manager, as stock v2.4.2 does, leaving to the shim the mount types and
// transforms it claims. A nil manager passes rootfs through.
type Controller struct {
	manager mount.Manager
	// info runs `<shim> -info` for the deprecated annotation.
	info  func(ctx context.Context, runtime string) (*apitypes.RuntimeInfo, error)
	cache sync.Map // runtime name -> *apitypes.MountCapabilities (nil: none)
}

// New returns a Controller over manager (nil: rootfs passes through);
// info runs a runtime's `shim -info`.
func New(manager mount.Manager, info func(ctx context.Context, runtime string) (*apitypes.RuntimeInfo, error)) *Controller {
	return &Controller{manager: manager, info: info}
}

// Runtimes known not to carry the deprecated annotation: -info is not run
// for them.
var noAnnotationRuntimes = map[string]bool{
	"io.containerd.runc.v2":   true,
	"io.containerd.runhcs.v1": true,
}

// Activation is what Activate did: the rootfs to hand the shim, and
// whether this Create made the activation (and must undo it on failure).
type Activation struct {
	Rootfs []mount.Mount
	Owned  bool
}

func (c *Controller) Activate(ctx context.Context, taskID, runtimeName string, bootstrap *bootapi.BootstrapResult, rootfs []mount.Mount) (Activation, error) {
	if c.manager == nil {
		return Activation{Rootfs: rootfs}, nil
	}
	opts := []mount.ActivateOpt{mount.WithLabels(map[string]string{"containerd.io/gc.bref.container": taskID})}
	opts = append(opts, c.claims(ctx, runtimeName, bootstrap)...)
	info, err := c.manager.Activate(ctx, taskID, rootfs, opts...)
	switch {
	case err == nil:
		return Activation{Rootfs: info.System, Owned: true}, nil
	case errdefs.IsAlreadyExists(err):
		// A task of the same id reuses the activation; the container's back
		// reference keeps it alive.
		info, err := c.manager.Info(ctx, taskID)
		if err != nil {
			return Activation{}, fmt.Errorf("failed to get info on already active mount: %w", err)
		}
		return Activation{Rootfs: info.System}, nil
	case errdefs.IsNotImplemented(err):
		// Nothing needed the mount manager.
		return Activation{Rootfs: rootfs}, nil
	}
	return Activation{}, err
}

func (c *Controller) Deactivate(ctx context.Context, taskID string) error {
	if c.manager == nil {
		return nil
	}
	return c.manager.Deactivate(ctx, taskID)
}

func (c *Controller) claims(ctx context.Context, runtimeName string, bootstrap *bootapi.BootstrapResult) []mount.ActivateOpt {
	var caps apitypes.MountCapabilities
	found, err := bootstrap.FindExtension(&caps)
	if err != nil {
		// Claiming nothing makes the mount manager do the work: the safe
		// direction to fail in.
		log.G(ctx).WithError(err).Error("failed to read shim mount capabilities, assuming none")
		return nil
	}
	cp := &caps
	if !found {
		cp = c.legacy(ctx, runtimeName)
	}
	if cp == nil {
		return nil
	}
	var opts []mount.ActivateOpt
	for _, t := range cp.Types {
		opts = append(opts, mount.WithAllowMountType(t))
	}
	for _, t := range cp.Transforms {
		opts = append(opts, mount.WithAllowTransform(t))
	}
	return opts
}

// legacy reads the deprecated annotation through -info. Results are cached
// per runtime name; failures are not.
func (c *Controller) legacy(ctx context.Context, runtimeName string) *apitypes.MountCapabilities {
	if c.info == nil || noAnnotationRuntimes[runtimeName] {
		return nil
	}
	if v, ok := c.cache.Load(runtimeName); ok {
		caps, _ := v.(*apitypes.MountCapabilities)
		return caps
	}
	info, err := c.info(ctx, runtimeName)
	if err != nil {
		log.G(ctx).WithError(err).WithField("runtime", runtimeName).Error("failed to query deprecated runtime-allow-mounts annotation")
		return nil
	}
	var caps *apitypes.MountCapabilities
	if v, ok := info.GetAnnotations()[deprecatedAllowMounts]; ok {
		log.G(ctx).WithFields(log.Fields{"runtime": runtimeName, "value": v}).
			Warnf("runtime declares handled mounts with the deprecated %q annotation; it should attach a MountCapabilities extension to its bootstrap result instead", deprecatedAllowMounts)
		caps = parseAllowMounts(v)
	}
	c.cache.Store(runtimeName, caps)
	return caps
}

func parseAllowMounts(v string) *apitypes.MountCapabilities {
	caps := &apitypes.MountCapabilities{}
	for _, entry := range strings.Split(v, ",") {
		switch {
		case entry == "":
		case strings.HasSuffix(entry, "/*"):
			caps.Transforms = append(caps.Transforms, strings.TrimSuffix(entry, "/*"))
		default:
			caps.Types = append(caps.Types, entry)
		}
	}
	return caps
}

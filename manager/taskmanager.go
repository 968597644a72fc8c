package manager

import (
	"context"
	"errors"
	"fmt"
	"slices"

	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/plugins"

	"github.com/shimkeeper/shimkeeper/mountctl"
	"github.com/shimkeeper/shimkeeper/shimbin"
)

// TaskManager is the task runtime (runtime.PlatformRuntime) over the shim
// manager, with its own state and root dirs.
type TaskManager struct {
	stateDir, rootDir string
	m                 *Manager
	mounts            *mountctl.Controller
}

var _ runtime.PlatformRuntime = (*TaskManager)(nil)

// NewTaskManager returns the task runtime for the given dirs. mounts may be
// nil when no mount manager is configured.
func NewTaskManager(stateDir, rootDir string, m *Manager, mounts mount.Manager) *TaskManager {
	tm := &TaskManager{stateDir: stateDir, rootDir: rootDir, m: m}
	tm.mounts = mountctl.New(mounts, func(ctx context.Context, name string) (*apitypes.RuntimeInfo, error) {
		return tm.runtimeInfo(ctx, &apitypes.RuntimeRequest{RuntimePath: name})
	})
	return tm
}

// ID is io.containerd.runtime.v2.task.
func (tm *TaskManager) ID() string { return plugins.RuntimePluginV2.String() + ".task" }

// Create makes the bundle, starts (or joins) a shim, activates the rootfs
// mounts and creates the task in the shim. On failure it undoes all of it.
func (tm *TaskManager) Create(ctx context.Context, taskID string, opts runtime.CreateOpts) (_ runtime.Task, retErr error) {
	if err := tm.m.WaitHeldCtx(ctx, taskID); err != nil {
		return nil, err
	}
	unlock, err := tm.m.LockIDCtx(ctx, taskID)
	if err != nil {
		return nil, err
	}
	b, err := NewBundle(ctx, tm.stateDir, tm.rootDir, taskID, opts.Spec)
	unlock()
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			if err := b.Delete(); err != nil {
				log.G(ctx).WithError(err).WithField("id", taskID).Warn("failed to remove bundle after failed create")
			}
		}
	}()
	log.G(ctx).WithFields(log.Fields{"id": taskID, "runtime": opts.Runtime}).Debug("creating task")

	// Deferred before the shim cleanup so that it runs after it: the shim
	// may still use the mounts.
	var act mountctl.Activation
	defer func() {
		if retErr != nil && act.Owned {
			dctx, cancel := tm.m.CleanupContext(ctx)
			defer cancel()
			if err := tm.mounts.Deactivate(dctx, taskID); err != nil {
				log.G(ctx).WithError(err).WithField("id", taskID).Error("failed to deactivate mounts")
			}
		}
	}()

	s, err := tm.m.Start(ctx, taskID, b, opts)
	if err != nil {
		return nil, fmt.Errorf("failed to start shim: %w", err)
	}
	defer func() {
		if retErr != nil {
			tm.m.Remove(ctx, s)
			tm.m.abortStarted(ctx, s)
		}
	}()

	act, err = tm.mounts.Activate(ctx, taskID, opts.Runtime, s.BootstrapResult(), opts.Rootfs)
	if err != nil {
		return nil, err
	}
	opts.Rootfs = act.Rootfs

	if err := tm.validateRuntimeFeatures(ctx, opts); err != nil {
		return nil, fmt.Errorf("failed to validate OCI runtime features: %w", err)
	}

	t, err := newTask(s)
	if err != nil {
		return nil, err
	}
	err = t.create(ctx, opts)
	if err != nil && errdefs.IsNotImplemented(err) && s.Downgrade() == nil {
		log.G(ctx).WithError(err).WithField("id", taskID).Warn("failed to call task.Create, downgrading client API version to try again")
		if t, err = newTask(s); err != nil {
			return nil, fmt.Errorf("failed to create shim task after downgrading: %w", err)
		}
		err = t.create(ctx, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to create shim task: %w", err)
	}
	return t, nil
}

// Get returns the task registered under id.
func (tm *TaskManager) Get(ctx context.Context, id string) (runtime.Task, error) {
	s, err := tm.m.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return newTask(s)
}

// Tasks lists the registered tasks. As in stock, the map is shared with
// the sandbox controller, so sandbox shims are listed too. Once the daemon
// serves, it waits for recovery's verdict on every shim of the listed
// namespaces; during daemon start it does not wait, and lists a shim not
// yet judged as a task whose calls wait for the verdict.
func (tm *TaskManager) Tasks(ctx context.Context, all bool) ([]runtime.Task, error) {
	return tm.m.tasks(ctx, all)
}

// Delete deletes the task and its shim. The container record must exist.
func (tm *TaskManager) Delete(ctx context.Context, taskID string) (*runtime.Exit, error) {
	s, err := tm.m.Get(ctx, taskID)
	if err != nil {
		return nil, err
	}
	if _, err := tm.m.cfg.Containers.Get(ctx, taskID); err != nil {
		return nil, err
	}
	t, err := newTask(s)
	if err != nil {
		return nil, err
	}
	exit, err := tm.m.deleteTask(ctx, t, func() { tm.m.Remove(ctx, s) })
	if err != nil && !errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("failed to delete task: %w", err)
	}
	// NotFound: the shim knew no such task and nothing was cached, but the
	// runtime side is cleaned up, so the mounts go too.
	if merr := tm.mounts.Deactivate(ctx, taskID); merr != nil && !errdefs.IsNotFound(merr) {
		log.G(ctx).WithError(merr).WithField("id", taskID).Error("failed to deactivate mounts")
	}
	if err != nil {
		return nil, fmt.Errorf("failed to delete task: %w", err)
	}
	return exit, nil
}

// PluginInfo answers a *apitypes.RuntimeRequest by running the shim's
// -info.
func (tm *TaskManager) PluginInfo(ctx context.Context, request any) (any, error) {
	req, ok := request.(*apitypes.RuntimeRequest)
	if !ok {
		return nil, fmt.Errorf("unknown request type %T: %w", request, errdefs.ErrNotImplemented)
	}
	return tm.runtimeInfo(ctx, req)
}

func (tm *TaskManager) runtimeInfo(ctx context.Context, req *apitypes.RuntimeRequest) (*apitypes.RuntimeInfo, error) {
	path, err := tm.m.ResolveRuntime(req.RuntimePath)
	if err != nil {
		return nil, fmt.Errorf("failed to resolve runtime path: %w", err)
	}
	return shimbin.Info(ctx, path, req.Options)
}

// validateRuntimeFeatures checks, only when a mount uses idmap, that the
// runtime says it supports idmap mounts: runc silently ignores features it
// does not know.
func (tm *TaskManager) validateRuntimeFeatures(ctx context.Context, opts runtime.CreateOpts) error {
	var spec specs.Spec
	if err := typeurl.UnmarshalTo(opts.Spec, &spec); err != nil {
		return fmt.Errorf("unmarshal spec: %w", err)
	}
	if !usesIDMapMounts(spec) {
		return nil
	}
	topts := taskOptions(opts)
	info, err := tm.runtimeInfo(ctx, &apitypes.RuntimeRequest{RuntimePath: opts.Runtime, Options: typeurl.MarshalProto(topts)})
	if err != nil {
		return fmt.Errorf("runtime info: %w", err)
	}
	feat, err := typeurl.UnmarshalAny(info.Features)
	if err != nil {
		return fmt.Errorf("unmarshal runtime features: %w", err)
	}
	f, ok := feat.(*features.Features)
	if !ok {
		// Not a runc-compatible runtime: not affected.
		return nil
	}
	if f.Linux == nil || f.Linux.MountExtensions == nil || f.Linux.MountExtensions.IDMap == nil {
		return errors.New("idmap mounts not supported: missing `mountExtensions.idmap` entry in `features` command")
	}
	if e := f.Linux.MountExtensions.IDMap.Enabled; e == nil || !*e {
		return errors.New("idmap mounts not supported: entry `mountExtensions.idmap.Enabled` in `features` command not present or disabled")
	}
	return nil
}

func usesIDMapMounts(spec specs.Spec) bool {
	for _, m := range spec.Mounts {
		if m.UIDMappings != nil || m.GIDMappings != nil ||
			slices.Contains(m.Options, "idmap") || slices.Contains(m.Options, "ridmap") {
			return true
		}
	}
	return false
}

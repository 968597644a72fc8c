package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	goruntime "runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/log"
	"github.com/containerd/platforms"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"

	"github.com/containerd/containerd/v2/core/events/exchange"
	"github.com/containerd/containerd/v2/core/metadata"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/deprecation"
	"github.com/containerd/containerd/v2/pkg/timeout"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/containerd/v2/plugins/services/warning"

	"github.com/shimkeeper/shimkeeper/config"
	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/loader"
	"github.com/shimkeeper/shimkeeper/manager"
	"github.com/shimkeeper/shimkeeper/metrics"
	"github.com/shimkeeper/shimkeeper/sandboxctl"
)

func init() {
	for key, d := range config.TimeoutDefaults {
		timeout.Set(key, d)
	}

	registry.Register(&plugin.Registration{
		Type:            plugins.ShimPlugin,
		ID:              "manager",
		Requires:        []plugin.Type{plugins.EventPlugin, plugins.MetadataPlugin},
		Config:          &config.Shim{},
		InitFn:          fatalOnError(initShimManager),
		ConfigMigration: config.Migrate,
	})
	registry.Register(&plugin.Registration{
		Type: plugins.RuntimePluginV2,
		ID:   "task",
		// TaskMonitorPlugin (not in stock's list) only orders init: the
		// monitor must exist before recovery hands it the tasks it adopts.
		Requires: []plugin.Type{plugins.ShimPlugin, plugins.MountManagerPlugin, plugins.WarningPlugin, plugins.TaskMonitorPlugin},
		Config:   config.DefaultTask(),
		InitFn:   fatalOnError(initTaskRuntime),
	})
	registry.Register(&plugin.Registration{
		Type:     plugins.SandboxControllerPlugin,
		ID:       "shim",
		Requires: []plugin.Type{plugins.ShimPlugin, plugins.EventPlugin},
		InitFn:   fatalOnError(initSandboxController),
	})
}

// taskSection hands the task runtime's validated section to the shim
// sandbox controller, whose pass follows the same recovery_* keys
// (recovery_hold_start included) but which has no section of its own.
// The registry inits the task runtime first: the tasks service, which
// comes before the CRI plugins that need sandbox controllers, requires it.
var taskSection struct {
	sync.Mutex
	cfg *config.Task
}

func setTaskSection(c *config.Task) {
	taskSection.Lock()
	defer taskSection.Unlock()
	taskSection.cfg = c
}

// sandboxRecoverySection is the section the sandbox controller recovers
// with: the task runtime's, or the defaults (said in the log) when the
// task runtime is disabled or was not initialised first.
func sandboxRecoverySection(ctx context.Context) *config.Task {
	taskSection.Lock()
	defer taskSection.Unlock()
	if taskSection.cfg == nil {
		log.G(ctx).Warnf("the task runtime (%s) has not loaded before the shim sandbox controller: its recovery uses the default recovery_* settings", config.TaskPlugin)
		return config.DefaultTask()
	}
	return taskSection.cfg
}

// fatalOnError makes a failure of init fail the daemon's start, instead of
// the default for plugins (a warning, and a daemon that serves without the
// plugin, here: without any container runtime). containerd treats a plugin
// that registered readiness and then failed as fatal, so init registers
// readiness first and reports ready when it succeeds. A bad config value
// thus stops the daemon with an error that names the key.
func fatalOnError(init func(*plugin.InitContext) (any, error)) func(*plugin.InitContext) (any, error) {
	return func(ic *plugin.InitContext) (any, error) {
		if ic.RegisterReadiness == nil {
			return init(ic)
		}
		ready := ic.RegisterReadiness()
		v, err := init(ic)
		if err == nil {
			ready()
		}
		return v, err
	}
}

func initShimManager(ic *plugin.InitContext) (any, error) {
	cfg := ic.Config.(*config.Shim)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	socketDir, err := cfg.SocketDirInUse()
	if err != nil {
		return nil, err
	}
	mp, err := ic.GetSingle(plugins.MetadataPlugin)
	if err != nil {
		return nil, err
	}
	db, ok := mp.(*metadata.DB)
	if !ok {
		return nil, fmt.Errorf("metadata plugin is %T, not *metadata.DB", mp)
	}
	ep, err := ic.GetByID(plugins.EventPlugin, "exchange")
	if err != nil {
		return nil, err
	}
	ex, ok := ep.(*exchange.Exchange)
	if !ok {
		return nil, fmt.Errorf("event exchange is %T, not *exchange.Exchange", ep)
	}
	return manager.New(manager.Config{
		Address:      ic.Properties[plugins.PropertyGRPCAddress],
		TTRPCAddress: ic.Properties[plugins.PropertyTTRPCAddress],
		SocketDir:    socketDir,
		Env:          cfg.Env,
		Events:       ex,
		Subscriber:   ex,
		Containers:   metadata.NewContainerStore(db),
		Sandboxes:    metadata.NewSandboxStore(db),
		// The server has applied [timeouts] over the defaults set in init.
		Timeouts: config.TimeoutsOf(timeout.Get),
	}), nil
}

func shimManager(ic *plugin.InitContext) (*manager.Manager, error) {
	p, err := ic.GetSingle(plugins.ShimPlugin)
	if err != nil {
		return nil, err
	}
	m, ok := p.(*manager.Manager)
	if !ok {
		return nil, fmt.Errorf("shim plugin is %T, not shimkeeper's manager", p)
	}
	return m, nil
}

func initTaskRuntime(ic *plugin.InitContext) (any, error) {
	cfg := ic.Config.(*config.Task)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	setTaskSection(cfg)
	supported, err := platforms.ParseAll(cfg.Platforms)
	if err != nil {
		return nil, err
	}
	ic.Meta.Platforms = supported
	if ic.Meta.Exports == nil {
		ic.Meta.Exports = map[string]string{}
	}
	ic.Meta.Exports["log-uri-schemes"] = logURISchemes()

	m, err := shimManager(ic)
	if err != nil {
		return nil, err
	}
	var mounts mount.Manager
	if mp, err := ic.GetSingle(plugins.MountManagerPlugin); err == nil {
		mounts, _ = mp.(mount.Manager)
	} else if !errors.Is(err, plugin.ErrPluginNotFound) {
		return nil, err
	}
	root, state := ic.Properties[plugins.PropertyRootDir], ic.Properties[plugins.PropertyStateDir]
	for _, d := range []string{root, state} {
		// 0711 so that userns-remapped containers can traverse the state dir.
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, err
		}
	}
	// The task service hands the task monitor (cgroup metrics) the tasks
	// it finds at its init, which may come before recovery has judged
	// them: recovery hands over the ones it adopts.
	if tm, err := ic.GetSingle(plugins.TaskMonitorPlugin); err == nil {
		if tm, ok := tm.(runtime.TaskMonitor); ok {
			m.SetTaskMonitor(tm)
		}
	} else if !errors.Is(err, plugin.ErrPluginNotFound) {
		log.G(ic.Context).WithError(err).Warn("no task monitor: tasks recovered after the task service started get no cgroup metrics")
	}
	opts := cfg.RecoveryOptions(state, root)
	opts.Observer = metrics.Default()
	rec := loader.Run(ic.Context, m, opts)
	exportRecovery(ic, rec)
	// A pass over thousands of shims leaves a burst of garbage (scan
	// buffers, probe clients of shims not kept); hand it back to the OS
	// once the pass is done rather than carrying it as RSS.
	go func() {
		rec.Wait()
		debug.FreeOSMemory()
	}()

	wp, err := ic.GetSingle(plugins.WarningPlugin)
	if err != nil {
		return nil, err
	}
	if ws, ok := wp.(warning.Service); ok && cgroups.Mode() != cgroups.Unified && goruntime.GOOS == "linux" {
		ws.Emit(ic.Context, deprecation.CgroupV1)
	}
	quietUnknownStatus()
	return manager.NewTaskManager(state, root, m, mounts), nil
}

func initSandboxController(ic *plugin.InitContext) (any, error) {
	m, err := shimManager(ic)
	if err != nil {
		return nil, err
	}
	if _, err := ic.GetByID(plugins.EventPlugin, "exchange"); err != nil {
		return nil, err
	}
	root, state := ic.Properties[plugins.PropertyRootDir], ic.Properties[plugins.PropertyStateDir]
	for _, d := range []string{root, state} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		// Fix dirs created 0711 by older releases.
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, err
		}
	}
	opts := sandboxRecoverySection(ic.Context).RecoveryOptions(state, root)
	opts.Observer = metrics.Default()
	exportRecovery(ic, loader.Run(ic.Context, m, opts))
	log.G(ic.Context).Debug("shim sandbox controller ready")
	return sandboxctl.New(state, root, m), nil
}

func logURISchemes() string {
	if goruntime.GOOS == "windows" {
		return "binary,binary-v2,file,npipe"
	}
	return "fifo,binary,binary-v2,file"
}

// exportRecovery puts what is known of the recovery when the plugin is
// loaded in its exports (ctr plugins ls -d): recovery.ready (how long it
// held daemon start), recovery.hold_start, recovery.boot_id,
// recovery.rebooted, recovery.report (the report's path) and
// recovery.entries (bundles found). Verdicts come later, while the daemon
// serves: they are in the report and the metrics.
func exportRecovery(ic *plugin.InitContext, rec *loader.Recovery) {
	r := rec.Report()
	if ic.Meta.Exports == nil {
		ic.Meta.Exports = map[string]string{}
	}
	ex := ic.Meta.Exports
	ex["recovery.ready"] = time.Duration(r.Ready).String()
	ex["recovery.hold_start"] = fmt.Sprint(r.HeldStart)
	ex["recovery.boot_id"] = r.BootID
	ex["recovery.rebooted"] = fmt.Sprint(r.Rebooted)
	ex["recovery.report"] = layout.ReportPath(r.StateDir)
	ex["recovery.entries"] = fmt.Sprint(r.Found)
}

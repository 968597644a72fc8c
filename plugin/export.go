package plugin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/containerd/v2/pkg/timeout"

	"github.com/shimkeeper/shimkeeper/loader"
	"github.com/shimkeeper/shimkeeper/manager"
)

// What `containerd recovery plan` (package operator) needs to predict what
// the daemon will do, from the same defaults and rules the InitFns use.
// None of it touches the disk.

// DefaultTaskConfig returns [plugins."io.containerd.runtime.v2.task"] with
// every default filled in, as the daemon decodes config.toml onto it.
func DefaultTaskConfig() *TaskConfig { return defaultTaskConfig() }

// RecoveryOptions are the options the task runtime recovers its state and
// root dirs with.
func (c *TaskConfig) RecoveryOptions(state, root string) loader.Options {
	return c.recoveryOptions(state, root)
}

// SandboxRecoveryOptions are the options the shim sandbox controller
// recovers its dirs with: the task defaults, whatever the task section
// says (the controller has no config section of its own).
func SandboxRecoveryOptions(state, root string) loader.Options {
	return defaultTaskConfig().recoveryOptions(state, root)
}

// SocketDirReadOnly returns the socket dir the manager would use, without
// creating anything: the configured one, or root's default. For another
// user, the default depends on which candidate dir can be created, so it
// is the first candidate that already exists as a dir.
func (c *ShimConfig) SocketDirReadOnly() (string, error) {
	if c.SocketDir != "" {
		return filepath.Clean(c.SocketDir), nil
	}
	uid := os.Geteuid()
	candidates := socketDirCandidates(uid)
	if uid == 0 {
		return candidates[0], nil
	}
	for _, d := range candidates {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() && len(d) <= maxSocketDirLen {
			return d, nil
		}
	}
	return "", fmt.Errorf("%s.socket_dir: not set, and no default socket directory exists for this user", shimSection)
}

// MigrateConfig is the shim manager's ConfigMigration (sched_core of a
// version 1 or 2 task section becomes SCHED_CORE=1 in the manager's env).
func MigrateConfig(ctx context.Context, configVersion int, pluginConfigs map[string]any) error {
	return migrateConfig(ctx, configVersion, pluginConfigs)
}

// TimeoutsFrom returns the shim budgets the daemon would use given the
// [timeouts] section of config.toml: each key set there, else its default.
func TimeoutsFrom(section map[string]string) (manager.Timeouts, error) {
	get := func(key string) (time.Duration, error) {
		v, ok := section[key]
		if !ok {
			return timeout.Get(key), nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("timeouts.%q: %w", key, err)
		}
		return d, nil
	}
	var t manager.Timeouts
	for _, f := range []struct {
		key string
		d   *time.Duration
	}{{TimeoutStart, &t.Start}, {TimeoutLoad, &t.Load}, {TimeoutCleanup, &t.Cleanup}, {TimeoutShutdown, &t.Shutdown}} {
		d, err := get(f.key)
		if err != nil {
			return manager.Timeouts{}, err
		}
		*f.d = d
	}
	return t, nil
}

package operator

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/containerd/plugin"

	srvconfig "github.com/containerd/containerd/v2/cmd/containerd/server/config"
	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/containerd/v2/version"

	"github.com/shimkeeper/shimkeeper/config"
	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/manager"
)

// DefaultConfigPath is where the daemon looks for config.toml.
var DefaultConfigPath = filepath.Join(defaults.DefaultConfigDir, "config.toml")

// daemon is what the operator commands need of a daemon's configuration.
type daemon struct {
	ConfigPath string // "" when no file was read (defaults only)
	Root       string
	State      string

	GRPCAddress, TTRPCAddress string

	Shim     config.Shim
	Task     config.Task
	Timeouts manager.Timeouts
}

// loadDaemon reads config.toml the way the daemon does: the file is read
// if it exists or was named explicitly, then decoded onto the daemon's
// defaults, with version migrations (the shim manager's included),
// imports, and each plugin section decoded onto its defaults.
func loadDaemon(ctx context.Context, o Options) (*daemon, error) {
	path, explicit := o.ConfigPath, o.ConfigSet
	if path == "" {
		path = DefaultConfigPath
	}
	cfg := &srvconfig.Config{
		Version:         version.ConfigVersion,
		Root:            defaults.DefaultRootDir,
		State:           defaults.DefaultStateDir,
		DisabledPlugins: []string{},
		RequiredPlugins: []string{},
		Imports:         []string{defaults.DefaultConfigIncludePattern},
		Plugins: map[string]any{
			"io.containerd.server.v1.grpc": map[string]any{"address": defaults.DefaultAddress},
		},
	}
	d := &daemon{}
	_, err := os.Stat(path)
	switch {
	case err == nil || explicit:
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", path, unwrapPath(err))
		}
		if err := srvconfig.LoadConfigWithPlugins(ctx, path, migrations, cfg); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		d.ConfigPath = path
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("config %s: %w", path, unwrapPath(err))
	}
	if err := applyFlags(cfg, o); err != nil {
		return nil, err
	}
	d.Root, d.State = cfg.Root, cfg.State
	if d.Root == "" || d.State == "" {
		return nil, fmt.Errorf("config %s: root and state must be set", path)
	}

	// As server.New: the addresses shims are given.
	d.GRPCAddress = readString(cfg.Plugins, "io.containerd.server.v1.grpc", "address")
	d.TTRPCAddress = readString(cfg.Plugins, "io.containerd.server.v1.ttrpc", "address")
	if d.GRPCAddress == "" {
		d.GRPCAddress = defaults.DefaultAddress
	}
	if d.TTRPCAddress == "" {
		d.TTRPCAddress = defaults.DefaultAddress + ".ttrpc"
	}
	for key, v := range cfg.Timeouts {
		if _, err := time.ParseDuration(v); err != nil {
			return nil, fmt.Errorf("config %s: timeouts.%q: unable to parse %q into a time duration", path, key, v)
		}
	}
	if d.Timeouts, err = config.TimeoutsFrom(cfg.Timeouts); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}

	if _, err := cfg.Decode(ctx, config.ShimPlugin, &d.Shim); err != nil {
		return nil, fmt.Errorf("config %s: plugins.%q: %w", path, config.ShimPlugin, err)
	}
	if err := d.Shim.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	d.Task = *config.DefaultTask()
	if _, err := cfg.Decode(ctx, config.TaskPlugin, &d.Task); err != nil {
		return nil, fmt.Errorf("config %s: plugins.%q: %w", path, config.TaskPlugin, err)
	}
	if err := d.Task.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return d, nil
}

// applyFlags applies the daemon's --root, --state and --address over the
// config, as the daemon does.
func applyFlags(cfg *srvconfig.Config, o Options) error {
	for _, f := range []struct {
		flag string
		dst  *string
	}{{o.Root, &cfg.Root}, {o.State, &cfg.State}} {
		if f.flag != "" {
			abs, err := filepath.Abs(f.flag)
			if err != nil {
				return err
			}
			*f.dst = abs
		}
	}
	if o.Address != "" {
		grpc, ok := cfg.Plugins["io.containerd.server.v1.grpc"].(map[string]any)
		if !ok {
			grpc = map[string]any{}
		}
		grpc["address"] = o.Address
		cfg.Plugins["io.containerd.server.v1.grpc"] = grpc
		if _, ok := cfg.Plugins["io.containerd.server.v1.ttrpc"]; !ok {
			cfg.Plugins["io.containerd.server.v1.ttrpc"] = map[string]any{"address": o.Address + ".ttrpc"}
		}
	}
	return nil
}

// migrations yields the one plugin config migration shimkeeper's daemon
// has beyond stock's own version steps.
func migrations() iter.Seq[plugin.Registration] {
	return slices.Values([]plugin.Registration{{
		Type: plugins.ShimPlugin, ID: "manager", ConfigMigration: config.Migrate,
	}})
}

// readString reads a string at a path of nested tables, as server.New does.
func readString(m map[string]any, keys ...string) string {
	for i, k := range keys {
		v, ok := m[k]
		if !ok {
			return ""
		}
		if i < len(keys)-1 {
			if m, ok = v.(map[string]any); !ok {
				return ""
			}
			continue
		}
		switch v := v.(type) {
		case string:
			return v
		case fmt.Stringer:
			return v.String()
		case []byte:
			return string(v)
		}
	}
	return ""
}

// unwrapPath drops the operation and path of a *fs.PathError, which the
// caller's message already names.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Plugin dirs of the daemon.
func (d *daemon) taskState() string    { return layout.PluginDir(d.State, layout.TaskPluginDir) }
func (d *daemon) taskRoot() string     { return layout.PluginDir(d.Root, layout.TaskPluginDir) }
func (d *daemon) sandboxState() string { return layout.PluginDir(d.State, layout.SandboxPluginDir) }
func (d *daemon) sandboxRoot() string  { return layout.PluginDir(d.Root, layout.SandboxPluginDir) }
func (d *daemon) metadataDB() string   { return layout.MetadataDB(d.Root) }

// checkState fails unless the state dir exists: a plan of a dir that is
// not there would wrongly say "nothing to do".
func (d *daemon) checkState() error {
	fi, err := os.Stat(d.State)
	if err != nil {
		return fmt.Errorf("state dir %s: %w (check `state` in %s)", d.State, unwrapPath(err), d.configName())
	}
	if !fi.IsDir() {
		return fmt.Errorf("state dir %s is not a directory (check `state` in %s)", d.State, d.configName())
	}
	return nil
}

func (d *daemon) configName() string {
	if d.ConfigPath == "" {
		return "the config (none read: defaults)"
	}
	return d.ConfigPath
}

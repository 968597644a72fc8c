package plugin

import (
	"context"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"

	srvconfig "github.com/containerd/containerd/v2/cmd/containerd/server/config"
	"github.com/containerd/containerd/v2/pkg/timeout"
	"github.com/containerd/containerd/v2/version"

	"github.com/shimkeeper/shimkeeper/config"
)

// registered returns this package's registration of uri.
func registered(t *testing.T, uri string) plugin.Registration {
	t.Helper()
	var found []plugin.Registration
	for _, r := range registry.Graph(func(*plugin.Registration) bool { return false }) {
		if r.URI() == uri {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d registrations of %s", len(found), uri)
	}
	return found[0]
}

// The registrations carry package config's types, defaults and migration:
// containerd's own loader, run over the registered graph as the daemon
// runs it, migrates a version 2 config onto them.
func TestRegistrationsCarryConfig(t *testing.T) {
	if err := registered(t, config.TaskPlugin).Config.(*config.Task).Validate(); err != nil {
		t.Errorf("registered default task config: %v", err)
	}
	if _, ok := registered(t, config.ShimPlugin).Config.(*config.Shim); !ok {
		t.Error("shim manager registered without a *config.Shim")
	}
	path := filepath.Join(t.TempDir(), "config.toml")
	toml := "version = 2\n[plugins.\"io.containerd.runtime.v2.task\"]\n  sched_core = true\n"
	if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	g := registry.Graph(func(*plugin.Registration) bool { return false })
	regs := func() iter.Seq[plugin.Registration] { return slices.Values(g) }
	cfg := &srvconfig.Config{Version: version.ConfigVersion}
	if err := srvconfig.LoadConfigWithPlugins(context.Background(), path, regs, cfg); err != nil {
		t.Fatal(err)
	}
	out, err := cfg.Decode(context.Background(), config.ShimPlugin, &config.Shim{})
	if err != nil {
		t.Fatal(err)
	}
	if env := out.(*config.Shim).Env; !slices.Equal(env, []string{"SCHED_CORE=1"}) {
		t.Errorf("migrated shim env %v, want [SCHED_CORE=1]", env)
	}
	for key, d := range config.TimeoutDefaults {
		if got := timeout.Get(key); got != d {
			t.Errorf("timeout %s = %s after init, want %s", key, got, d)
		}
	}
	if config.TimeoutDefaults[config.TimeoutLoad] != 5*time.Second {
		t.Errorf("stock's shim load timeout is 5s")
	}
}

// The sandbox controller recovers with the task runtime's section once
// the task runtime has validated it (recovery_hold_start holds its pass
// too), and with the defaults otherwise.
func TestSandboxRecoveryFollowsTaskSection(t *testing.T) {
	t.Cleanup(func() { setTaskSection(nil) })
	setTaskSection(nil)
	if got := sandboxRecoverySection(context.Background()); got.RecoveryHoldStart || got.RecoveryDeadline != config.DefaultRecoveryDeadline {
		t.Errorf("without a task section: %+v, want the defaults", got)
	}
	c := config.DefaultTask()
	c.RecoveryHoldStart, c.RecoveryDeadline = true, config.Duration(3*time.Second)
	setTaskSection(c)
	opts := sandboxRecoverySection(context.Background()).RecoveryOptions("/s", "/r")
	if !opts.HoldStart || opts.Deadline != 3*time.Second {
		t.Errorf("sandbox recovery options %+v, want hold start and a 3s deadline", opts)
	}
}

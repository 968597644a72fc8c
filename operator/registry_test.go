package operator

import (
	"testing"

	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"
)

// The recovery subcommands read config.toml and the plugin dirs through
// packages config and layout: they link no package whose init()
// registers plugins (package plugin, or any of containerd's), so they
// cannot be run with a registry that a daemon in the same binary would
// panic on, and what they print does not depend on what is registered.
func TestLinksNoPluginRegistrations(t *testing.T) {
	for _, r := range registry.Graph(func(*plugin.Registration) bool { return false }) {
		t.Errorf("package operator links a registration: %s", r.URI())
	}
}

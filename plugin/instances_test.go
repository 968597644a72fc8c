package plugin

import (
	"io"
	"testing"

	"github.com/shimkeeper/shimkeeper/manager"
	"github.com/shimkeeper/shimkeeper/sandboxctl"
)

// containerd's server calls Close on every plugin instance that has it when
// it stops; closing a shim client runs `shim delete`, which kills the
// container. So no instance handed to the plugin registry may be a Closer.
func TestInstancesAreNotClosers(t *testing.T) {
	for name, v := range map[string]any{
		"Manager":           &manager.Manager{},
		"TaskManager":       &manager.TaskManager{},
		"SandboxController": &sandboxctl.Controller{},
	} {
		if _, ok := v.(io.Closer); ok {
			t.Errorf("%s implements io.Closer: stopping the daemon would kill containers", name)
		}
	}
}

package manager

import (
	"context"
	"io"
	"testing"
	"time"
)

// containerd's server calls Close on every plugin instance that has it when
// it stops; closing a shim client runs `shim delete`, which kills the
// container. So no instance handed to the plugin registry may be a Closer.
func TestInstancesAreNotClosers(t *testing.T) {
	for name, v := range map[string]any{
		"Manager":           &Manager{},
		"TaskManager":       &TaskManager{},
		"SandboxController": &SandboxController{},
	} {
		if _, ok := v.(io.Closer); ok {
			t.Errorf("%s implements io.Closer: stopping the daemon would kill containers", name)
		}
	}
}

// Holds of one id nest: the id stays held until the last release, and a
// second release of the same hold is harmless.
func TestHoldsNest(t *testing.T) {
	m := New(Config{})
	r1 := m.Hold("ns", "id")
	r2 := m.Hold("ns", "id")
	r1()
	r1()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := m.WaitHeld(ctx, "ns", "id"); err == nil {
		t.Fatal("id free while a hold remains")
	}
	r2()
	if err := m.WaitHeld(context.Background(), "ns", "id"); err != nil {
		t.Fatalf("id still held after the last release: %v", err)
	}
}

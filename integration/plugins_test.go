//go:build integration

package integration

import "testing"

// TestPluginsRegistered checks the three plugins shimkeeper replaces load
// with stock's Type and ID.
func TestPluginsRegistered(t *testing.T) {
	t.Parallel()
	d := newDaemon(t)
	plugins, err := parsePlugins(d.mustCtr("plugins", "ls"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []plugin{
		{Type: "io.containerd.shim.v1", ID: "manager", Status: "ok"},
		{Type: "io.containerd.runtime.v2", ID: "task", Status: "ok"},
		{Type: "io.containerd.sandbox.controller.v1", ID: "shim", Status: "ok"},
		// Consumers of the three, which fail if the runtime is missing.
		{Type: "io.containerd.service.v1", ID: "tasks-service", Status: "ok"},
		{Type: "io.containerd.grpc.v1", ID: "sandbox-controllers", Status: "ok"},
	} {
		if got, ok := plugins[want.Type+"."+want.ID]; !ok || got != want {
			t.Errorf("plugin %s.%s: got %+v (listed: %v), want status %s", want.Type, want.ID, got, ok, want.Status)
		}
	}
	// Exactly one shim manager: GetSingle fails with two.
	n := 0
	for _, p := range plugins {
		if p.Type == "io.containerd.shim.v1" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d io.containerd.shim.v1 plugins, want 1", n)
	}
	assertNoLeaks(t, d)
}

// Stock builtins mirrored from containerd v2.4.2 cmd/containerd/builtins/builtins_windows.go.
package main

import (
	_ "github.com/containerd/containerd/v2/plugins/diff/lcow"
	_ "github.com/containerd/containerd/v2/plugins/diff/windows"
	_ "github.com/containerd/containerd/v2/plugins/snapshots/lcow"
	_ "github.com/containerd/containerd/v2/plugins/snapshots/windows"
)

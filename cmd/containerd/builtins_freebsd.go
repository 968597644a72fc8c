// Stock builtins mirrored from containerd v2.4.2 cmd/containerd/builtins/builtins_freebsd.go.
package main

import (
	_ "github.com/containerd/containerd/v2/plugins/diff/walking/plugin"
	_ "github.com/containerd/zfs/v2/plugin"
)

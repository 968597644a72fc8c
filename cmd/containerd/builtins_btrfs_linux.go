//go:build !no_btrfs && cgo

// Stock builtins mirrored from containerd v2.4.2 cmd/containerd/builtins/btrfs_linux.go.
package main

import _ "github.com/containerd/containerd/v2/plugins/snapshots/btrfs/plugin"

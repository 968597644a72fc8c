//go:build !no_zfs

// Stock builtins mirrored from containerd v2.4.2 cmd/containerd/builtins/zfs_linux.go.
package main

import _ "github.com/containerd/zfs/v2/plugin"

//go:build !no_devmapper

// Stock builtins mirrored from containerd v2.4.2 cmd/containerd/builtins/devmapper_linux.go.
package main

import _ "github.com/containerd/containerd/v2/plugins/snapshots/devmapper/plugin"

//go:build !no_cri

// Stock builtins mirrored from containerd v2.4.2 cmd/containerd/builtins/cri.go.
package main

import (
	_ "github.com/containerd/containerd/v2/plugins/cri"
	_ "github.com/containerd/containerd/v2/plugins/cri/images"
	_ "github.com/containerd/containerd/v2/plugins/cri/runtime"
)

//go:build !no_tracing

// Stock builtins mirrored from containerd v2.4.2 cmd/containerd/builtins/tracing.go.
package main

import (
	_ "github.com/containerd/containerd/v2/pkg/tracing/plugin"
)

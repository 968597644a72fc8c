package manager

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	task "github.com/containerd/containerd/api/runtime/task/v3"
)

// RuntimeOf returns the runtime recorded for an existing bundle: the
// shim-binary-path file, or else the container record's runtime name.
func (m *Manager) RuntimeOf(ctx context.Context, b *Bundle) (string, error) {
	data, err := os.ReadFile(filepath.Join(b.Path, FileBinaryPath))
	if err == nil && strings.TrimSpace(string(data)) != "" {
		return string(data), nil
	}
	if err != nil && !os.IsNotExist(err) {
		return "", fmt.Errorf("read %s: %w", FileBinaryPath, err)
	}
	c, err := m.cfg.Containers.Get(ctx, b.ID)
	if err != nil {
		return "", fmt.Errorf("no %s and no container record: %w", FileBinaryPath, err)
	}
	return c.Runtime.Name, nil
}

// Reconnect connects to the live shim of an existing bundle and asks it
// for its task (task API Connect, downgrading to v2 on NotImplemented),
// under the load budget. It writes and removes nothing: on failure the
// connection is abandoned and the bundle left as it was. runtimePath may
// be empty when the shim binary could not be resolved. The shim is not
// registered.
func (m *Manager) Reconnect(ctx context.Context, b *Bundle, runtimePath string) (*Shim, *task.ConnectResponse, error) {
	params, _, err := ReadBootstrap(b.Path)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeouts.Load)
	defer cancel()
	var bin *shimBinary
	if runtimePath != "" {
		bin = m.binary(b, runtimePath)
	}
	s, err := m.Attach(ctx, b, bin, params)
	if err != nil {
		return nil, nil, err
	}
	resp, err := m.connectRPC(ctx, s)
	if err != nil {
		s.Abandon()
		return nil, nil, fmt.Errorf("task API connect: %w", err)
	}
	return s, resp, nil
}

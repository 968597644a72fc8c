package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/shimkeeper/shimkeeper/layout"
)

// ShimPlugin is the shim manager's plugin id, the key of its section.
const ShimPlugin = "io.containerd.shim.v1.manager"

// ShimSection is the manager's section as written in config.toml; errors
// name keys below it.
const ShimSection = `plugins."` + ShimPlugin + `"`

// Shim is [plugins."io.containerd.shim.v1.manager"].
type Shim struct {
	// Env is added to the environment of every `shim start`, as KEY=VALUE
	// entries. Default: none.
	Env []string `toml:"env"`
	// SocketDir is where shims put their sockets. It must be absolute and
	// at most 42 characters long. Default: /run/containerd/s for root;
	// otherwise $XDG_RUNTIME_DIR/containerd/s, /run/<uid>/containerd/s or
	// /tmp/containerd-s-<uid>, whichever is usable first.
	SocketDir string `toml:"socket_dir"`
}

// Validate checks the config without touching the disk. It names the key
// of any bad value.
func (c *Shim) Validate() error {
	for i, e := range c.Env {
		k, _, ok := strings.Cut(e, "=")
		if !ok || k == "" {
			return fmt.Errorf("%s.env[%d]: %q is not KEY=VALUE", ShimSection, i, e)
		}
	}
	if c.SocketDir != "" {
		if !filepath.IsAbs(c.SocketDir) {
			return fmt.Errorf("%s.socket_dir: must be an absolute path: %q", ShimSection, c.SocketDir)
		}
		if d := filepath.Clean(c.SocketDir); len(d) > layout.MaxSocketDirLen {
			return fmt.Errorf("%s.socket_dir: %q is %d characters long; the limit is %d (unix socket path length)", ShimSection, d, len(d), layout.MaxSocketDirLen)
		}
	}
	return nil
}

// SocketDirInUse returns the socket dir the daemon uses: the configured
// one, cleaned, or stock's default: root's (neither created nor checked
// here; the shim creates it), otherwise the first candidate that is short
// enough, creatable 0700 and owned by the user.
func (c *Shim) SocketDirInUse() (string, error) {
	return c.socketDir(usableSocketDir, "no usable default socket directory for this user; configure one")
}

// SocketDirReadOnly returns the socket dir the daemon would use, without
// creating anything: the configured one, or root's default. For another
// user, the default depends on which candidate dir can be created, so it
// is the first candidate that already exists as a dir.
func (c *Shim) SocketDirReadOnly() (string, error) {
	exists := func(dir string, _ int) bool {
		fi, err := os.Stat(dir)
		return err == nil && fi.IsDir()
	}
	return c.socketDir(exists, "not set, and no default socket directory exists for this user")
}

// socketDir is the configured dir, or root's default, or the first
// candidate of another user's that is short enough and usable.
func (c *Shim) socketDir(usable func(dir string, uid int) bool, none string) (string, error) {
	if c.SocketDir != "" {
		return filepath.Clean(c.SocketDir), nil
	}
	uid := os.Geteuid()
	candidates := layout.SocketDirCandidates(uid, os.Getenv("XDG_RUNTIME_DIR"))
	if uid == 0 {
		return candidates[0], nil
	}
	for _, d := range candidates {
		if len(d) <= layout.MaxSocketDirLen && usable(d, uid) {
			return d, nil
		}
	}
	return "", fmt.Errorf("%s.socket_dir: %s", ShimSection, none)
}

func usableSocketDir(dir string, uid int) bool {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false
	}
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) != uid {
		return false
	}
	if fi.Mode().Perm() != 0o700 {
		return os.Chmod(dir, 0o700) == nil
	}
	return true
}

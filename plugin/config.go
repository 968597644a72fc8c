package plugin

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/platforms"

	"github.com/containerd/containerd/v2/defaults"

	"github.com/shimkeeper/shimkeeper/loader"
)

// Config sections, as written in config.toml.
const (
	shimSection = `plugins."io.containerd.shim.v1.manager"`
	taskSection = `plugins."io.containerd.runtime.v2.task"`
)

// maxSocketDirLen: a unix socket path holds 107 bytes; the shim socket is
// <dir>/<64 hex chars>, so the dir may have at most 107-1-64 characters.
const maxSocketDirLen = 42

// ShimConfig is [plugins."io.containerd.shim.v1.manager"].
type ShimConfig struct {
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
func (c *ShimConfig) Validate() error {
	for i, e := range c.Env {
		k, _, ok := strings.Cut(e, "=")
		if !ok || k == "" {
			return fmt.Errorf("%s.env[%d]: %q is not KEY=VALUE", shimSection, i, e)
		}
	}
	if c.SocketDir != "" {
		if !filepath.IsAbs(c.SocketDir) {
			return fmt.Errorf("%s.socket_dir: must be an absolute path: %q", shimSection, c.SocketDir)
		}
		if d := filepath.Clean(c.SocketDir); len(d) > maxSocketDirLen {
			return fmt.Errorf("%s.socket_dir: %q is %d characters long; the limit is %d (unix socket path length)", shimSection, d, len(d), maxSocketDirLen)
		}
	}
	return nil
}

// socketDir returns the configured socket dir, cleaned, or the default.
func (c *ShimConfig) socketDir() (string, error) {
	if c.SocketDir != "" {
		return filepath.Clean(c.SocketDir), nil
	}
	if d := defaultSocketDir(); d != "" {
		return d, nil
	}
	return "", fmt.Errorf("%s.socket_dir: no usable default socket directory for this user; configure one", shimSection)
}

// TaskConfig is [plugins."io.containerd.runtime.v2.task"].
type TaskConfig struct {
	// Platforms the runtime supports. Default: the host platform, e.g.
	// ["linux/amd64"].
	Platforms []string `toml:"platforms"`

	// RecoveryConcurrency is how many bundles recovery scans and probes at
	// once, across all namespaces. Background removals run at most this
	// many, and at most GOMAXPROCS, at once. Default: 64.
	RecoveryConcurrency int `toml:"recovery_concurrency"`
	// RecoveryDeadline bounds judging the shims found (probe, decide,
	// register). Shims not judged by then are kept, listed with an
	// unknown state, and re-probed. Default: "10s".
	RecoveryDeadline Duration `toml:"recovery_deadline"`
	// RecoveryProbeTimeout bounds the probe of one shim. A shim that takes
	// longer is kept (never removed) and re-probed. Default: "2s".
	RecoveryProbeTimeout Duration `toml:"recovery_probe_timeout"`
	// RecoveryRetryInitial and RecoveryRetryMax are the backoff of the
	// background re-probes of unresponsive shims. Defaults: "1s", "30s".
	RecoveryRetryInitial Duration `toml:"recovery_retry_initial"`
	RecoveryRetryMax     Duration `toml:"recovery_retry_max"`
	// RecoveryHoldStart: when true, the daemon serves only once every
	// shim found is judged, as stock containerd does (bounded by
	// recovery_deadline). When false (the default), it serves as soon as
	// the bundles are listed; a call that names a shim not yet judged, or
	// lists its namespace, waits for the verdict.
	RecoveryHoldStart bool `toml:"recovery_hold_start"`
}

// Recovery defaults.
const (
	defaultRecoveryConcurrency  = loader.DefaultConcurrency
	defaultRecoveryDeadline     = Duration(loader.DefaultDeadline)
	defaultRecoveryProbeTimeout = Duration(loader.DefaultProbeTimeout)
	defaultRecoveryRetryInitial = Duration(loader.DefaultRetryInitial)
	defaultRecoveryRetryMax     = Duration(loader.DefaultRetryMax)
)

func defaultTaskConfig() *TaskConfig {
	return &TaskConfig{
		Platforms:            []string{platforms.DefaultString()},
		RecoveryConcurrency:  defaultRecoveryConcurrency,
		RecoveryDeadline:     defaultRecoveryDeadline,
		RecoveryProbeTimeout: defaultRecoveryProbeTimeout,
		RecoveryRetryInitial: defaultRecoveryRetryInitial,
		RecoveryRetryMax:     defaultRecoveryRetryMax,
	}
}

// Validate checks the config. It names the key of any bad value.
func (c *TaskConfig) Validate() error {
	for i, p := range c.Platforms {
		if _, err := platforms.Parse(p); err != nil {
			return fmt.Errorf("%s.platforms[%d]: %w", taskSection, i, err)
		}
	}
	if c.RecoveryConcurrency < 1 || c.RecoveryConcurrency > 4096 {
		return fmt.Errorf("%s.recovery_concurrency: must be between 1 and 4096, got %d", taskSection, c.RecoveryConcurrency)
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{
		{"recovery_deadline", c.RecoveryDeadline},
		{"recovery_probe_timeout", c.RecoveryProbeTimeout},
		{"recovery_retry_initial", c.RecoveryRetryInitial},
		{"recovery_retry_max", c.RecoveryRetryMax},
	} {
		if d.v == invalidDuration {
			return fmt.Errorf("%s.%s: not a duration; write a Go duration string such as \"10s\" or \"1m30s\"", taskSection, d.key)
		}
		if d.v <= 0 {
			return fmt.Errorf("%s.%s: must be a positive duration, got %q", taskSection, d.key, time.Duration(d.v))
		}
	}
	if c.RecoveryRetryMax < c.RecoveryRetryInitial {
		return fmt.Errorf("%s.recovery_retry_max: %s is below recovery_retry_initial %s", taskSection, time.Duration(c.RecoveryRetryMax), time.Duration(c.RecoveryRetryInitial))
	}
	return nil
}

func (c *TaskConfig) recoveryOptions(state, root string) loader.Options {
	return loader.Options{
		StateDir:     state,
		RootDir:      root,
		Concurrency:  c.RecoveryConcurrency,
		Deadline:     time.Duration(c.RecoveryDeadline),
		ProbeTimeout: time.Duration(c.RecoveryProbeTimeout),
		RetryInitial: time.Duration(c.RecoveryRetryInitial),
		RetryMax:     time.Duration(c.RecoveryRetryMax),
		HoldStart:    c.RecoveryHoldStart,
		// Dead-shim cleanup spawns a process per shim: let the daemon
		// finish starting first.
		CleanupAfterServing: 10 * time.Second,
	}
}

// defaultSocketDir is stock's choice: /run/containerd/s for root (neither
// created nor checked here; the shim creates it), otherwise the first
// candidate that is short enough, creatable 0700 and owned by the user.
func defaultSocketDir() string {
	uid := os.Geteuid()
	candidates := socketDirCandidates(uid)
	if uid == 0 {
		return candidates[0]
	}
	for _, d := range candidates {
		if len(d) <= maxSocketDirLen && usableSocketDir(d, uid) {
			return d
		}
	}
	return ""
}

// socketDirCandidates are stock's default socket dirs in order of
// preference: /run/containerd/s (root's, always), then for another user
// $XDG_RUNTIME_DIR/containerd/s, /run/<uid>/containerd/s and
// /tmp/containerd-s-<uid>.
func socketDirCandidates(uid int) []string {
	candidates := []string{filepath.Join(defaults.DefaultStateDir, "s")}
	if uid == 0 {
		return candidates
	}
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		candidates = append(candidates, filepath.Join(x, "containerd", "s"))
	}
	return append(candidates, fmt.Sprintf("/run/%d/containerd/s", uid), fmt.Sprintf("/tmp/containerd-s-%d", uid))
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

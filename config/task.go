package config

import (
	"fmt"
	"time"

	"github.com/containerd/platforms"

	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/loader"
)

// TaskPlugin is the task runtime's plugin id, the key of its section
// (and the name of its dirs).
const TaskPlugin = layout.TaskPluginDir

// TaskSection is the task runtime's section as written in config.toml;
// errors name keys below it.
const TaskSection = `plugins."` + TaskPlugin + `"`

// Task is [plugins."io.containerd.runtime.v2.task"]. Its recovery keys
// are also those of the shim sandbox controller's pass, which has no
// section of its own.
type Task struct {
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
	// recovery_deadline), the task runtime's and the shim sandbox
	// controller's alike. When false (the default), it serves as soon as
	// the bundles are listed; a call that names a shim not yet judged
	// waits for the verdict, and a listing shows it UNKNOWN until then.
	RecoveryHoldStart bool `toml:"recovery_hold_start"`
}

// Recovery defaults.
const (
	DefaultRecoveryConcurrency  = loader.DefaultConcurrency
	DefaultRecoveryDeadline     = Duration(loader.DefaultDeadline)
	DefaultRecoveryProbeTimeout = Duration(loader.DefaultProbeTimeout)
	DefaultRecoveryRetryInitial = Duration(loader.DefaultRetryInitial)
	DefaultRecoveryRetryMax     = Duration(loader.DefaultRetryMax)
)

// DefaultTask returns the section with every default filled in, as the
// daemon decodes config.toml onto it.
func DefaultTask() *Task {
	return &Task{
		Platforms:            []string{platforms.DefaultString()},
		RecoveryConcurrency:  DefaultRecoveryConcurrency,
		RecoveryDeadline:     DefaultRecoveryDeadline,
		RecoveryProbeTimeout: DefaultRecoveryProbeTimeout,
		RecoveryRetryInitial: DefaultRecoveryRetryInitial,
		RecoveryRetryMax:     DefaultRecoveryRetryMax,
	}
}

// Validate checks the config. It names the key of any bad value.
func (c *Task) Validate() error {
	for i, p := range c.Platforms {
		if _, err := platforms.Parse(p); err != nil {
			return fmt.Errorf("%s.platforms[%d]: %w", TaskSection, i, err)
		}
	}
	if c.RecoveryConcurrency < 1 || c.RecoveryConcurrency > 4096 {
		return fmt.Errorf("%s.recovery_concurrency: must be between 1 and 4096, got %d", TaskSection, c.RecoveryConcurrency)
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
			return fmt.Errorf("%s.%s: not a duration; write a Go duration string such as \"10s\" or \"1m30s\"", TaskSection, d.key)
		}
		if d.v <= 0 {
			return fmt.Errorf("%s.%s: must be a positive duration, got %q", TaskSection, d.key, time.Duration(d.v))
		}
	}
	if c.RecoveryRetryMax < c.RecoveryRetryInitial {
		return fmt.Errorf("%s.recovery_retry_max: %s is below recovery_retry_initial %s", TaskSection, time.Duration(c.RecoveryRetryMax), time.Duration(c.RecoveryRetryInitial))
	}
	return nil
}

// RecoveryOptions are the options a plugin recovers its state and root
// dirs with: the task runtime's, and the shim sandbox controller's.
func (c *Task) RecoveryOptions(state, root string) loader.Options {
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

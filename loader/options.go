package loader

import (
	"os"
	"strings"
	"time"

	"github.com/shimkeeper/shimkeeper/layout"
)

// Options configure a recovery pass.
type Options struct {
	// StateDir and RootDir are the plugin's dirs.
	StateDir, RootDir string
	// Concurrency bounds the bundles scanned and judged at once; background
	// removals also stay within GOMAXPROCS.
	Concurrency int
	// Deadline bounds judging: scanning, probing and registering. Shims
	// not judged by then are kept and re-probed.
	Deadline time.Duration
	// ProbeTimeout bounds one shim's probe.
	ProbeTimeout time.Duration
	// RetryInitial and RetryMax are the backoff of background re-probes.
	RetryInitial, RetryMax time.Duration
	// BootIDPath is /proc/sys/kernel/random/boot_id unless set (tests).
	BootIDPath string
	// Observer, if set, is told of probes, decisions and outcomes.
	Observer Observer
	// CleanupAfterServing, if positive, is how long background cleanup
	// (dead and leaked shims, work dirs) waits for the daemon to serve
	// before it starts, so that spawning `shim delete`s does not slow the
	// rest of daemon start. The ids stay held meanwhile.
	CleanupAfterServing time.Duration
	// HoldStart makes Run return only once every shim found is judged, as
	// stock containerd does (bounded by Deadline). Otherwise the daemon
	// serves while shims are judged.
	HoldStart bool
}

// Defaults of the Options (and of the recovery_* config keys).
const (
	DefaultConcurrency  = 64
	DefaultDeadline     = 10 * time.Second
	DefaultProbeTimeout = 2 * time.Second
	DefaultRetryInitial = time.Second
	DefaultRetryMax     = 30 * time.Second
)

// withDefaults fills in zero or negative values, so that a caller that
// leaves a field unset gets sane behaviour rather than a tight re-probe
// loop or a pass that probes nothing.
func (o Options) withDefaults() Options {
	if o.BootIDPath == "" {
		o.BootIDPath = "/proc/sys/kernel/random/boot_id"
	}
	if o.Concurrency < 1 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Deadline <= 0 {
		o.Deadline = DefaultDeadline
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = DefaultProbeTimeout
	}
	if o.RetryInitial <= 0 {
		o.RetryInitial = DefaultRetryInitial
	}
	if o.RetryMax < o.RetryInitial {
		o.RetryMax = max(DefaultRetryMax, o.RetryInitial)
	}
	return o
}

// bootState reads the current boot id and says whether it differs from
// the one recorded by the last pass (a reboot in between).
func bootState(o Options) (bootID string, rebooted bool) {
	bootID = readTrimmed(o.BootIDPath)
	last := readTrimmed(layout.BootIDPath(o.RootDir))
	return bootID, bootID != "" && last != "" && bootID != last
}

// scanOptions are the scan's settings for a pass that started at start.
func (o Options) scanOptions(start time.Time, rebooted bool, observer Observer) scanOptions {
	return scanOptions{
		stateDir:     o.StateDir,
		rootDir:      o.RootDir,
		rebooted:     rebooted,
		concurrency:  o.Concurrency,
		probeTimeout: o.ProbeTimeout,
		deadline:     start.Add(o.Deadline),
		observer:     observer,
		procs:        &procSource{},
	}
}

func readTrimmed(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

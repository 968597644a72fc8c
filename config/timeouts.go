package config

import (
	"fmt"
	"time"

	"github.com/shimkeeper/shimkeeper/manager"
)

// Timeout keys of [timeouts]. The first three are stock's; start is
// shimkeeper's.
const (
	TimeoutStart    = "io.containerd.timeout.shim.start"
	TimeoutLoad     = "io.containerd.timeout.shim.load"
	TimeoutCleanup  = "io.containerd.timeout.shim.cleanup"
	TimeoutShutdown = "io.containerd.timeout.shim.shutdown"
)

// TimeoutDefaults are the budgets when [timeouts] does not set them:
// stock's for load, cleanup and shutdown (5s, 5s, 3s); 20s for start.
var TimeoutDefaults = map[string]time.Duration{
	TimeoutStart:    20 * time.Second,
	TimeoutLoad:     5 * time.Second,
	TimeoutCleanup:  5 * time.Second,
	TimeoutShutdown: 3 * time.Second,
}

// TimeoutsFrom returns the shim budgets the daemon uses given the
// [timeouts] section of config.toml: each key set there, else its
// default.
func TimeoutsFrom(section map[string]string) (manager.Timeouts, error) {
	var bad error
	t := TimeoutsOf(func(key string) time.Duration {
		v, ok := section[key]
		if !ok {
			return TimeoutDefaults[key]
		}
		d, err := time.ParseDuration(v)
		if err != nil && bad == nil {
			bad = fmt.Errorf("timeouts.%q: %w", key, err)
		}
		return d
	})
	if bad != nil {
		return manager.Timeouts{}, bad
	}
	return t, nil
}

// TimeoutsOf returns the shim budgets as get gives them by key; the
// daemon passes timeout.Get, which holds the defaults with [timeouts]
// applied.
func TimeoutsOf(get func(key string) time.Duration) manager.Timeouts {
	return manager.Timeouts{
		Start:    get(TimeoutStart),
		Load:     get(TimeoutLoad),
		Cleanup:  get(TimeoutCleanup),
		Shutdown: get(TimeoutShutdown),
	}
}

package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"
)

// profileStart writes a CPU profile of the daemon's first seconds, where
// recovery runs, when SHIMKEEPER_CPUPROFILE names a file: the bench's
// `-cpuprofile` sets it (containerd's debug socket can only profile once
// it serves, after much of the pass). SHIMKEEPER_CPUPROFILE_SECONDS sets
// the span (default 3), SHIMKEEPER_CPUPROFILE_HZ the sampling rate. A
// profile that cannot start is said and skipped.
func profileStart() {
	path := os.Getenv("SHIMKEEPER_CPUPROFILE")
	if path == "" {
		return
	}
	span := 3 * time.Second
	if s, err := strconv.ParseFloat(os.Getenv("SHIMKEEPER_CPUPROFILE_SECONDS"), 64); err == nil && s > 0 {
		span = time.Duration(s * float64(time.Second))
	}
	// SHIMKEEPER_CPUPROFILE_HZ samples more often than pprof's 100 Hz: a
	// pass of a second gives too few samples to tell per-shim costs.
	if hz, err := strconv.Atoi(os.Getenv("SHIMKEEPER_CPUPROFILE_HZ")); err == nil && hz > 0 {
		runtime.SetCPUProfileRate(hz)
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "containerd: SHIMKEEPER_CPUPROFILE=%s: %v; not profiling\n", path, err)
		return
	}
	time.AfterFunc(span, func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	})
}

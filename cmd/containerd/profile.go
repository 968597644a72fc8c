package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"time"
)

// profileStart writes a CPU profile of the daemon's first seconds, where
// recovery runs, when SHIMKEEPER_CPUPROFILE names a file: the bench's
// `-cpuprofile` sets it (containerd's debug socket can only profile once
// it serves, after much of the pass). SHIMKEEPER_CPUPROFILE_SECONDS sets
// the span (default 3). A profile that cannot start is said and skipped.
func profileStart() {
	path := os.Getenv("SHIMKEEPER_CPUPROFILE")
	if path == "" {
		return
	}
	span := 3 * time.Second
	if s, err := strconv.ParseFloat(os.Getenv("SHIMKEEPER_CPUPROFILE_SECONDS"), 64); err == nil && s > 0 {
		span = time.Duration(s * float64(time.Second))
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

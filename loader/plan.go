package loader

import (
	"context"
	"path/filepath"
	"time"
)

// Plan scans the state dir and decides, without acting: it returns what
// the next recovery pass would do with each entry and why. It writes,
// removes, registers and kills nothing; probes use only read-only task API
// calls (Connect, State) and their connections are closed again.
func Plan(ctx context.Context, env Env, opts Options) Report {
	start := time.Now()
	opts = opts.withDefaults()
	bootID := readTrimmed(opts.BootIDPath)
	lastBoot := readTrimmed(filepath.Join(opts.RootDir, BootIDFile))
	rebooted := bootID != "" && lastBoot != "" && bootID != lastBoot
	entries, warnings := scan(ctx, env, scanOptions{
		stateDir:     opts.StateDir,
		rootDir:      opts.RootDir,
		rebooted:     rebooted,
		concurrency:  opts.Concurrency,
		probeTimeout: opts.ProbeTimeout,
		deadline:     start.Add(opts.Deadline),
	})
	rp := &report{}
	rp.r = Report{StateDir: opts.StateDir, RootDir: opts.RootDir, StartedAt: start, BootID: bootID, Rebooted: rebooted, Warnings: warnings}
	for _, s := range entries {
		if s.probe.Shim != nil {
			s.probe.Shim.Abandon()
		}
		d := Decide(s.obs)
		rp.r.Entries = append(rp.r.Entries, &Entry{
			Observation: s.obs, Action: d.Action, Reason: d.Reason, Outcome: "planned", Notes: s.notes, Duration: Millis(s.scanDur),
		})
	}
	orphans, err := listOrphans(opts)
	if err != nil {
		rp.r.Warnings = append(rp.r.Warnings, "list work dirs: "+err.Error())
	}
	rp.r.WorkDirsRemoved = orphans
	rp.r.Ready = Millis(time.Since(start))
	return rp.snapshot()
}

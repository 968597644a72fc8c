package loader

import (
	"github.com/shimkeeper/shimkeeper/lifecycle"

	"context"
	"time"
)

// Plan scans the state dir and decides, without acting: it returns what
// the next recovery pass would do with each entry and why. It writes,
// removes, registers and kills nothing; probes use only read-only task API
// calls (State) and their connections are closed again.
func Plan(ctx context.Context, env Env, opts Options) Report {
	start := time.Now()
	opts = opts.withDefaults()
	bootID, rebooted := bootState(opts)
	entries, warnings := scan(ctx, env, opts.scanOptions(start, rebooted, nil))
	rp := &report{}
	rp.r = Report{StateDir: opts.StateDir, RootDir: opts.RootDir, StartedAt: start, BootID: bootID, Rebooted: rebooted, Warnings: warnings}
	for _, s := range entries {
		if s.probe.Shim != nil {
			s.probe.Shim.Abandon()
		}
		d := lifecycle.Decide(s.obs)
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

// Package loader recovers the shims that outlived a containerd restart, in
// four steps:
//
//   - scan (scan.go): read-only facts about every entry under
//     <state>/<ns>/<id>: what it is on disk, which files it holds, the
//     container and sandbox records, the runtime, and a probe of the shim
//     (Alive, Gone or Unknown) and of its task. The scan writes nothing;
//     the probe only connects.
//   - decide (decide.go): a pure function from those facts to one action
//     per entry, with the reason. Nothing is removed or stopped unless the
//     shim is proven gone, the bundle is empty, or a live shim says it has
//     no task and belongs to no sandbox, and its binary can run `shim
//     delete`.
//   - act (recovery.go): on the readiness path, under one deadline, live
//     shims are registered and undecidable ones registered as unresponsive
//     placeholders; everything destructive (dead-shim cleanup, reaping,
//     work-dir GC) runs in the background through package cleanup and the
//     manager, holding the id so that a Create of it waits.
//   - report (report.go): one value with every entry's facts, action,
//     reason, outcome and duration, logged as a summary and written
//     atomically to <state>/shimkeeper-recovery.json.
package loader

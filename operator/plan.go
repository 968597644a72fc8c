package operator

import (
	"context"
	"fmt"

	"github.com/shimkeeper/shimkeeper/loader"
	"github.com/shimkeeper/shimkeeper/manager"
)

// PluginReport is one plugin's plan or report: which plugin ("task" or
// "sandbox") and the loader's report. Err is set, instead, when a report
// could not be read.
type PluginReport struct {
	Plugin string `json:"plugin"`
	loader.Report
	Err string `json:"error,omitempty"`
}

// plan predicts, for each bundle of the task runtime and of the shim
// sandbox controller, what the next start of the daemon would do. The
// daemon must be stopped: its metadata database is opened read-only and a
// held lock is an error.
func plan(ctx context.Context, d *daemon) ([]PluginReport, error) {
	if err := d.checkState(); err != nil {
		return nil, err
	}
	socketDir, err := d.Shim.SocketDirReadOnly()
	if err != nil {
		return nil, err
	}
	cs, ss, closeDB, err := openMetadata(d.metadataDB())
	if err != nil {
		return nil, err
	}
	defer closeDB()

	m := manager.New(manager.Config{
		Address:      d.GRPCAddress,
		TTRPCAddress: d.TTRPCAddress,
		SocketDir:    socketDir,
		Env:          d.Shim.Env,
		Containers:   cs,
		Sandboxes:    ss,
		Timeouts:     d.Timeouts,
	})
	// The same order and options as the daemon's plugin InitFns: the shim
	// sandbox controller follows the task section.
	task := loader.Plan(ctx, m, d.Task.RecoveryOptions(d.taskState(), d.taskRoot()))
	sandbox := loader.Plan(ctx, m, d.Task.RecoveryOptions(d.sandboxState(), d.sandboxRoot()))
	return []PluginReport{{Plugin: "task", Report: task}, {Plugin: "sandbox", Report: sandbox}}, nil
}

// reports reads the reports the last recovery wrote. It fails only when
// neither plugin has one.
func reports(d *daemon) ([]PluginReport, error) {
	if err := d.checkState(); err != nil {
		return nil, err
	}
	var out []PluginReport
	found := false
	for _, p := range []struct{ name, dir string }{{"task", d.taskState()}, {"sandbox", d.sandboxState()}} {
		r, err := loader.ReadReport(p.dir)
		if err != nil {
			out = append(out, PluginReport{Plugin: p.name, Report: loader.Report{StateDir: p.dir}, Err: oneLine(unwrapPath(err).Error())})
			continue
		}
		found = true
		out = append(out, PluginReport{Plugin: p.name, Report: *r})
	}
	if !found {
		return nil, fmt.Errorf("no recovery report in %s or %s: has shimkeeper's containerd run with state dir %s since boot?", d.taskState(), d.sandboxState(), d.State)
	}
	return out, nil
}

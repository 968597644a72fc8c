package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"

	"github.com/shimkeeper/shimkeeper/bench/synthctl"
	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/loader"
)

// exitedStatus is the exit status of the exited synthetic tasks.
const exitedStatus = 3

// Id prefixes give each synthetic shim its mode.
var modePrefix = map[string]string{"live": "live", "hung": "hung", "dead": "dead", "leak": "leaked", "exit": "exited"}

// ctl sends one request to the synthshim server; a reply listing shims it
// could not serve is an error too.
func (b *bench) ctl(req synthctl.Request) (*synthctl.Reply, error) {
	r, err := synthctl.Call(b.ctlPath, req, time.Minute)
	if err == nil && len(r.Errors) > 0 {
		return r, fmt.Errorf("%d shims not served, first: %s", len(r.Errors), r.Errors[0])
	}
	return r, err
}

func (b *bench) startSynth() error {
	f, err := os.Create(filepath.Join(b.logDir, "synthshim.log"))
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(b.synthPath, "serve", "-ctl", b.ctlPath)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	b.synth, b.synthPID = cmd, cmd.Process.Pid
	go func() { _ = cmd.Wait() }()
	for i := 0; i < 500; i++ {
		if _, err := b.ctl(synthctl.Request{Op: "stats"}); err == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("synthshim server did not start")
}

// population is a created and saved synthetic population.
type population struct {
	def      caseDef
	manifest []synthctl.Entry
	pristine string
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return out
}

func (c caseDef) ids() []string {
	var all []string
	all = append(all, ids("live", c.live)...)
	all = append(all, ids("hung", c.hung)...)
	all = append(all, ids("dead", c.dead)...)
	all = append(all, ids("leak", c.leaked)...)
	all = append(all, ids("exit", c.exited)...)
	return all
}

func modeOf(id string) string {
	p, _, _ := strings.Cut(id, "-")
	return modePrefix[p]
}

// populate creates the case's containers and tasks with stock containerd,
// stops it, gives each shim its mode and saves a pristine copy.
func (b *bench) populate(c caseDef) (*population, error) {
	if _, err := b.ctl(synthctl.Request{Op: "reset"}); err != nil {
		return nil, err
	}
	if err := b.freshDirs(); err != nil {
		return nil, err
	}
	rootfs := filepath.Join(b.tmp, "rootfs-synth")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return nil, err
	}
	d, err := b.startDaemon("populate", c.key+"-populate")
	if err != nil {
		return nil, err
	}
	defer b.stopDaemon(d)
	if _, err := b.waitReady(d); err != nil {
		return nil, err
	}
	cli, err := containerd.New(b.addr, containerd.WithDefaultNamespace(namespace))
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	ctx := context.Background()
	all := c.ids()
	work := make(chan string)
	errc := make(chan error, len(all))
	var wg sync.WaitGroup
	for w := 0; w < b.o.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				if err := createSynth(ctx, cli, id, b.synthPath, rootfs); err != nil {
					errc <- fmt.Errorf("%s: %w", id, err)
				}
			}
		}()
	}
	for _, id := range all {
		work <- id
	}
	close(work)
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	if err := b.stopDaemon(d); err != nil {
		return nil, err
	}

	r, err := b.ctl(synthctl.Request{Op: "list"})
	if err != nil {
		return nil, err
	}
	p := &population{def: c, pristine: filepath.Join(b.tmp, "p", c.key)}
	for _, e := range r.Shims {
		if e.NS != namespace {
			continue
		}
		e.Mode = modeOf(e.ID)
		if e.Mode == "exited" {
			e.Exit = exitedStatus
		}
		p.manifest = append(p.manifest, e)
	}
	if len(p.manifest) != len(all) {
		return nil, fmt.Errorf("synthshim serves %d shims, want %d", len(p.manifest), len(all))
	}
	sort.Slice(p.manifest, func(i, j int) bool { return p.manifest[i].ID < p.manifest[j].ID })
	if err := os.MkdirAll(p.pristine, 0o700); err != nil {
		return nil, err
	}
	if data, err := json.MarshalIndent(synthctl.Request{Op: "reset", Shims: p.manifest}, "", " "); err == nil {
		_ = os.WriteFile(filepath.Join(p.pristine, "manifest.json"), data, 0o644)
	}
	if err := cpTree(b.root, filepath.Join(p.pristine, "r")); err != nil {
		return nil, err
	}
	if err := cpTree(b.state, filepath.Join(p.pristine, "st")); err != nil {
		return nil, err
	}
	return p, nil
}

func createSynth(ctx context.Context, cli *containerd.Client, id, runtime, rootfs string) error {
	ctr, err := cli.NewContainer(ctx, id,
		containerd.WithRuntime(runtime, nil),
		containerd.WithNewSpec(oci.WithRootFSPath(rootfs), oci.WithProcessArgs("/bin/sleep", "inf")))
	if err != nil {
		return err
	}
	t, err := ctr.NewTask(ctx, cio.NullIO)
	if err != nil {
		return err
	}
	return t.Start(ctx)
}

// freshDirs empties the daemon's root and state dirs.
func (b *bench) freshDirs() error {
	for _, d := range []string{b.root, b.state} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	for _, d := range []string{b.root, b.state} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return err
		}
	}
	return nil
}

// restore puts the pristine copy back at the same paths and makes the
// synthshim server serve every shim in its mode again.
func (b *bench) restore(p *population) (int, error) {
	for _, d := range []string{b.root, b.state} {
		if err := os.RemoveAll(d); err != nil {
			return 0, err
		}
	}
	if err := cpTree(filepath.Join(p.pristine, "r"), b.root); err != nil {
		return 0, err
	}
	if err := cpTree(filepath.Join(p.pristine, "st"), b.state); err != nil {
		return 0, err
	}
	r, err := b.ctl(synthctl.Request{Op: "reset", Shims: p.manifest})
	if err != nil {
		return 0, err
	}
	return r.PID, nil
}

// runSynthCase populates once, then runs both daemons alternately.
func (b *bench) runSynthCase(ctx context.Context, c caseDef) *caseResult {
	res := &caseResult{def: c, runs: map[string][]*runResult{}}
	fmt.Printf("\n== %s\n", c.name)
	t0 := time.Now()
	p, err := b.populate(c)
	if err != nil {
		res.setupErr = fmt.Errorf("populate: %w", err)
		fmt.Printf("   SETUP FAILED: %v\n", res.setupErr)
		return res
	}
	fmt.Printf("   populated %d shims with stock containerd in %s\n", len(p.manifest), time.Since(t0).Round(100*time.Millisecond))
	b.alternate(res, func(name string, round int) *runResult { return b.measureSynth(p, name, round) })
	if c.floor {
		res.floor = b.measureFloor(p)
	}
	if !b.o.keep {
		_ = os.RemoveAll(p.pristine)
	}
	return res
}

func (b *bench) measureSynth(p *population, name string, round int) *runResult {
	r := &runResult{daemon: name, round: round}
	synthPID, err := b.restore(p)
	if err != nil {
		r.fail("restore: %v", err)
		return r
	}
	live := map[string]bool{}
	for _, e := range p.manifest {
		if e.Mode == "live" {
			live[e.ID] = true
		}
	}
	shimCPU := cpuTime(b.synthPID)
	b.timedRun(r, name, fmt.Sprintf("%s-%s-%d", p.def.key, name, round), len(live),
		func(t *taskInfo) bool { return live[t.ID] && t.Status == "RUNNING" },
		func() { r.shimCPU = cpuTime(b.synthPID) - shimCPU },
		func(d *daemon) {
			b.checkSynth(d, p, synthPID, r)
			if st, err := b.ctl(synthctl.Request{Op: "stats"}); err == nil {
				r.stats = st.Stats
			}
		})
	return r
}

// checkSynth checks the post-state: live kept and listed RUNNING, hung kept
// and listed UNKNOWN, exited kept and listed STOPPED with their status, dead
// and leaked cleaned up (bundles gone, not listed). For our daemon a
// deviation is a failure; for stock it is recorded as its behaviour (except
// for live shims, whose loss makes the run invalid).
func (b *bench) checkSynth(d *daemon, p *population, synthPID int, r *runResult) {
	// Our daemon cleans up dead and leaked shims in the background: wait
	// for it to finish (its report says when), bounded.
	deadline := time.Now().Add(cleanupTimeout)
	for time.Now().Before(deadline) {
		done := true
		for _, e := range p.manifest {
			if (e.Mode == "dead" || e.Mode == "leaked") && exists(b.bundle(e.ID)) {
				done = false
				break
			}
		}
		if d.name == "ours" {
			rep, err := readReport(b.state)
			done = done && err == nil && !rep.Finished.IsZero()
		}
		if done {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	ts, err := d.listTasks(time.Minute)
	if err != nil {
		r.fail("final list: %v", err)
		return
	}
	byID := map[string]*taskInfo{}
	for _, t := range ts {
		byID[t.ID] = t
	}
	// ctr sees the same list.
	if out, err := b.ctr("task", "ls", "-q").Output(); err != nil {
		r.fail("ctr task ls: %v", err)
	} else if n := len(strings.Fields(string(out))); n != len(ts) {
		r.fail("ctr task ls lists %d tasks, the API %d", n, len(ts))
	}
	type outcome struct{ mode, got string }
	counts := map[outcome]int{}
	var modes []string
	seen := map[string]bool{}
	for _, e := range p.manifest {
		t := byID[e.ID]
		listed := "absent"
		if t != nil {
			listed = t.Status
			if t.Status == "STOPPED" {
				listed = fmt.Sprintf("STOPPED(%d)", t.Exit)
			}
			if t.Status == "RUNNING" && int(t.Pid) != synthPID {
				listed = fmt.Sprintf("RUNNING(pid %d)", t.Pid)
			}
		}
		bundle := "bundle removed"
		if exists(b.bundle(e.ID)) {
			bundle = "bundle kept"
		}
		got := "listed " + listed + ", " + bundle
		if listed == "absent" {
			got = "not listed, " + bundle
		}
		counts[outcome{e.Mode, got}]++
		if !seen[e.Mode] {
			seen[e.Mode] = true
			modes = append(modes, e.Mode)
		}
	}
	want := map[string]string{
		"live":   "listed RUNNING, bundle kept",
		"hung":   "listed UNKNOWN, bundle kept",
		"exited": fmt.Sprintf("listed STOPPED(%d), bundle kept", exitedStatus),
		"dead":   "not listed, bundle removed",
		"leaked": "not listed, bundle removed",
	}
	for _, m := range modes {
		var parts []string
		for o, n := range counts {
			if o.mode != m {
				continue
			}
			parts = append(parts, fmt.Sprintf("%d %s", n, o.got))
			if o.got != want[m] {
				msg := fmt.Sprintf("%s shims: %d %s (want %s)", m, n, o.got, want[m])
				if d.name == "ours" {
					r.fail("%s", msg)
				} else if m == "live" {
					r.invalid = append(r.invalid, msg)
				}
			}
		}
		sort.Strings(parts)
		r.behaviour = append(r.behaviour, m+": "+strings.Join(parts, "; "))
	}
	if d.name == "ours" {
		// Keep the report with the logs.
		_ = copyFile(layout.ReportPath(layout.PluginDir(b.state, layout.TaskPluginDir)),
			strings.TrimSuffix(d.log, ".log")+".recovery.json", 0o644)
		rep, err := readReport(b.state)
		if err != nil {
			r.fail("recovery report: %v", err)
			return
		}
		r.recoveryReady, r.recoveryJudged = millis(rep.Ready), millis(rep.Judged)
		n := map[string]int{}
		for _, e := range p.manifest {
			n[e.Mode]++
		}
		wantTotals := map[string]int{
			"adopt":        n["live"] + n["exited"],
			"keep":         n["hung"],
			"cleanup-dead": n["dead"],
			"reap-leaked":  n["leaked"],
		}
		for k, v := range wantTotals {
			if rep.Totals[k] != v {
				r.fail("recovery report: %s = %d, want %d", k, rep.Totals[k], v)
			}
		}
		if rep.Outcomes["failed"] > 0 {
			r.fail("recovery report: %d entries failed", rep.Outcomes["failed"])
		}
	}
}

// readReport reads our task runtime's recovery report below the daemon's
// state dir.
func readReport(state string) (*loader.Report, error) {
	return loader.ReadReport(layout.PluginDir(state, layout.TaskPluginDir))
}

// millis is a report's duration in milliseconds, as the bench prints them.
func millis(d loader.Millis) float64 { return float64(time.Duration(d)) / float64(time.Millisecond) }

// measureFloor runs the floor program over the live shims, at stock's
// concurrency (2) and at our default (64).
func (b *bench) measureFloor(p *population) map[int][]time.Duration {
	out := map[int][]time.Duration{}
	if p != nil {
		if _, err := b.restore(p); err != nil {
			fmt.Printf("   floor: restore: %v\n", err)
			return out
		}
	}
	for _, conc := range []int{2, 64} {
		for round := 1; round <= b.o.rounds; round++ {
			cmd := exec.Command(filepath.Join(b.o.tools, "floor"), "-state", layout.PluginDir(b.state, layout.TaskPluginDir), "-c", fmt.Sprint(conc))
			shimCPU := cpuTime(b.synthPID)
			start := time.Now()
			o, err := cmd.CombinedOutput()
			el := time.Since(start)
			if err != nil {
				fmt.Printf("   floor c=%d: %v: %s\n", conc, err, strings.TrimSpace(string(o)))
				continue
			}
			out[conc] = append(out[conc], el)
			// The floor's CPU and, over synthetic shims, their server's
			// during it: the budget the daemon's own CPU until listed
			// compares with. (Real runc shims are not that server.)
			cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			shims := ""
			if p != nil {
				shims = fmt.Sprintf("  shims cpu %.2fs", (cpuTime(b.synthPID) - shimCPU).Seconds())
			}
			fmt.Printf("   floor c=%-2d round %d: %6.3fs  cpu %.2fs%s  (%s)\n", conc, round, el.Seconds(), cpu.Seconds(), shims, strings.TrimSpace(string(o)))
		}
	}
	return out
}

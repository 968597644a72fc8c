//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shimkeeper/shimkeeper/internal/crihost"
	"github.com/shimkeeper/shimkeeper/internal/testshim"
)

// Operator tooling: the recovery report, the task plugin's recovery.*
// exports, the shimkeeper_recovery_* metrics and `containerd recovery
// plan|report` must tell one story.

const (
	// opProbeTimeout makes the SIGSTOPped shim's probe, and so the
	// readiness path, last long enough for a progress line (logged every
	// second) to be due.
	opProbeTimeout = 1500 * time.Millisecond
	// opCommandTimeout bounds one `containerd recovery ...` run.
	opCommandTimeout = 20 * time.Second
)

// TestRecoveryObservability restarts a daemon over a live shim, a dead one
// (SIGKILLed while the daemon was down), a leaked one (alive, its task
// deleted behind the daemon's back) and a hung one (SIGSTOPped). Before
// the restart, `recovery plan` predicts each bundle's action without
// changing a byte on disk; after it, the report, the metrics endpoint and
// `ctr plugins ls -d` agree with each other and with the plan.
func TestRecoveryObservability(t *testing.T) {
	t.Parallel()
	requireOurs(t, "has no recovery report, metrics or `recovery` subcommand")
	d := newDaemon(t)
	ns := d.NS
	for _, id := range []string{"live", "dead", "leak", "hung"} {
		d.mustRunSleeper(ns, id)
	}
	shims := map[string]int{}
	for _, id := range []string{"live", "dead", "leak", "hung"} {
		shims[id] = opShimPID(t, d, ns, id)
	}
	d.Stop()

	// dead: the shim is killed; its container process outlives it.
	if alive := crihost.KillPIDs([]int{shims["dead"]}, 10*time.Second); len(alive) > 0 {
		t.Fatalf("shim of dead (pid %d) survived SIGKILL", shims["dead"])
	}
	// leak: the shim stays, its task is gone (as when containerd dies
	// between `shim start` and task create).
	recDeleteTaskViaShim(t, d, ns, "leak")
	// hung: accepts connections, never answers.
	if err := syscall.Kill(shims["hung"], syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(shims["hung"], syscall.SIGCONT) })
	if msg := eventually(10*time.Second, func() string {
		if s := procStateOf(shims["hung"]); s != 'T' {
			return fmt.Sprintf("shim state %c", s)
		}
		return ""
	}); msg != "" {
		t.Fatalf("hung shim not stopped: %s", msg)
	}

	metricsAddr := opEnableMetrics(t, d)

	// Plan and report, daemon stopped: nothing on disk changes, no
	// process is touched.
	before := testshim.Tree(t, true, d.State, d.Root, d.SocketDir)
	planned := opPlanActions(opRunJSON[[]opPluginReport](t, d, "plan"))
	table := opMustRun(t, d, "recovery", "plan")
	lastReport := opRunJSON[[]opPluginReport](t, d, "report")
	if diff := testshim.DiffTrees(before, testshim.Tree(t, true, d.State, d.Root, d.SocketDir)); len(diff) > 0 {
		t.Fatalf("recovery plan/report changed the disk:\n%s", strings.Join(diff, "\n"))
	}
	for id, pid := range shims {
		if id != "dead" && !crihost.PIDAlive(pid) {
			t.Fatalf("shim of %s (pid %d) gone after recovery plan", id, pid)
		}
	}
	if s := procStateOf(shims["hung"]); s != 'T' {
		t.Fatalf("hung shim state %c after plan, want still stopped", s)
	}
	want := map[string]string{ns + "/live": "adopt", ns + "/dead": "cleanup-dead", ns + "/leak": "reap-leaked", ns + "/hung": "keep"}
	if !opEqualMaps(planned, want) {
		t.Fatalf("plan predicts %v, want %v\n%s", planned, want, table)
	}
	for _, row := range [][]string{
		{"task", ns, "live", "alive", "live", "adopt"},
		{"task", ns, "dead", "gone", "-", "cleanup-dead"},
		{"task", ns, "leak", "alive", "none", "reap-leaked"},
		{"task", ns, "hung", "unknown", "-", "keep"},
	} {
		if !opHasRow(table, row) {
			t.Errorf("plan table lacks a row starting %q:\n%s", row, table)
		}
	}
	t.Logf("recovery plan:\n%s", table)
	if len(lastReport) != 2 || lastReport[0].Plugin != "task" || lastReport[0].Error != "" || len(lastReport[0].Entries) != 0 {
		t.Errorf("recovery report before the restart: want the first start's empty task report, got %+v", lastReport)
	}

	d.Start()

	// The background work (reap, cleanup) ends; the hung shim is still
	// being re-probed.
	var rep opReport
	if msg := eventually(statusTimeout, func() string {
		r, err := opReadReport(filepath.Join(d.State, taskPluginDir))
		if err != nil {
			return err.Error()
		}
		rep = r
		if r.Finished == "" {
			return "recovery background work not finished"
		}
		return ""
	}); msg != "" {
		t.Fatalf("%s\n%s", msg, d.logTail(40))
	}
	sandboxRep, err := opReadReport(filepath.Join(d.State, sandboxPluginDir))
	if err != nil {
		t.Fatal(err)
	}

	// The restart did what the plan said.
	if got := opReportActions(rep); !opEqualMaps(got, planned) {
		t.Errorf("restart took %v, plan predicted %v", got, planned)
	}
	outcomes := map[string]string{}
	for _, e := range rep.Entries {
		outcomes[e.Namespace+"/"+e.ID] = e.Action + "/" + e.Outcome
	}
	if w := map[string]string{ns + "/live": "adopt/done", ns + "/dead": "cleanup-dead/done", ns + "/leak": "reap-leaked/done", ns + "/hung": "keep/probing"}; !opEqualMaps(outcomes, w) {
		t.Errorf("outcomes %v, want %v", outcomes, w)
	}
	if time.Duration(rep.JudgedMs*float64(time.Millisecond)) < opProbeTimeout*9/10 || rep.ReadyMs >= rep.JudgedMs {
		t.Errorf("ready %.1fms, judged %.1fms: the hung shim's probe should have held judging about %s, and not daemon start", rep.ReadyMs, rep.JudgedMs, opProbeTimeout)
	}
	if !d.logContains(`msg="recovery progress"`) {
		t.Errorf("a %.0fms recovery pass logged no progress line\n%s", rep.JudgedMs, d.logTail(40))
	}

	// Metrics agree with the report.
	m := opScrape(t, metricsAddr)
	t.Logf("report after the restart: totals %v, outcomes %v, ready %.1fms, judged %.1fms; %d shimkeeper series",
		rep.Totals, rep.Outcomes, rep.ReadyMs, rep.JudgedMs, len(m))
	for plugin, r := range map[string]opReport{"task": rep, "sandbox": sandboxRep} {
		byOutcome := map[[2]string]int{}
		for _, e := range r.Entries {
			byOutcome[[2]string{e.Action, e.Outcome}]++
		}
		probing := byOutcome[[2]string{"keep", "probing"}]
		for action, n := range r.Totals {
			if got := m.get("shimkeeper_recovery_decisions_total", "plugin", plugin, "action", action); got != float64(n) {
				t.Errorf("%s: decisions_total{action=%s} = %v, report total %d", plugin, action, got, n)
			}
			for _, outcome := range []string{"done", "failed", "probing"} {
				if got, want := m.get("shimkeeper_recovery_bundles_total", "plugin", plugin, "action", action, "outcome", outcome), byOutcome[[2]string{action, outcome}]; got != float64(want) {
					t.Errorf("%s: bundles_total{action=%s,outcome=%s} = %v, report has %d", plugin, action, outcome, got, want)
				}
			}
		}
		if got := m.get("shimkeeper_recovery_unresponsive_shims", "plugin", plugin); got != float64(probing) {
			t.Errorf("%s: unresponsive_shims = %v, report has %d entries probing", plugin, got, probing)
		}
		if got := m.get("shimkeeper_recovery_cleanup_queue", "plugin", plugin); got != 0 {
			t.Errorf("%s: cleanup_queue = %v after the background work finished", plugin, got)
		}
		if got := m.sum("shimkeeper_recovery_cleanup_failures_total", "plugin", plugin); got != float64(r.Outcomes["failed"]) {
			t.Errorf("%s: cleanup_failures_total = %v, report has %d failed", plugin, got, r.Outcomes["failed"])
		}
		if got := m.get("shimkeeper_recovery_ready_seconds", "plugin", plugin); math.Abs(got-r.ReadyMs/1000) > 0.05 {
			t.Errorf("%s: ready_seconds = %v, report ready %.3fms", plugin, got, r.ReadyMs)
		}
		if got := m.get("shimkeeper_recovery_judged_seconds", "plugin", plugin); math.Abs(got-r.JudgedMs/1000) > 0.05 {
			t.Errorf("%s: judged_seconds = %v, report judged %.3fms", plugin, got, r.JudgedMs)
		}
		if got := m.get("shimkeeper_recovery_pass_seconds", "plugin", plugin); got < r.JudgedMs/1000 {
			t.Errorf("%s: pass_seconds = %v, below judged %.3fms", plugin, got, r.JudgedMs)
		}
	}
	// Every scanned shim was probed once, plus any re-probe of the hung one.
	for liveness, min := range map[string]float64{"alive": 2, "gone": 1, "unknown": 1} {
		if got := m.get("shimkeeper_recovery_probe_seconds_count", "plugin", "task", "liveness", liveness); got < min {
			t.Errorf("probe_seconds_count{liveness=%s} = %v, want at least %v", liveness, got, min)
		}
	}
	if got := m.get("shimkeeper_recovery_probe_seconds_count", "plugin", "task", "liveness", "alive"); got != 2 {
		t.Errorf("probe_seconds_count{liveness=alive} = %v, want 2 (live and leak; the hung shim is still stopped)", got)
	}

	// The task plugin's exports agree with the report: what was known
	// when the plugin loaded (verdicts come later).
	ex := opExports(t, d, "io.containerd.runtime.v2", "task")
	if ready, err := time.ParseDuration(ex["recovery.ready"]); err != nil || math.Abs(float64(ready)/float64(time.Millisecond)-rep.ReadyMs) > 0.01 {
		t.Errorf("export recovery.ready = %q, report ready %.3fms", ex["recovery.ready"], rep.ReadyMs)
	}
	for key, want := range map[string]string{
		"recovery.boot_id":    rep.BootID,
		"recovery.report":     filepath.Join(d.State, taskPluginDir, "shimkeeper-recovery.json"),
		"recovery.entries":    strconv.Itoa(len(rep.Entries)),
		"recovery.rebooted":   "false",
		"recovery.hold_start": "false",
	} {
		if ex[key] != want || want == "" {
			t.Errorf("export %s = %q, want %q", key, ex[key], want)
		}
	}
	if sx := opExports(t, d, "io.containerd.sandbox.controller.v1", "shim"); sx["recovery.entries"] != strconv.Itoa(len(sandboxRep.Entries)) {
		t.Errorf("sandbox controller export recovery.entries = %q, report has %d", sx["recovery.entries"], len(sandboxRep.Entries))
	}

	// While the daemon runs, plan refuses at once; report works.
	r := opRun(d, "recovery", "plan")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "is locked: is containerd running? stop it first") ||
		strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 || r.Elapsed > 5*time.Second {
		t.Errorf("plan against a running daemon: want a one-line 'is locked' error within 5s\n%s", r)
	}
	if got := opRunJSON[[]opPluginReport](t, d, "report"); len(got) != 2 || len(got[0].Entries) != len(rep.Entries) {
		t.Errorf("recovery report while running: %+v", got)
	}

	// Clean up: the hung shim answers again and is adopted.
	if err := syscall.Kill(shims["hung"], syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	d.waitTask(ns, "hung", "RUNNING")
	// Both tasks have cgroup metrics: the live one, which the task service
	// may have listed before it was judged, and the hung one, adopted by a
	// re-probe long after (stock never loads it). Recovery hands both to
	// the task monitor.
	raw := opScrapeRaw(t, metricsAddr)
	for _, id := range []string{"live", "hung"} {
		if !opHasSeries(raw, "container_", `container_id="`+id+`"`, `namespace="`+ns+`"`) {
			t.Errorf("no container_* cgroup metrics for recovered task %s", id)
		}
	}
	for _, id := range []string{"live", "hung"} {
		d.removeContainer(ns, id)
	}
	for _, id := range []string{"dead", "leak"} {
		if _, listed := d.tasks(ns)[id]; listed {
			t.Errorf("task %s still listed after recovery removed its shim", id)
		}
		d.mustCtrIn(ns, "container", "rm", id)
	}
	assertNoLeaks(t, d)
}

// TestRecoveryCommandBadInput runs the real binary on bad input: each case
// is one line on stderr, a non-zero exit, nothing on stdout, no panic and
// no hang.
func TestRecoveryCommandBadInput(t *testing.T) {
	t.Parallel()
	requireOurs(t, "has no `recovery` subcommand")
	requireBinaries(t, daemonBinary())
	dir := t.TempDir()
	state, root := filepath.Join(dir, "state"), filepath.Join(dir, "root")
	meta := filepath.Join(root, "io.containerd.metadata.v1.bolt", "meta.db")
	for _, p := range []string{state, filepath.Dir(meta)} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	config := filepath.Join(dir, "config.toml")
	writeConfig := func(state string) {
		t.Helper()
		body := fmt.Sprintf("version = 3\nroot = %q\nstate = %q\n", root, state)
		if err := os.WriteFile(config, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	metaAbsent := func(t *testing.T) {
		if _, err := os.Stat(meta); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("plan created the metadata database: %v", err)
		}
	}
	for _, tc := range []struct {
		name  string
		setup func()
		args  []string
		want  string
		after func(t *testing.T)
	}{
		{"missing config", func() {}, []string{"--config", filepath.Join(dir, "nope.toml"), "plan"}, "no such file or directory", nil},
		{"config not TOML", func() { _ = os.WriteFile(config, []byte("root = [\n"), 0o600) }, []string{"--config", config, "plan"}, "config " + config, nil},
		{"state dir missing", func() { writeConfig(filepath.Join(dir, "gone")) }, []string{"--config", config, "plan"}, "state dir " + filepath.Join(dir, "gone"), nil},
		{"metadata missing", func() { writeConfig(state) }, []string{"--config", config, "plan"}, "does not exist", metaAbsent},
		{"metadata corrupt", func() {
			writeConfig(state)
			_ = os.WriteFile(meta, []byte(strings.Repeat("not bolt", 4096)), 0o600)
		}, []string{"--config", config, "plan"}, "cannot be read (corrupt?)", nil},
		{"no report", func() { writeConfig(state) }, []string{"--config", config, "report"}, "no recovery report", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			ctx, cancel := context.WithTimeout(context.Background(), opCommandTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, daemonBinary(), append([]string{"recovery"}, tc.args...)...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() <= 0 {
				t.Fatalf("want a non-zero exit, got %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
			}
			msg := stderr.String()
			if !strings.HasPrefix(msg, "containerd: ") || strings.Count(msg, "\n") != 1 || !strings.HasSuffix(msg, "\n") {
				t.Errorf("stderr is not one line: %q", msg)
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("stderr %q lacks %q", msg, tc.want)
			}
			if strings.Contains(msg, "panic") || stdout.Len() != 0 {
				t.Errorf("stdout %q stderr %q", stdout.String(), msg)
			}
			if tc.after != nil {
				tc.after(t)
			}
		})
	}
}

// opShimPID returns the pid of the shim serving ns/id for d. A `shim
// start` process that is still exiting matches too, so it polls until
// exactly one is left.
func opShimPID(t *testing.T, d *Daemon, ns, id string) int {
	t.Helper()
	var found []proc
	if msg := eventually(10*time.Second, func() string {
		found = found[:0]
		for _, p := range shimProcs(d.Address) {
			if strings.Contains(p.Cmdline, "\x00-namespace\x00"+ns+"\x00") && strings.Contains(p.Cmdline, "\x00-id\x00"+id+"\x00") {
				found = append(found, p)
			}
		}
		if len(found) != 1 {
			return fmt.Sprintf("%d shim processes", len(found))
		}
		return ""
	}); msg != "" {
		var desc []string
		for _, p := range found {
			desc = append(desc, fmt.Sprintf("%d %c %s", p.PID, p.State, strings.Join(p.Args(), " ")))
		}
		t.Fatalf("shims of %s/%s: %s, want exactly one:\n%s", ns, id, msg, strings.Join(desc, "\n"))
	}
	return found[0].PID
}

func procStateOf(pid int) byte {
	p, ok := crihost.ReadProc(pid)
	if !ok {
		return 0
	}
	return p.State
}

// opEnableMetrics rewrites the (stopped) daemon's config: the metrics
// endpoint on a free local port, and recovery settings that keep the test
// short. It returns the endpoint's address.
func opEnableMetrics(t *testing.T, d *Daemon) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	const off = "[plugins.\"io.containerd.server.v1.metrics\"]\n  address = \"\"\n"
	cfg := d.config()
	if !strings.Contains(cfg, off) {
		t.Fatalf("harness config has no disabled metrics section to enable:\n%s", cfg)
	}
	cfg = strings.Replace(cfg, off, fmt.Sprintf("[plugins.\"io.containerd.server.v1.metrics\"]\n  address = %q\n", addr), 1)
	cfg += fmt.Sprintf("\n[plugins.\"io.containerd.runtime.v2.task\"]\n  recovery_probe_timeout = %q\n  recovery_retry_initial = \"200ms\"\n  recovery_retry_max = \"1s\"\n",
		opProbeTimeout.String())
	if err := os.WriteFile(d.ConfigPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return addr
}

// opRun runs `containerd --config <d's> args...`.
func opRun(d *Daemon, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), opCommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, daemonBinary(), append([]string{"--config", d.ConfigPath}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+binDir()+":"+os.Getenv("PATH"))
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{Args: append([]string{"(containerd)"}, args...), Stdout: stdout.String(), Stderr: stderr.String(), Elapsed: time.Since(start), Err: err, ExitCode: -1}
	var ee *exec.ExitError
	switch {
	case err == nil:
		r.ExitCode = 0
	case errors.As(err, &ee) && ee.Exited():
		r.ExitCode = ee.ExitCode()
	}
	return r
}

func opMustRun(t *testing.T, d *Daemon, args ...string) string {
	t.Helper()
	r := opRun(d, args...)
	if r.ExitCode != 0 || r.Stderr != "" {
		t.Fatalf("%s", r)
	}
	return r.Stdout
}

// opRunJSON runs `containerd recovery <sub> --json` and decodes its output.
func opRunJSON[T any](t *testing.T, d *Daemon, sub string) T {
	t.Helper()
	var v T
	out := opMustRun(t, d, "recovery", sub, "--json")
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("recovery %s --json: %v\n%s", sub, err, out)
	}
	return v
}

// opReport is the part of a recovery report (plan or report JSON) the
// tests read.
type opReport struct {
	StateDir string         `json:"state_dir"`
	ReadyMs  float64        `json:"ready_ms"`
	JudgedMs float64        `json:"judged_ms"`
	Finished string         `json:"finished_at"`
	BootID   string         `json:"boot_id"`
	Totals   map[string]int `json:"totals"`
	Outcomes map[string]int `json:"outcomes"`
	Entries  []struct {
		Namespace string `json:"namespace"`
		ID        string `json:"id"`
		Liveness  string `json:"liveness"`
		Task      string `json:"task"`
		Action    string `json:"action"`
		Outcome   string `json:"outcome"`
	} `json:"entries"`
	WorkDirsRemoved []string `json:"work_dirs_removed"`
}

type opPluginReport struct {
	Plugin string `json:"plugin"`
	opReport
	Error string `json:"error"`
}

func opReadReport(stateDir string) (opReport, error) {
	var r opReport
	data, err := os.ReadFile(filepath.Join(stateDir, "shimkeeper-recovery.json"))
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(data, &r)
}

// opPlanActions maps "<ns>/<id>" to the planned action, task plugin and
// sandbox controller together (ids are unique across them here).
func opPlanActions(rs []opPluginReport) map[string]string {
	out := map[string]string{}
	for _, r := range rs {
		for k, v := range opReportActions(r.opReport) {
			out[k] = v
		}
	}
	return out
}

func opReportActions(r opReport) map[string]string {
	out := map[string]string{}
	for _, e := range r.Entries {
		out[e.Namespace+"/"+e.ID] = e.Action
	}
	return out
}

// opHasRow reports whether a table line starts with the given columns.
func opHasRow(table string, cols []string) bool {
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(cols) && strings.Join(f[:len(cols)], " ") == strings.Join(cols, " ") {
			return true
		}
	}
	return false
}

func opEqualMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// opMetrics is a scrape: series "name{k="v",...}" (labels sorted) to value.
type opMetrics map[string]float64

// opScrapeRaw returns the text of /v1/metrics.
func opScrapeRaw(t *testing.T, addr string) string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + addr + "/v1/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/metrics: %s, %v", resp.Status, err)
	}
	return string(body)
}

// opHasSeries reports whether a sample line starts with prefix and holds
// every label.
func opHasSeries(text, prefix string, labels ...string) bool {
	return hasLineWith(text, func(line string) bool { return strings.HasPrefix(line, prefix) }, labels...)
}

func opScrape(t *testing.T, addr string) opMetrics {
	t.Helper()
	m := opMetrics{}
	for _, line := range strings.Split(opScrapeRaw(t, addr), "\n") {
		if line == "" || strings.HasPrefix(line, "#") || !strings.HasPrefix(line, "shimkeeper_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		name, labels, _ := strings.Cut(line[:i], "{")
		var kv []string
		for _, p := range strings.Split(strings.TrimSuffix(labels, "}"), ",") {
			if p != "" {
				kv = append(kv, p)
			}
		}
		sort.Strings(kv)
		m[name+"{"+strings.Join(kv, ",")+"}"] = v
	}
	if len(m) == 0 {
		t.Fatal("no shimkeeper_ metrics served")
	}
	return m
}

// get returns the series with exactly these label pairs (0 if absent, as
// Prometheus treats a counter never incremented).
func (m opMetrics) get(name string, labels ...string) float64 {
	var kv []string
	for i := 0; i+1 < len(labels); i += 2 {
		kv = append(kv, fmt.Sprintf("%s=%q", labels[i], labels[i+1]))
	}
	sort.Strings(kv)
	return m[name+"{"+strings.Join(kv, ",")+"}"]
}

// sum adds every series of name that has the given label pairs.
func (m opMetrics) sum(name string, labels ...string) float64 {
	total := 0.0
	for key, v := range m {
		n, rest, _ := strings.Cut(key, "{")
		if n != name {
			continue
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			ok = ok && strings.Contains(","+strings.TrimSuffix(rest, "}")+",", fmt.Sprintf(",%s=%q,", labels[i], labels[i+1]))
		}
		if ok {
			total += v
		}
	}
	return total
}

// opExports returns the exports of plugin typ/id from `ctr plugins ls -d`.
func opExports(t *testing.T, d *Daemon, typ, id string) map[string]string {
	t.Helper()
	out := d.mustCtrIn("", "plugins", "ls", "-d")
	ex := map[string]string{}
	var curType, curID string
	inExports := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
			inExports = false
		case f[0] == "Type:" && len(f) == 2:
			curType, curID, inExports = f[1], "", false
		case f[0] == "ID:" && len(f) == 2:
			curID = f[1]
		case f[0] == "Exports:":
			inExports = true
		case strings.HasSuffix(f[0], ":") && !strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, " "):
			inExports = false
		case inExports && curType == typ && curID == id:
			ex[f[0]] = strings.Join(f[1:], " ")
		}
	}
	if len(ex) == 0 {
		t.Fatalf("no exports for %s %s in ctr plugins ls -d:\n%s", typ, id, out)
	}
	return ex
}

package operator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/shimkeeper/shimkeeper/internal/testshim"
	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/lifecycle"
	"github.com/shimkeeper/shimkeeper/loader"
)

// fixture is a stopped daemon's config, dirs and metadata database.
type fixture struct {
	dir, root, state, socketDir, config string
}

func (f *fixture) taskState() string { return layout.PluginDir(f.state, layout.TaskPluginDir) }
func (f *fixture) taskRoot() string  { return layout.PluginDir(f.root, layout.TaskPluginDir) }
func (f *fixture) metaDB() string    { return layout.MetadataDB(f.root) }

// newFixture writes config.toml (extra is appended to it), creates the
// state and root dirs and an empty, valid metadata database.
func newFixture(t *testing.T, extra string) *fixture {
	t.Helper()
	dir := t.TempDir()
	// A socket dir of at most 42 characters, as the config requires.
	sd, err := os.MkdirTemp("/tmp", "skop")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sd) })
	f := &fixture{dir: dir, root: filepath.Join(dir, "root"), state: filepath.Join(dir, "state"), socketDir: sd,
		config: filepath.Join(dir, "config.toml")}
	cfg := fmt.Sprintf(`version = 3
root = %q
state = %q

[plugins."io.containerd.server.v1.grpc"]
  address = %q

[plugins."io.containerd.shim.v1.manager"]
  socket_dir = %q

[plugins."io.containerd.runtime.v2.task"]
  recovery_probe_timeout = "300ms"
%s`, f.root, f.state, filepath.Join(dir, "c.sock"), sd, extra)
	testshim.MustWrite(t, f.config, cfg)
	for _, d := range []string{f.taskState(), f.taskRoot(), filepath.Dir(f.metaDB())} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	db, err := bolt.Open(f.metaDB(), 0o644, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return f
}

// bundle creates <task state>/<ns>/<id> with a bootstrap.json pointing at
// socket and a shim-binary-path naming binary.
func (f *fixture) bundle(t *testing.T, ns, id, socket, binary string) {
	t.Helper()
	b := filepath.Join(f.taskState(), ns, id)
	testshim.MustWrite(t, filepath.Join(b, "bootstrap.json"), fmt.Sprintf(`{"version":3,"address":"unix://%s","protocol":"ttrpc"}`, socket))
	testshim.MustWrite(t, filepath.Join(b, "shim-binary-path"), binary)
	if err := os.MkdirAll(filepath.Join(f.taskRoot(), ns, id), 0o711); err != nil {
		t.Fatal(err)
	}
}

func runPlan(t *testing.T, o Options) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := Plan(context.Background(), &out, o)
	return out.String(), err
}

// TestPlanFixture plans a state dir with a shim whose socket is gone, one
// whose socket refuses, one that accepts and never answers, one whose
// binary is missing, an empty bundle, a file, a pending removal and an
// orphan work dir: each gets the action the daemon would take, and
// nothing on disk changes.
func TestPlanFixture(t *testing.T) {
	f := newFixture(t, "")
	const ns = "ns1"
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	f.bundle(t, ns, "gone", filepath.Join(f.socketDir, "gone.sock"), exe)

	refused := filepath.Join(f.socketDir, "refused.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: refused, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	f.bundle(t, ns, "refused", refused, exe)

	hung := filepath.Join(f.socketDir, "hung.sock")
	hl, err := net.Listen("unix", hung)
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 16)
	defer func() {
		hl.Close()
		for {
			select {
			case c := <-held:
				c.Close()
			default:
				return
			}
		}
	}()
	go func() {
		// Accept and never answer, like a SIGSTOPped shim.
		for {
			c, err := hl.Accept()
			if err != nil {
				return
			}
			held <- c
		}
	}()
	f.bundle(t, ns, "hung", hung, exe)

	f.bundle(t, ns, "nobinary", filepath.Join(f.socketDir, "nobinary.sock"), filepath.Join(f.dir, "no-such-shim"))
	if err := os.MkdirAll(filepath.Join(f.taskState(), ns, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	testshim.MustWrite(t, filepath.Join(f.taskState(), ns, "afile"), "not a bundle")
	if err := os.MkdirAll(filepath.Join(f.taskState(), ns, ".pending"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(f.taskRoot(), ns, "orphan"), 0o711); err != nil {
		t.Fatal(err)
	}

	dirs := []string{f.state, f.root, f.socketDir}
	before := testshim.Tree(t, true, dirs...)

	out, err := runPlan(t, Options{ConfigPath: f.config, ConfigSet: true, JSON: true})
	if err != nil {
		t.Fatal(err)
	}
	var rs []PluginReport
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		t.Fatalf("plan --json is not a JSON list of reports: %v\n%s", err, out)
	}
	if len(rs) != 2 || rs[0].Plugin != "task" || rs[1].Plugin != "sandbox" {
		t.Fatalf("plugins %+v, want task and sandbox", rs)
	}
	got := map[string]string{}
	for _, e := range rs[0].Entries {
		got[e.ID] = e.Action.String() + " " + e.Liveness.String() + " " + e.Outcome
	}
	want := map[string]string{
		"gone":     "cleanup-dead gone planned",
		"refused":  "cleanup-dead gone planned",
		"hung":     "keep unknown planned",
		"nobinary": "keep gone planned",
		"empty":    "remove-empty unknown planned",
		"afile":    "ignore unknown planned",
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: %q, want %q", id, got[id], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("entries %v, want exactly %v (no dot-names)", got, want)
	}
	if w := []string{ns + "/orphan"}; strings.Join(rs[0].WorkDirsRemoved, ",") != strings.Join(w, ",") {
		t.Errorf("work dirs to remove %v, want %v", rs[0].WorkDirsRemoved, w)
	}
	if len(rs[1].Entries) != 0 {
		t.Errorf("sandbox entries %+v, want none", rs[1].Entries)
	}

	table, err := runPlan(t, Options{ConfigPath: f.config, ConfigSet: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		"PLUGIN", "NAMESPACE", "LIVENESS", "REASON",
		"task    ns1        gone", "cleanup-dead", "shim liveness unknown",
		"work dirs that would be removed (no bundle): ns1/orphan",
	} {
		if !strings.Contains(table, w) {
			t.Errorf("table lacks %q:\n%s", w, table)
		}
	}

	if d := testshim.DiffTrees(before, testshim.Tree(t, true, dirs...)); len(d) > 0 {
		t.Fatalf("plan changed the disk:\n%s", strings.Join(d, "\n"))
	}
}

// TestPlanBadInput: every bad input is one line of error, quickly; nothing
// is created.
func TestPlanBadInput(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, f *fixture) Options
		want  []string
	}{
		{
			name: "missing config",
			setup: func(t *testing.T, f *fixture) Options {
				return Options{ConfigPath: filepath.Join(f.dir, "nope.toml"), ConfigSet: true}
			},
			want: []string{"nope.toml", "no such file or directory"},
		},
		{
			name: "config is a directory",
			setup: func(t *testing.T, f *fixture) Options {
				return Options{ConfigPath: f.dir, ConfigSet: true}
			},
			want: []string{"config " + "", "is a directory"},
		},
		{
			name: "config is not TOML",
			setup: func(t *testing.T, f *fixture) Options {
				testshim.MustWrite(t, f.config, "version = 3\nroot = [\n\n")
				return Options{ConfigPath: f.config, ConfigSet: true}
			},
			want: []string{"config.toml"},
		},
		{
			name: "bad recovery setting",
			setup: func(t *testing.T, f *fixture) Options {
				data, _ := os.ReadFile(f.config)
				testshim.MustWrite(t, f.config, strings.Replace(string(data), `"300ms"`, `"-1s"`, 1))
				return Options{ConfigPath: f.config, ConfigSet: true}
			},
			want: []string{"recovery_probe_timeout", "must be a positive duration"},
		},
		{
			name: "bad timeout",
			setup: func(t *testing.T, f *fixture) Options {
				data, _ := os.ReadFile(f.config)
				testshim.MustWrite(t, f.config, string(data)+"\n[timeouts]\n  \"io.containerd.timeout.shim.load\" = \"soon\"\n")
				return Options{ConfigPath: f.config, ConfigSet: true}
			},
			want: []string{"io.containerd.timeout.shim.load", "soon"},
		},
		{
			name: "state dir missing",
			setup: func(t *testing.T, f *fixture) Options {
				return Options{ConfigPath: f.config, ConfigSet: true, State: filepath.Join(f.dir, "no-state")}
			},
			want: []string{"state dir", "no-state", "no such file or directory"},
		},
		{
			name: "metadata database missing",
			setup: func(t *testing.T, f *fixture) Options {
				if err := os.Remove(f.metaDB()); err != nil {
					t.Fatal(err)
				}
				return Options{ConfigPath: f.config, ConfigSet: true}
			},
			want: []string{"meta.db does not exist"},
		},
		{
			name: "metadata database empty",
			setup: func(t *testing.T, f *fixture) Options {
				testshim.MustWrite(t, f.metaDB(), "")
				return Options{ConfigPath: f.config, ConfigSet: true}
			},
			want: []string{"meta.db is empty"},
		},
		{
			name: "metadata database corrupt",
			setup: func(t *testing.T, f *fixture) Options {
				testshim.MustWrite(t, f.metaDB(), strings.Repeat("garbage!", 8192))
				return Options{ConfigPath: f.config, ConfigSet: true}
			},
			want: []string{"meta.db cannot be read (corrupt?)"},
		},
		{
			name: "metadata database locked",
			setup: func(t *testing.T, f *fixture) Options {
				// Held the way a running daemon holds it: read-write,
				// exclusive flock.
				db, err := bolt.Open(f.metaDB(), 0o644, &bolt.Options{Timeout: time.Second})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return Options{ConfigPath: f.config, ConfigSet: true}
			},
			want: []string{"meta.db is locked: is containerd running? stop it first"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "")
			o := tc.setup(t, f)
			before := testshim.Tree(t, true, f.state, f.root)
			start := time.Now()
			out, err := runPlan(t, o)
			took := time.Since(start)
			if err == nil {
				t.Fatalf("plan succeeded:\n%s", out)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error is more than one line: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if out != "" {
				t.Errorf("printed on error:\n%s", out)
			}
			if took > 5*time.Second {
				t.Errorf("took %s", took)
			}
			if d := testshim.DiffTrees(before, testshim.Tree(t, true, f.state, f.root)); len(d) > 0 {
				t.Errorf("plan changed the disk:\n%s", strings.Join(d, "\n"))
			}
			t.Logf("%s (%s)", msg, took.Round(time.Millisecond))
		})
	}
}

func TestLockedIsDistinguishable(t *testing.T) {
	f := newFixture(t, "")
	db, err := bolt.Open(f.metaDB(), 0o644, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = runPlan(t, Options{ConfigPath: f.config, ConfigSet: true})
	if !errors.Is(err, errLocked) {
		t.Fatalf("error %v does not wrap errLocked", err)
	}
}

// With no config file at the default path and none named, the daemon's
// defaults apply (as for the daemon); a named one must exist.
func TestLoadDaemonDefaults(t *testing.T) {
	d, err := loadDaemon(context.Background(), Options{ConfigPath: filepath.Join(t.TempDir(), "absent.toml")})
	if err != nil {
		t.Fatal(err)
	}
	if d.ConfigPath != "" || d.Root != "/var/lib/containerd" || d.State != "/run/containerd" ||
		d.GRPCAddress != "/run/containerd/containerd.sock" || d.TTRPCAddress != "/run/containerd/containerd.sock.ttrpc" {
		t.Errorf("defaults: %+v", d)
	}
	if d.Task.RecoveryConcurrency != 64 || d.Timeouts.Load != 5*time.Second || d.Timeouts.Start != 20*time.Second {
		t.Errorf("plugin defaults: %+v %+v", d.Task, d.Timeouts)
	}
}

func TestLoadDaemonConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	testshim.MustWrite(t, path, `version = 3
root = "/r"
state = "/s"
[plugins."io.containerd.server.v1.grpc"]
  address = "/g.sock"
[plugins."io.containerd.shim.v1.manager"]
  env = ["A=1"]
  socket_dir = "/sd"
[plugins."io.containerd.runtime.v2.task"]
  recovery_concurrency = 7
  recovery_deadline = "3s"
[timeouts]
  "io.containerd.timeout.shim.load" = "9s"
`)
	d, err := loadDaemon(context.Background(), Options{ConfigPath: path, ConfigSet: true})
	if err != nil {
		t.Fatal(err)
	}
	// No ttrpc section: server.New's default, not grpc's + ".ttrpc".
	if d.Root != "/r" || d.State != "/s" || d.GRPCAddress != "/g.sock" || d.TTRPCAddress != "/run/containerd/containerd.sock.ttrpc" {
		t.Errorf("dirs and addresses: %+v", d)
	}
	if sd, _ := d.Shim.SocketDirReadOnly(); sd != "/sd" || strings.Join(d.Shim.Env, ",") != "A=1" {
		t.Errorf("shim section: %+v", d.Shim)
	}
	o := d.Task.RecoveryOptions(d.taskState(), d.taskRoot())
	if o.Concurrency != 7 || o.Deadline != 3*time.Second || o.ProbeTimeout != 2*time.Second || o.StateDir != "/s/io.containerd.runtime.v2.task" {
		t.Errorf("recovery options: %+v", o)
	}
	if d.Timeouts.Load != 9*time.Second || d.Timeouts.Cleanup != 5*time.Second {
		t.Errorf("timeouts: %+v", d.Timeouts)
	}
	// The daemon's flags win over the file.
	d, err = loadDaemon(context.Background(), Options{ConfigPath: path, ConfigSet: true, Root: "/r2", State: "/s2", Address: "/a.sock"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Root != "/r2" || d.State != "/s2" || d.GRPCAddress != "/a.sock" || d.TTRPCAddress != "/a.sock.ttrpc" {
		t.Errorf("flags: %+v", d)
	}

	// A version 2 file: sched_core moves to the manager's env.
	testshim.MustWrite(t, path, `version = 2
root = "/r"
state = "/s"
[plugins."io.containerd.runtime.v2.task"]
  sched_core = true
`)
	d, err = loadDaemon(context.Background(), Options{ConfigPath: path, ConfigSet: true})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(d.Shim.Env, ",") != "SCHED_CORE=1" {
		t.Errorf("migrated env %q, want SCHED_CORE=1", d.Shim.Env)
	}
}

func TestReport(t *testing.T) {
	f := newFixture(t, "")
	var out bytes.Buffer
	err := Report(context.Background(), &out, Options{ConfigPath: f.config, ConfigSet: true})
	if err == nil || !strings.Contains(err.Error(), "no recovery report") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("no report: error %v", err)
	}

	started := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	rep := loader.Report{
		StateDir: f.taskState(), RootDir: f.taskRoot(), StartedAt: started, Ready: loader.Millis(12 * time.Millisecond),
		Finished: started.Add(time.Second), BootID: "b00t",
		Totals:   map[string]int{"adopt": 1, "cleanup-dead": 1, "keep": 0},
		Outcomes: map[string]int{"done": 1, "failed": 1},
		Entries: []*loader.Entry{
			{Observation: lifecycle.Observation{Namespace: "ns", ID: "web", Liveness: lifecycle.LivenessAlive, Task: lifecycle.TaskLive},
				Action: lifecycle.ActionAdopt, Reason: "shim alive, task live", Outcome: lifecycle.OutcomeDone},
			{Observation: lifecycle.Observation{Namespace: "ns", ID: "db", Liveness: lifecycle.LivenessGone},
				Action: lifecycle.ActionCleanupDead, Reason: "shim gone", Outcome: lifecycle.OutcomeFailed, Error: "shim delete:\nexit status 1"},
		},
	}
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	testshim.MustWrite(t, filepath.Join(f.taskState(), layout.ReportFile), string(data))
	before := testshim.Tree(t, true, f.state, f.root)

	out.Reset()
	if err := Report(context.Background(), &out, Options{ConfigPath: f.config, ConfigSet: true}); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		"task: " + f.taskState(), "held the daemon 12ms", "boot id b00t", "2 entries: adopt=1 cleanup-dead=1", "outcomes: done=1 failed=1",
		"OUTCOME", "web", "adopt", "(error: shim delete: exit status 1)",
		"sandbox: no report in", "no such file or directory",
	} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("report lacks %q:\n%s", w, out.String())
		}
	}

	out.Reset()
	if err := Report(context.Background(), &out, Options{ConfigPath: f.config, ConfigSet: true, JSON: true}); err != nil {
		t.Fatal(err)
	}
	var rs []PluginReport
	if err := json.NewDecoder(io.Reader(&out)).Decode(&rs); err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].BootID != "b00t" || len(rs[0].Entries) != 2 || rs[0].Entries[1].Action != lifecycle.ActionCleanupDead ||
		time.Duration(rs[0].Ready) != 12*time.Millisecond || rs[1].Err == "" {
		t.Errorf("report JSON round trip: %+v", rs)
	}
	if d := testshim.DiffTrees(before, testshim.Tree(t, true, f.state, f.root)); len(d) > 0 {
		t.Fatalf("report changed the disk:\n%s", strings.Join(d, "\n"))
	}
}

// docs/config.toml documents every key at its default: it must load, and
// say what the daemon would use anyway.
func TestExampleConfig(t *testing.T) {
	d, err := loadDaemon(context.Background(), Options{ConfigPath: filepath.Join("..", "docs", "config.toml"), ConfigSet: true})
	if err != nil {
		t.Fatal(err)
	}
	defaults, err := loadDaemon(context.Background(), Options{ConfigPath: filepath.Join(t.TempDir(), "absent.toml")})
	if err != nil {
		t.Fatal(err)
	}
	def := defaults.Task
	if d.Task.RecoveryConcurrency != def.RecoveryConcurrency || d.Task.RecoveryDeadline != def.RecoveryDeadline ||
		d.Task.RecoveryProbeTimeout != def.RecoveryProbeTimeout || d.Task.RecoveryRetryInitial != def.RecoveryRetryInitial ||
		d.Task.RecoveryRetryMax != def.RecoveryRetryMax {
		t.Errorf("example recovery settings %+v differ from the defaults %+v", d.Task, def)
	}
	if d.Timeouts != defaults.Timeouts {
		t.Errorf("example timeouts %+v differ from the defaults %+v", d.Timeouts, defaults.Timeouts)
	}
	if d.Root != defaults.Root || d.State != defaults.State || d.GRPCAddress != defaults.GRPCAddress || d.TTRPCAddress != defaults.TTRPCAddress {
		t.Errorf("example dirs/addresses %+v differ from the defaults %+v", d, defaults)
	}
	if sd, _ := d.Shim.SocketDirReadOnly(); sd != "/run/containerd/s" || len(d.Shim.Env) != 0 {
		t.Errorf("example shim section %+v", d.Shim)
	}
}

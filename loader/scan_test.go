package loader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	task "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"

	"github.com/containerd/containerd/v2/pkg/protobuf/proto"

	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/lifecycle"
	"github.com/shimkeeper/shimkeeper/manager"
)

// fixture is a plugin state dir, root dir and an unrelated dir ("outside")
// that symlinks point into, all in one t.TempDir.
type fixture struct {
	t                    testing.TB
	state, root, outside string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	base := t.TempDir()
	f := &fixture{t: t, state: filepath.Join(base, "state"), root: filepath.Join(base, "root"), outside: filepath.Join(base, "outside")}
	for _, d := range []string{f.state, f.root, f.outside} {
		if err := os.Mkdir(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// make creates path (relative to the state dir) as described by spec:
// "dir", "fifo", "symlink:<target>", or "file:<content>".
func (f *fixture) make(path, spec string) {
	f.t.Helper()
	p := filepath.Join(f.state, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o711); err != nil {
		f.t.Fatal(err)
	}
	var err error
	kind, arg, _ := strings.Cut(spec, ":")
	switch kind {
	case "dir":
		err = os.Mkdir(p, 0o700)
	case "fifo":
		err = syscall.Mkfifo(p, 0o700)
	case "symlink":
		err = os.Symlink(arg, p)
	case "file":
		err = os.WriteFile(p, []byte(arg), 0o600)
	default:
		f.t.Fatalf("bad spec %q", spec)
	}
	if err != nil {
		f.t.Fatal(err)
	}
}

// bundle creates the bundle dir <ns>/<id> and the given entries in it.
func (f *fixture) bundle(ns, id string, entries map[string]string) {
	f.t.Helper()
	f.make(filepath.Join(ns, id), "dir")
	for name, spec := range entries {
		f.make(filepath.Join(ns, id, name), spec)
	}
}

func (f *fixture) opts() scanOptions {
	return scanOptions{
		stateDir: f.state, rootDir: f.root, concurrency: 4,
		probeTimeout: 5 * time.Second, deadline: time.Now().Add(time.Minute),
	}
}

func protoBootstrap(t testing.TB, p *bootapi.BootstrapResult) string {
	t.Helper()
	data, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func byKey(entries []*scanned) (map[string]*scanned, []string) {
	out := map[string]*scanned{}
	var dups []string
	for _, s := range entries {
		k := s.obs.Namespace + "/" + s.obs.ID
		if _, ok := out[k]; ok {
			dups = append(dups, k)
		}
		out[k] = s
	}
	return out, dups
}

// wantProbe is how the scan should have probed a bundle.
type wantProbe struct {
	version     int32
	protocol    string
	address     string
	runtimePath string
	migrate     bool
	// then: a second probe, at this (default) address, after the first
	// failed; only for a bootstrap.json whose address is not trusted.
	then string
}

type wantEntry struct {
	obs   lifecycle.Observation // Namespace, ID and Rebooted are filled in
	probe *wantProbe            // nil: must not be probed
}

const (
	runcName = "io.containerd.runc.v2"
	runcPath = "/usr/local/bin/containerd-shim-runc-v2"
)

var (
	alive = func(st *task.StateResponse, stErr error) manager.ProbeResult {
		return manager.ProbeResult{Liveness: lifecycle.LivenessAlive, Task: manager.ClassifyState(st, stErr), StateErr: stErr}
	}
	running  = &task.StateResponse{ID: "x", Status: tasktypes.Status_RUNNING, Pid: 42}
	stopped  = &task.StateResponse{ID: "x", Status: tasktypes.Status_STOPPED, ExitStatus: 3}
	noTask   = errdefs.ErrNotFound
	timedOut = manager.ProbeResult{Liveness: lifecycle.LivenessUnknown, Err: context.DeadlineExceeded}
	refused  = manager.ProbeResult{Liveness: lifecycle.LivenessGone, Err: syscall.ECONNREFUSED}
)

// scanFixture builds one state dir with every shape the scan must handle,
// and the env answers and the observations expected of it.
func scanFixture(t testing.TB) (*fixture, *fakeEnv, map[string]wantEntry) {
	f := newFixture(t)
	env := newFakeEnv()
	env.binaries[runcName] = runcPath
	want := map[string]wantEntry{}

	// A normal bundle as stock lays it out, around a given bootstrap.
	stock := func(ns, id string, extra map[string]string) {
		entries := map[string]string{
			"config.json":      `file:{"ociVersion":"1.2.0"}`,
			"rootfs":           "dir",
			"work":             "symlink:" + filepath.Join(f.root, ns, id),
			"shim-binary-path": "file:" + runcPath,
			"junk":             "file:\x00\xff\xfe garbage \x01",
		}
		for k, v := range extra {
			entries[k] = v
		}
		f.bundle(ns, id, entries)
		if err := os.MkdirAll(filepath.Join(f.root, ns, id), 0o711); err != nil {
			t.Fatal(err)
		}
		env.runtimeNames[ns+"/"+id] = runtimeAnswer{name: runcName, found: true}
	}
	found := func(ns, id string, c, s lifecycle.Presence) {
		env.containers.answers[ns+"/"+id] = c
		env.sandboxes.answers[ns+"/"+id] = s
	}
	// The records are looked up only where the verdict needs them: the
	// container record when no shim-binary-path names the runtime, the
	// sandbox record for a live shim with no task that is not joined.
	dir := lifecycle.Observation{Kind: lifecycle.KindDir, ValidName: true, Runtime: lifecycle.PresenceFound, Container: lifecycle.PresenceNotLooked, Sandbox: lifecycle.PresenceNotLooked}
	obs := func(f func(o *lifecycle.Observation)) lifecycle.Observation {
		o := dir
		f(&o)
		return o
	}

	// 1.x era: a legacy `address` file, no bootstrap.json, and the log
	// FIFO a running shim holds. The address is read, not migrated.
	stock("default", "legacy", map[string]string{"address": "file:unix:///run/containerd/s/legacy", "log": "fifo"})
	found("default", "legacy", lifecycle.PresenceFound, lifecycle.PresenceAbsent)
	env.probes["default/legacy"] = alive(running, nil)
	want["default/legacy"] = wantEntry{
		obs:   obs(func(o *lifecycle.Observation) { o.Liveness, o.Task = lifecycle.LivenessAlive, lifecycle.TaskLive }),
		probe: &wantProbe{2, "ttrpc", "unix:///run/containerd/s/legacy", runcPath, true, ""},
	}

	// bootstrap.json as a protobuf BootstrapResult; a sandbox's shim,
	// which has no task of the sandbox's id.
	stock("default", "proto", map[string]string{"bootstrap.json": "file:" + protoBootstrap(t, &bootapi.BootstrapResult{
		Version: 3, Address: "unix:///run/containerd/s/proto", Protocol: "ttrpc",
	})})
	found("default", "proto", lifecycle.PresenceAbsent, lifecycle.PresenceFound)
	env.probes["default/proto"] = alive(nil, noTask)
	want["default/proto"] = wantEntry{
		obs: obs(func(o *lifecycle.Observation) {
			o.Sandbox, o.Liveness, o.Task = lifecycle.PresenceFound, lifecycle.LivenessAlive, lifecycle.TaskNone
		}),
		// Adoption rewrites it as JSON (migrate), so the next start trusts it.
		probe: &wantProbe{3, "ttrpc", "unix:///run/containerd/s/proto", runcPath, true, ""},
	}

	// JSON, version 3, as stock 2.x writes it; the task exited.
	stock("default", "json3", map[string]string{"bootstrap.json": `file:{"version":3,"address":"unix:///run/containerd/s/json3","protocol":"ttrpc"}`})
	found("default", "json3", lifecycle.PresenceFound, lifecycle.PresenceAbsent)
	env.probes["default/json3"] = alive(stopped, nil)
	want["default/json3"] = wantEntry{
		obs:   obs(func(o *lifecycle.Observation) { o.Liveness, o.Task = lifecycle.LivenessAlive, lifecycle.TaskExited }),
		probe: &wantProbe{3, "ttrpc", "unix:///run/containerd/s/json3", runcPath, false, ""},
	}

	// JSON, version 2, grpc; the shim does not answer in time.
	stock("default", "json2", map[string]string{"bootstrap.json": `file:{"version":2,"address":"unix:///run/containerd/s/json2","protocol":"grpc"}`})
	found("default", "json2", lifecycle.PresenceFound, lifecycle.PresenceAbsent)
	env.probes["default/json2"] = timedOut
	want["default/json2"] = wantEntry{
		obs:   obs(func(o *lifecycle.Observation) { o.Liveness = lifecycle.LivenessUnknown }),
		probe: &wantProbe{2, "grpc", "unix:///run/containerd/s/json2", runcPath, false, ""},
	}

	// Plain address text, as shims print on `start`; the socket refuses.
	// Containerd never writes bootstrap.json this way, so it may be a
	// damaged file read as an address: the default address is tried too,
	// and a refusal at both proves nothing (liveness unknown, kept).
	stock("default", "plain", map[string]string{"bootstrap.json": "file:unix:///run/containerd/s/plain\n"})
	found("default", "plain", lifecycle.PresenceFound, lifecycle.PresenceAbsent)
	env.probes["default/plain"] = refused
	want["default/plain"] = wantEntry{
		obs:   obs(func(o *lifecycle.Observation) { o.Liveness = lifecycle.LivenessUnknown }),
		probe: &wantProbe{2, "ttrpc", "unix:///run/containerd/s/plain", runcPath, false, defaultAddress("default", "plain")},
	}

	// containerd crashed between `shim start` and writing bootstrap.json:
	// the shim is found at the default address, and owns nothing.
	stock("default", "leaked", nil)
	found("default", "leaked", lifecycle.PresenceFound, lifecycle.PresenceAbsent)
	env.probes["default/leaked"] = alive(nil, noTask)
	want["default/leaked"] = wantEntry{
		obs: obs(func(o *lifecycle.Observation) {
			o.Sandbox, o.Liveness, o.Task = lifecycle.PresenceAbsent, lifecycle.LivenessAlive, lifecycle.TaskNone
		}),
		probe: &wantProbe{3, "ttrpc", defaultAddress("default", "leaked"), runcPath, true, ""},
	}

	// A bootstrap.json of a version we do not speak, and no default
	// address: nothing to dial, so unknown, and not probed.
	stock("default", "v4", map[string]string{"bootstrap.json": `file:{"version":4,"address":"unix:///run/x","protocol":"ttrpc"}`})
	found("default", "v4", lifecycle.PresenceFound, lifecycle.PresenceAbsent)
	env.defaultAddrErr["default/v4"] = true
	want["default/v4"] = wantEntry{obs: obs(func(o *lifecycle.Observation) { o.Liveness = lifecycle.LivenessUnknown })}

	// The stores fail, the runtime name cannot be read, and State fails
	// with something other than NotFound: no record is needed (the
	// shim-binary-path read failed, not absent; the task is not "none").
	stock("default", "storeerr", map[string]string{"bootstrap.json": `file:{"version":3,"address":"unix:///run/containerd/s/storeerr","protocol":"ttrpc"}`})
	found("default", "storeerr", lifecycle.PresenceUnknown, lifecycle.PresenceUnknown)
	env.runtimeNames["default/storeerr"] = runtimeAnswer{err: errors.New("read shim-binary-path: input/output error")}
	env.probes["default/storeerr"] = alive(nil, errdefs.ErrUnavailable)
	want["default/storeerr"] = wantEntry{
		obs: obs(func(o *lifecycle.Observation) {
			o.Runtime, o.Liveness, o.Task = lifecycle.PresenceUnknown, lifecycle.LivenessAlive, lifecycle.TaskUnknown
		}),
		probe: &wantProbe{3, "ttrpc", "unix:///run/containerd/s/storeerr", "", false, ""},
	}

	// A live shim with no task whose sandbox record cannot be read:
	// ownership unknown.
	stock("default", "sberr", map[string]string{"bootstrap.json": `file:{"version":3,"address":"unix:///run/containerd/s/sberr","protocol":"ttrpc"}`})
	found("default", "sberr", lifecycle.PresenceUnknown, lifecycle.PresenceUnknown)
	env.probes["default/sberr"] = alive(nil, noTask)
	want["default/sberr"] = wantEntry{
		obs: obs(func(o *lifecycle.Observation) {
			o.Sandbox, o.Liveness, o.Task = lifecycle.PresenceUnknown, lifecycle.LivenessAlive, lifecycle.TaskNone
		}),
		probe: &wantProbe{3, "ttrpc", "unix:///run/containerd/s/sberr", runcPath, false, ""},
	}

	// The runtime is named but its binary is not installed.
	stock("default", "nobin", map[string]string{"bootstrap.json": `file:{"version":3,"address":"unix:///run/containerd/s/nobin","protocol":"ttrpc"}`})
	found("default", "nobin", lifecycle.PresenceFound, lifecycle.PresenceAbsent)
	env.runtimeNames["default/nobin"] = runtimeAnswer{name: "io.containerd.uninstalled.v1", found: true}
	want["default/nobin"] = wantEntry{
		obs: obs(func(o *lifecycle.Observation) {
			o.Runtime, o.Liveness = lifecycle.PresenceAbsent, lifecycle.LivenessGone
		}),
		probe: &wantProbe{3, "ttrpc", "unix:///run/containerd/s/nobin", "", false, ""},
	}

	// Neither shim-binary-path nor a container record names a runtime.
	f.bundle("default", "noname", map[string]string{"bootstrap.json": `file:{"version":3,"address":"unix:///run/containerd/s/noname","protocol":"ttrpc"}`})
	want["default/noname"] = wantEntry{
		obs: obs(func(o *lifecycle.Observation) {
			o.Runtime, o.Container, o.Liveness = lifecycle.PresenceUnknown, lifecycle.PresenceAbsent, lifecycle.LivenessGone
		}),
		probe: &wantProbe{3, "ttrpc", "unix:///run/containerd/s/noname", "", false, ""},
	}

	// A task in its sandbox's shim: no shim-binary-path of its own.
	f.bundle("default", "joined", map[string]string{
		"sandbox":        "file:pod1",
		"bootstrap.json": `file:{"version":3,"address":"unix:///run/containerd/s/pod1","protocol":"ttrpc"}`,
		"config.json":    "file:{}",
		"rootfs":         "dir",
	})
	found("default", "joined", lifecycle.PresenceFound, lifecycle.PresenceAbsent)
	env.runtimeNames["default/joined"] = runtimeAnswer{name: runcName, found: true}
	env.probes["default/joined"] = alive(nil, noTask)
	want["default/joined"] = wantEntry{
		obs: obs(func(o *lifecycle.Observation) {
			o.Container, o.Joined, o.Liveness, o.Task = lifecycle.PresenceFound, true, lifecycle.LivenessAlive, lifecycle.TaskNone
		}),
		probe: &wantProbe{3, "ttrpc", "unix:///run/containerd/s/pod1", runcPath, false, ""},
	}

	// Not bundles, or nothing to probe.
	f.make("default/empty", "dir")
	want["default/empty"] = wantEntry{obs: lifecycle.Observation{Kind: lifecycle.KindDir, ValidName: true, Empty: true}}
	f.make("default/afile", "file:not a bundle")
	want["default/afile"] = wantEntry{obs: lifecycle.Observation{Kind: lifecycle.KindFile}}
	f.make("default/emptyfile", "file:")
	want["default/emptyfile"] = wantEntry{obs: lifecycle.Observation{Kind: lifecycle.KindFile}}
	f.make("default/apipe", "fifo")
	want["default/apipe"] = wantEntry{obs: lifecycle.Observation{Kind: lifecycle.KindOther}}
	// A symlink to a directory that looks like a live bundle: never
	// followed.
	if err := os.WriteFile(filepath.Join(f.outside, "bootstrap.json"), []byte(`{"version":3,"address":"unix:///run/outside","protocol":"ttrpc"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	f.make("default/outside", "symlink:"+f.outside)
	want["default/outside"] = wantEntry{obs: lifecycle.Observation{Kind: lifecycle.KindSymlink}}
	f.make("default/dangling", "symlink:/nonexistent/shimkeeper")
	want["default/dangling"] = wantEntry{obs: lifecycle.Observation{Kind: lifecycle.KindSymlink}}
	for _, id := range []string{"bad..name", strings.Repeat("a", 77), "-leading-dash", "sp ace"} {
		f.bundle("default", id, map[string]string{"bootstrap.json": `file:{"version":3,"address":"unix:///run/bad","protocol":"ttrpc"}`})
		want["default/"+id] = wantEntry{obs: lifecycle.Observation{Kind: lifecycle.KindDir}}
	}
	// 76 characters is the longest valid id.
	long := strings.Repeat("b", 76)
	f.bundle("default", long, map[string]string{"address": "file:unix:///run/long"})
	want["default/"+long] = wantEntry{
		obs:   lifecycle.Observation{Kind: lifecycle.KindDir, ValidName: true, Container: lifecycle.PresenceAbsent, Sandbox: lifecycle.PresenceNotLooked, Liveness: lifecycle.LivenessGone},
		probe: &wantProbe{2, "ttrpc", "unix:///run/long", "", true, ""},
	}
	// Dot-names are pending atomic removals: not observed at all.
	f.bundle("default", ".pending", map[string]string{"bootstrap.json": `file:{"version":3,"address":"unix:///run/pending","protocol":"ttrpc"}`})

	// Another namespace: the namespace reaches the stores and the probe.
	stock("k8s.io", "pod1", map[string]string{"bootstrap.json": `file:{"version":3,"address":"unix:///run/containerd/s/k8s-pod1","protocol":"ttrpc"}`})
	found("k8s.io", "pod1", lifecycle.PresenceFound, lifecycle.PresenceFound)
	// A pod sandbox's shim: no task of the sandbox's id.
	env.probes["k8s.io/pod1"] = alive(nil, noTask)
	want["k8s.io/pod1"] = wantEntry{
		obs: obs(func(o *lifecycle.Observation) {
			o.Sandbox, o.Liveness, o.Task = lifecycle.PresenceFound, lifecycle.LivenessAlive, lifecycle.TaskNone
		}),
		probe: &wantProbe{3, "ttrpc", "unix:///run/containerd/s/k8s-pod1", runcPath, false, ""},
	}
	// A namespace that containerd could not have created.
	f.bundle("bad..ns", "c1", map[string]string{"bootstrap.json": `file:{"version":3,"address":"unix:///run/badns","protocol":"ttrpc"}`})
	want["bad..ns/c1"] = wantEntry{obs: lifecycle.Observation{Kind: lifecycle.KindDir}}
	// Top-level entries that are not namespace dirs are not looked into.
	f.bundle(".trash", "c1", map[string]string{"bootstrap.json": `file:{"version":3,"address":"unix:///run/trash","protocol":"ttrpc"}`})
	f.make(layout.ReportFile, `file:{"entries":[]}`)
	f.make("nsfile", "file:x")
	if err := os.MkdirAll(filepath.Join(f.outside, "c9"), 0o700); err != nil {
		t.Fatal(err)
	}
	f.make("nslink", "symlink:"+f.outside)

	for k, w := range want {
		ns, id, _ := strings.Cut(k, "/")
		w.obs.Namespace, w.obs.ID = ns, id
		want[k] = w
	}
	return f, env, want
}

func TestScanFixtures(t *testing.T) {
	f, env, want := scanFixture(t)
	before := snapshotTree(t, f.state, f.root, f.outside)
	o := f.opts()
	counter := &probeCountObserver{}
	o.observer = counter
	entries, warnings := scan(context.Background(), env, o)
	assertTreeUnchanged(t, before, snapshotTree(t, f.state, f.root, f.outside))
	if len(warnings) > 0 {
		t.Errorf("warnings: %q", warnings)
	}

	got, dups := byKey(entries)
	if len(dups) > 0 {
		t.Errorf("observed more than once: %q", dups)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected observation of %s: %+v", k, got[k].obs)
		}
	}
	probes := env.probeCalls()
	for k, w := range want {
		t.Run(k, func(t *testing.T) {
			s, ok := got[k]
			if !ok {
				t.Fatal("not observed")
			}
			if s.obs != w.obs {
				t.Errorf("observation:\n got  %+v\n want %+v\n notes %q", s.obs, w.obs, s.notes)
			}
			ns, id, _ := strings.Cut(k, "/")
			if s.bundle.Path != filepath.Join(f.state, ns, id) || s.bundle.RootDir != f.root {
				t.Errorf("bundle = %+v", s.bundle)
			}
			calls := probes[k]
			if w.probe == nil {
				if len(calls) > 0 {
					t.Fatalf("probed %d times, want never: %+v", len(calls), calls)
				}
				return
			}
			wantCalls := 1
			if w.probe.then != "" {
				wantCalls = 2
			}
			if len(calls) != wantCalls {
				t.Fatalf("probed %d times, want %d", len(calls), wantCalls)
			}
			if w.probe.then != "" && calls[1].address != w.probe.then {
				t.Errorf("second probe at %q, want the default address %q", calls[1].address, w.probe.then)
			}
			c := calls[0]
			if c.version != w.probe.version || c.protocol != w.probe.protocol || c.address != w.probe.address {
				t.Errorf("probed %d %s %q, want %d %s %q", c.version, c.protocol, c.address, w.probe.version, w.probe.protocol, w.probe.address)
			}
			if c.runtimePath != w.probe.runtimePath || s.runtimePath != w.probe.runtimePath {
				t.Errorf("runtime path probed %q, recorded %q, want %q", c.runtimePath, s.runtimePath, w.probe.runtimePath)
			}
			kept := w.probe.address
			if w.probe.then != "" {
				kept = w.probe.then
			} else if s.migrate != w.probe.migrate {
				t.Errorf("migrate = %v, want %v", s.migrate, w.probe.migrate)
			}
			if s.params.GetAddress() != kept {
				t.Errorf("params kept for acting = %v, want address %q", s.params, kept)
			}
			if c.timeout < 0 || c.timeout > o.probeTimeout {
				t.Errorf("probe ctx has %v left, want a deadline within the probe timeout %v", c.timeout, o.probeTimeout)
			}
			if c.bundle.Path != s.bundle.Path {
				t.Errorf("probed bundle %q", c.bundle.Path)
			}
		})
	}

	// Each probe is reported to the observer once, with its outcome.
	wantProbed := map[lifecycle.Liveness]int{}
	for k, calls := range probes {
		if s := got[k]; s != nil && len(calls) >= 1 {
			wantProbed[s.obs.Liveness]++
		}
	}
	if fmt.Sprint(counter.probed) != fmt.Sprint(wantProbed) {
		t.Errorf("observer saw probes %v, want %v", counter.probed, wantProbed)
	}

	// Bundles without a trusted bootstrap (none, unusable, or in a form
	// containerd never writes) asked for the default address, in their
	// namespace.
	wantDefault := []string{"default/leaked", "default/plain", "default/proto", "default/v4"}
	if got := env.defaultCalls.list(); strings.Join(got, ",") != strings.Join(wantDefault, ",") {
		t.Errorf("DefaultAddress asked for %q, want %q", got, wantDefault)
	}
	// The stores were read once per record the observation says was
	// looked up, under its namespace, and never written.
	for i, st := range []*storeAnswers{&env.containers.storeAnswers, &env.sandboxes.storeAnswers} {
		if w := st.writes.list(); len(w) > 0 {
			t.Errorf("store written: %q", w)
		}
		for k, w := range want {
			looked := []lifecycle.Presence{w.obs.Container, w.obs.Sandbox}[i] != lifecycle.PresenceNotLooked
			n := st.gets.count(k)
			if wantN := map[bool]int{true: 1}[w.obs.ValidName && !w.obs.Empty && looked]; n != wantN {
				t.Errorf("store %d Get(%s) %d times, want %d", i, k, n, wantN)
			}
		}
	}
	if got := env.runtimeCalls.count("default/legacy"); got != 1 {
		t.Errorf("RuntimeName(default/legacy) %d times", got)
	}
}

// After a reboot every shim is gone: nothing is probed and no address is
// looked up, and every valid non-empty bundle is Gone.
func TestScanRebootedStillProbes(t *testing.T) {
	f, env, want := scanFixture(t)
	o := f.opts()
	plain, _ := scan(context.Background(), env, o)
	count := func() (n int) {
		for _, c := range env.probeCalls() {
			n += len(c)
		}
		return n
	}
	probes := count()
	before := snapshotTree(t, f.state, f.root, f.outside)
	o.rebooted = true
	entries, _ := scan(context.Background(), env, o)
	assertTreeUnchanged(t, before, snapshotTree(t, f.state, f.root, f.outside))

	// A boot id record that differs is no evidence: every shim is probed
	// as on any start, and observed the same but for the flag.
	if p := count() - probes; p != probes {
		t.Errorf("a pass whose boot id record differs probed %d shims, want %d as without it", p, probes)
	}
	got, _ := byKey(entries)
	ref, _ := byKey(plain)
	if len(got) != len(want) {
		t.Errorf("%d observations, want %d", len(got), len(want))
	}
	for k := range want {
		s := got[k]
		if s == nil {
			t.Errorf("%s not observed", k)
			continue
		}
		wo := ref[k].obs
		wo.Rebooted = true
		if s.obs != wo {
			t.Errorf("%s:\n got  %+v\n want %+v", k, s.obs, wo)
		}
	}
}

// Past the recovery deadline nothing more is probed: those shims are of
// unknown liveness, and say why.
func TestScanDeadlinePassed(t *testing.T) {
	f, env, want := scanFixture(t)
	o := f.opts()
	o.deadline = time.Now().Add(-time.Second)
	entries, _ := scan(context.Background(), env, o)
	if p := env.probeCalls(); len(p) > 0 {
		t.Errorf("probed %d shims past the deadline", len(p))
	}
	got, _ := byKey(entries)
	for k, w := range want {
		if w.probe == nil {
			continue
		}
		s := got[k]
		if s.obs.Liveness != lifecycle.LivenessUnknown || s.obs.Task != lifecycle.TaskUnknown {
			t.Errorf("%s: liveness %s, task %s past the deadline", k, s.obs.Liveness, s.obs.Task)
		}
		if !strings.Contains(strings.Join(s.notes, ";"), "deadline") {
			t.Errorf("%s: notes %q do not mention the deadline", k, s.notes)
		}
		if lifecycle.Decide(s.obs).Action != lifecycle.ActionKeep {
			t.Errorf("%s: %v past the deadline", k, lifecycle.Decide(s.obs))
		}
	}
}

// The probe's context ends at the recovery deadline when that comes
// before the probe timeout.
func TestScanProbeBoundedByDeadline(t *testing.T) {
	f := newFixture(t)
	env := newFakeEnv()
	f.bundle("default", "c1", map[string]string{"address": "file:unix:///run/c1"})
	o := f.opts()
	o.probeTimeout = time.Hour
	o.deadline = time.Now().Add(2 * time.Second)
	scan(context.Background(), env, o)
	calls := env.probeCalls()["default/c1"]
	if len(calls) != 1 {
		t.Fatalf("probed %d times", len(calls))
	}
	if c := calls[0]; c.timeout < 0 || c.timeout > 2*time.Second {
		t.Errorf("probe ctx has %v left, want at most the 2s to the deadline", c.timeout)
	}
}

// A missing state dir (first start) is not an error.
func TestScanNoStateDir(t *testing.T) {
	o := scanOptions{stateDir: filepath.Join(t.TempDir(), "missing"), probeTimeout: time.Second, deadline: time.Now().Add(time.Minute)}
	entries, warnings := scan(context.Background(), newFakeEnv(), o)
	if len(entries) != 0 || len(warnings) != 0 {
		t.Errorf("entries %v, warnings %q", entries, warnings)
	}
}

// A state dir that is a file is reported, not fatal.
func TestScanStateDirNotADir(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	entries, warnings := scan(context.Background(), newFakeEnv(), scanOptions{stateDir: p, probeTimeout: time.Second, deadline: time.Now().Add(time.Minute)})
	if len(entries) != 0 || len(warnings) != 1 {
		t.Errorf("entries %v, warnings %q", entries, warnings)
	}
}

// scanWithin runs scan, failing the test if it does not return within d.
// FIFOs under dirs are then opened for writing, so that a scan blocked in
// open(2) on one of them ends and the test can clean up.
func scanWithin(t *testing.T, d time.Duration, env Env, o scanOptions, dirs ...string) []*scanned {
	t.Helper()
	done := make(chan []*scanned, 1)
	go func() {
		entries, _ := scan(context.Background(), env, o)
		done <- entries
	}()
	select {
	case entries := <-done:
		return entries
	case <-time.After(d):
		t.Errorf("scan did not return within %v", d)
		for _, dir := range dirs {
			_ = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
				if err == nil && e.Type()&os.ModeNamedPipe != 0 {
					if f, err := os.OpenFile(p, os.O_RDWR, 0); err == nil {
						f.Close()
					}
				}
				return nil
			})
		}
		return <-done
	}
}

// Only regular files are read from a bundle. A FIFO named bootstrap.json,
// address or shim-binary-path would block the scan (and the daemon's
// start) for ever; a symlink would lead the scan out of the bundle, to
// another file or to an endless one (/dev/zero exhausts memory). Such a bundle is
// treated as having no usable bootstrap (it is probed at the default
// address) or no known runtime.
func TestScanReadsOnlyRegularFiles(t *testing.T) {
	f := newFixture(t)
	env := newFakeEnv()
	env.binaries[runcName] = runcPath
	outsideBS := filepath.Join(f.outside, "bootstrap.json")
	if err := os.WriteFile(outsideBS, []byte(`{"version":3,"address":"unix:///run/outside","protocol":"ttrpc"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	// A FIFO outside stands for any endless file (/dev/zero would exhaust
	// memory instead of hanging, were the scan to regress).
	outsideFIFO := filepath.Join(f.outside, "fifo")
	if err := syscall.Mkfifo(outsideFIFO, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]map[string]string{
		"bsfifo":     {"bootstrap.json": "fifo"},
		"addrfifo":   {"address": "fifo"},
		"bslink":     {"bootstrap.json": "symlink:" + outsideBS},
		"bsfifolink": {"bootstrap.json": "symlink:" + outsideFIFO},
		"addrlink":   {"address": "symlink:" + outsideFIFO},
		"bsdir":      {"bootstrap.json": "dir"},
	}
	for id, entries := range cases {
		f.bundle("default", id, entries)
		env.runtimeNames["default/"+id] = runtimeAnswer{name: runcName, found: true}
	}
	// A FIFO shim-binary-path is manager.RuntimeName's to refuse
	// (TestRuntimeNameReadsOnlyRegularFiles there).

	before := snapshotTree(t, f.state, f.root, f.outside)
	entries := scanWithin(t, 10*time.Second, env, f.opts(), f.state, f.outside)
	assertTreeUnchanged(t, before, snapshotTree(t, f.state, f.root, f.outside))
	got, _ := byKey(entries)
	probes := env.probeCalls()
	for id := range cases {
		k := "default/" + id
		s := got[k]
		if s == nil {
			t.Errorf("%s not observed", k)
			continue
		}
		if c := probes[k]; len(c) != 1 || c[0].address != defaultAddress("default", id) {
			t.Errorf("%s: probes %+v, want one at the default address", k, c)
		}
		if !s.migrate {
			t.Errorf("%s: not marked for bootstrap.json migration", k)
		}
	}
}

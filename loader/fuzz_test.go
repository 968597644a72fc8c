package loader

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	task "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"

	"github.com/containerd/containerd/v2/pkg/identifiers"

	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/lifecycle"
	"github.com/shimkeeper/shimkeeper/manager"
)

// FuzzScan builds a state dir from the fuzz input, scans it with the fake
// env, and checks that the scan neither panics, hangs nor changes the tree,
// observes every non-dot entry of every namespace dir exactly once with
// facts that match the disk, probes only what it may, and that Decide
// gives each observation an action from Actions.
//
// The input is a list of entries (see fuzzEntry): a header byte (flags),
// then per entry a namespace, kind, name, env answers and, for bundles,
// files. Missing bytes read as zero, so every input decodes.
//
// The seeds are the committed files in testdata/fuzz/FuzzScan, generated
// from fuzzSeeds (TestFuzzScanCorpus keeps them in step).
func FuzzScan(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		in := decodeFuzz(data)
		fx := newFixture(t)
		env := newFakeEnv()
		fx.outsideTargets()
		for i, e := range in.entries {
			e.build(fx, env, i)
		}

		before := snapshotTree(t, fx.state, fx.root, fx.outside)
		o := fx.opts()
		o.rebooted = in.rebooted
		o.concurrency = 3
		entries := scanWithin(t, 10*time.Second, env, o, fx.state, fx.outside)
		assertTreeUnchanged(t, before, snapshotTree(t, fx.state, fx.root, fx.outside))

		got, dups := byKey(entries)
		if len(dups) > 0 {
			t.Errorf("observed more than once: %q", dups)
		}
		want := nonDotEntries(t, fx.state)
		for _, k := range want {
			if got[k] == nil {
				t.Errorf("%q not observed", k)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%d observations, want %d (%q)", len(got), len(want), want)
		}
		probes := env.probeCalls()
		for k, s := range got {
			checkFuzzObservation(t, fx, k, s, len(probes[k]), in.rebooted)
			// A second probe is at the default address, after the
			// recorded one found no live shim.
			if c := probes[k]; len(c) == 2 {
				if want := defaultAddress(s.obs.Namespace, s.obs.ID); c[1].address != want || c[0].address == want {
					t.Errorf("%q: probed at %q then %q; the second must be the default address %q", k, c[0].address, c[1].address, want)
				}
				if env.probes[k].Liveness == lifecycle.LivenessAlive {
					t.Errorf("%q: probed again after the shim answered", k)
				}
			}
		}
		for k := range probes {
			if got[k] == nil {
				t.Errorf("probed %q, which was not observed", k)
			}
		}
		for _, st := range []*storeAnswers{&env.containers.storeAnswers, &env.sandboxes.storeAnswers} {
			if w := st.writes.list(); len(w) > 0 {
				t.Errorf("store written: %q", w)
			}
		}
	})
}

// checkFuzzObservation compares one observation with the disk.
func checkFuzzObservation(t *testing.T, fx *fixture, k string, s *scanned, probes int, rebooted bool) {
	t.Helper()
	o := s.obs
	ns, id, _ := strings.Cut(k, "/")
	path := filepath.Join(fx.state, ns, id)
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatalf("%q: %v", k, err)
	}
	wantKind := lifecycle.KindOther
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		wantKind = lifecycle.KindSymlink
	case fi.Mode().IsRegular():
		wantKind = lifecycle.KindFile
	case fi.IsDir():
		wantKind = lifecycle.KindDir
	}
	if o.Kind != wantKind {
		t.Errorf("%q: kind %s, want %s", k, o.Kind, wantKind)
	}
	valid := wantKind == lifecycle.KindDir && identifiers.Validate(ns) == nil && identifiers.Validate(id) == nil
	if o.ValidName != valid {
		t.Errorf("%q: valid name %v, want %v", k, o.ValidName, valid)
	}
	var names []string
	if valid {
		des, err := os.ReadDir(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, de := range des {
			names = append(names, de.Name())
		}
	}
	empty := valid && len(names) == 0
	if o.Empty != empty {
		t.Errorf("%q: empty %v, want %v", k, o.Empty, empty)
	}
	bundle := valid && !empty
	if joined := bundle && slices.Contains(names, layout.FileSandbox); o.Joined != joined {
		t.Errorf("%q: joined %v, want %v", k, o.Joined, joined)
	}
	if o.Rebooted != rebooted {
		t.Errorf("%q: rebooted %v", k, o.Rebooted)
	}
	maxProbes := 0
	if bundle {
		// The recorded address, then the default one when the recorded
		// one is not trusted.
		maxProbes = 2
	}
	if probes > maxProbes {
		t.Errorf("%q: probed %d times, at most %d allowed", k, probes, maxProbes)
	}
	switch {
	case !bundle && (o.Liveness != lifecycle.LivenessUnknown || o.Task != lifecycle.TaskUnknown || o.Runtime != lifecycle.PresenceUnknown || o.Container != lifecycle.PresenceUnknown || o.Sandbox != lifecycle.PresenceUnknown):
		t.Errorf("%q: not a bundle, but facts were gathered: %+v", k, o)
	case bundle && probes == 0 && o.Liveness != lifecycle.LivenessUnknown:
		t.Errorf("%q: not probed, yet liveness %s", k, o.Liveness)
	case o.Liveness != lifecycle.LivenessAlive && o.Task != lifecycle.TaskUnknown:
		t.Errorf("%q: task %s of a shim that is not alive", k, o.Task)
	case o.Liveness != lifecycle.LivenessGone && o.ShimProcess != lifecycle.PresenceUnknown:
		t.Errorf("%q: shim process %s looked up though the socket is not gone", k, o.ShimProcess)
	}
	if (o.Runtime == lifecycle.PresenceFound) != (s.runtimePath != "") {
		t.Errorf("%q: runtime %s with path %q", k, o.Runtime, s.runtimePath)
	}
	d := lifecycle.Decide(o)
	if !slices.Contains(lifecycle.Actions, d.Action) || d.Reason == "" {
		t.Errorf("%q: decision %+v", k, d)
	}
}

// nonDotEntries lists "<ns>/<id>" for every non-dot entry of every non-dot
// namespace that is a real directory: what the scan must observe.
func nonDotEntries(t *testing.T, state string) []string {
	t.Helper()
	nss, err := os.ReadDir(state)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ns := range nss {
		fi, err := os.Lstat(filepath.Join(state, ns.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(ns.Name(), ".") || !fi.IsDir() {
			continue
		}
		ids, err := os.ReadDir(filepath.Join(state, ns.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if !strings.HasPrefix(id.Name(), ".") {
				out = append(out, ns.Name()+"/"+id.Name())
			}
		}
	}
	return out
}

// The fuzz input format. Bytes past the end read as zero.
//
//	input   := flags count entry*
//	flags   := bit 0: rebooted
//	count   := number of entries, mod 9
//	entry   := ns kind name ans1 ans2 [nfiles file*]   (files for bundles)
//	name    := len (mod 91) bytes                      ("/" and NUL → "_")
//	file    := which type content-or-target
//	content := len (mod 97) bytes
type fuzzInput struct {
	rebooted bool
	entries  []fuzzEntry
}

type fuzzEntry struct {
	ns   byte // index into fuzzNamespaces
	kind byte // fuzzKind*
	name string
	// ans1: container (mod 3), sandbox (/3 mod 3) presences as Presence
	// values; runtime (/9 mod 4): none, resolves, does not resolve, error;
	// default address fails (/36 mod 2).
	ans1 byte
	// ans2: probe liveness (mod 3) as a Liveness value; State (/3 mod 4):
	// running, stopped, not found, other error.
	ans2  byte
	files []fuzzFile
}

type fuzzFile struct {
	which byte // index into fuzzFileNames
	typ   byte // fuzzType*
	// data: the content of a regular file; for a symlink, its first byte
	// picks the target (see fuzzTarget).
	data string
}

const (
	fuzzKindBundle = iota
	fuzzKindEmptyDir
	fuzzKindFile
	fuzzKindSymlink
	fuzzKindFIFO
	fuzzKinds
)

const (
	fuzzTypeFile = iota
	fuzzTypeDir
	fuzzTypeSymlink
	fuzzTypeFIFO
	fuzzTypes
)

var (
	fuzzNamespaces = []string{"default", "k8s.io", "bad..ns", ".dot", "moby"}
	fuzzFileNames  = []string{
		layout.FileBootstrap, layout.FileAddress, layout.FileBinaryPath, layout.FileSandbox,
		"config.json", layout.FileLog, layout.DirRootfs, layout.FileWork, "junk", ".hidden",
	}
)

type fuzzBytes struct{ b []byte }

func (r *fuzzBytes) next() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *fuzzBytes) str(mod int) string {
	n := min(int(r.next())%mod, len(r.b))
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func decodeFuzz(data []byte) fuzzInput {
	r := &fuzzBytes{data}
	in := fuzzInput{rebooted: r.next()&1 != 0}
	n := int(r.next()) % 9
	for range n {
		e := fuzzEntry{ns: r.next(), kind: r.next(), name: r.str(91), ans1: r.next(), ans2: r.next()}
		if e.kind%fuzzKinds == fuzzKindBundle {
			for range int(r.next()) % 7 {
				e.files = append(e.files, fuzzFile{which: r.next(), typ: r.next(), data: r.str(97)})
			}
		}
		in.entries = append(in.entries, e)
	}
	return in
}

// encodeFuzz is decodeFuzz's inverse, for seeds.
func encodeFuzz(in fuzzInput) []byte {
	var b []byte
	str := func(s string) { b = append(append(b, byte(len(s))), s...) }
	flags := byte(0)
	if in.rebooted {
		flags = 1
	}
	b = append(b, flags, byte(len(in.entries)))
	for _, e := range in.entries {
		b = append(b, e.ns, e.kind)
		str(e.name)
		b = append(b, e.ans1, e.ans2)
		if e.kind%fuzzKinds == fuzzKindBundle {
			b = append(b, byte(len(e.files)))
			for _, f := range e.files {
				b = append(b, f.which, f.typ)
				str(f.data)
			}
		}
	}
	return b
}

// outsideTargets populates the outside dir with what symlinks may point
// at: a dir that looks like a bundle, a file, a FIFO.
func (f *fixture) outsideTargets() {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Join(f.outside, "bundle", "rootfs"), 0o700); err != nil {
		f.t.Fatal(err)
	}
	for p, c := range map[string]string{
		"bundle/bootstrap.json": `{"version":3,"address":"unix:///run/outside","protocol":"ttrpc"}`,
		"file":                  "unix:///run/outside-file",
	} {
		if err := os.WriteFile(filepath.Join(f.outside, p), []byte(c), 0o600); err != nil {
			f.t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(f.outside, "fifo"), 0o600); err != nil {
		f.t.Fatal(err)
	}
}

// fuzzTarget picks a symlink target from a selector byte.
func (f *fixture) fuzzTarget(sel string) string {
	var c byte
	if sel != "" {
		c = sel[0]
	}
	switch c % 6 {
	case 0:
		return filepath.Join(f.outside, "bundle")
	case 1:
		return filepath.Join(f.outside, "file")
	case 2:
		return filepath.Join(f.outside, "fifo")
	case 3:
		return "/nonexistent/shimkeeper"
	case 4:
		return "."
	}
	return ".." // within the state dir: a loop back to the namespace
}

// writeNew creates a regular file; it fails if path exists as anything.
func writeNew(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(content)
	return errors.Join(err, f.Close())
}

func fuzzName(s string, i int) string {
	s = strings.Map(func(r rune) rune {
		if r == '/' || r == 0 {
			return '_'
		}
		return r
	}, s)
	if s == "" || s == "." || s == ".." {
		return fmt.Sprintf("c%d", i)
	}
	return s
}

// build creates the entry and its env answers. Entries and files that
// collide with an existing path are skipped: the input is arbitrary.
func (e fuzzEntry) build(f *fixture, env *fakeEnv, i int) {
	ns := fuzzNamespaces[int(e.ns)%len(fuzzNamespaces)]
	id := fuzzName(e.name, i)
	nsDir := filepath.Join(f.state, ns)
	if err := os.MkdirAll(nsDir, 0o711); err != nil {
		f.t.Fatal(err)
	}
	p := filepath.Join(nsDir, id)
	var err error
	switch e.kind % fuzzKinds {
	case fuzzKindBundle, fuzzKindEmptyDir:
		err = os.Mkdir(p, 0o700)
	case fuzzKindFile:
		err = writeNew(p, e.name)
	case fuzzKindSymlink:
		err = os.Symlink(f.fuzzTarget(e.name), p)
	case fuzzKindFIFO:
		err = syscall.Mkfifo(p, 0o600)
	}
	if errors.Is(err, fs.ErrExist) {
		return
	}
	if err != nil {
		f.t.Fatalf("create %q: %v", p, err)
	}
	// A name given twice fails to be created again (never opened: it may
	// be a FIFO): the first one stays.
	for _, fl := range e.files {
		fp := filepath.Join(p, fuzzFileNames[int(fl.which)%len(fuzzFileNames)])
		switch fl.typ % fuzzTypes {
		case fuzzTypeFile:
			_ = writeNew(fp, fl.data)
		case fuzzTypeDir:
			_ = os.Mkdir(fp, 0o700)
		case fuzzTypeSymlink:
			_ = os.Symlink(f.fuzzTarget(fl.data), fp)
		case fuzzTypeFIFO:
			_ = syscall.Mkfifo(fp, 0o600)
		}
	}

	k := ns + "/" + id
	env.containers.answers[k] = lifecycle.Presence(e.ans1 % 3)
	env.sandboxes.answers[k] = lifecycle.Presence(e.ans1 / 3 % 3)
	switch e.ans1 / 9 % 4 {
	case 1:
		env.runtimeNames[k] = runtimeAnswer{name: runcName, found: true}
		env.binaries[runcName] = runcPath
	case 2:
		env.runtimeNames[k] = runtimeAnswer{name: "io.containerd.uninstalled.v1", found: true}
	case 3:
		env.runtimeNames[k] = runtimeAnswer{err: errors.New("fake: runtime name unreadable")}
	}
	env.defaultAddrErr[k] = e.ans1/36%2 == 1
	r := manager.ProbeResult{Liveness: lifecycle.Liveness(e.ans2 % 3)}
	switch r.Liveness {
	case lifecycle.LivenessAlive:
		switch e.ans2 / 3 % 4 {
		case 0:
			r.Task = manager.ClassifyState(&task.StateResponse{ID: id, Status: tasktypes.Status_RUNNING}, nil)
		case 1:
			r.Task = manager.ClassifyState(&task.StateResponse{ID: id, Status: tasktypes.Status_STOPPED}, nil)
		case 2:
			r.StateErr = errdefs.ErrNotFound
		default:
			r.StateErr = errdefs.ErrUnavailable
		}
		if r.StateErr != nil {
			r.Task = manager.ClassifyState(nil, r.StateErr)
		}
	case lifecycle.LivenessGone:
		r.Err = syscall.ECONNREFUSED
	default:
		r.Err = errors.New("fake: probe timed out")
	}
	env.probes[k] = r
}

// Answers for seeds: ans1 and ans2 values by name.
const (
	ansFoundResolves = 1*9 + 0*3 + 1 // container found, sandbox unknown, runtime resolves
	ansStoreAbsent   = 1*9 + 2*3 + 2 // container and sandbox absent, runtime resolves
	ansNoRuntime     = 2*9 + 2*3 + 1 // runtime does not resolve
	ansRuntimeErr    = 3*9 + 2*3 + 1 // runtime name unreadable
	ansNoDefault     = 36 + 1*9 + 2*3 + 1
	probeAliveRun    = 1 + 0*3
	probeAliveExited = 1 + 1*3
	probeAliveNoTask = 1 + 2*3
	probeAliveErr    = 1 + 3*3
	probeGone        = 2
	probeUnknown     = 0
)

// fuzzSeeds are the interesting shapes: every accepted bootstrap form,
// legacy address files, empty and dot dirs, files, FIFOs, symlinks in and
// out, invalid names, and files of the wrong type inside bundles.
func fuzzSeeds(t testing.TB) map[string]fuzzInput {
	pb := protoBootstrap(t, &bootapi.BootstrapResult{Version: 3, Address: "unix:///run/containerd/s/pb", Protocol: "ttrpc"})
	file := func(which int, data string) fuzzFile {
		return fuzzFile{which: byte(which), typ: fuzzTypeFile, data: data}
	}
	typed := func(which int, typ byte, data string) fuzzFile {
		return fuzzFile{which: byte(which), typ: typ, data: data}
	}
	const (
		bs, addr, sbp, sb, cfg, logf, rootfs, work, junk, hidden = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9
	)
	return map[string]fuzzInput{
		"bootstrap-forms": {entries: []fuzzEntry{
			{ns: 0, name: "json3", ans1: ansFoundResolves, ans2: probeAliveRun, files: []fuzzFile{
				file(bs, `{"version":3,"address":"unix:///run/containerd/s/j3","protocol":"ttrpc"}`), file(sbp, runcPath), typed(rootfs, fuzzTypeDir, "")}},
			{ns: 0, name: "json2", ans1: ansFoundResolves, ans2: probeAliveExited, files: []fuzzFile{
				file(bs, `{"version":2,"address":"unix:///run/containerd/s/j2","protocol":"grpc"}`)}},
			{ns: 1, name: "proto", ans1: ansFoundResolves, ans2: probeAliveNoTask, files: []fuzzFile{file(bs, pb)}},
			{ns: 1, name: "plain", ans1: ansStoreAbsent, ans2: probeGone, files: []fuzzFile{file(bs, "unix:///run/containerd/s/plain\n")}},
			{ns: 0, name: "v4", ans1: ansNoDefault, ans2: probeUnknown, files: []fuzzFile{file(bs, `{"version":4,"address":"x"}`)}},
			{ns: 0, name: "blank", ans1: ansFoundResolves, ans2: probeUnknown, files: []fuzzFile{file(bs, " \n"), file(addr, "unix:///run/a")}},
		}},
		"legacy-address": {entries: []fuzzEntry{
			{ns: 0, name: "legacy", ans1: ansFoundResolves, ans2: probeAliveRun, files: []fuzzFile{
				file(addr, "unix:///run/containerd/s/legacy"), typed(logf, fuzzTypeFIFO, ""), typed(work, fuzzTypeSymlink, "\x00"), file(cfg, "{}")}},
			{ns: 0, name: "emptyaddr", ans1: ansNoRuntime, ans2: probeGone, files: []fuzzFile{file(addr, "")}},
		}},
		"leaked-and-joined": {entries: []fuzzEntry{
			{ns: 0, name: "leaked", ans1: ansStoreAbsent, ans2: probeAliveNoTask, files: []fuzzFile{file(cfg, "{}"), typed(rootfs, fuzzTypeDir, "")}},
			{ns: 1, name: "task-in-pod", ans1: ansStoreAbsent, ans2: probeAliveNoTask, files: []fuzzFile{
				file(sb, "pod"), file(bs, `{"version":3,"address":"unix:///run/containerd/s/pod","protocol":"ttrpc"}`)}},
			{ns: 1, name: "pod", ans1: ansRuntimeErr, ans2: probeAliveErr, files: []fuzzFile{file(bs, pb)}},
		}},
		"not-bundles": {entries: []fuzzEntry{
			{ns: 0, kind: fuzzKindEmptyDir, name: "empty"},
			{ns: 0, kind: fuzzKindFile, name: "afile"},
			{ns: 0, kind: fuzzKindFIFO, name: "apipe"},
			{ns: 0, kind: fuzzKindSymlink, name: "\x00out"},
			{ns: 0, kind: fuzzKindSymlink, name: "\x03dangling"},
			{ns: 0, kind: fuzzKindSymlink, name: "\x05loop"},
			{ns: 0, name: ".pending", files: []fuzzFile{file(bs, `{"version":3,"address":"unix:///run/p","protocol":"ttrpc"}`)}},
			{ns: 3, name: "in-dot-ns", files: []fuzzFile{file(bs, "unix:///run/dot")}},
		}},
		"invalid-names": {entries: []fuzzEntry{
			{ns: 0, name: "bad..name", ans2: probeGone, files: []fuzzFile{file(addr, "unix:///run/bad")}},
			{ns: 0, name: strings.Repeat("x", 77), ans2: probeGone, files: []fuzzFile{file(addr, "unix:///run/long")}},
			{ns: 0, name: strings.Repeat("y", 76), ans2: probeGone, files: []fuzzFile{file(addr, "unix:///run/long76")}},
			{ns: 2, name: "ok", ans2: probeGone, files: []fuzzFile{file(addr, "unix:///run/badns")}},
			{ns: 0, name: "\xff\xfe", files: []fuzzFile{file(junk, "\x00\x01")}},
		}},
		"wrong-file-types": {entries: []fuzzEntry{
			{ns: 0, name: "bsfifo", ans1: ansFoundResolves, ans2: probeAliveRun, files: []fuzzFile{typed(bs, fuzzTypeFIFO, "")}},
			{ns: 0, name: "addrfifo", ans1: ansFoundResolves, ans2: probeAliveRun, files: []fuzzFile{typed(addr, fuzzTypeFIFO, "")}},
			{ns: 0, name: "bslink", ans1: ansFoundResolves, ans2: probeGone, files: []fuzzFile{typed(bs, fuzzTypeSymlink, "\x01")}},
			{ns: 0, name: "bsfifolink", ans1: ansFoundResolves, ans2: probeGone, files: []fuzzFile{typed(bs, fuzzTypeSymlink, "\x02")}},
			{ns: 0, name: "sbpfifo", ans1: ansFoundResolves, ans2: probeGone, files: []fuzzFile{typed(sbp, fuzzTypeFIFO, ""), file(bs, "unix:///run/s")}},
			{ns: 0, name: "bsdir", ans1: ansFoundResolves, ans2: probeGone, files: []fuzzFile{typed(bs, fuzzTypeDir, ""), typed(sb, fuzzTypeDir, "")}},
			{ns: 0, name: "onlyhidden", files: []fuzzFile{file(hidden, "")}},
		}},
		"rebooted": {rebooted: true, entries: []fuzzEntry{
			{ns: 0, name: "c1", ans1: ansNoRuntime, ans2: probeAliveRun, files: []fuzzFile{file(bs, `{"version":3,"address":"unix:///run/c1","protocol":"ttrpc"}`)}},
			{ns: 0, kind: fuzzKindEmptyDir, name: "c2"},
			{ns: 4, name: "c3", files: []fuzzFile{file(addr, "unix:///run/c3")}},
		}},
	}
}

var genFuzzCorpus = flag.Bool("gen-fuzz-corpus", false, "write the FuzzScan seeds to testdata/fuzz/FuzzScan")

// TestFuzzScanCorpus keeps the committed seed corpus in step with
// fuzzSeeds (regenerate with -gen-fuzz-corpus) and checks that the
// encoding round-trips, so that each file means what its name says.
func TestFuzzScanCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzScan")
	for name, seed := range fuzzSeeds(t) {
		data := encodeFuzz(seed)
		if got := decodeFuzz(data); fmt.Sprint(got) != fmt.Sprint(normalizeSeed(seed)) {
			t.Errorf("seed %s does not round-trip:\n got  %v\n want %v", name, got, seed)
		}
		file := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		path := filepath.Join(dir, "seed-"+name)
		if *genFuzzCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		have, err := os.ReadFile(path)
		if err != nil || string(have) != file {
			t.Errorf("%s is missing or stale (err %v): regenerate with go test -run TestFuzzScanCorpus -gen-fuzz-corpus ./loader/", path, err)
		}
	}
}

// normalizeSeed is what decoding a seed gives back: nil file lists of
// non-bundles.
func normalizeSeed(in fuzzInput) fuzzInput {
	out := fuzzInput{rebooted: in.rebooted}
	for _, e := range in.entries {
		if e.kind%fuzzKinds != fuzzKindBundle {
			e.files = nil
		}
		out.entries = append(out.entries, e)
	}
	return out
}

package loader

import (
	"github.com/shimkeeper/shimkeeper/lifecycle"

	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/errdefs"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/sandbox"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/manager"
)

// Fakes at the scan's interface. Every fake records what it was asked,
// keyed "<ns>/<id>", and answers from canned values; every method that
// would write fails the test.

var (
	_ Env              = (*fakeEnv)(nil)
	_ containers.Store = (*fakeContainers)(nil)
	_ sandbox.Store    = (*fakeSandboxes)(nil)
)

// errStore is a metadata store failure that is not "not found".
var errStore = errors.New("metadata store: database is locked")

// records is a goroutine-safe call log.
type records struct {
	mu    sync.Mutex
	calls []string
}

func (r *records) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
}

func (r *records) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.calls)
	sort.Strings(out)
	return out
}

func (r *records) count(s string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		if c == s {
			n++
		}
	}
	return n
}

// nsKey is "<ns>/<id>" for the namespace in ctx ("!" when there is none:
// the scan must always set it).
func nsKey(ctx context.Context, id string) string {
	ns, ok := namespaces.Namespace(ctx)
	if !ok {
		ns = "!"
	}
	return ns + "/" + id
}

// storeAnswers answers Get from canned presences: Found returns a record,
// Absent (the default) wraps errdefs.ErrNotFound, Unknown returns
// errStore.
type storeAnswers struct {
	answers map[string]lifecycle.Presence
	gets    records
	writes  records
}

func (s *storeAnswers) get(ctx context.Context, id string) error {
	k := nsKey(ctx, id)
	s.gets.add(k)
	p, ok := s.answers[k]
	switch {
	case !ok || p == lifecycle.PresenceAbsent:
		return fmt.Errorf("%s: %w", k, errdefs.ErrNotFound)
	case p == lifecycle.PresenceFound:
		return nil
	}
	return errStore
}

type fakeContainers struct{ storeAnswers }

func (f *fakeContainers) Get(ctx context.Context, id string) (containers.Container, error) {
	if err := f.get(ctx, id); err != nil {
		return containers.Container{}, err
	}
	return containers.Container{ID: id, Runtime: containers.RuntimeInfo{Name: "io.containerd.runc.v2"}}, nil
}
func (f *fakeContainers) List(ctx context.Context, _ ...string) ([]containers.Container, error) {
	f.writes.add("List")
	return nil, errors.New("fake: List not expected")
}
func (f *fakeContainers) Create(ctx context.Context, c containers.Container) (containers.Container, error) {
	f.writes.add("Create " + c.ID)
	return containers.Container{}, errors.New("fake: the scan must not write")
}
func (f *fakeContainers) Update(ctx context.Context, c containers.Container, _ ...string) (containers.Container, error) {
	f.writes.add("Update " + c.ID)
	return containers.Container{}, errors.New("fake: the scan must not write")
}
func (f *fakeContainers) Delete(ctx context.Context, id string) error {
	f.writes.add("Delete " + id)
	return errors.New("fake: the scan must not write")
}

type fakeSandboxes struct{ storeAnswers }

func (f *fakeSandboxes) Get(ctx context.Context, id string) (sandbox.Sandbox, error) {
	if err := f.get(ctx, id); err != nil {
		return sandbox.Sandbox{}, err
	}
	return sandbox.Sandbox{ID: id}, nil
}
func (f *fakeSandboxes) List(ctx context.Context, _ ...string) ([]sandbox.Sandbox, error) {
	f.writes.add("List")
	return nil, errors.New("fake: List not expected")
}
func (f *fakeSandboxes) Create(ctx context.Context, s sandbox.Sandbox) (sandbox.Sandbox, error) {
	f.writes.add("Create " + s.ID)
	return sandbox.Sandbox{}, errors.New("fake: the scan must not write")
}
func (f *fakeSandboxes) Update(ctx context.Context, s sandbox.Sandbox, _ ...string) (sandbox.Sandbox, error) {
	f.writes.add("Update " + s.ID)
	return sandbox.Sandbox{}, errors.New("fake: the scan must not write")
}
func (f *fakeSandboxes) Delete(ctx context.Context, id string) error {
	f.writes.add("Delete " + id)
	return errors.New("fake: the scan must not write")
}

// runtimeAnswer is what RuntimeName returns for one bundle.
type runtimeAnswer struct {
	name  string
	found bool
	err   error
}

// probeCall is one Probe as the fake saw it.
type probeCall struct {
	key         string // <ns from ctx>/<id>
	bundle      manager.Bundle
	runtimePath string
	version     int32
	protocol    string
	address     string
	// timeout is how long the probe's ctx had left when Probe was called;
	// -1 when it had no deadline.
	timeout time.Duration
}

// fakeEnv is the scan's Env. Answers are keyed "<ns>/<id>".
type fakeEnv struct {
	containers fakeContainers
	sandboxes  fakeSandboxes

	runtimeNames map[string]runtimeAnswer // default: not found
	// binaries maps runtime names to paths; an unlisted name does not
	// resolve.
	binaries map[string]string
	// defaultAddrErr lists bundles whose default address cannot be made.
	defaultAddrErr map[string]bool
	// probes are canned probe results; default: Gone, socket absent.
	probes map[string]manager.ProbeResult

	runtimeCalls, resolveCalls, defaultCalls records

	mu     sync.Mutex
	probed []probeCall
}

func newFakeEnv() *fakeEnv {
	return &fakeEnv{
		containers:     fakeContainers{storeAnswers{answers: map[string]lifecycle.Presence{}}},
		sandboxes:      fakeSandboxes{storeAnswers{answers: map[string]lifecycle.Presence{}}},
		runtimeNames:   map[string]runtimeAnswer{},
		binaries:       map[string]string{},
		defaultAddrErr: map[string]bool{},
		probes:         map[string]manager.ProbeResult{},
	}
}

func bundleKey(b *manager.Bundle) string { return b.Namespace + "/" + b.ID }

func (e *fakeEnv) RuntimeName(b *manager.Bundle, record func() (containers.Container, error)) (string, bool, error) {
	e.runtimeCalls.add(bundleKey(b))
	// As the real one: the record is the fallback for a bundle that
	// names no runtime.
	if _, err := os.Lstat(filepath.Join(b.Path, layout.FileBinaryPath)); err != nil {
		_, _ = record()
	}
	a := e.runtimeNames[bundleKey(b)]
	return a.name, a.found, a.err
}

func (e *fakeEnv) ResolveRuntime(name string) (string, error) {
	e.resolveCalls.add(name)
	if p, ok := e.binaries[name]; ok {
		return p, nil
	}
	return "", fmt.Errorf("runtime %q binary not installed: %w", name, errdefs.ErrNotFound)
}

func (e *fakeEnv) Containers() containers.Store { return &e.containers }
func (e *fakeEnv) Sandboxes() sandbox.Store     { return &e.sandboxes }

// defaultAddress is what the fake's DefaultAddress returns.
func defaultAddress(ns, id string) string { return "unix:///run/fake/s/" + ns + "-" + id }

func (e *fakeEnv) DefaultAddress(ctx context.Context, b *manager.Bundle) (string, error) {
	e.defaultCalls.add(nsKey(ctx, b.ID))
	if e.defaultAddrErr[bundleKey(b)] {
		return "", errors.New("fake: socket path too long")
	}
	return defaultAddress(b.Namespace, b.ID), nil
}

func (e *fakeEnv) Probe(ctx context.Context, b *manager.Bundle, runtimePath string, params *bootapi.BootstrapResult) manager.ProbeResult {
	c := probeCall{key: nsKey(ctx, b.ID), bundle: *b, runtimePath: runtimePath, timeout: -1,
		version: params.GetVersion(), protocol: params.GetProtocol(), address: params.GetAddress()}
	if d, ok := ctx.Deadline(); ok {
		c.timeout = time.Until(d)
	}
	e.mu.Lock()
	e.probed = append(e.probed, c)
	e.mu.Unlock()
	if r, ok := e.probes[bundleKey(b)]; ok {
		return r
	}
	return manager.ProbeResult{Liveness: lifecycle.LivenessGone, Err: &os.PathError{Op: "dial", Path: params.GetAddress(), Err: syscall.ENOENT}}
}

func (e *fakeEnv) probeCalls() map[string][]probeCall {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string][]probeCall{}
	for _, c := range e.probed {
		out[c.key] = append(out[c.key], c)
	}
	return out
}

// Tree snapshots: everything Lstat says about every entry below the roots,
// plus the bytes of regular files and the targets of symlinks.

type entryState struct {
	Mode         fs.FileMode
	Size         int64
	Ino, Nlink   uint64
	UID, GID     uint32
	MTime, CTime int64
	Content      string
	Link         string
}

func (s entryState) String() string {
	c := s.Content
	if len(c) > 40 {
		c = c[:40] + "…"
	}
	return fmt.Sprintf("{%s size=%d ino=%d nlink=%d uid=%d gid=%d mtime=%d ctime=%d link=%q content=%q}",
		s.Mode, s.Size, s.Ino, s.Nlink, s.UID, s.GID, s.MTime, s.CTime, s.Link, c)
}

type treeSnapshot map[string]entryState

// snapshotTree walks each root without following symlinks. It never opens
// anything but directories and regular files.
func snapshotTree(t testing.TB, roots ...string) treeSnapshot {
	t.Helper()
	out := treeSnapshot{}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := os.Lstat(path)
			if err != nil {
				return err
			}
			st := fi.Sys().(*syscall.Stat_t)
			e := entryState{
				Mode: fi.Mode(), Size: fi.Size(), Ino: st.Ino, Nlink: uint64(st.Nlink), UID: st.Uid, GID: st.Gid,
				MTime: fi.ModTime().UnixNano(), CTime: st.Ctim.Nano(),
			}
			switch {
			case fi.Mode().IsRegular():
				data, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				e.Content = string(data)
			case fi.Mode()&fs.ModeSymlink != 0:
				if e.Link, err = os.Readlink(path); err != nil {
					return err
				}
			}
			out[path] = e
			return nil
		})
		if err != nil {
			t.Fatalf("snapshot %s: %v", root, err)
		}
	}
	return out
}

// diff lists what changed between two snapshots, one line per entry.
func (before treeSnapshot) diff(after treeSnapshot) []string {
	var out []string
	for p, b := range before {
		a, ok := after[p]
		switch {
		case !ok:
			out = append(out, "removed "+p)
		case a != b:
			out = append(out, fmt.Sprintf("changed %s:\n\tbefore %s\n\tafter  %s", p, b, a))
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			out = append(out, "created "+p)
		}
	}
	sort.Strings(out)
	return out
}

func assertTreeUnchanged(t testing.TB, before, after treeSnapshot) {
	t.Helper()
	if d := before.diff(after); len(d) > 0 {
		t.Errorf("the scan changed the tree:\n%s", strings.Join(d, "\n"))
	}
}

// probeCountObserver counts Probed events by liveness.
type probeCountObserver struct {
	nopObserver
	mu     sync.Mutex
	probed map[lifecycle.Liveness]int
}

func (p *probeCountObserver) Probed(_ string, l lifecycle.Liveness, _ time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.probed == nil {
		p.probed = map[lifecycle.Liveness]int{}
	}
	p.probed[l]++
}

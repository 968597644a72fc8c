package loader

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/sandbox"
	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/shimkeeper/shimkeeper/bootstrap"
	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/lifecycle"
	"github.com/shimkeeper/shimkeeper/manager"
)

// Env is what the scan needs from the shim manager. Every method is
// read-only on disk; Probe opens a connection and nothing else.
type Env interface {
	// RuntimeName: record looks up the container record, the fallback
	// when the bundle names no runtime.
	RuntimeName(b *manager.Bundle, record func() (containers.Container, error)) (string, bool, error)
	ResolveRuntime(name string) (string, error)
	Containers() containers.Store
	Sandboxes() sandbox.Store
	DefaultAddress(ctx context.Context, b *manager.Bundle) (string, error)
	Probe(ctx context.Context, b *manager.Bundle, runtimePath string, params *bootapi.BootstrapResult) manager.ProbeResult
}

// scanned is one entry: its observation plus what acting on it needs.
type scanned struct {
	obs         lifecycle.Observation
	bundle      *manager.Bundle
	runtimePath string
	params      *bootapi.BootstrapResult
	// migrate: the params came from a legacy address file or the default
	// address, so bootstrap.json should be written on adoption.
	migrate bool
	// guessed: the address is the default one, not a recorded one.
	guessed bool
	probe   manager.ProbeResult
	notes   []string
	scanDur time.Duration
	// listedDir: the state dir listing said the entry is a dir; good for
	// the pass's first look only.
	listedDir bool
}

type scanOptions struct {
	stateDir, rootDir string
	rebooted          bool
	concurrency       int
	probeTimeout      time.Duration
	deadline          time.Time
	// observer is told of each probe; nil is a no-op.
	observer Observer
	// procs is the /proc snapshot that proves a shim process gone.
	procs *procSource
}

// scan lists and observes every entry under <state>/<ns> of every
// namespace. It writes, unlinks, unmounts and kills nothing; Probe only
// connects.
func scan(ctx context.Context, env Env, o scanOptions) ([]*scanned, []string) {
	entries, warnings := list(o)
	observeAll(ctx, env, o, entries, nil)
	return entries, warnings
}

// list lists the entries under <state>/<ns> of every namespace, reading
// only the two levels of directories.
func list(o scanOptions) ([]*scanned, []string) {
	var warnings []string
	nsEntries, err := os.ReadDir(o.stateDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		warnings = append(warnings, "read state dir: "+err.Error())
	}
	var entries []*scanned
	for _, nse := range nsEntries {
		ns := nse.Name()
		if layout.Hidden(ns) || !nse.IsDir() {
			continue
		}
		nsDir := filepath.Join(o.stateDir, ns)
		list, err := os.ReadDir(nsDir)
		if err != nil {
			warnings = append(warnings, "read namespace dir "+nsDir+": "+err.Error())
			continue
		}
		for _, e := range list {
			id := e.Name()
			if layout.Hidden(id) {
				continue // pending atomic removal; finished by the work-dir pass
			}
			s := &scanned{
				obs:    lifecycle.Observation{Namespace: ns, ID: id, Rebooted: o.rebooted},
				bundle: manager.LoadBundle(o.stateDir, o.rootDir, ns, id),
			}
			s.listedDir = e.Type().IsDir()
			entries = append(entries, s)
		}
	}
	return entries, warnings
}

// observeAll observes the entries, o.concurrency at a time. then, if set,
// is called in the same goroutine right after each entry is observed.
func observeAll(ctx context.Context, env Env, o scanOptions, entries []*scanned, then func(i int, s *scanned)) {
	forEach(o.concurrency, len(entries), func(i int) {
		s := entries[i]
		start := time.Now()
		observe(namespaces.WithNamespace(ctx, s.obs.Namespace), env, o, s)
		s.scanDur = time.Since(start)
		if then != nil {
			then(i, s)
		}
	})
}

// forEach calls fn(0) ... fn(n-1), at most limit (at least 1) at a time,
// each in its own goroutine, and returns when all have returned.
func forEach(limit, n int, fn func(i int)) {
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}

// observe fills in the facts of one entry.
func observe(ctx context.Context, env Env, o scanOptions, s *scanned) {
	obs := &s.obs
	path := s.bundle.Path
	// What the entry is: on a pass's first look, the type the dir listing
	// gave a moment ago (no call per bundle); afterwards, lstat.
	if s.listedDir {
		obs.Kind = lifecycle.KindDir
	} else {
		kindOf(obs, s, path)
	}
	s.listedDir = false
	if obs.Kind != lifecycle.KindDir {
		return
	}
	obs.ValidName = identifiers.Validate(obs.Namespace) == nil && identifiers.Validate(obs.ID) == nil
	if !obs.ValidName {
		return
	}
	params, form, err := bootstrap.ReadForm(path)
	if errors.Is(err, fs.ErrNotExist) {
		// No bootstrap.json and no address: the bundle may be empty (a
		// crash between making it and `shim start`). Only then is it
		// listed.
		names, rerr := readDirNames(path)
		if rerr != nil {
			// Unreadable: nothing can be judged; it is not proof of
			// emptiness.
			s.note("read bundle: " + rerr.Error())
		}
		obs.Empty = rerr == nil && len(names) == 0
		if obs.Empty {
			return
		}
	}
	_, jerr := os.Lstat(filepath.Join(path, layout.FileSandbox))
	obs.Joined = jerr == nil

	// The records are read only where they can change the verdict.
	obs.Container, obs.Sandbox = lifecycle.PresenceNotLooked, lifecycle.PresenceNotLooked
	record := func() (containers.Container, error) {
		c, err := env.Containers().Get(ctx, obs.ID)
		obs.Container = presence(c, err)
		return c, err
	}

	obs.Runtime = lifecycle.PresenceUnknown
	if name, found, err := env.RuntimeName(s.bundle, record); err != nil {
		s.note("runtime: " + err.Error())
	} else if found {
		if p, err := env.ResolveRuntime(name); err != nil {
			obs.Runtime = lifecycle.PresenceAbsent
			s.note("runtime " + name + ": " + err.Error())
		} else {
			obs.Runtime = lifecycle.PresenceFound
			s.runtimePath = p
		}
	}

	// Where to look for the shim: the recorded address, and, when there is
	// none or it may be a damaged file read as an address, the default
	// address of a shim started for this id.
	var candidates []*bootapi.BootstrapResult
	trusted := err == nil && form != bootstrap.FormOther
	if err != nil {
		s.note("bootstrap: " + err.Error())
	} else {
		candidates = append(candidates, params)
		if !trusted {
			s.note("bootstrap.json is not in the JSON form containerd writes; its address is not trusted")
		}
	}
	if !trusted {
		if addr, aerr := env.DefaultAddress(ctx, s.bundle); aerr != nil {
			s.note("default address: " + aerr.Error())
		} else if len(candidates) == 0 || candidates[0].Address != addr {
			candidates = append(candidates, &bootapi.BootstrapResult{Version: bootstrap.CurrentVersion, Protocol: "ttrpc", Address: addr})
		}
	}
	if len(candidates) == 0 {
		obs.Liveness = lifecycle.LivenessUnknown
		return
	}

	timeout := o.probeTimeout
	if left := time.Until(o.deadline); left < timeout {
		timeout = left
	}
	if timeout <= 0 {
		obs.Liveness = lifecycle.LivenessUnknown
		s.note("not probed: recovery deadline reached")
		return
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pstart := time.Now()
	for i, c := range candidates {
		s.probe = env.Probe(pctx, s.bundle, s.runtimePath, c)
		s.params = c
		// Adopting writes bootstrap.json in containerd's JSON form unless
		// it is already there, so the next start trusts the address.
		s.migrate = form != bootstrap.FormJSON || i > 0 || err != nil
		s.guessed = !trusted
		if s.probe.Err != nil {
			s.note("probe " + c.Address + ": " + s.probe.Err.Error())
		}
		if s.probe.Liveness == lifecycle.LivenessAlive {
			break
		}
	}
	obs.Liveness = s.probe.Liveness
	if obs.Liveness == lifecycle.LivenessGone && !trusted {
		// A refused dial to an address we are not sure of proves nothing:
		// the shim may listen where its lost or damaged bootstrap.json said
		// (a grouped shim does).
		obs.Liveness = lifecycle.LivenessUnknown
		s.note("no trusted address for the shim; liveness unknown")
	}
	if o.observer != nil {
		o.observer.Probed(o.stateDir, obs.Liveness, time.Since(pstart))
	}
	if obs.Liveness != lifecycle.LivenessAlive {
		obs.InitProcess = initProcess(s)
	}
	if obs.Liveness == lifecycle.LivenessGone {
		obs.ShimProcess = shimProcess(o.procs, s, candidates, pstart)
	}
	if obs.Liveness != lifecycle.LivenessAlive {
		return
	}
	obs.Task = s.probe.Task
	if obs.Task == lifecycle.TaskNone && !obs.Joined {
		// A live shim with no task: leaked unless its id is a sandbox's.
		obs.Sandbox = presence(env.Sandboxes().Get(ctx, obs.ID))
	}
}

func (s *scanned) note(n string) { s.notes = append(s.notes, n) }

func presence[T any](_ T, err error) lifecycle.Presence {
	switch {
	case err == nil:
		return lifecycle.PresenceFound
	case errdefs.IsNotFound(err):
		return lifecycle.PresenceAbsent
	}
	return lifecycle.PresenceUnknown
}

// kindOf says what the entry is, from lstat: the scan never follows a
// symlink.
func kindOf(obs *lifecycle.Observation, s *scanned, path string) {
	fi, err := os.Lstat(path)
	switch {
	case err != nil:
		obs.Kind = lifecycle.KindOther
		s.note("lstat: " + err.Error())
	case fi.Mode()&fs.ModeSymlink != 0:
		obs.Kind = lifecycle.KindSymlink
	case fi.Mode().IsRegular():
		obs.Kind = lifecycle.KindFile
	case fi.IsDir():
		obs.Kind = lifecycle.KindDir
	default:
		obs.Kind = lifecycle.KindOther
	}
}

// readDirNames lists dir, which must be a dir and not a symlink to one.
func readDirNames(dir string) ([]string, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	return names, nil
}

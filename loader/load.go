package loader

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/log"

	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/shimkeeper/shimkeeper/manager"
)

// Options configure a recovery pass.
type Options struct {
	// StateDir and RootDir are the owning plugin's dirs.
	StateDir, RootDir string
	// Concurrency bounds the shims probed at once.
	Concurrency int
}

// Load reconnects to and registers every shim under opts.StateDir that
// answers. It returns the number adopted and the number left alone.
func Load(ctx context.Context, m *manager.Manager, opts Options) (adopted, skipped int) {
	start := time.Now()
	nsDirs, err := os.ReadDir(opts.StateDir)
	if err != nil {
		log.G(ctx).WithError(err).WithField("state", opts.StateDir).Error("read state dir")
		return 0, 0
	}
	limit := opts.Concurrency
	if limit < 1 {
		limit = 1
	}
	sem := make(chan struct{}, limit)
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, nsd := range nsDirs {
		ns := nsd.Name()
		if !nsd.IsDir() || ns[0] == '.' {
			continue
		}
		if err := identifiers.Validate(ns); err != nil {
			log.G(ctx).WithError(err).WithField("namespace", ns).Warn("skipping invalid namespace dir")
			continue
		}
		entries, err := os.ReadDir(filepath.Join(opts.StateDir, ns))
		if err != nil {
			log.G(ctx).WithError(err).WithField("namespace", ns).Error("read namespace state dir")
			continue
		}
		for _, e := range entries {
			id := e.Name()
			if !e.IsDir() || id[0] == '.' {
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				ok := adopt(namespaces.WithNamespace(ctx, ns), m, manager.LoadBundle(opts.StateDir, opts.RootDir, ns, id))
				mu.Lock()
				if ok {
					adopted++
				} else {
					skipped++
				}
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	log.G(ctx).WithFields(log.Fields{
		"state":    opts.StateDir,
		"adopted":  adopted,
		"skipped":  skipped,
		"duration": time.Since(start),
	}).Info("recovered existing shims")
	return adopted, skipped
}

func adopt(ctx context.Context, m *manager.Manager, b *manager.Bundle) bool {
	logger := log.G(ctx).WithFields(log.Fields{"namespace": b.Namespace, "id": b.ID, "bundle": b.Path})
	if err := identifiers.Validate(b.ID); err != nil {
		logger.WithError(err).Warn("skipping bundle with invalid name")
		return false
	}
	var runtimePath string
	if name, err := m.RuntimeOf(ctx, b); err != nil {
		logger.WithError(err).Warn("runtime of bundle unknown; adopting without shim binary")
	} else if runtimePath, err = m.ResolveRuntime(name); err != nil {
		logger.WithError(err).WithField("runtime", name).Warn("shim binary not found; adopting without it")
		runtimePath = ""
	}
	s, _, err := m.Reconnect(ctx, b, runtimePath)
	if err != nil {
		logger.WithError(err).Warn("shim did not answer; leaving bundle in place")
		return false
	}
	if err := m.Add(ctx, s); err != nil {
		logger.WithError(err).Warn("shim already registered")
		s.Abandon()
		return false
	}
	logger.Debug("adopted shim")
	return true
}

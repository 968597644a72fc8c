package shimbin

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/pkg/shim"
)

// Resolver turns a runtime name (io.containerd.runc.v2) or an
// absolute path into the shim binary to run, as stock containerd does:
// an absolute path must exist; a name maps to containerd-shim-<x>-<y>,
// looked up next to containerd's working directory, then on PATH, then
// next to the containerd binary. Found paths are cached by binary name.
type Resolver struct {
	cache sync.Map // binary name -> absolute path
	// found: absolute paths seen to exist, and when. A recovery pass
	// resolves the same path for every bundle (shim-binary-path holds
	// it): one stat a second is enough.
	found sync.Map // absolute path -> time.Time

	// Seams for tests.
	lookPath   func(string) (string, error)
	executable func() (string, error)
	now        func() time.Time
}

// absFoundFor is how long an absolute path seen to exist is taken to
// exist without a new stat.
const absFoundFor = time.Second

func NewResolver() *Resolver {
	return &Resolver{lookPath: exec.LookPath, executable: os.Executable, now: time.Now}
}

func (r *Resolver) Resolve(runtime string) (string, error) {
	if runtime == "" {
		return "", errors.New("no runtime name")
	}
	if filepath.IsAbs(runtime) {
		if at, ok := r.found.Load(runtime); ok && r.now().Sub(at.(time.Time)) < absFoundFor {
			return runtime, nil
		}
		if _, err := os.Stat(runtime); err != nil {
			r.found.Delete(runtime)
			return "", fmt.Errorf("invalid custom binary path: %w", err)
		}
		r.found.Store(runtime, r.now())
		return runtime, nil
	}
	name := shim.BinaryName(runtime)
	if strings.Contains(runtime, "/") || name == "" {
		// The same text as stock, so that clients see the same error.
		return "", fmt.Errorf("invalid runtime name %s, correct runtime name should be either format like `io.containerd.runc.v2` or a full path to the binary", runtime)
	}
	if p, ok := r.cache.Load(name); ok {
		return p.(string), nil
	}

	var found string
	if p := shim.BinaryPath(runtime); p != "" && fileExists(p) {
		found = p
	}
	if found == "" {
		if p, err := r.lookPath(name); err == nil {
			found = p
		} else if !errors.Is(err, exec.ErrNotFound) {
			// Stock falls through to resolving "" here (its QUIRK); we
			// report the lookup error instead.
			return "", fmt.Errorf("look up runtime %q binary %q: %w", runtime, name, err)
		}
	}
	if found == "" {
		self, err := r.executable()
		if err != nil {
			return "", err
		}
		if p := filepath.Join(filepath.Dir(self), name); fileExists(p) {
			found = p
		}
	}
	if found == "" {
		return "", fmt.Errorf("runtime %q binary not installed %q: %w", runtime, name, os.ErrNotExist)
	}
	abs, err := filepath.Abs(found)
	if err != nil {
		return "", err
	}
	actual, _ := r.cache.LoadOrStore(name, abs)
	return actual.(string), nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

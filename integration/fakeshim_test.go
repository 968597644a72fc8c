//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

// The fake shim (testdata/fakeshim) is built once per test binary run.
var fakeShim struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func buildFakeShim() (string, error) {
	fakeShim.once.Do(func() {
		fakeShim.dir, fakeShim.err = os.MkdirTemp("", "skfake")
		if fakeShim.err != nil {
			return
		}
		fakeShim.path = filepath.Join(fakeShim.dir, "fakeshim")
		cmd := exec.Command("go", "build", "-tags", "integration", "-o", fakeShim.path, "./testdata/fakeshim")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fakeShim.err = fmt.Errorf("build fake shim: %v\n%s", err, out)
		}
	})
	return fakeShim.path, fakeShim.err
}

func removeFakeShimBuild() {
	if fakeShim.dir != "" {
		_ = os.RemoveAll(fakeShim.dir)
	}
}

// Fake shim modes; see testdata/fakeshim.
const (
	fakeStartFail    = "start-fail"
	fakeStartGarbage = "start-garbage"
	fakeStartHang    = "start-hang"
	fakeServeHang    = "serve-hang"
	fakeServeLeak    = "serve-hang-leak"

	// What the fake prints, mirrored from testdata/fakeshim.
	fakeStartFailMessage = "fakeshim: start refused on purpose"
	fakeGarbageOutput    = "garbage: this is not a bootstrap result"
)

// installFakeShim writes <test dir>/containerd-shim-fake-v2, a wrapper that
// runs the fake shim in mode, and returns its absolute path for
// `ctr run --runtime`.
func (d *Daemon) installFakeShim(mode string) string {
	t := d.t
	t.Helper()
	fake, err := buildFakeShim()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(d.Dir, "containerd-shim-fake-v2")
	script := fmt.Sprintf("#!/bin/sh\nexec %q %q \"$@\"\n", fake, mode)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

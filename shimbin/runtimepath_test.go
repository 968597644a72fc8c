package shimbin

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeBinary writes an executable file and returns its path.
func fakeBinary(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// testResolver has seams that find nothing, and counts lookups.
func testResolver(lookups *int) *Resolver {
	r := NewResolver()
	r.lookPath = func(name string) (string, error) {
		*lookups++
		return "", &exec.Error{Name: name, Err: exec.ErrNotFound}
	}
	r.executable = func() (string, error) { return "/nonexistent/containerd", nil }
	return r
}

func TestResolveRuntime(t *testing.T) {
	t.Run("empty name", func(t *testing.T) {
		var n int
		_, err := testResolver(&n).Resolve("")
		// Stock's text, so that clients see the same error.
		if err == nil || err.Error() != "no runtime name" {
			t.Fatalf("got %v, want stock's %q", err, "no runtime name")
		}
	})

	t.Run("absolute existing path is used as is", func(t *testing.T) {
		var n int
		bin := fakeBinary(t, t.TempDir(), "my-shim")
		got, err := testResolver(&n).Resolve(bin)
		if err != nil {
			t.Fatal(err)
		}
		if got != bin {
			t.Errorf("got %q, want %q", got, bin)
		}
		if n != 0 {
			t.Errorf("an absolute path was looked up on PATH (%d times)", n)
		}
	})

	t.Run("absolute missing path", func(t *testing.T) {
		var n int
		p := filepath.Join(t.TempDir(), "missing-shim")
		_, err := testResolver(&n).Resolve(p)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("got %v, want ErrNotExist", err)
		}
	})

	// A relative path would be resolved against containerd's cwd: stock
	// rejects any name with a slash that is not absolute.
	for _, name := range []string{"bin/containerd-shim-runc-v2", "./containerd-shim-runc-v2", "../io.containerd.runc.v2"} {
		t.Run("relative path "+name, func(t *testing.T) {
			var n int
			_, err := testResolver(&n).Resolve(name)
			if want := invalidRuntimeText(name); err == nil || err.Error() != want {
				t.Fatalf("got %v, want stock's %q", err, want)
			}
			if n != 0 {
				t.Error("a rejected name was looked up")
			}
		})
	}

	// BinaryName needs at least two dot-separated parts and a non-empty
	// first one.
	for _, name := range []string{"runc", ".v2"} {
		t.Run("bad name "+name, func(t *testing.T) {
			var n int
			_, err := testResolver(&n).Resolve(name)
			if want := invalidRuntimeText(name); err == nil || err.Error() != want {
				t.Fatalf("got %v, want stock's %q", err, want)
			}
			if n != 0 {
				t.Error("a rejected name was looked up")
			}
		})
	}

	t.Run("lookup via PATH seam", func(t *testing.T) {
		dir := t.TempDir()
		bin := fakeBinary(t, dir, "containerd-shim-foo-v1")
		r := NewResolver()
		var asked []string
		r.lookPath = func(name string) (string, error) {
			asked = append(asked, name)
			return filepath.Join(dir, name), nil
		}
		r.executable = func() (string, error) { t.Error("executable consulted after PATH found it"); return "", nil }
		got, err := r.Resolve("io.containerd.foo.v1")
		if err != nil {
			t.Fatal(err)
		}
		if got != bin {
			t.Errorf("got %q, want %q", got, bin)
		}
		if len(asked) != 1 || asked[0] != "containerd-shim-foo-v1" {
			t.Errorf("looked up %v, want [containerd-shim-foo-v1]", asked)
		}
	})

	t.Run("lookup via real PATH", func(t *testing.T) {
		dir := t.TempDir()
		bin := fakeBinary(t, dir, "containerd-shim-foo-v1")
		t.Setenv("PATH", dir)
		got, err := NewResolver().Resolve("io.containerd.foo.v1")
		if err != nil {
			t.Fatal(err)
		}
		if got != bin {
			t.Errorf("got %q, want %q", got, bin)
		}
	})

	// Only the last two parts name the binary: a vendor prefix may have
	// any number of parts.
	t.Run("long runtime name", func(t *testing.T) {
		dir := t.TempDir()
		bin := fakeBinary(t, dir, "containerd-shim-bar-v2")
		t.Setenv("PATH", dir)
		got, err := NewResolver().Resolve("com.example.vendor.bar.v2")
		if err != nil {
			t.Fatal(err)
		}
		if got != bin {
			t.Errorf("got %q, want %q", got, bin)
		}
	})

	t.Run("fallback next to the executable", func(t *testing.T) {
		var n int
		dir := t.TempDir()
		bin := fakeBinary(t, dir, "containerd-shim-foo-v1")
		r := testResolver(&n)
		r.executable = func() (string, error) { return filepath.Join(dir, "containerd"), nil }
		got, err := r.Resolve("io.containerd.foo.v1")
		if err != nil {
			t.Fatal(err)
		}
		if got != bin {
			t.Errorf("got %q, want %q", got, bin)
		}
		if n != 1 {
			t.Errorf("PATH looked up %d times, want 1 (before the fallback)", n)
		}
	})

	t.Run("executable seam fails", func(t *testing.T) {
		var n int
		r := testResolver(&n)
		boom := errors.New("no /proc/self/exe")
		r.executable = func() (string, error) { return "", boom }
		if _, err := r.Resolve("io.containerd.foo.v1"); !errors.Is(err, boom) {
			t.Fatalf("got %v, want %v", err, boom)
		}
	})

	t.Run("not installed", func(t *testing.T) {
		var n int
		_, err := testResolver(&n).Resolve("io.containerd.foo.v1")
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("got %v, want ErrNotExist", err)
		}
		if !strings.Contains(err.Error(), "containerd-shim-foo-v1") {
			t.Errorf("error %q does not name the binary", err)
		}
	})

	// Stock resolves "" to the cwd here (a QUIRK); we report the error.
	t.Run("PATH lookup fails otherwise", func(t *testing.T) {
		r := NewResolver()
		boom := &exec.Error{Name: "containerd-shim-foo-v1", Err: fs.ErrPermission}
		r.lookPath = func(string) (string, error) { return "", boom }
		r.executable = func() (string, error) { t.Error("executable consulted after a lookup error"); return "", nil }
		got, err := r.Resolve("io.containerd.foo.v1")
		if !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("got %q, %v; want ErrPermission", got, err)
		}
	})

	t.Run("cached by binary name", func(t *testing.T) {
		dir := t.TempDir()
		bin := fakeBinary(t, dir, "containerd-shim-foo-v1")
		r := NewResolver()
		var n int
		r.lookPath = func(name string) (string, error) {
			n++
			p := filepath.Join(dir, name)
			if _, err := os.Stat(p); err != nil {
				return "", &exec.Error{Name: name, Err: exec.ErrNotFound}
			}
			return p, nil
		}
		r.executable = func() (string, error) { return "/nonexistent/containerd", nil }
		if got, err := r.Resolve("io.containerd.foo.v1"); err != nil || got != bin {
			t.Fatalf("first: %q, %v", got, err)
		}
		// The binary goes away, and another runtime name maps to the same
		// binary name: both answer from the cache without a lookup.
		if err := os.Remove(bin); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"io.containerd.foo.v1", "com.example.foo.v1"} {
			if got, err := r.Resolve(name); err != nil || got != bin {
				t.Fatalf("%s: %q, %v; want cached %q", name, got, err, bin)
			}
		}
		if n != 1 {
			t.Errorf("looked up %d times, want 1", n)
		}
		// A different binary name is not served from that entry.
		if got, err := r.Resolve("io.containerd.bar.v1"); err == nil {
			t.Errorf("io.containerd.bar.v1 resolved to %q although nothing provides it", got)
		}
	})

	t.Run("failures are not cached", func(t *testing.T) {
		dir := t.TempDir()
		r := NewResolver()
		r.lookPath = func(name string) (string, error) {
			p := filepath.Join(dir, name)
			if _, err := os.Stat(p); err != nil {
				return "", &exec.Error{Name: name, Err: exec.ErrNotFound}
			}
			return p, nil
		}
		r.executable = func() (string, error) { return "/nonexistent/containerd", nil }
		if _, err := r.Resolve("io.containerd.foo.v1"); err == nil {
			t.Fatal("resolved a missing binary")
		}
		bin := fakeBinary(t, dir, "containerd-shim-foo-v1")
		if got, err := r.Resolve("io.containerd.foo.v1"); err != nil || got != bin {
			t.Fatalf("after install: %q, %v", got, err)
		}
	})

	t.Run("relative PATH entry is made absolute", func(t *testing.T) {
		dir := t.TempDir()
		bin := fakeBinary(t, dir, "containerd-shim-foo-v1")
		t.Chdir(filepath.Dir(dir))
		r := NewResolver()
		r.lookPath = func(name string) (string, error) { return filepath.Join(filepath.Base(dir), name), nil }
		got, err := r.Resolve("io.containerd.foo.v1")
		if err != nil {
			t.Fatal(err)
		}
		if got != bin {
			t.Errorf("got %q, want absolute %q", got, bin)
		}
	})

	// shim.BinaryPath resolves the binary name against containerd's cwd,
	// and it wins over PATH.
	t.Run("binary in the working directory", func(t *testing.T) {
		dir := t.TempDir()
		bin := fakeBinary(t, dir, "containerd-shim-foo-v1")
		t.Chdir(dir)
		var n int
		got, err := testResolver(&n).Resolve("io.containerd.foo.v1")
		if err != nil {
			t.Fatal(err)
		}
		if got != bin {
			t.Errorf("got %q, want %q", got, bin)
		}
		if n != 0 {
			t.Errorf("PATH consulted %d times although the cwd has the binary", n)
		}
	})
}

// invalidRuntimeText is stock's error text for a rejected runtime name,
// which clients (and TestErrorsMatchStock) see verbatim.
func invalidRuntimeText(name string) string {
	return "invalid runtime name " + name + ", correct runtime name should be either format like `io.containerd.runc.v2` or a full path to the binary"
}

// An absolute path seen to exist is not looked at again for a second; a
// missing one is an error every time.
func TestResolveAbsoluteSeenFor(t *testing.T) {
	r := NewResolver()
	now := time.Now()
	r.now = func() time.Time { return now }
	bin := filepath.Join(t.TempDir(), "containerd-shim-x-v1")
	if _, err := r.Resolve(bin); err == nil {
		t.Fatal("missing binary resolved")
	}
	if err := os.WriteFile(bin, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if p, err := r.Resolve(bin); err != nil || p != bin {
		t.Fatalf("Resolve = %q, %v", p, err)
	}
	os.Remove(bin)
	now = now.Add(absFoundFor - time.Millisecond)
	if _, err := r.Resolve(bin); err != nil {
		t.Fatalf("within %s: %v", absFoundFor, err)
	}
	now = now.Add(time.Millisecond)
	if _, err := r.Resolve(bin); err == nil {
		t.Fatalf("removed binary still resolved after %s", absFoundFor)
	}
}

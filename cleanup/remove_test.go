package cleanup

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/shimkeeper/shimkeeper/internal/testshim"
)

func TestWithin(t *testing.T) {
	for _, tc := range []struct {
		name      string
		dir, path string
		want      bool
	}{
		// The plain case: a child and a grandchild.
		{"child", "/a/b", "/a/b/c", true},
		{"grandchild", "/a/b", "/a/b/c/d", true},
		// dir itself must never be removable through dir.
		{"dir itself", "/a/b", "/a/b", false},
		{"dir itself, trailing slash", "/a/b/", "/a/b", false},
		{"dir itself via dot", "/a/b", "/a/b/.", false},
		{"dir itself via c/..", "/a/b", "/a/b/c/..", false},
		// .. must be resolved before the check, not after.
		{"parent", "/a/b", "/a", false},
		{"dotdot escape", "/a/b", "/a/b/../c", false},
		{"dotdot escape to root", "/a/b", "/a/b/../../etc", false},
		{"dotdot inside stays inside", "/a/b", "/a/b/c/../d", true},
		// A name that merely starts with two dots is an ordinary child.
		{"dotdot-prefixed name", "/a/b", "/a/b/..c", true},
		// Prefix tricks: /a/bc shares the string prefix /a/b but is a
		// sibling, not a child.
		{"string prefix sibling", "/a/b", "/a/bc", false},
		{"string prefix sibling child", "/a/b", "/a/bc/d", false},
		{"dir with trailing slash", "/a/b/", "/a/bc", false},
		// Relative paths mean "relative to the cwd": never accepted.
		{"relative path", "/a/b", "b/c", false},
		{"relative dir", "a/b", "a/b/c", false},
		{"both relative", "a", "a/b", false},
		{"empty path", "/a/b", "", false},
		{"empty dir", "", "/a/b", false},
		// The root dir confines everything else.
		{"root", "/", "/etc", true},
		{"root itself", "/", "/", false},
		// Unrelated trees.
		{"unrelated", "/a/b", "/x/y", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Within(tc.dir, tc.path); got != tc.want {
				t.Errorf("Within(%q, %q) = %v, want %v", tc.dir, tc.path, got, tc.want)
			}
		})
	}
}

func mustMkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, p string) {
	t.Helper()
	mustMkdir(t, filepath.Dir(p))
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func TestRemoveRefusesOutside(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "confine")
	sibling := filepath.Join(root, "confine2")
	mustWrite(t, filepath.Join(dir, "in", "f"))
	mustWrite(t, filepath.Join(sibling, "f"))

	for _, p := range []string{
		dir,                                  // the dir itself
		filepath.Join(dir, ".."),             // its parent
		dir + "/../confine2",                 // a sibling through ..
		sibling,                              // a sibling sharing the string prefix
		"in",                                 // relative
		filepath.Join(dir, "in", "..", ".."), // escape after a real component
	} {
		err := Remove(dir, p)
		if !errors.Is(err, ErrOutside) {
			t.Errorf("Remove(%q, %q) = %v, want ErrOutside", dir, p, err)
		}
		if err := AtomicRemove(dir, p); !errors.Is(err, ErrOutside) {
			t.Errorf("AtomicRemove(%q, %q) = %v, want ErrOutside", dir, p, err)
		}
	}
	if !exists(filepath.Join(dir, "in", "f")) || !exists(filepath.Join(sibling, "f")) {
		t.Fatal("a refused removal removed something")
	}
}

func TestRemove(t *testing.T) {
	dir := t.TempDir()

	t.Run("tree", func(t *testing.T) {
		p := filepath.Join(dir, "tree")
		mustWrite(t, filepath.Join(p, "a", "b", "f"))
		if err := Remove(dir, p); err != nil {
			t.Fatal(err)
		}
		if exists(p) {
			t.Fatal("tree still exists")
		}
	})

	t.Run("file", func(t *testing.T) {
		p := filepath.Join(dir, "file")
		mustWrite(t, p)
		if err := Remove(dir, p); err != nil {
			t.Fatal(err)
		}
		if exists(p) {
			t.Fatal("file still exists")
		}
	})

	t.Run("missing is not an error", func(t *testing.T) {
		if err := Remove(dir, filepath.Join(dir, "missing")); err != nil {
			t.Fatal(err)
		}
		if err := Remove(dir, filepath.Join(dir, "missing", "deeper")); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("symlink to a dir is removed as a link", func(t *testing.T) {
		target, check := testshim.Canary(t)
		p := filepath.Join(dir, "link")
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		if err := Remove(dir, p); err != nil {
			t.Fatal(err)
		}
		if exists(p) {
			t.Fatal("link still exists")
		}
		check()
	})

	t.Run("symlink inside a removed tree is not followed", func(t *testing.T) {
		target, check := testshim.Canary(t)
		p := filepath.Join(dir, "withlink")
		mustMkdir(t, p)
		if err := os.Symlink(target, filepath.Join(p, "out")); err != nil {
			t.Fatal(err)
		}
		if err := Remove(dir, p); err != nil {
			t.Fatal(err)
		}
		if exists(p) {
			t.Fatal("tree still exists")
		}
		check()
	})

	t.Run("dangling symlink", func(t *testing.T) {
		p := filepath.Join(dir, "dangling")
		if err := os.Symlink(filepath.Join(dir, "nowhere"), p); err != nil {
			t.Fatal(err)
		}
		if err := Remove(dir, p); err != nil {
			t.Fatal(err)
		}
		if exists(p) {
			t.Fatal("link still exists")
		}
	})

	// A symlinked component between dir and the target would lead the
	// removal outside dir although the path, as text, is inside it.
	t.Run("symlinked parent component is refused", func(t *testing.T) {
		target, check := testshim.Canary(t)
		mustMkdir(t, filepath.Join(target, "victim"))
		link := filepath.Join(dir, "ns")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{filepath.Join(link, "canary"), filepath.Join(link, "victim")} {
			if err := Remove(dir, p); !errors.Is(err, ErrOutside) {
				t.Errorf("Remove through a symlinked component = %v, want ErrOutside", err)
			}
			if err := AtomicRemove(dir, p); !errors.Is(err, ErrOutside) {
				t.Errorf("AtomicRemove through a symlinked component = %v, want ErrOutside", err)
			}
		}
		check()
		if !exists(filepath.Join(target, "victim")) {
			t.Fatal("victim dir behind the symlinked component was removed")
		}
		if _, err := FinishPending(dir, link); !errors.Is(err, ErrOutside) {
			t.Errorf("FinishPending through a symlinked parent = %v, want ErrOutside", err)
		}
		// The link itself is an entry of dir and may be removed.
		if err := Remove(dir, link); err != nil {
			t.Fatal(err)
		}
		check()
	})
}

func TestAtomicRemove(t *testing.T) {
	t.Run("leaves no dot-dir", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "ns", "id")
		mustWrite(t, filepath.Join(p, "rootfs", "f"))
		if err := AtomicRemove(dir, p); err != nil {
			t.Fatal(err)
		}
		if got := testshim.Names(t, filepath.Join(dir, "ns")); len(got) != 0 {
			t.Fatalf("left behind %v", got)
		}
	})

	t.Run("stale dot-dir from an earlier crash", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "id")
		mustWrite(t, filepath.Join(p, "new"))
		mustWrite(t, filepath.Join(dir, ".id", "stale", "f"))
		if err := AtomicRemove(dir, p); err != nil {
			t.Fatal(err)
		}
		if got := testshim.Names(t, dir); len(got) != 0 {
			t.Fatalf("left behind %v", got)
		}
	})

	t.Run("stale dot-file from an earlier crash", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "id")
		mustWrite(t, filepath.Join(p, "new"))
		mustWrite(t, filepath.Join(dir, ".id"))
		if err := AtomicRemove(dir, p); err != nil {
			t.Fatal(err)
		}
		if got := testshim.Names(t, dir); len(got) != 0 {
			t.Fatalf("left behind %v", got)
		}
	})

	t.Run("stale dot-link is not followed", func(t *testing.T) {
		dir := t.TempDir()
		target, check := testshim.Canary(t)
		p := filepath.Join(dir, "id")
		mustWrite(t, filepath.Join(p, "new"))
		if err := os.Symlink(target, filepath.Join(dir, ".id")); err != nil {
			t.Fatal(err)
		}
		if err := AtomicRemove(dir, p); err != nil {
			t.Fatal(err)
		}
		if got := testshim.Names(t, dir); len(got) != 0 {
			t.Fatalf("left behind %v", got)
		}
		check()
	})

	t.Run("symlink is removed as a link", func(t *testing.T) {
		dir := t.TempDir()
		target, check := testshim.Canary(t)
		p := filepath.Join(dir, "work")
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		if err := AtomicRemove(dir, p); err != nil {
			t.Fatal(err)
		}
		if got := testshim.Names(t, dir); len(got) != 0 {
			t.Fatalf("left behind %v", got)
		}
		check()
	})

	t.Run("missing is not an error", func(t *testing.T) {
		dir := t.TempDir()
		if err := AtomicRemove(dir, filepath.Join(dir, "missing")); err != nil {
			t.Fatal(err)
		}
		if got := testshim.Names(t, dir); len(got) != 0 {
			t.Fatalf("created %v", got)
		}
	})

	t.Run("dot-name is removed directly", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, ".id")
		mustWrite(t, filepath.Join(p, "f"))
		if err := AtomicRemove(dir, p); err != nil {
			t.Fatal(err)
		}
		if got := testshim.Names(t, dir); len(got) != 0 {
			t.Fatalf("left behind %v", got)
		}
	})
}

func TestFinishPending(t *testing.T) {
	dir := t.TempDir()
	parent := filepath.Join(dir, "ns")
	target, check := testshim.Canary(t)

	// Leftovers of interrupted AtomicRemoves: removed.
	mustWrite(t, filepath.Join(parent, ".a", "rootfs", "f"))
	mustMkdir(t, filepath.Join(parent, ".b"))
	// Live bundles: kept.
	mustWrite(t, filepath.Join(parent, "a", "config.json"))
	mustMkdir(t, filepath.Join(parent, "c"))
	// Dot-names that AtomicRemove never leaves (it renames directories
	// only): kept. A dot-link is never followed.
	mustWrite(t, filepath.Join(parent, ".file"))
	if err := os.Symlink(target, filepath.Join(parent, ".link")); err != nil {
		t.Fatal(err)
	}

	done, err := FinishPending(dir, parent)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(done)
	if want := []string{".a", ".b"}; !slices.Equal(done, want) {
		t.Errorf("FinishPending removed %v, want %v", done, want)
	}
	got := testshim.Names(t, parent)
	if want := []string{".file", ".link", "a", "c"}; !slices.Equal(got, want) {
		t.Errorf("left %v, want %v", got, want)
	}
	check()

	t.Run("dir itself as parent", func(t *testing.T) {
		mustMkdir(t, filepath.Join(dir, ".ns2"))
		done, err := FinishPending(dir, dir)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(done, []string{".ns2"}) {
			t.Errorf("removed %v", done)
		}
	})

	t.Run("missing parent", func(t *testing.T) {
		done, err := FinishPending(dir, filepath.Join(dir, "missing"))
		if err != nil || len(done) != 0 {
			t.Fatalf("got %v, %v", done, err)
		}
	})

	t.Run("outside parent", func(t *testing.T) {
		other := t.TempDir()
		mustMkdir(t, filepath.Join(other, ".x"))
		if _, err := FinishPending(dir, other); !errors.Is(err, ErrOutside) {
			t.Fatalf("got %v, want ErrOutside", err)
		}
		if !exists(filepath.Join(other, ".x")) {
			t.Fatal("removed outside dir")
		}
	})
}

func newBundle(t *testing.T) BundlePaths {
	t.Helper()
	base := t.TempDir()
	p := BundlePaths{
		StateDir:  filepath.Join(base, "state"),
		RootDir:   filepath.Join(base, "root"),
		Namespace: "default",
		ID:        "task1",
	}
	mustMkdir(t, filepath.Join(p.Bundle(), "rootfs"))
	mustWrite(t, filepath.Join(p.Bundle(), "config.json"))
	mustWrite(t, filepath.Join(p.Work(), "criu", "f"))
	if err := os.Symlink(p.Work(), filepath.Join(p.Bundle(), "work")); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDeleteBundle(t *testing.T) {
	t.Run("removes bundle and work dir, idempotently", func(t *testing.T) {
		p := newBundle(t)
		for i := 0; i < 2; i++ {
			if err := DeleteBundle(p); err != nil {
				t.Fatalf("DeleteBundle #%d: %v", i+1, err)
			}
			if got := testshim.Names(t, filepath.Join(p.StateDir, p.Namespace)); len(got) != 0 {
				t.Fatalf("state ns dir holds %v", got)
			}
			if got := testshim.Names(t, filepath.Join(p.RootDir, p.Namespace)); len(got) != 0 {
				t.Fatalf("root ns dir holds %v", got)
			}
		}
	})

	t.Run("work link pointing outside is not followed", func(t *testing.T) {
		p := newBundle(t)
		target, check := testshim.Canary(t)
		link := filepath.Join(p.Bundle(), "work")
		if err := os.Remove(link); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		if err := DeleteBundle(p); err != nil {
			t.Fatal(err)
		}
		check()
		if exists(p.Bundle()) || exists(p.Work()) {
			t.Fatal("bundle or work dir left behind")
		}
	})

	t.Run("rootfs symlink pointing outside is not followed", func(t *testing.T) {
		p := newBundle(t)
		target, check := testshim.Canary(t)
		rootfs := filepath.Join(p.Bundle(), "rootfs")
		if err := os.Remove(rootfs); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, rootfs); err != nil {
			t.Fatal(err)
		}
		if err := DeleteBundle(p); err != nil {
			t.Fatal(err)
		}
		check()
		if exists(p.Bundle()) {
			t.Fatal("bundle left behind")
		}
	})

	// Stock: a rootfs that is a non-empty plain directory (a mount we could
	// not see, or a shim that never unmounted) stops the delete with
	// nothing removed, so the container's files are never recursed into.
	t.Run("non-empty rootfs stops the delete", func(t *testing.T) {
		p := newBundle(t)
		mustWrite(t, filepath.Join(p.Bundle(), "rootfs", "etc", "passwd"))
		if err := DeleteBundle(p); err == nil {
			t.Fatal("DeleteBundle succeeded on a non-empty rootfs")
		}
		for _, f := range []string{
			filepath.Join(p.Bundle(), "rootfs", "etc", "passwd"),
			filepath.Join(p.Bundle(), "config.json"),
			filepath.Join(p.Work(), "criu", "f"),
		} {
			if !exists(f) {
				t.Errorf("%s was removed", f)
			}
		}
	})

	t.Run("paths escaping the plugin dirs are refused", func(t *testing.T) {
		p := newBundle(t)
		for _, bad := range []BundlePaths{
			{StateDir: p.StateDir, RootDir: p.RootDir, Namespace: "..", ID: ".."},
			{StateDir: p.StateDir, RootDir: p.RootDir, Namespace: p.Namespace, ID: "../.."},
			{StateDir: p.StateDir, RootDir: p.RootDir, Namespace: "", ID: ""},
		} {
			if err := DeleteBundle(bad); !errors.Is(err, ErrOutside) {
				t.Errorf("DeleteBundle(%+v) = %v, want ErrOutside", bad, err)
			}
		}
		if !exists(filepath.Join(p.Bundle(), "config.json")) || !exists(filepath.Join(p.Work(), "criu", "f")) {
			t.Fatal("a refused delete removed something")
		}
	})
}

func isMountPoint(t *testing.T, p string) bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && fields[4] == p {
			return true
		}
	}
	return false
}

func TestDeleteBundleUnmountsRootfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	p := newBundle(t)
	rootfs := filepath.Join(p.Bundle(), "rootfs")
	if err := unix.Mount("tmpfs", rootfs, "tmpfs", 0, "size=1m"); err != nil {
		if errors.Is(err, unix.EPERM) {
			t.Skipf("cannot mount tmpfs here: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if isMountPoint(t, rootfs) {
			_ = unix.Unmount(rootfs, unix.MNT_DETACH)
		}
	})
	// A file on the tmpfs: if DeleteBundle recursed into the mount instead
	// of unmounting it, it would remove this and then fail on the mount
	// point.
	mustWrite(t, filepath.Join(rootfs, "data"))
	// A second mount stacked inside, as a shim's rootfs mounts have.
	mustMkdir(t, filepath.Join(rootfs, "proc"))
	if err := unix.Mount("tmpfs", filepath.Join(rootfs, "proc"), "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	if !isMountPoint(t, rootfs) {
		t.Fatal("tmpfs not mounted")
	}

	if err := DeleteBundle(p); err != nil {
		t.Fatal(err)
	}
	if isMountPoint(t, rootfs) || isMountPoint(t, filepath.Join(rootfs, "proc")) {
		t.Fatal("rootfs still mounted")
	}
	if _, err := os.Lstat(p.Bundle()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("bundle still there: %v", err)
	}
	if exists(p.Work()) {
		t.Fatal("work dir still there")
	}
}

// Stock canonicalizes the rootfs path before unmounting, so a rootfs that
// is a symlink to a mount point elsewhere gets that mount unmounted. Ours
// never follows it.
func TestDeleteBundleRootfsLinkToMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	p := newBundle(t)
	target, check := testshim.Canary(t)
	if err := unix.Mount("tmpfs", target, "tmpfs", 0, "size=1m"); err != nil {
		if errors.Is(err, unix.EPERM) {
			t.Skipf("cannot mount tmpfs here: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(target, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(target, "canary"), []byte("alive"), 0o600); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(p.Bundle(), "rootfs")
	if err := os.Remove(rootfs); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, rootfs); err != nil {
		t.Fatal(err)
	}
	if err := DeleteBundle(p); err != nil {
		t.Fatal(err)
	}
	if !isMountPoint(t, target) {
		t.Fatal("the mount behind the rootfs symlink was unmounted")
	}
	check()
	if exists(p.Bundle()) {
		t.Fatal("bundle left behind")
	}
}

package manager

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/containerd/v2/pkg/protobuf/types"

	"github.com/shimkeeper/shimkeeper/internal/testshim"
	"github.com/shimkeeper/shimkeeper/layout"
)

const testNS = "testns"

func nsCtx() context.Context {
	return namespaces.WithNamespace(context.Background(), testNS)
}

func specAny(t *testing.T, s *specs.Spec) typeurl.Any {
	t.Helper()
	a, err := typeurl.MarshalAny(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// plugin dirs as the plugins have them: <base>/state and <base>/root.
func pluginDirs(t *testing.T) (state, root string) {
	t.Helper()
	base := t.TempDir()
	state, root = filepath.Join(base, "state"), filepath.Join(base, "root")
	for _, d := range []string{state, root} {
		if err := os.Mkdir(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return state, root
}

func withUmask(t *testing.T, mask int) {
	t.Helper()
	old := syscall.Umask(mask)
	t.Cleanup(func() { syscall.Umask(old) })
}

func requireMode(t *testing.T, p string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != want {
		t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func requireNames(t *testing.T, dir string, want ...string) {
	t.Helper()
	got := dirNames(t, dir)
	if want == nil {
		want = []string{}
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s holds %v, want %v", dir, got, want)
	}
}

func TestNewBundleLayout(t *testing.T) {
	for _, mask := range []int{0o022, 0o027} {
		t.Run("umask "+fs.FileMode(mask).String(), func(t *testing.T) {
			withUmask(t, mask)
			state, root := pluginDirs(t)
			spec := specAny(t, &specs.Spec{
				Version: specs.Version,
				Process: &specs.Process{Args: []string{"sleep", "inf"}, Cwd: "/"},
				Root:    &specs.Root{Path: "rootfs"},
			})

			b, err := NewBundle(nsCtx(), state, root, "task-1", spec)
			if err != nil {
				t.Fatal(err)
			}
			bundle := filepath.Join(state, testNS, "task-1")
			work := filepath.Join(root, testNS, "task-1")
			if b.ID != "task-1" || b.Namespace != testNS || b.Path != bundle || b.WorkDir() != work {
				t.Errorf("bundle %+v, workdir %s", b, b.WorkDir())
			}

			// Modes as stock creates them (MkdirAll/Mkdir, so the umask
			// applies as it does for stock).
			dirMode := func(m fs.FileMode) fs.FileMode { return fs.ModeDir | m&^fs.FileMode(mask) }
			requireMode(t, filepath.Join(state, testNS), dirMode(0o711))
			requireMode(t, filepath.Join(root, testNS), dirMode(0o711))
			requireMode(t, bundle, dirMode(0o700))
			requireMode(t, filepath.Join(bundle, layout.DirRootfs), dirMode(0o711))
			requireMode(t, work, dirMode(0o711))

			// Exactly these entries, nothing else (no log, no
			// bootstrap.json: those belong to start).
			requireNames(t, bundle, oci.ConfigFilename, layout.DirRootfs, layout.FileWork)
			requireNames(t, filepath.Join(bundle, layout.DirRootfs))
			requireNames(t, work)

			// work is a symlink to the absolute work dir.
			fi, err := os.Lstat(filepath.Join(bundle, layout.FileWork))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode()&fs.ModeSymlink == 0 {
				t.Fatalf("work is %v, not a symlink", fi.Mode())
			}
			target, err := os.Readlink(filepath.Join(bundle, layout.FileWork))
			if err != nil {
				t.Fatal(err)
			}
			if target != work {
				t.Errorf("work -> %q, want %q", target, work)
			}

			// config.json holds the spec bytes unchanged, 0666 minus umask.
			cfg := filepath.Join(bundle, oci.ConfigFilename)
			data, err := os.ReadFile(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data, spec.GetValue()) {
				t.Errorf("config.json differs from the spec:\n got: %s\nwant: %s", data, spec.GetValue())
			}
			requireMode(t, cfg, 0o666&^fs.FileMode(mask))
		})
	}
}

func TestNewBundleSpecForms(t *testing.T) {
	withUmask(t, 0o022)

	t.Run("nil spec writes no config.json", func(t *testing.T) {
		state, root := pluginDirs(t)
		b, err := NewBundle(nsCtx(), state, root, "sb", nil)
		if err != nil {
			t.Fatal(err)
		}
		requireNames(t, b.Path, layout.DirRootfs, layout.FileWork)
	})

	t.Run("spec without value writes no config.json", func(t *testing.T) {
		state, root := pluginDirs(t)
		// (An OCI-typed Any without a value fails the user-namespace
		// parse, in stock as here.)
		b, err := NewBundle(nsCtx(), state, root, "sb", &types.Any{TypeUrl: "example.com/Other"})
		if err != nil {
			t.Fatal(err)
		}
		requireNames(t, b.Path, layout.DirRootfs, layout.FileWork)
	})

	// Only an OCI spec is inspected for user namespaces; any other value
	// is written as is.
	t.Run("non-OCI spec is written unchanged", func(t *testing.T) {
		state, root := pluginDirs(t)
		raw := []byte("not json at all")
		b, err := NewBundle(nsCtx(), state, root, "sb", &types.Any{TypeUrl: "example.com/Other", Value: raw})
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(b.Path, oci.ConfigFilename))
		if err != nil || !bytes.Equal(data, raw) {
			t.Fatalf("config.json = %q, %v", data, err)
		}
	})

	// An OCI spec that does not parse fails the user-namespace step: the
	// bundle must not be left behind (stock leaves the bundle dir).
	t.Run("unparsable OCI spec leaves nothing", func(t *testing.T) {
		state, root := pluginDirs(t)
		bad := &types.Any{TypeUrl: specAny(t, &specs.Spec{}).GetTypeUrl(), Value: []byte("{broken")}
		if _, err := NewBundle(nsCtx(), state, root, "sb", bad); err == nil {
			t.Fatal("NewBundle accepted a broken OCI spec")
		}
		requireNames(t, filepath.Join(state, testNS))
		if _, err := os.Lstat(filepath.Join(root, testNS, "sb")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("work dir created: %v", err)
		}
	})
}

func TestNewBundleResetsWorkDir(t *testing.T) {
	withUmask(t, 0o022)
	state, root := pluginDirs(t)
	work := filepath.Join(root, testNS, "task-1")
	if err := os.MkdirAll(filepath.Join(work, "criu", "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "stale"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := NewBundle(nsCtx(), state, root, "task-1", specAny(t, &specs.Spec{})); err != nil {
		t.Fatal(err)
	}
	requireNames(t, work)
	requireMode(t, work, fs.ModeDir|0o711)
}

func TestNewBundleRejects(t *testing.T) {
	withUmask(t, 0o022)

	for _, id := range []string{"", "bad/id", "..", ".hidden", "a..b", "-lead", strings.Repeat("a", 77)} {
		t.Run("invalid id "+id, func(t *testing.T) {
			state, root := pluginDirs(t)
			if _, err := NewBundle(nsCtx(), state, root, id, specAny(t, &specs.Spec{})); err == nil {
				t.Fatalf("NewBundle accepted id %q", id)
			}
			requireNames(t, state)
			requireNames(t, root)
		})
	}

	t.Run("no namespace", func(t *testing.T) {
		state, root := pluginDirs(t)
		if _, err := NewBundle(context.Background(), state, root, "task-1", nil); err == nil {
			t.Fatal("NewBundle accepted a context without namespace")
		}
		requireNames(t, state)
		requireNames(t, root)
	})

	// The bundle of a live task: NewBundle must fail without touching it,
	// and above all without resetting the live task's work dir.
	t.Run("existing bundle dir", func(t *testing.T) {
		state, root := pluginDirs(t)
		bundle := filepath.Join(state, testNS, "task-1")
		work := filepath.Join(root, testNS, "task-1")
		for _, f := range []string{filepath.Join(bundle, "config.json"), filepath.Join(work, "checkpoint")} {
			if err := os.MkdirAll(filepath.Dir(f), 0o711); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f, []byte("live"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		before := testshim.Snapshot(t, filepath.Dir(state))
		_, err := NewBundle(nsCtx(), state, root, "task-1", specAny(t, &specs.Spec{}))
		if !errors.Is(err, fs.ErrExist) {
			t.Fatalf("got %v, want ErrExist", err)
		}
		testshim.RequireSameSnapshot(t, before, testshim.Snapshot(t, filepath.Dir(state)))
	})
}

func TestNewBundleUserNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another group needs root")
	}
	withUmask(t, 0o022)
	const hostGID = 4200

	t.Run("root GID mapped", func(t *testing.T) {
		state, root := pluginDirs(t)
		spec := specAny(t, &specs.Spec{Linux: &specs.Linux{GIDMappings: []specs.LinuxIDMapping{
			{ContainerID: 1, HostID: 9999, Size: 1},
			{ContainerID: 0, HostID: hostGID, Size: 65536},
		}}})
		b, err := NewBundle(nsCtx(), state, root, "userns", spec)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(b.Path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != fs.ModeDir|0o710 {
			t.Errorf("mode %v, want 0710", fi.Mode())
		}
		if gid := fi.Sys().(*syscall.Stat_t).Gid; gid != hostGID {
			t.Errorf("gid %d, want %d", gid, hostGID)
		}
		// Only the bundle dir: its parent stays traversable by all.
		requireMode(t, filepath.Join(state, testNS), fs.ModeDir|0o711)
	})

	t.Run("no mapping for GID 0", func(t *testing.T) {
		state, root := pluginDirs(t)
		spec := specAny(t, &specs.Spec{Linux: &specs.Linux{GIDMappings: []specs.LinuxIDMapping{
			{ContainerID: 100, HostID: hostGID, Size: 1},
		}}})
		b, err := NewBundle(nsCtx(), state, root, "userns", spec)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(b.Path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != fs.ModeDir|0o700 {
			t.Errorf("mode %v, want 0700", fi.Mode())
		}
		if gid := fi.Sys().(*syscall.Stat_t).Gid; gid != uint32(os.Getegid()) {
			t.Errorf("gid %d, want %d", gid, os.Getegid())
		}
	})
}

func TestRemappedRootGID(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec string
		want uint32
	}{
		{"empty spec", `{}`, 0},
		{"empty linux", `{"linux":{}}`, 0},
		{"empty mappings", `{"linux":{"gidMappings":[]}}`, 0},
		{"root mapped", `{"linux":{"gidMappings":[{"containerID":0,"hostID":1000,"size":1}]}}`, 1000},
		{"root not mapped", `{"linux":{"gidMappings":[{"containerID":100,"hostID":1000,"size":1}]}}`, 0},
		// UID mappings do not matter for the group.
		{"only uid mapped", `{"linux":{"uidMappings":[{"containerID":0,"hostID":1000,"size":1}]}}`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := remappedRootGID([]byte(tc.spec))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
	if _, err := remappedRootGID([]byte("{broken")); err == nil {
		t.Error("broken spec accepted")
	}
}

func TestBundleDelete(t *testing.T) {
	withUmask(t, 0o022)
	newB := func(t *testing.T) (*Bundle, string, string) {
		t.Helper()
		state, root := pluginDirs(t)
		b, err := NewBundle(nsCtx(), state, root, "task-1", specAny(t, &specs.Spec{}))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(b.WorkDir(), "criu.log"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		return b, state, root
	}

	t.Run("removes bundle and work dir, idempotent", func(t *testing.T) {
		b, state, root := newB(t)
		for i := 1; i <= 2; i++ {
			if err := b.Delete(); err != nil {
				t.Fatalf("Delete #%d: %v", i, err)
			}
			requireNames(t, filepath.Join(state, testNS))
			requireNames(t, filepath.Join(root, testNS))
		}
	})

	// LoadBundle names the same bundle, as recovery does.
	t.Run("through LoadBundle", func(t *testing.T) {
		_, state, root := newB(t)
		if err := LoadBundle(state, root, testNS, "task-1").Delete(); err != nil {
			t.Fatal(err)
		}
		requireNames(t, filepath.Join(state, testNS))
		requireNames(t, filepath.Join(root, testNS))
	})

	// Stock follows the work link; a link pointed elsewhere would make it
	// remove whatever is there.
	t.Run("work link pointing outside is not followed", func(t *testing.T) {
		b, state, root := newB(t)
		target, check := testshim.Canary(t)
		link := filepath.Join(b.Path, layout.FileWork)
		if err := os.Remove(link); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		if err := b.Delete(); err != nil {
			t.Fatal(err)
		}
		check()
		requireNames(t, target, "canary")
		requireNames(t, filepath.Join(state, testNS))
		// The real work dir, derived from the root dir, is removed.
		requireNames(t, filepath.Join(root, testNS))
	})

	t.Run("rootfs symlink pointing outside is not followed", func(t *testing.T) {
		b, state, _ := newB(t)
		target, check := testshim.Canary(t)
		rootfs := filepath.Join(b.Path, layout.DirRootfs)
		if err := os.Remove(rootfs); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, rootfs); err != nil {
			t.Fatal(err)
		}
		if err := b.Delete(); err != nil {
			t.Fatal(err)
		}
		check()
		requireNames(t, target, "canary")
		requireNames(t, filepath.Join(state, testNS))
	})
}

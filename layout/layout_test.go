package layout

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/plugins"

	"github.com/shimkeeper/shimkeeper/internal/testshim"
)

// The names are stock's: containerd names plugin dirs Type.ID.
func TestStockNames(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{TaskPluginDir, plugins.RuntimePluginV2.String() + ".task"},
		{SandboxPluginDir, plugins.SandboxControllerPlugin.String() + ".shim"},
		{MetadataPluginDir, plugins.MetadataPlugin.String() + ".bolt"},
		{FileSpec, oci.ConfigFilename},
		{RootSocketDir, "/run/containerd/s"},
	} {
		if tc.got != tc.want {
			t.Errorf("%q, want %q", tc.got, tc.want)
		}
	}
	if MaxSocketDirLen != 42 {
		t.Errorf("MaxSocketDirLen %d", MaxSocketDirLen)
	}
}

func TestPaths(t *testing.T) {
	for _, tc := range []struct {
		name, got, want string
	}{
		{"plugin dir", PluginDir("/run/containerd", TaskPluginDir), "/run/containerd/io.containerd.runtime.v2.task"},
		{"plugin dir, unclean", PluginDir("/run/containerd/", SandboxPluginDir), "/run/containerd/io.containerd.sandbox.controller.v1.shim"},
		{"namespace dir", NamespaceDir("/s", "default"), "/s/default"},
		{"bundle", BundleDir("/s", "default", "c1"), "/s/default/c1"},
		{"bundle, relative", BundleDir("s", "k8s.io", "c1"), "s/k8s.io/c1"},
		{"work dir", WorkDir("/r", "default", "c1"), "/r/default/c1"},
		{"work dir, unclean", WorkDir("/r//", "ns", "id"), "/r/ns/id"},
		{"bundle file", BundleFile("/s/ns/id", FileBootstrap), "/s/ns/id/bootstrap.json"},
		{"rootfs", BundleFile("/s/ns/id", DirRootfs), "/s/ns/id/rootfs"},
		{"report", ReportPath("/s"), "/s/shimkeeper-recovery.json"},
		{"boot id", BootIDPath("/r"), "/r/shimkeeper-boot-id"},
		{"metadata", MetadataDB("/var/lib/containerd"), "/var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db"},
		{"pending removal", PendingRemoval("/s/ns/id"), "/s/ns/.id"},
		{"pending removal, trailing slash", PendingRemoval("/s/ns/id/"), "/s/ns/.id"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}

func TestDotNames(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		hidden, pending, temp bool
	}{
		{"default", false, false, false},
		{"c.1", false, false, false},
		{".", true, false, false},
		{"..", true, false, false},
		{".c1", true, true, false},
		{"...", true, true, false},
		{TempPrefix + "bootstrap.json.123", true, true, true},
		{"x" + TempPrefix, false, false, false},
	} {
		if got := Hidden(tc.name); got != tc.hidden {
			t.Errorf("Hidden(%q) = %v", tc.name, got)
		}
		if got := IsPendingRemoval(tc.name); got != tc.pending {
			t.Errorf("IsPendingRemoval(%q) = %v", tc.name, got)
		}
		if got := IsTemp(tc.name); got != tc.temp {
			t.Errorf("IsTemp(%q) = %v", tc.name, got)
		}
	}
}

func TestSocketDirCandidates(t *testing.T) {
	for _, tc := range []struct {
		uid  int
		xdg  string
		want []string
	}{
		{0, "/run/user/0", []string{"/run/containerd/s"}},
		{1000, "", []string{"/run/containerd/s", "/run/1000/containerd/s", "/tmp/containerd-s-1000"}},
		{1000, "/run/user/1000", []string{"/run/containerd/s", "/run/user/1000/containerd/s", "/run/1000/containerd/s", "/tmp/containerd-s-1000"}},
	} {
		if got := SocketDirCandidates(tc.uid, tc.xdg); !equal(got, tc.want) {
			t.Errorf("SocketDirCandidates(%d, %q) = %q, want %q", tc.uid, tc.xdg, got, tc.want)
		}
	}
}

func equal(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

// ShimSocketAddress is stock's rule, to the byte.
func TestShimSocketAddress(t *testing.T) {
	for _, tc := range []struct{ dir, grpc, ns, id string }{
		{"/run/containerd/s", "/run/containerd/containerd.sock", "default", "c1"},
		{"/tmp/s", "/tmp/d/containerd.sock", "k8s.io", "0123456789abcdef"},
		{"/s", "", "ns", "id"},
	} {
		for _, debug := range []bool{false, true} {
			want, err := shim.CreateSocketAddress(namespaces.WithNamespace(context.Background(), tc.ns), tc.dir, tc.grpc, tc.id, debug)
			if err != nil {
				t.Fatal(err)
			}
			if got := ShimSocketAddress(tc.dir, tc.grpc, tc.ns, tc.id, debug); got != want {
				t.Errorf("ShimSocketAddress(%+v, %v) = %q, want %q", tc, debug, got, want)
			}
		}
	}
	for _, tc := range []struct {
		address, path string
		ok            bool
	}{
		{"unix:///run/containerd/s/abc", "/run/containerd/s/abc", true},
		{"unix://rel", "rel", true},
		{"/run/containerd/s/abc", "", false},
		{"vsock://3:1024", "", false},
		{"\x00abstract", "", false},
	} {
		p, ok := SocketPath(tc.address)
		if ok != tc.ok || (ok && p != tc.path) {
			t.Errorf("SocketPath(%q) = %q, %v", tc.address, p, ok)
		}
	}
}

// names lists a dir.
func TestWriteFileAtomic(t *testing.T) {
	old := syscall.Umask(0o077) // perm is set exactly, whatever the umask
	t.Cleanup(func() { syscall.Umask(old) })

	for _, tc := range []struct {
		name string
		// setup prepares dir and returns the path to write.
		setup   func(t *testing.T, dir string) string
		perm    fs.FileMode
		wantErr bool
		// left is what dir holds afterwards.
		left []string
	}{
		{
			name:  "new file",
			setup: func(t *testing.T, dir string) string { return filepath.Join(dir, "f") },
			perm:  0o644, left: []string{"f"},
		},
		{
			name: "replaces a file",
			setup: func(t *testing.T, dir string) string {
				p := filepath.Join(dir, "f")
				testshim.MustWrite(t, p, "old content, longer than the new one")
				return p
			},
			perm: 0o600, left: []string{"f"},
		},
		{
			name: "replaces a symlink, not its target",
			setup: func(t *testing.T, dir string) string {
				testshim.MustWrite(t, filepath.Join(dir, "target"), "target")
				p := filepath.Join(dir, "f")
				if err := os.Symlink("target", p); err != nil {
					t.Fatal(err)
				}
				return p
			},
			perm: 0o644, left: []string{"f", "target"},
		},
		{
			name: "path is a non-empty dir: fails, dir untouched, no temp",
			setup: func(t *testing.T, dir string) string {
				p := filepath.Join(dir, "f")
				testshim.MustWrite(t, filepath.Join(p, "inside"), "inside")
				return p
			},
			perm: 0o644, wantErr: true, left: []string{"f"},
		},
		{
			name:  "parent missing: fails",
			setup: func(t *testing.T, dir string) string { return filepath.Join(dir, "missing", "f") },
			perm:  0o644, wantErr: true, left: nil,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := tc.setup(t, dir)
			before, _ := os.ReadFile(path)
			data := []byte("new\n")
			err := WriteFileAtomic(path, data, tc.perm)
			if got := testshim.Names(t, dir); !equal(got, tc.left) {
				t.Errorf("dir holds %q, want %q", got, tc.left)
			}
			if tc.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
					t.Errorf("path changed on failure: %q", after)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, data) {
				t.Errorf("content %q, %v", got, err)
			}
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if !fi.Mode().IsRegular() || fi.Mode().Perm() != tc.perm {
				t.Errorf("mode %v, want a regular file %v", fi.Mode(), tc.perm)
			}
		})
	}
}

// Writers of one path at once never see or leave a mix: the file is one
// writer's data whole, and no temp file is left.
func TestWriteFileAtomicConcurrent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	var wg sync.WaitGroup
	const n = 16
	for i := range n {
		wg.Go(func() {
			data := bytes.Repeat([]byte(fmt.Sprint(i%10)), 64<<10)
			if err := WriteFileAtomic(path, data, 0o644); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 64<<10 || !bytes.Equal(got, bytes.Repeat(got[:1], len(got))) {
		t.Errorf("mixed content: %d bytes starting %q", len(got), got[:min(len(got), 8)])
	}
	if left := testshim.Names(t, dir); !equal(left, []string{"f"}) {
		t.Errorf("dir holds %q", left)
	}
}

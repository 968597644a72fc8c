package main

import (
	"archive/tar"
	"errors"
	"io"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// fakeToybox writes a script that answers --list the way toybox does.
func fakeToybox(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "toybox")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nprintf 'pause\\nsh\\nsleep\\n'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// files lists a layer's entries: name → type, link target for symlinks.
func files(t *testing.T, l v1.Layer) map[string]string {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(epoch) {
			t.Errorf("%s: uid %d gid %d mtime %s, want root and the epoch", h.Name, h.Uid, h.Gid, h.ModTime)
		}
		switch h.Typeflag {
		case tar.TypeSymlink:
			out[h.Name] = "-> " + h.Linkname
		case tar.TypeDir:
			out[h.Name] = "dir"
		default:
			out[h.Name] = "file"
		}
	}
}

// TestImagesServedAndStable serves the images, pulls them back through the
// registry as a client would, and checks their layout, config and that a
// second build gives the same digests.
func TestImagesServedAndStable(t *testing.T) {
	toybox := fakeToybox(t)
	imgs, err := buildImages(toybox, false)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := serve("127.0.0.1:0", log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	digests := map[string]string{}
	for _, im := range imgs {
		d, err := push(srv.Addr, im)
		if err != nil {
			t.Fatal(err)
		}
		digests[im.Ref] = d
	}

	want := map[string]struct {
		entrypoint, cmd string
		files           map[string]string
	}{
		PauseRef:  {"/pause", "", map[string]string{"bin/": "dir", "bin/toybox": "file", "pause": "-> bin/toybox"}},
		ToyboxRef: {"", "/bin/sh", map[string]string{"bin/sh": "-> toybox", "bin/sleep": "-> toybox", "sbin": "-> bin", "tmp/": "dir", "etc/passwd": "file"}},
	}
	for ref, w := range want {
		r, err := name.ParseReference(srv.Addr+"/"+ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		img, err := remote.Image(r)
		if err != nil {
			t.Fatalf("pull %s: %v", r, err)
		}
		if d, _ := img.Digest(); d.String() != digests[ref] {
			t.Errorf("%s: pulled digest %s, pushed %s", ref, d, digests[ref])
		}
		if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
			t.Errorf("%s: media type %s", ref, mt)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
			t.Errorf("%s: platform %s/%s", ref, cf.OS, cf.Architecture)
		}
		if got := first(cf.Config.Entrypoint); got != w.entrypoint {
			t.Errorf("%s: entrypoint %q, want %q", ref, got, w.entrypoint)
		}
		if got := first(cf.Config.Cmd); got != w.cmd {
			t.Errorf("%s: cmd %q, want %q", ref, got, w.cmd)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("%s: %d layers, %v", ref, len(layers), err)
		}
		got := files(t, layers[0])
		for f, kind := range w.files {
			if got[f] != kind {
				t.Errorf("%s: %s is %q, want %q", ref, f, got[f], kind)
			}
		}
	}

	again, err := buildImages(toybox, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range again {
		if d, _ := im.Img.Digest(); d.String() != digests[im.Ref] {
			t.Errorf("%s: second build digest %s, first %s", im.Ref, d, digests[im.Ref])
		}
	}
}

func TestServeRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0"} {
		if srv, err := serve(addr, log.New(io.Discard, "", 0)); err == nil {
			srv.Close()
			t.Errorf("serve(%q) succeeded, want a refusal", addr)
		}
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// TestCritestImages checks what critest compares: one image under the
// test-image-tags tags, every other reference an image of its own, and
// the users the user images name.
func TestCritestImages(t *testing.T) {
	imgs, err := buildImages(fakeToybox(t), true)
	if err != nil {
		t.Fatal(err)
	}
	digest := map[string]string{}
	user := map[string]string{}
	for _, im := range imgs {
		d, err := im.Img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		cf, err := im.Img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		digest[im.Ref], user[im.Ref] = d.String(), cf.Config.User
	}
	r := func(s string) string { return criToolsRepo + s }
	if a, b, c := digest[r("test-image-tags:1")], digest[r("test-image-tags:2")], digest[r("test-image-tags:3")]; a == "" || a != b || b != c {
		t.Errorf("test-image-tags digests %q %q %q, want one image", a, b, c)
	}
	if a, b, c := digest[r("test-image-1:latest")], digest[r("test-image-2:latest")], digest[r("test-image-3:latest")]; a == "" || a == b || b == c || a == c {
		t.Errorf("test-image-N digests %q %q %q, want three images", a, b, c)
	}
	for ref, want := range map[string]string{
		"test-image-user-uid:latest": "1002", "test-image-user-username:latest": "www-data",
		"test-image-user-uid-group:latest": "1003:1003", "test-image-user-username-group:latest": "www-data:www-data",
	} {
		if got := user[r(ref)]; got != want {
			t.Errorf("%s: user %q, want %q", ref, got, want)
		}
	}
	// Every other reference is an image of its own: the pull specs
	// compare the repo tags of what they pulled.
	seen := map[string]string{}
	for ref, d := range digest {
		if other, ok := seen[d]; ok && !(strings.Contains(ref, "test-image-tags:") && strings.Contains(other, "test-image-tags:")) {
			t.Errorf("%s and %s are one image (%s)", ref, other, d)
		}
		seen[d] = ref
	}
	if digest["pause:3.9"] == "" || digest[r("test-image-predefined-group:latest")] == "" {
		t.Errorf("missing pause:3.9 or test-image-predefined-group in %v", digest)
	}
}

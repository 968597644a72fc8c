package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image references, relative to the registry (the tests name them under a
// host of their choice and map that host to the registry in hosts.toml).
const (
	PauseRef  = "pause:3.10"
	ToyboxRef = "toybox:1"
)

// epoch is every timestamp in the images (tar entries, config, history),
// so that the same toybox gives the same digests.
var epoch = time.Unix(0, 0).UTC()

// image is one image to serve under Ref.
type image struct {
	Ref string
	Img v1.Image
}

// buildImages makes the pause and toybox images from the toybox binary at
// path. The applets linked are the ones `toybox --list` prints, as
// scripts/mkrootfs.sh does.
func buildImages(path string, critest bool) ([]image, error) {
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(path, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", path, err)
	}
	applets := strings.Fields(string(out))
	if len(applets) == 0 {
		return nil, fmt.Errorf("%s --list printed no applets", path)
	}

	pause, err := newImage(pauseFiles(bin), v1.Config{
		Entrypoint: []string{"/pause"},
		Env:        []string{"PATH=/bin"},
		WorkingDir: "/",
	})
	if err != nil {
		return nil, fmt.Errorf("pause image: %w", err)
	}
	toybox, err := newImage(toyboxFiles(bin, applets), v1.Config{
		Cmd:        []string{"/bin/sh"},
		Env:        []string{"PATH=/bin"},
		WorkingDir: "/",
	})
	if err != nil {
		return nil, fmt.Errorf("toybox image: %w", err)
	}
	imgs := []image{{PauseRef, pause}, {ToyboxRef, toybox}}
	if critest {
		more, err := critestImages(bin, applets)
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, more...)
	}
	return imgs, nil
}

// entry is one file of a layer.
type entry struct {
	Name string // relative path, no leading slash
	Type byte   // tar.TypeDir, TypeReg, TypeSymlink or TypeLink
	Mode int64
	Data []byte // TypeReg
	Link string // TypeSymlink: the target; TypeLink: the file's name in the layer
}

func dir(name string, mode int64) entry { return entry{Name: name, Type: tar.TypeDir, Mode: mode} }
func file(name string, mode int64, data []byte) entry {
	return entry{Name: name, Type: tar.TypeReg, Mode: mode, Data: data}
}
func symlink(name, target string) entry {
	return entry{Name: name, Type: tar.TypeSymlink, Mode: 0o777, Link: target}
}

// pauseFiles is the pause image: toybox, run as /pause (toybox picks the
// applet by the base name of argv[0]; pause exits 0 on SIGTERM or SIGINT).
func pauseFiles(bin []byte) []entry {
	return []entry{
		dir("bin", 0o755),
		file("bin/toybox", 0o755, bin),
		symlink("pause", "bin/toybox"),
	}
}

// toyboxFiles is the busybox-style image, laid out as scripts/mkrootfs.sh
// lays out the rootfs of the ctr tests.
func toyboxFiles(bin []byte, applets []string) []entry {
	es := []entry{
		dir("bin", 0o755),
		file("bin/toybox", 0o755, bin),
		dir("dev", 0o755),
		dir("etc", 0o755),
		file("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n")),
		file("etc/hostname", 0o644, []byte("toybox\n")),
		file("etc/hosts", 0o644, []byte("127.0.0.1\tlocalhost\n::1\tlocalhost\n")),
		file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")),
		file("etc/resolv.conf", 0o644, nil),
		dir("proc", 0o755),
		dir("root", 0o700),
		dir("run", 0o755),
		symlink("sbin", "bin"),
		dir("sys", 0o755),
		dir("tmp", 0o1777),
		dir("var", 0o755),
	}
	for _, a := range applets {
		if a != "toybox" {
			es = append(es, symlink("bin/"+a, "toybox"))
		}
	}
	return es
}

// layerTar is the uncompressed tar of es, sorted by name with the hard
// links last (after the files they name), owned by root, every timestamp
// epoch.
func layerTar(es []entry) ([]byte, error) {
	sorted := append([]entry(nil), es...)
	sort.Slice(sorted, func(i, j int) bool {
		if li, lj := sorted[i].Type == tar.TypeLink, sorted[j].Type == tar.TypeLink; li != lj {
			return lj
		}
		return sorted[i].Name < sorted[j].Name
	})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range sorted {
		h := &tar.Header{
			Typeflag: e.Type, Name: e.Name, Linkname: e.Link, Mode: e.Mode,
			Size: int64(len(e.Data)), ModTime: epoch, Format: tar.FormatPAX,
		}
		if e.Type == tar.TypeDir {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// newImage is a linux/<GOARCH> OCI image of one gzipped layer holding es.
func newImage(es []entry, cfg v1.Config) (v1.Image, error) {
	raw, err := layerTar(es)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	base, err = mutate.ConfigFile(base, &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      v1.Time{Time: epoch},
		Config:       cfg,
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, err
	}
	return mutate.Append(base, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "shimkeeper tools/testimages"},
	})
}

// newRegistry is the in-memory registry handler.
func newRegistry(logger *log.Logger) http.Handler {
	return registry.New(registry.Logger(logger))
}

// push writes im to the registry at addr and returns its manifest digest.
func push(addr string, im image) (string, error) {
	ref, err := name.ParseReference(addr+"/"+im.Ref, name.Insecure)
	if err != nil {
		return "", err
	}
	if err := remote.Write(ref, im.Img); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := im.Img.Digest()
	if err != nil {
		return "", err
	}
	return d.String(), nil
}

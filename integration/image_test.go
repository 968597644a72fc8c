//go:build integration

package integration

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strings"
	"testing"
)

// OCI media types and annotations written by buildOCIImage.
const (
	ociIndexType    = "application/vnd.oci.image.index.v1+json"
	ociManifestType = "application/vnd.oci.image.manifest.v1+json"
	ociConfigType   = "application/vnd.oci.image.config.v1+json"
	ociLayerGzType  = "application/vnd.oci.image.layer.v1.tar+gzip"
	// containerd names an imported image after this annotation.
	imageNameAnnotation  = "io.containerd.image.name"
	ociRefNameAnnotation = "org.opencontainers.image.ref.name"
)

type ociDescriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *ociPlatform      `json:"platform,omitempty"`
}

type ociPlatform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// ociBlobs is an OCI image layout being written into a tar archive.
type ociBlobs struct {
	tw *tar.Writer
}

// add writes data as blobs/sha256/<digest> and returns its descriptor.
func (b ociBlobs) add(mediaType string, data []byte) (ociDescriptor, error) {
	sum := sha256.Sum256(data)
	d := ociDescriptor{MediaType: mediaType, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(data))}
	return d, b.file("blobs/sha256/"+hex.EncodeToString(sum[:]), data)
}

func (b ociBlobs) file(name string, data []byte) error {
	if err := b.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data))}); err != nil {
		return err
	}
	_, err := b.tw.Write(data)
	return err
}

// buildOCIImage writes out, an OCI image layout archive (oci-layout,
// index.json, blobs/sha256/...) holding one linux/<GOARCH> image named
// name: one gzipped layer with the tree at rootfs plus extra files
// (path → content), and a config whose rootfs.diff_ids is the sha256 of
// the uncompressed layer. It is what `ctr images import` accepts from
// `ctr images export`, built without a registry.
func buildOCIImage(t testing.TB, rootfs string, extra map[string]string, name, out string) {
	t.Helper()
	layer, diffID, err := tarLayer(rootfs, extra)
	if err != nil {
		t.Fatalf("layer from %s: %v", rootfs, err)
	}
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	blobs := ociBlobs{tw: tar.NewWriter(bw)}

	err = func() error {
		layerDesc, err := blobs.add(ociLayerGzType, layer)
		if err != nil {
			return err
		}
		config, err := json.Marshal(map[string]any{
			"architecture": goruntime.GOARCH,
			"os":           "linux",
			"config":       map[string]any{"Env": []string{"PATH=/bin"}, "Cmd": []string{"/bin/sh"}},
			"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{diffID}},
		})
		if err != nil {
			return err
		}
		configDesc, err := blobs.add(ociConfigType, config)
		if err != nil {
			return err
		}
		manifest, err := json.Marshal(map[string]any{
			"schemaVersion": 2,
			"mediaType":     ociManifestType,
			"config":        configDesc,
			"layers":        []ociDescriptor{layerDesc},
		})
		if err != nil {
			return err
		}
		manifestDesc, err := blobs.add(ociManifestType, manifest)
		if err != nil {
			return err
		}
		manifestDesc.Platform = &ociPlatform{Architecture: goruntime.GOARCH, OS: "linux"}
		tag := name[strings.LastIndexByte(name, ':')+1:]
		manifestDesc.Annotations = map[string]string{imageNameAnnotation: name, ociRefNameAnnotation: tag}
		index, err := json.Marshal(map[string]any{
			"schemaVersion": 2,
			"mediaType":     ociIndexType,
			"manifests":     []ociDescriptor{manifestDesc},
		})
		if err != nil {
			return err
		}
		if err := blobs.file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
			return err
		}
		if err := blobs.file("index.json", index); err != nil {
			return err
		}
		if err := blobs.tw.Close(); err != nil {
			return err
		}
		return bw.Flush()
	}()
	if err != nil {
		t.Fatalf("write image %s: %v", out, err)
	}
}

// tarLayer returns the gzipped tar of the tree at dir (owned by root,
// paths relative to dir, in lexical order) plus extra regular files, and
// the digest of the uncompressed tar.
func tarLayer(dir string, extra map[string]string) (gz []byte, diffID string, err error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	h := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(zw, h))
	err = filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		var link string
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(tw, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	names := make([]string, 0, len(extra))
	for n := range extra {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: int64(len(extra[n]))}); err != nil {
			return nil, "", err
		}
		if _, err := io.WriteString(tw, extra[n]); err != nil {
			return nil, "", err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), fmt.Sprintf("sha256:%x", h.Sum(nil)), nil
}

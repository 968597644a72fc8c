package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"

	"github.com/shimkeeper/shimkeeper/cleanup"
	"github.com/shimkeeper/shimkeeper/layout"
)

// Bundle is the on-disk state of one shim: <state>/<ns>/<id>, with its work
// dir at <root>/<ns>/<id>.
type Bundle struct {
	ID        string
	Namespace string
	// Path is the bundle dir, <state>/<ns>/<id>.
	Path string
	// StateDir and RootDir are the owning plugin's dirs.
	StateDir, RootDir string
}

// LoadBundle names an existing bundle; it does not touch the disk.
func LoadBundle(stateDir, rootDir, ns, id string) *Bundle {
	return &Bundle{
		ID:        id,
		Namespace: ns,
		Path:      filepath.Join(stateDir, ns, id),
		StateDir:  stateDir,
		RootDir:   rootDir,
	}
}

// WorkDir is <root>/<ns>/<id>.
func (b *Bundle) WorkDir() string { return filepath.Join(b.RootDir, b.Namespace, b.ID) }

func (b *Bundle) paths() cleanup.BundlePaths {
	return cleanup.BundlePaths{StateDir: b.StateDir, RootDir: b.RootDir, Namespace: b.Namespace, ID: b.ID}
}

// Delete unmounts the bundle's rootfs and removes the bundle and its work
// dir crash-safely. It is idempotent.
func (b *Bundle) Delete() error {
	return cleanup.DeleteBundle(b.paths())
}

// NewBundle creates a bundle exactly as stock containerd does: the bundle
// dir (0700, or 0710 owned by the remapped root GID under user
// namespaces), rootfs/ (0711), a fresh work dir (0711; an existing one is
// reset), the "work" symlink to it, and config.json holding the spec bytes
// unchanged. On error everything it created is removed again.
func NewBundle(ctx context.Context, stateDir, rootDir, id string, spec typeurl.Any) (_ *Bundle, retErr error) {
	if err := identifiers.Validate(id); err != nil {
		return nil, fmt.Errorf("invalid task id %s: %w", id, err)
	}
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	b := LoadBundle(stateDir, rootDir, ns, id)
	work := b.WorkDir()

	var created []string
	defer func() {
		if retErr != nil {
			for i := len(created) - 1; i >= 0; i-- {
				dir := stateDir
				if created[i] == work {
					dir = rootDir
				}
				_ = cleanup.Remove(dir, created[i])
			}
		}
	}()

	// 0711 so that userns-remapped containers can traverse it.
	if err := os.MkdirAll(filepath.Dir(b.Path), 0o711); err != nil {
		return nil, err
	}
	if err := os.Mkdir(b.Path, 0o700); err != nil {
		return nil, err
	}
	created = append(created, b.Path)
	if typeurl.Is(spec, &specs.Spec{}) {
		if err := remapBundlePermissions(b.Path, spec.GetValue()); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Dir(work), 0o711); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(b.Path, layout.DirRootfs), 0o711); err != nil {
		return nil, err
	}
	if err := os.Mkdir(work, 0o711); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		if err := cleanup.Remove(rootDir, work); err != nil {
			return nil, fmt.Errorf("reset work dir %s: %w", work, err)
		}
		if err := os.Mkdir(work, 0o711); err != nil {
			return nil, err
		}
	}
	created = append(created, work)
	if err := os.Symlink(work, filepath.Join(b.Path, layout.FileWork)); err != nil {
		return nil, err
	}
	// Some sandboxers send no spec.
	if spec != nil && spec.GetValue() != nil {
		if err := os.WriteFile(filepath.Join(b.Path, oci.ConfigFilename), spec.GetValue(), 0o666); err != nil {
			return nil, fmt.Errorf("failed to write bundle spec: %w", err)
		}
	}
	return b, nil
}

// remapBundlePermissions gives the remapped root group of a user-namespaced
// container access to the bundle: chown to that GID and chmod 0710.
func remapBundlePermissions(path string, spec []byte) error {
	gid, err := remappedRootGID(spec)
	if err != nil || gid == 0 {
		return err
	}
	if err := os.Chown(path, -1, int(gid)); err != nil {
		return err
	}
	return os.Chmod(path, 0o710)
}

// remappedRootGID returns the host GID that container GID 0 maps to, or 0
// when the spec maps no groups.
func remappedRootGID(spec []byte) (uint32, error) {
	var s struct {
		Linux *struct {
			GIDMappings []specs.LinuxIDMapping `json:"gidMappings,omitempty"`
		} `json:"linux,omitempty"`
	}
	if err := json.Unmarshal(spec, &s); err != nil {
		return 0, err
	}
	if s.Linux == nil {
		return 0, nil
	}
	for _, m := range s.Linux.GIDMappings {
		if m.ContainerID == 0 {
			return m.HostID, nil
		}
	}
	return 0, nil
}

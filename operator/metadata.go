package operator

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/metadata"
	"github.com/containerd/containerd/v2/core/sandbox"
)

// lockTimeout bounds the wait for the metadata database's lock: a running
// daemon holds it exclusively for as long as it runs.
const lockTimeout = time.Second

// errLocked is returned when the metadata database is held by a daemon.
var errLocked = errors.New("is locked: is containerd running? stop it first")

// openMetadata opens the daemon's metadata database read-only and returns
// its container and sandbox stores. A missing or empty file is an error
// (bbolt would create or initialise one); so is a lock not granted within
// lockTimeout.
func openMetadata(path string) (containers.Store, sandbox.Store, func() error, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil, nil, fmt.Errorf("metadata database %s does not exist: has containerd run with this root dir?", path)
	case err != nil:
		return nil, nil, nil, fmt.Errorf("metadata database %s: %w", path, unwrapPath(err))
	case !fi.Mode().IsRegular():
		return nil, nil, nil, fmt.Errorf("metadata database %s is not a regular file", path)
	case fi.Size() == 0:
		return nil, nil, nil, fmt.Errorf("metadata database %s is empty: corrupt?", path)
	}
	db, err := bolt.Open(path, 0o444, &bolt.Options{
		ReadOnly:     true,
		Timeout:      lockTimeout,
		NoStatistics: true,
		// Never create: OpenFile without O_CREATE whatever bbolt does.
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			return os.OpenFile(name, flag&^(os.O_CREATE|os.O_RDWR|os.O_WRONLY|os.O_TRUNC|os.O_APPEND), perm)
		},
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, nil, nil, fmt.Errorf("metadata database %s %w", path, errLocked)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("metadata database %s cannot be read (corrupt?): %w", path, unwrapPath(err))
	}
	mdb := metadata.NewDB(db, nil, nil)
	return safeContainers{metadata.NewContainerStore(mdb)}, safeSandboxes{metadata.NewSandboxStore(mdb)}, db.Close, nil
}

// errReadOnly refuses every write: the operator commands never write.
var errReadOnly = fmt.Errorf("metadata is opened read-only: %w", errdefs.ErrNotImplemented)

// safeContainers serves container lookups and turns a panic of bbolt on
// a corrupt page into an error (lookups run in the scan's goroutines, where
// a panic could not be recovered by the caller). Writes are refused.
type safeContainers struct{ s containers.Store }

func (c safeContainers) Get(ctx context.Context, id string) (_ containers.Container, err error) {
	defer recoverTo(&err)
	return c.s.Get(ctx, id)
}

func (c safeContainers) List(ctx context.Context, filters ...string) (_ []containers.Container, err error) {
	defer recoverTo(&err)
	return c.s.List(ctx, filters...)
}

func (safeContainers) Create(context.Context, containers.Container) (containers.Container, error) {
	return containers.Container{}, errReadOnly
}

func (safeContainers) Update(context.Context, containers.Container, ...string) (containers.Container, error) {
	return containers.Container{}, errReadOnly
}

func (safeContainers) Delete(context.Context, string) error { return errReadOnly }

// safeSandboxes is safeContainers for sandbox records.
type safeSandboxes struct{ s sandbox.Store }

func (c safeSandboxes) Get(ctx context.Context, id string) (_ sandbox.Sandbox, err error) {
	defer recoverTo(&err)
	return c.s.Get(ctx, id)
}

func (c safeSandboxes) List(ctx context.Context, filters ...string) (_ []sandbox.Sandbox, err error) {
	defer recoverTo(&err)
	return c.s.List(ctx, filters...)
}

func (safeSandboxes) Create(context.Context, sandbox.Sandbox) (sandbox.Sandbox, error) {
	return sandbox.Sandbox{}, errReadOnly
}

func (safeSandboxes) Update(context.Context, sandbox.Sandbox, ...string) (sandbox.Sandbox, error) {
	return sandbox.Sandbox{}, errReadOnly
}

func (safeSandboxes) Delete(context.Context, string) error { return errReadOnly }

var (
	_ containers.Store = safeContainers{}
	_ sandbox.Store    = safeSandboxes{}
)

func recoverTo(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("metadata database unreadable (corrupt?): %v", r)
	}
}

package loader

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/shimkeeper/shimkeeper/cleanup"
)

// cleanupOrphans finishes interrupted atomic removals in the state and
// root dirs and lists work dirs whose bundle is absent.
func cleanupOrphans(o Options) ([]string, error) {
	_, err1 := cleanup.FinishAllPending(o.StateDir)
	_, err2 := cleanup.FinishAllPending(o.RootDir)
	orphans, err3 := cleanup.OrphanWorkDirs(o.StateDir, o.RootDir)
	if err1 != nil {
		return orphans, err1
	}
	if err2 != nil {
		return orphans, err2
	}
	return orphans, err3
}

// orphanedWorkDir reports whether the work dir of ns/id has (still) no
// bundle beside it.
func orphanedWorkDir(o Options, ns, id string) (bool, error) {
	_, err := os.Lstat(filepath.Join(o.StateDir, ns, id))
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	return false, err
}

func removeWorkDir(o Options, ns, id string) error {
	return cleanup.AtomicRemove(o.RootDir, filepath.Join(o.RootDir, ns, id))
}

// listOrphans lists, without removing anything, the work dirs a pass
// would remove.
func listOrphans(o Options) ([]string, error) {
	return cleanup.OrphanWorkDirs(o.StateDir, o.RootDir)
}

package cleanup

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/shimkeeper/shimkeeper/layout"
)

// namespaceDirs lists the namespace dirs directly below dir: real
// directories (never symlinks) whose name does not start with a dot. A
// missing dir has none.
func namespaceDirs(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && !layout.Hidden(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// OrphanWorkDirs lists the work dirs under <root>/<ns>/ of every namespace
// whose bundle <state>/<ns>/<id> does not exist (as anything: a bundle that
// is a file or a symlink still protects its work dir). That covers
// namespaces whose state dir a reboot wiped. It reads only; it returns
// "<ns>/<id>" names. Dot-names are not listed (see FinishPending).
func OrphanWorkDirs(stateDir, rootDir string) ([]string, error) {
	nss, err := namespaceDirs(rootDir)
	if err != nil {
		return nil, err
	}
	var out []string
	var errs []error
	for _, ns := range nss {
		entries, err := os.ReadDir(filepath.Join(rootDir, ns))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range entries {
			id := e.Name()
			if layout.Hidden(id) {
				continue
			}
			_, err := os.Lstat(filepath.Join(stateDir, ns, id))
			if errors.Is(err, fs.ErrNotExist) {
				out = append(out, ns+"/"+id)
			} else if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return out, errors.Join(errs...)
}

// FinishAllPending finishes interrupted atomic removals (dot-names) in
// every namespace dir under dir. It returns "<ns>/<name>" of each.
func FinishAllPending(dir string) ([]string, error) {
	nss, err := namespaceDirs(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	var errs []error
	for _, ns := range nss {
		done, err := FinishPending(dir, filepath.Join(dir, ns))
		for _, d := range done {
			out = append(out, ns+"/"+d)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

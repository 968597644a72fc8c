package cleanup

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// OrphanWorkDirs lists the work dirs under <root>/<ns>/ of every namespace
// whose bundle <state>/<ns>/<id> does not exist (as anything: a bundle that
// is a file or a symlink still protects its work dir). That covers
// namespaces whose state dir a reboot wiped. It reads only; it returns
// "<ns>/<id>" names. Dot-names are not listed (see FinishPending).
func OrphanWorkDirs(stateDir, rootDir string) ([]string, error) {
	nss, err := os.ReadDir(rootDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	var errs []error
	for _, ns := range nss {
		if !ns.IsDir() || strings.HasPrefix(ns.Name(), ".") {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(rootDir, ns.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range entries {
			id := e.Name()
			if strings.HasPrefix(id, ".") {
				continue
			}
			_, err := os.Lstat(filepath.Join(stateDir, ns.Name(), id))
			if errors.Is(err, fs.ErrNotExist) {
				out = append(out, ns.Name()+"/"+id)
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
	nss, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	var errs []error
	for _, ns := range nss {
		if !ns.IsDir() || strings.HasPrefix(ns.Name(), ".") {
			continue
		}
		done, err := FinishPending(dir, filepath.Join(dir, ns.Name()))
		for _, d := range done {
			out = append(out, ns.Name()+"/"+d)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

package layout

import (
	"path/filepath"
	"strings"
)

// Dot-names. A name that starts with a dot is never a namespace, a bundle
// or a work dir: every scanner skips it. shimkeeper makes two kinds of
// them, in the dirs it scans:
//
//   - ".<name>": a directory being removed (renamed first, so that a
//     crash leaves a dot-name to finish rather than half a bundle);
//   - TempPrefix+"<name>.<random>": the temp file of WriteFileAtomic.

// TempPrefix starts the name of every temp file of WriteFileAtomic.
const TempPrefix = ".shimkeeper-tmp-"

// Hidden reports whether a dir entry's name is a dot-name, which no
// scanner takes for a namespace, bundle or work dir.
func Hidden(name string) bool { return strings.HasPrefix(name, ".") }

// PendingRemoval is where a removal renames path first: ".<base>" in the
// same parent. path must not be hidden already.
func PendingRemoval(path string) string {
	path = filepath.Clean(path)
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path))
}

// IsPendingRemoval reports whether a dir entry's name may be one that an
// interrupted removal left: a dot-name other than "." and "..".
func IsPendingRemoval(name string) bool {
	return len(name) >= 2 && name[0] == '.' && name != ".."
}

// IsTemp reports whether a dir entry's name is a temp file of
// WriteFileAtomic.
func IsTemp(name string) bool { return strings.HasPrefix(name, TempPrefix) }

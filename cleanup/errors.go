package cleanup

import "errors"

// ErrOutside is returned for a path that is not strictly inside the
// directory it must be confined to.
var ErrOutside = errors.New("path is outside its confining directory")

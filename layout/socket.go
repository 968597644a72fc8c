package layout

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/defaults"
)

// MaxSocketDirLen is the longest socket dir a shim socket fits in: a unix
// socket path holds 107 bytes and the socket is <dir>/<64 hex chars>.
const MaxSocketDirLen = 107 - 1 - 64

// RootSocketDir is root's shim socket dir, stock's default:
// /run/containerd/s.
var RootSocketDir = filepath.Join(defaults.DefaultStateDir, "s")

// SocketDirCandidates are stock's default socket dirs in order of
// preference: RootSocketDir (root's, always), then for another user
// $XDG_RUNTIME_DIR/containerd/s (when xdgRuntimeDir is set),
// /run/<uid>/containerd/s and /tmp/containerd-s-<uid>.
func SocketDirCandidates(uid int, xdgRuntimeDir string) []string {
	candidates := []string{RootSocketDir}
	if uid == 0 {
		return candidates
	}
	if xdgRuntimeDir != "" {
		candidates = append(candidates, filepath.Join(xdgRuntimeDir, "containerd", "s"))
	}
	return append(candidates, fmt.Sprintf("/run/%d/containerd/s", uid), fmt.Sprintf("/tmp/containerd-s-%d", uid))
}

// ShimSocketAddress is where a stock-protocol shim of ns/id listens when
// it is not grouped, as stock's shim.CreateSocketAddress computes it:
// unix://<socketDir>/<sha256 of grpcAddress/ns/id>, with "/debug" after
// the id for the debug socket.
func ShimSocketAddress(socketDir, grpcAddress, ns, id string, debug bool) string {
	path := filepath.Join(grpcAddress, ns, id)
	if debug {
		path = filepath.Join(path, "debug")
	}
	return fmt.Sprintf("unix://%s/%x", socketDir, sha256.Sum256([]byte(path)))
}

// SocketPath returns the file of a unix:// address; ok is false for any
// other address (abstract, vsock, ...).
func SocketPath(address string) (path string, ok bool) {
	return strings.CutPrefix(address, "unix://")
}

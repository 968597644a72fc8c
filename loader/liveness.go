package loader

import (
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"

	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/lifecycle"
	"github.com/shimkeeper/shimkeeper/proc"
)

// procSource hands out /proc snapshots to the workers of a pass, one
// snapshot for every probe that ended before it was taken, so that many
// shims found gone at once cost one read of /proc.
type procSource struct {
	mu  sync.Mutex
	at  time.Time
	x   *proc.Index
	err error
}

// get returns a snapshot taken no earlier than notBefore: a process seen
// gone in it was gone after the probe that found its socket gone.
func (p *procSource) get(notBefore time.Time) (*proc.Index, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.at.IsZero() || p.at.Before(notBefore) {
		p.at = time.Now()
		p.x, p.err = proc.Snapshot(proc.Root)
	}
	return p.x, p.err
}

// shimProcess looks for what may still be the shim of an entry whose
// socket was found gone: a listener bound to one of its addresses (a
// removed socket file keeps its bound name while the shim runs), or a
// process started as its shim instance (this id, or the sandbox it
// joined). The snapshot is taken after the probe began.
func shimProcess(ps *procSource, s *scanned, candidates []*bootapi.BootstrapResult, probed time.Time) lifecycle.Presence {
	if ps == nil {
		s.note("shim process: not looked up")
		return lifecycle.PresenceUnknown
	}
	x, err := ps.get(probed)
	if err != nil {
		s.note("shim process: " + err.Error())
		return lifecycle.PresenceUnknown
	}
	for _, c := range candidates {
		if x.Listening(c.Address) {
			s.note("a socket bound to " + c.Address + " still listens: the shim runs on without its socket file")
			return lifecycle.PresenceFound
		}
	}
	ids := []string{s.obs.ID}
	if s.obs.Joined {
		if sb, err := readSmallRegular(filepath.Join(s.bundle.Path, layout.FileSandbox)); err == nil {
			ids = append(ids, sb)
		}
	}
	if pids := x.ShimPIDs(s.obs.Namespace, ids...); len(pids) > 0 {
		s.note("shim process " + joinInts(pids) + " runs as " + s.obs.Namespace + "/" + strings.Join(ids, "|"))
		return lifecycle.PresenceFound
	}
	return lifecycle.PresenceAbsent
}

// initProcess reports whether the pid in the bundle's init.pid (the
// task's first process, written by the runc shim) is alive.
func initProcess(s *scanned) lifecycle.Presence {
	text, err := readSmallRegular(filepath.Join(s.bundle.Path, layout.FileInitPid))
	if err != nil {
		return lifecycle.PresenceUnknown
	}
	pid, err := strconv.Atoi(text)
	if err != nil || pid <= 0 {
		s.note("init.pid: not a pid: " + strconv.Quote(text))
		return lifecycle.PresenceUnknown
	}
	st, err := proc.Stat(proc.Root, pid)
	switch {
	case err != nil:
		s.note("init process: " + err.Error())
		return lifecycle.PresenceUnknown
	case !st.Exists || st.Zombie:
		return lifecycle.PresenceAbsent
	}
	s.note("container process " + strconv.Itoa(pid) + " is alive")
	return lifecycle.PresenceFound
}

// readSmallRegular reads a small regular file of a bundle, trimmed; a
// FIFO, symlink or anything else is refused, never opened for reading.
func readSmallRegular(path string) (string, error) {
	data, err := layout.ReadRegular(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(data)), nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

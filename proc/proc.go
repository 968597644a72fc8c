// Package proc reads process identity from /proc: which shim processes run
// and which unix sockets are listening. Recovery uses it so that a shim is
// never taken for dead on its socket alone (a socket file can be removed
// while the shim that listens on it runs on), and Create uses it to find
// the process of a shim it started and must stop.
//
// Every check here is independent of the wall clock: start times are
// compared in clock ticks since boot (CLOCK_BOOTTIME), which no clock step
// moves. It reads only; killing lives in cleanup/.
package proc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Root is where procfs is mounted.
const Root = "/proc"

// soAcceptCon is __SO_ACCEPTCON in /proc/net/unix's Flags: a listening
// socket.
const soAcceptCon = 0x10000

// Index is a snapshot of the listening unix sockets of this network
// namespace and of the processes whose command line names a shim instance
// (-namespace NS -id ID, as every runtime v2 shim is started).
type Index struct {
	// listeners: bound path (abstract names as "@name") → socket inodes.
	listeners map[string][]uint64
	// shims: "ns/id" → pids.
	shims map[string][]int
}

// Snapshot reads the index from root (normally Root). An error means the
// index cannot tell absence from presence; callers must then treat every
// process as possibly alive.
func Snapshot(root string) (*Index, error) {
	x := &Index{listeners: map[string][]uint64{}, shims: map[string][]int{}}
	if err := x.readListeners(filepath.Join(root, "net", "unix")); err != nil {
		return nil, err
	}
	if err := x.readShims(root); err != nil {
		return nil, err
	}
	return x, nil
}

func (x *Index) readListeners(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read listening sockets: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	first := true
	for sc.Scan() {
		if first { // header
			first = false
			continue
		}
		// Num RefCount Protocol Flags Type St Inode [Path]
		f := strings.Fields(sc.Text())
		if len(f) < 8 {
			continue
		}
		flags, err := strconv.ParseUint(f[3], 16, 64)
		if err != nil || flags&soAcceptCon == 0 {
			continue
		}
		inode, err := strconv.ParseUint(f[6], 10, 64)
		if err != nil {
			continue
		}
		p := strings.Join(f[7:], " ")
		x.listeners[p] = append(x.listeners[p], inode)
	}
	return sc.Err()
}

func (x *Index) readShims(root string) error {
	ents, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("list processes: %w", err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		// A process that exits meanwhile is simply not listed; a zombie
		// has an empty command line.
		cmd, err := os.ReadFile(filepath.Join(root, e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if ns, id, ok := ShimInstance(cmd); ok {
			k := ns + "/" + id
			x.shims[k] = append(x.shims[k], pid)
		}
	}
	return nil
}

// ShimInstance parses a NUL-separated command line for the -namespace and
// -id flags (either spelling Go's flag package accepts: -x v, --x v, -x=v).
func ShimInstance(cmdline []byte) (ns, id string, ok bool) {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	for i := 0; i < len(args); i++ {
		name, val, hasVal := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !strings.HasPrefix(args[i], "-") || (name != "namespace" && name != "id") {
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				break
			}
			i++
			val = args[i]
		}
		if name == "namespace" {
			ns = val
		} else {
			id = val
		}
	}
	return ns, id, ns != "" && id != ""
}

// Listening reports whether a unix socket bound to path is listening,
// whether or not its file still exists (a removed socket file keeps its
// bound name here as long as the listener lives). path may be a
// "unix://" address.
func (x *Index) Listening(path string) bool {
	return len(x.listeners[socketName(path)]) > 0
}

// ShimPIDs returns the pids of the processes started as shim instance id
// (any of ids) of namespace ns.
func (x *Index) ShimPIDs(ns string, ids ...string) []int {
	var out []int
	for _, id := range ids {
		if id != "" {
			out = append(out, x.shims[ns+"/"+id]...)
		}
	}
	return out
}

// socketName is how /proc/net/unix prints the socket of an address.
func socketName(addr string) string {
	p := strings.TrimPrefix(addr, "unix://")
	if strings.HasPrefix(p, "\x00") {
		return "@" + p[1:]
	}
	return p
}

// State of one process, from /proc/<pid>/stat.
type State struct {
	// Exists: there is a process (or zombie) with this pid.
	Exists bool
	// Zombie: it has exited and waits to be reaped (states Z and X).
	Zombie bool
	// StartTicks: its start, in clock ticks since boot.
	StartTicks uint64
}

// Stat reads /proc/<pid>/stat under root.
func Stat(root string, pid int) (State, error) {
	data, err := os.ReadFile(filepath.Join(root, strconv.Itoa(pid), "stat"))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
		return State{}, nil
	}
	if err != nil {
		return State{}, err
	}
	// The command name is in parentheses and may hold anything: the
	// fields after it start at the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return State{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state); starttime is field 22.
	if len(f) < 20 {
		return State{}, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return State{}, fmt.Errorf("parse /proc/%d/stat start time: %w", pid, err)
	}
	return State{Exists: true, Zombie: f[0] == "Z" || f[0] == "X", StartTicks: start}, nil
}

// ticksPerSecond is USER_HZ, which /proc reports times in; 100 on every
// Linux architecture Go supports.
const ticksPerSecond = 100

// NowTicks is the current time in the clock /proc start times use: clock
// ticks since boot, suspend included.
func NowTicks() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return uint64(ts.Sec)*ticksPerSecond + uint64(ts.Nsec)/(1e9/ticksPerSecond)
}

// ListenerPIDs returns the processes that hold a listening unix socket
// bound to path (a "unix://" address or a path) in the snapshot, by
// matching the sockets' inodes with every process's open files under
// root. It reads only.
func (x *Index) ListenerPIDs(root, path string) ([]int, error) {
	inodes := x.listeners[socketName(path)]
	if len(inodes) == 0 {
		return nil, nil
	}
	want := map[string]bool{}
	for _, in := range inodes {
		want["socket:["+strconv.FormatUint(in, 10)+"]"] = true
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		fdDir := filepath.Join(root, e.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && want[l] {
				out = append(out, pid)
				break
			}
		}
	}
	return out, nil
}

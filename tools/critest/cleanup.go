package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// libcni caches each attachment's result here as
// <network>-<container id>-<ifname>; CRI has no setting for it.
const cniResults = "/var/lib/cni/results"

// cleanup kills the daemon and every process that names its dir (shims
// carry -address <dir>/c.sock), with their descendants (the containers),
// by PID; then unmounts what is left under the dir, deletes the bridge and
// the network's libcni cache entries. Errors are printed, not returned:
// it always does all of it.
func (d *daemon) cleanup() {
	if d.cmd != nil {
		select {
		case <-d.exited:
		default:
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	}
	for round := 0; round < 5; round++ { // a dying shim reparents its children
		procs := listProcs()
		var roots []int
		for _, p := range procs {
			if p.pid != os.Getpid() && strings.Contains(p.cmdline, d.dir+"/") {
				roots = append(roots, p.pid)
			}
		}
		pids := append(roots, descendants(procs, roots)...)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		waitGone(pids, 10*time.Second)
		if round == 4 {
			warn("processes %v survived SIGKILL", pids)
		}
	}
	for _, err := range unmountAll(d.dir) {
		warn("%v", err)
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", d.bridge)); err == nil {
		if err := deleteBridge(d.bridge); err != nil {
			warn("%v", err)
		}
	}
	entries, _ := os.ReadDir(cniResults)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), d.network+"-") {
			if err := os.Remove(filepath.Join(cniResults, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				warn("%v", err)
			}
		}
	}
}

func warn(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "critest: cleanup: "+format+"\n", args...)
}

type proc struct {
	pid, ppid int
	cmdline   string
}

// listProcs reads every process's parent and command line from /proc.
func listProcs() []proc {
	entries, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parens.
		i := strings.LastIndexByte(string(stat), ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out = append(out, proc{pid: pid, ppid: ppid, cmdline: strings.ReplaceAll(string(cmdline), "\x00", " ")})
	}
	return out
}

// descendants are the pids below roots in the process tree.
func descendants(procs []proc, roots []int) []int {
	children := map[int][]int{}
	for _, p := range procs {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	var out []int
	queue := append([]int(nil), roots...)
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// waitGone polls until none of pids is alive (or a zombie only).
func waitGone(pids []int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		alive := false
		for _, pid := range pids {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
				s := string(b)
				if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 && f[0] != "Z" {
					alive = true
				}
			}
		}
		if !alive {
			return
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}

// unmountAll lazily unmounts everything at or below dir, deepest first.
func unmountAll(dir string) []error {
	var errs []error
	for pass := 0; pass < 5; pass++ { // stacked mounts need more than one pass
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			return []error{err}
		}
		var mps []string
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 4 {
				mp := unescape(f[4])
				if mp == dir || strings.HasPrefix(mp, dir+"/") {
					mps = append(mps, mp)
				}
			}
		}
		if len(mps) == 0 {
			return nil
		}
		sort.Slice(mps, func(i, j int) bool { return strings.Count(mps[i], "/") > strings.Count(mps[j], "/") })
		errs = errs[:0]
		for _, mp := range mps {
			if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
			}
		}
	}
	return errs
}

// unescape undoes mountinfo's \ooo octal escapes.
func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// deleteBridge sets the bridge down and deletes it with the bridge ioctls
// (no iproute2 needed).
func deleteBridge(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bridge %s: get flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() &^ unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bridge %s: set down: %w", name, err)
	}
	var buf [unix.IFNAMSIZ]byte
	copy(buf[:], name)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCBRDELBR, uintptr(unsafe.Pointer(&buf[0]))); errno != 0 {
		return fmt.Errorf("bridge %s: delete: %w", name, errno)
	}
	return nil
}

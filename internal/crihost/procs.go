package crihost

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is what the tests and the critest driver need to know of one
// process, from /proc.
type Proc struct {
	PID     int
	PPID    int
	State   byte   // R, S, D, Z, ...
	Cmdline string // argv joined by NUL, as in /proc/<pid>/cmdline
}

// Args returns the process's argv.
func (p Proc) Args() []string { return strings.Split(strings.TrimRight(p.Cmdline, "\x00"), "\x00") }

// Alive reports whether the process is neither a zombie nor dead.
func (p Proc) Alive() bool { return p.State != 'Z' && p.State != 'X' }

// ReadProc reads /proc/<pid>; ok is false if the process is gone.
func ReadProc(pid int) (p Proc, ok bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Proc{}, false
	}
	// pid (comm) state ppid ...; comm may contain spaces and parentheses.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return Proc{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return Proc{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return Proc{PID: pid, PPID: ppid, State: f[0][0], Cmdline: string(cmdline)}, true
}

// ListProcs returns every process on the machine.
func ListProcs() map[int]Proc {
	procs := map[int]Proc{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := ReadProc(pid); ok {
			procs[pid] = p
		}
	}
	return procs
}

// PIDAlive reports whether pid exists and is not a zombie.
func PIDAlive(pid int) bool {
	p, ok := ReadProc(pid)
	return ok && p.Alive()
}

// Descendants returns the pids of all descendants of roots (roots
// excluded), parents before children.
func Descendants(procs map[int]Proc, roots []int) []int {
	children := map[int][]int{}
	for _, p := range procs {
		children[p.PPID] = append(children[p.PPID], p.PID)
	}
	var out []int
	queue := append([]int{}, roots...)
	seen := map[int]bool{}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	return out
}

// KillPIDs SIGKILLs each pid (never pid 1 or this process) and polls
// until none is alive or timeout has passed; it returns the pids still
// alive then.
func KillPIDs(pids []int, timeout time.Duration) []int {
	for _, pid := range pids {
		if pid > 1 && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		var alive []int
		for _, pid := range pids {
			if PIDAlive(pid) {
				alive = append(alive, pid)
			}
		}
		if len(alive) == 0 || time.Now().After(deadline) {
			return alive
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

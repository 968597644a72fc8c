package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shimkeeper/shimkeeper/internal/testshim"
)

// cgroupDirs lists the cgroup dirs of the bench namespace (runc puts the
// containers under /sys/fs/cgroup/<controller>/<namespace>/<id>).
func cgroupDirs() []string {
	var out []string
	for _, pat := range []string{"/sys/fs/cgroup/" + namespace, "/sys/fs/cgroup/*/" + namespace} {
		m, _ := filepath.Glob(pat)
		out = append(out, m...)
	}
	sort.Strings(out)
	return out
}

var cgroupsBefore = map[string]bool{}

func init() {
	for _, d := range cgroupDirs() {
		cgroupsBefore[d] = true
	}
}

// procsInTmp lists the processes whose command line mentions the temp dir
// (daemons, shims, synthshim), other than this one.
func (b *bench) procsInTmp() []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cl, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if bytes.Contains(cl, []byte(b.tmp+"/")) {
			out = append(out, pid)
		}
	}
	return out
}

func (b *bench) mountsInTmp() []string {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (f[4] == b.tmp || strings.HasPrefix(f[4], b.tmp+"/")) {
			out = append(out, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out
}

// runcDeleteAll kills and deletes every container runc knows in the
// bench's runc root for namespace ns.
func (b *bench) runcDeleteAll(ns string) {
	nsRoot := filepath.Join(b.runcRoot(), ns)
	if !exists(nsRoot) {
		return
	}
	out, _ := exec.Command(filepath.Join(b.o.bin, "runc"), "--root", nsRoot, "list", "-q").Output()
	for _, id := range strings.Fields(string(out)) {
		fmt.Printf("cleanup: runc delete --force %s\n", id)
		_ = exec.Command(filepath.Join(b.o.bin, "runc"), "--root", nsRoot, "delete", "--force", id).Run()
	}
}

// cleanup stops everything this run started, by PID, and removes the temp
// dir; it reports anything it could not remove.
func (b *bench) cleanup() {
	for len(b.live) > 0 {
		_ = b.stopDaemon(b.live[0])
	}
	if b.synth != nil && b.synth.Process != nil {
		_ = b.synth.Process.Signal(syscall.SIGTERM)
		for i := 0; i < 100 && syscall.Kill(b.synthPID, 0) == nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
		_ = b.synth.Process.Kill()
	}
	// Containers runc still knows (their shims gone): kill and delete.
	b.runcDeleteAll(namespace)
	b.runcDeleteAll(criNamespace)
	for _, pid := range b.procsInTmp() {
		cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		fmt.Printf("cleanup: killing leftover process %d: %s\n", pid, strings.ReplaceAll(string(cl), "\x00", " "))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for i := 0; i < 100 && len(b.procsInTmp()) > 0; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	for _, m := range b.mountsInTmp() {
		fmt.Printf("cleanup: unmounting %s\n", m)
		if err := syscall.Unmount(m, 0); err != nil {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	for _, d := range cgroupDirs() {
		if cgroupsBefore[d] {
			continue
		}
		_ = testshim.RmdirTree(d) // best effort: a cgroup with processes left stays
	}
	// A CRI case cut short: its registry, bridge and libcni cache
	// entries (its pods' netns are unmounted above).
	var leaks []string
	if b.cri != nil {
		for _, err := range b.cri.teardown() {
			fmt.Printf("cleanup: %v\n", err)
		}
		leaks = append(leaks, b.cri.leaks()...)
	}
	if p := b.procsInTmp(); len(p) > 0 {
		leaks = append(leaks, fmt.Sprintf("processes %v", p))
	}
	if m := b.mountsInTmp(); len(m) > 0 {
		leaks = append(leaks, fmt.Sprintf("mounts %v", m))
	}
	if b.o.keep {
		fmt.Printf("\nkept %s (logs in %s)\n", b.tmp, b.logDir)
	} else if len(leaks) == 0 {
		if err := os.RemoveAll(b.tmp); err != nil {
			leaks = append(leaks, "temp dir: "+err.Error())
		}
	}
	for _, d := range cgroupDirs() {
		if !cgroupsBefore[d] {
			leaks = append(leaks, "cgroup "+d)
		}
	}
	if len(leaks) > 0 {
		fmt.Printf("\nLEFT BEHIND: %s\n", strings.Join(leaks, "; "))
	} else {
		fmt.Printf("\ncleanup: every process started was stopped; nothing left behind\n")
	}
}

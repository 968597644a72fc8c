package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/shimkeeper/shimkeeper/internal/crihost"
)

// cniResults is where libcni caches each attachment's result, as
// <network>-<sandbox id>-<ifname>; CRI has no setting for it. The
// loopback attachments are CRI's network "cni-loopback", so entries are
// told apart by the netns path they record, which is under the daemon's
// state dir (netns_mounts_under_state_dir).
const cniResults = "/var/lib/cni/results"

// cleanup kills the daemon and every process that names its dir (shims
// carry -address <dir>/c.sock, the containers are their descendants), by
// PID; then it deletes what runc still knows, unmounts what is left under
// the dir, deletes the bridge and the libcni cache entries of the
// daemon's pods. It always does all of it,
// prints what failed and reports whether nothing is left, which is when
// the dir may be removed.
func (d *daemon) cleanup() bool {
	ok := true
	warn := func(format string, args ...any) {
		ok = false
		fmt.Fprintf(os.Stderr, "critest: %s: cleanup: "+format+"\n", append([]any{d.name}, args...)...)
	}
	if d.cmd != nil {
		select {
		case <-d.exited:
		default:
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	}
	for round := 0; round < 5; round++ { // a dying shim reparents its children
		procs := crihost.ListProcs()
		var roots []int
		for _, p := range procs {
			if p.Alive() && strings.Contains(p.Cmdline, d.dir+"/") {
				roots = append(roots, p.PID)
			}
		}
		pids := append(roots, crihost.Descendants(procs, roots)...)
		if len(pids) == 0 {
			break
		}
		fmt.Printf("cleanup: %s: killing %d leftover processes %v\n", d.name, len(pids), pids)
		if alive := crihost.KillPIDs(pids, 10*time.Second); len(alive) > 0 && round == 4 {
			warn("processes %v survived SIGKILL", alive)
		}
	}
	// Containers runc still knows (a spec that failed before removing
	// its pod; their processes are gone now): runc delete removes their
	// cgroups and state.
	for _, c := range d.runcContainers() {
		if out, err := exec.Command(filepath.Join(d.bin, "runc"), "--root", c.root, "delete", "--force", c.id).CombinedOutput(); err != nil {
			warn("runc delete %s: %v: %s", c.id, err, out)
		}
	}
	for _, err := range crihost.UnmountAll(d.dir) {
		warn("%v", err)
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", d.bridge)); err == nil {
		if err := crihost.DeleteBridge(d.bridge); err != nil {
			warn("%v", err)
		}
	}
	for _, path := range cniCacheUnder(d.dir) {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			warn("%v", err)
		}
	}
	return ok
}

// runcContainer is one container in the daemon's runc root: runc keeps
// them as <root>/<namespace>/<id>.
type runcContainer struct{ root, id string }

func (d *daemon) runcContainers() []runcContainer {
	var out []runcContainer
	namespaces, _ := os.ReadDir(d.runcRoot)
	for _, ns := range namespaces {
		root := filepath.Join(d.runcRoot, ns.Name())
		ids, _ := os.ReadDir(root)
		for _, id := range ids {
			out = append(out, runcContainer{root, id.Name()})
		}
	}
	return out
}

// cniCacheUnder lists libcni's cached results whose netns is below dir.
func cniCacheUnder(dir string) []string {
	entries, _ := os.ReadDir(cniResults)
	var out []string
	for _, e := range entries {
		path := filepath.Join(cniResults, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var cached struct {
			NetNS string `json:"netns"`
		}
		if json.Unmarshal(b, &cached) == nil && strings.HasPrefix(cached.NetNS, dir+"/") {
			out = append(out, path)
		}
	}
	return out
}

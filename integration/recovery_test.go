//go:build integration

package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shimkeeper/shimkeeper/internal/crihost"
	"github.com/shimkeeper/shimkeeper/internal/testshim"
	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/loader"
)

// Recovery after a restart ("Existing-shim recovery"): what ctr shows and
// what the recovery report says, for each kind of state the daemon finds.

// TestRecoveryDeadShim SIGKILLs shims while the daemon is down. Their
// container processes outlive them; recovery must clean up after each
// (`shim delete` kills the container, bundle, work dir, socket and mounts
// go), publish its /tasks/exit and /tasks/delete once clients can
// subscribe, and let a new task of the same id start, even right away
// while the cleanup may still run.
//
// Two of the dead containers have their shim binary replaced by a wrapper
// whose `delete` waits on a FIFO until the test releases it, then runs the
// real runc shim's delete: "again", whose new task is started while its
// old bundle is being cleaned up, and "slow", which keeps the pass's
// background work going until the test has subscribed to events. The exit
// events are published when that work is done and the daemon serves; a
// subscriber can only connect once the daemon serves, so without "slow" it
// would race the publication.
func TestRecoveryDeadShim(t *testing.T) {
	t.Parallel()
	requireOurs(t, "cleans up dead shims during plugin init, before a client can subscribe to their /tasks/exit, and writes no report")
	d := newDaemon(t)
	ns := d.NS
	live := d.mustRunSleeper(ns, "live")
	liveShim := recShimPID(t, d, ns, "live")
	dead := map[string]task{}
	shims := map[string]int{}
	for _, id := range []string{"dead", "again", "slow"} {
		dead[id] = d.mustRunSleeper(ns, id)
		shims[id] = recShimPID(t, d, ns, id)
	}
	deadSocket := recShimAddress(t, d, ns, "dead")
	t.Logf("mounts under the bundle of dead before: %q", crihost.MountsUnder(recBundle(d, ns, "dead")))

	d.Stop()
	if _, err := os.Lstat(deadSocket); err != nil {
		t.Fatalf("socket of the shim of dead: %v", err)
	}
	// again's and slow's `shim delete` wait until the test releases them.
	release := map[string]string{}
	for _, id := range []string{"again", "slow"} {
		release[id] = recSlowDelete(t, d, ns, id)
	}
	// ... for longer than the default cleanup budget if need be.
	recSetConfig(t, d, "[timeouts]\n  \"io.containerd.timeout.shim.cleanup\" = \"60s\"\n")
	for _, pid := range shims {
		recKill(t, pid, syscall.SIGKILL)
	}
	for id, pid := range shims {
		recWaitGone(t, "SIGKILLed shim of "+id, pid)
		if !crihost.PIDAlive(dead[id].PID) {
			t.Fatalf("container pid %d of %s died with its shim: the test needs it to outlive the shim", dead[id].PID, id)
		}
	}

	since := time.Now()
	d.Start()
	t.Logf("daemon ready %s after exec", time.Since(since).Round(time.Millisecond))
	// A dead shim's events go out before its id is released; again's and
	// slow's are held until the test releases their delete. dead's may go
	// out before anyone can subscribe, like any event of a daemon start.
	sub := d.subscribe(t, ns)

	// A Create of an id whose old bundle is being cleaned up waits for the
	// cleanup instead of failing or racing it: start again's new task
	// while its old bundle's `shim delete` is held, see the Create wait
	// (a goroutine of the daemon in WaitHeld), then release the delete.
	startAgain := make(chan result, 1)
	go func() { startAgain <- d.ctr("task", "start", "-d", "--fifo-dir", d.FIFODir, "again") }()
	if msg := eventually(statusTimeout, func() string {
		select {
		case r := <-startAgain:
			startAgain <- r
			return ""
		default:
		}
		r := d.ctrIn("", "pprof", "--debug-socket", d.DebugAddress, "goroutines")
		if r.ExitCode != 0 {
			return r.String()
		}
		if !strings.Contains(r.Stdout, "manager.(*Manager).WaitHeld(") {
			return "no goroutine of the daemon waits in WaitHeld"
		}
		return ""
	}); msg != "" {
		t.Fatalf("ctr task start of again while its old bundle is cleaned up: %s", msg)
	}
	select {
	case r := <-startAgain:
		t.Fatalf("ctr task start of again returned while the cleanup of its old bundle was held: want it to wait\n%s", r)
	default:
	}
	if !crihost.PIDAlive(dead["again"].PID) || !isDir(recBundle(d, ns, "again")) {
		t.Fatalf("again cleaned up before its shim delete was released")
	}
	recReleaseFIFO(t, release["again"])
	if r := <-startAgain; r.ExitCode != 0 {
		t.Fatalf("%s\n%s", r, d.logTail(30))
	}

	tasks := d.tasks(ns)
	if got := tasks["live"]; got != live {
		t.Errorf("after restart live = %+v, want %+v", got, live)
	}
	for _, id := range []string{"dead", "slow"} {
		if got, ok := tasks[id]; ok {
			t.Errorf("after restart the task of the dead shim of %s is listed: %+v", id, got)
		}
	}
	againNew := d.waitTask(ns, "again", "RUNNING")
	if againNew.PID == dead["again"].PID || !crihost.PIDAlive(againNew.PID) {
		t.Errorf("again restarted with pid %d (old %d): want a new live process", againNew.PID, dead["again"].PID)
	}
	if got := recShimPID(t, d, ns, "live"); got != liveShim {
		t.Errorf("shim of live is pid %d, was %d", got, liveShim)
	}
	recWaitGone(t, "container processes of dead and again (shim delete kills them)", dead["dead"].PID, dead["again"].PID)
	recWaitPathGone(t, d, recBundle(d, ns, "dead"))
	recWaitPathGone(t, d, recWorkDir(d, ns, "dead"))
	if _, err := os.Lstat(deadSocket); err == nil {
		t.Errorf("socket %s of the dead shim was not removed by its cleanup", deadSocket)
	}
	if mps := crihost.MountsUnder(recBundle(d, ns, "dead")); len(mps) > 0 {
		t.Errorf("mounts left under the dead shim's bundle: %q", mps)
	}
	if !crihost.PIDAlive(dead["slow"].PID) || !isDir(recBundle(d, ns, "slow")) {
		t.Fatalf("slow cleaned up before its shim delete was released")
	}

	recReleaseFIFO(t, release["slow"])
	want := map[string]bool{}
	for _, id := range []string{"again", "slow"} {
		want[id+" /tasks/exit"], want[id+" /tasks/delete"] = true, true
	}
	for len(want) > 0 {
		ev, err := sub.next(statusTimeout, func(e event) bool {
			id, _ := e.Fields["container_id"].(string)
			return want[id+" "+e.Topic]
		})
		if err != nil {
			t.Fatalf("events still missing %v: %v\n%s", keys(want), err, d.logTail(30))
		}
		id := ev.Fields["container_id"].(string)
		delete(want, id+" "+ev.Topic)
		t.Logf("%s %s: %v", ev.Topic, id, ev.Fields)
		if ev.Fields["pid"] != float64(dead[id].PID) || ev.Fields["exit_status"] != float64(137) {
			t.Errorf("%s of %s: %v, want pid %d and exit_status 137 (SIGKILL by shim delete)", ev.Topic, id, ev.Fields, dead[id].PID)
		}
	}
	recWaitGone(t, "container process of slow", dead["slow"].PID)
	recWaitPathGone(t, d, recBundle(d, ns, "slow"))
	recWaitPathGone(t, d, recWorkDir(d, ns, "slow"))
	recAssertReport(t, d, since, map[string]recWant{
		ns + "/live":  {"adopt", "done", "shim alive, task live"},
		ns + "/dead":  {"cleanup-dead", "done", "shim gone"},
		ns + "/again": {"cleanup-dead", "done", "shim gone"},
		ns + "/slow":  {"cleanup-dead", "done", "shim gone"},
	}, []string{})
	// The new task of again was created after (or while waiting for) the
	// cleanup of the old bundle, which must not have taken the new one.
	if !isDir(recBundle(d, ns, "again")) || !isDir(recWorkDir(d, ns, "again")) {
		t.Errorf("bundle or work dir of the new task of again is missing")
	}
	if got := d.waitTask(ns, "again", "RUNNING"); got != againNew {
		t.Errorf("again after the cleanup: %+v, want %+v", got, againNew)
	}
	if t.Failed() {
		t.FailNow()
	}

	// A new container with the id of the dead one.
	d.mustCtr("container", "rm", "dead")
	d.mustRunSleeper(ns, "dead")
	exec := d.execIn(ns, "dead", "e1", "/bin/echo", "new")
	if exec.ExitCode != 0 || exec.Stdout != "new\n" {
		t.Fatalf("exec in the new dead\n%s", exec)
	}

	for _, id := range []string{"live", "dead", "again"} {
		d.removeContainer(ns, id)
	}
	d.mustCtr("container", "rm", "slow")
	assertNoLeaks(t, d)
}

// TestRecoveryLeakedShim restarts the daemon over a live shim that has no
// task (its task was killed and deleted through the shim's own task API
// while the daemon was down, as if containerd had died between `shim start`
// and task create): recovery reaps it. A healthy container next to it is
// adopted untouched.
func TestRecoveryLeakedShim(t *testing.T) {
	t.Parallel()
	requireOurs(t, "reaps a leaked shim too, but writes no report")
	d := newDaemon(t)
	ns := d.NS
	live := d.mustRunSleeper(ns, "live")
	leaked := d.mustRunSleeper(ns, "leaked")
	leakedShim := recShimPID(t, d, ns, "leaked")

	d.Stop()
	recDeleteTaskViaShim(t, d, ns, "leaked")
	recWaitGone(t, "container killed through its shim", leaked.PID)
	if !crihost.PIDAlive(leakedShim) {
		t.Fatalf("shim %d exited after its task was deleted; the test needs it alive with no task", leakedShim)
	}

	since := time.Now()
	d.Start()
	if tasks := d.tasks(ns); tasks["live"] != live || len(tasks) != 1 {
		t.Errorf("tasks after restart: %+v, want only %+v", tasks, live)
	}
	recWaitGone(t, "reaped shim", leakedShim)
	recWaitPathGone(t, d, recBundle(d, ns, "leaked"))
	recWaitPathGone(t, d, recWorkDir(d, ns, "leaked"))
	recAssertReport(t, d, since, map[string]recWant{
		ns + "/live":   {"adopt", "done", "shim alive, task live"},
		ns + "/leaked": {"reap-leaked", "done", "shim alive with no task and no sandbox"},
	}, []string{})
	if tasks := d.tasks(ns); tasks["live"] != live || len(tasks) != 1 {
		t.Fatalf("tasks after the reap: %+v, want only %+v", tasks, live)
	}

	// The id is free again.
	d.mustCtr("task", "start", "-d", "--fifo-dir", d.FIFODir, "leaked")
	d.waitTask(ns, "leaked", "RUNNING")
	for _, id := range []string{"live", "leaked"} {
		d.removeContainer(ns, id)
	}
	assertNoLeaks(t, d)
}

// TestRecoveryReboot simulates a reboot while the daemon is down (every
// shim and container killed, the boot id changed) and restarts it.
//
//   - "state wiped": /run was a tmpfs, so no bundle is left; the work dirs
//     in the root dir, in every namespace, are removed, no task is listed,
//     and the containers start again.
//   - "state kept": every bundle is cleaned up as rebooted without probing
//     its shim: a listener put on each dead shim's socket must see no
//     connection (after a reboot, whatever listens there is not the shim).
func TestRecoveryReboot(t *testing.T) {
	t.Parallel()
	requireOurs(t, "does not detect reboots and writes no report")
	for _, wipe := range []bool{true, false} {
		name := map[bool]string{true: "state wiped", false: "state kept"}[wipe]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			d := newDaemon(t)
			ns, ns2 := d.NS, newNamespace()
			ids := map[string][]string{ns: {"a", "b"}, ns2: {"c"}}
			for n, list := range ids {
				for _, id := range list {
					d.mustRunSleeper(n, id)
				}
			}
			var addrs []string
			for n, list := range ids {
				for _, id := range list {
					addrs = append(addrs, recShimAddress(t, d, n, id))
				}
			}
			d.Stop()
			recSimulateReboot(t, d, wipe)

			since := time.Now()
			d.Start()
			want := map[string]recWant{}
			var workDirs []string
			for n, list := range ids {
				for _, id := range list {
					if wipe {
						workDirs = append(workDirs, n+"/"+id)
					} else {
						// The boot id record is no evidence: each shim is
						// probed, its socket refuses and no process of it
						// is left.
						want[n+"/"+id] = recWant{"cleanup-dead", "done", "shim gone"}
					}
				}
			}
			if !wipe {
				workDirs = []string{}
			}
			rep := recAssertReport(t, d, since, want, workDirs)
			if !rep.Rebooted || rep.BootID != recBootID(t) {
				t.Errorf("report: rebooted=%v boot_id=%q, want the changed boot id noted and boot id %q", rep.Rebooted, rep.BootID, recBootID(t))
			}
			for _, e := range rep.Entries {
				if e.Liveness.String() != "gone" || !e.Rebooted || e.ShimProcess.String() != "absent" {
					t.Errorf("entry %s: liveness %s, shim process %s, rebooted %v: want gone, absent, rebooted", e.ID, e.Liveness, e.ShimProcess, e.Rebooted)
				}
				probed := false
				for _, n := range e.Notes {
					probed = probed || strings.HasPrefix(n, "probe")
				}
				if !probed {
					t.Errorf("entry %s was not probed: %q", e.ID, e.Notes)
				}
			}
			for _, a := range addrs {
				// cleanup-dead removes the dead shim's socket file.
				if _, err := os.Lstat(a); err == nil {
					t.Errorf("socket %s of a shim from before the reboot was not removed by its cleanup", a)
				}
			}
			if got := readTrimmedFile(t, filepath.Join(d.Root, taskPluginDir, layout.BootIDFile)); got != recBootID(t) {
				t.Errorf("boot id file after the pass: %q, want the current boot id %q", got, recBootID(t))
			}
			for n, list := range ids {
				if tasks := d.tasks(n); len(tasks) != 0 {
					t.Errorf("tasks of %s after the reboot: %+v, want none", n, tasks)
				}
				for _, id := range list {
					for _, p := range []string{recBundle(d, n, id), recWorkDir(d, n, id)} {
						if _, err := os.Lstat(p); err == nil {
							t.Errorf("%s still exists after the reboot", p)
						}
					}
				}
			}
			if t.Failed() {
				t.FailNow()
			}

			// The containers (records in the root dir) start again.
			for n, list := range ids {
				for _, id := range list {
					d.mustCtrIn(n, "task", "start", "-d", "--fifo-dir", d.FIFODir, id)
					tk := d.waitTask(n, id, "RUNNING")
					if !crihost.PIDAlive(tk.PID) {
						t.Fatalf("%s/%s RUNNING with pid %d, which is not alive", n, id, tk.PID)
					}
				}
			}
			if r := d.execIn(ns, "a", "e1", "/bin/echo", "up"); r.ExitCode != 0 || r.Stdout != "up\n" {
				t.Fatalf("exec after the reboot\n%s", r)
			}
			for n, list := range ids {
				for _, id := range list {
					d.removeContainer(n, id)
				}
			}
			assertNoLeaks(t, d)
		})
	}
}

// readTrimmedFile returns the file's content without surrounding space.
func readTrimmedFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestRecoveryHostileState restarts the daemon over a state dir holding
// garbage and hostile entries next to two healthy containers. Each entry
// must get the action the rules give it, nothing outside the plugin's dirs
// may be touched through a symlink (canary dirs in /tmp), nothing the
// daemon cannot judge may be removed, and the healthy containers must stay
// RUNNING with the same PIDs and shims and remain manageable.
func TestRecoveryHostileState(t *testing.T) {
	t.Parallel()
	requireOurs(t, "writes no report")
	d := newDaemon(t)
	ns := d.NS
	healthy := map[string]task{"h1": d.mustRunSleeper(ns, "h1"), "h2": d.mustRunSleeper(ns, "h2")}
	shims := recShims(d)
	d.Stop()

	stateDir := filepath.Join(d.State, taskPluginDir)
	rootDir := filepath.Join(d.Root, taskPluginDir)
	nsDir, rootNS := filepath.Join(stateDir, ns), filepath.Join(rootDir, ns)
	mkdir := func(p string) {
		t.Helper()
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string, data []byte) {
		t.Helper()
		mkdir(filepath.Dir(p))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	symlink := func(target, p string) {
		t.Helper()
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	garbage := func() []byte { return []byte(randomHex(64) + "\x00\xff{[") }
	// Canary dirs outside the daemon's dirs, reachable only through links.
	// Each looks like something the daemon would remove if it followed
	// the link: bundles, an empty bundle, work dirs.
	canaries := map[string]string{}
	for _, name := range []string{"bundle", "ns", "work", "rootns", "dot"} {
		dir, err := os.MkdirTemp("/tmp", "skcanary-"+name+"-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		write(filepath.Join(dir, "canary"), []byte("must survive"))
		write(filepath.Join(dir, "victim", "bootstrap.json"), []byte(`{"version":3,"address":"unix:///nonexistent","protocol":"ttrpc"}`))
		write(filepath.Join(dir, "victim", "shim-binary-path"), []byte(bin("containerd-shim-runc-v2")))
		mkdir(filepath.Join(dir, "emptyvictim"))
		canaries[name] = dir
	}

	// In the namespace dir, next to h1 and h2.
	write(filepath.Join(nsDir, "junk"), garbage())
	write(filepath.Join(nsDir, "garbage", "f1"), garbage())
	write(filepath.Join(nsDir, "garbage", "f2"), garbage())
	write(filepath.Join(nsDir, "corrupt", "bootstrap.json"), []byte(`{"version":3,"address":`))
	write(filepath.Join(nsDir, "corrupt", "log"), garbage())
	mkdir(filepath.Join(nsDir, "empty"))
	write(filepath.Join(rootNS, "empty", "leftover"), garbage()) // goes with its empty bundle
	write(filepath.Join(nsDir, ".dotdir", "f"), garbage())       // an interrupted removal
	symlink(canaries["dot"], filepath.Join(nsDir, ".dotdir", "link"))
	symlink(canaries["bundle"], filepath.Join(nsDir, "evil"))
	write(filepath.Join(nsDir, "bad..name", "bootstrap.json"), garbage())
	recMkfifo(t, filepath.Join(nsDir, "fifo"))
	mkdir(filepath.Join(nsDir, "fifoboot"))
	recMkfifo(t, filepath.Join(nsDir, "fifoboot", "bootstrap.json"))
	recMkfifo(t, filepath.Join(nsDir, "fifoboot", "shim-binary-path"))
	mkdir(filepath.Join(nsDir, "linkboot"))
	symlink("/dev/zero", filepath.Join(nsDir, "linkboot", "bootstrap.json"))
	symlink("/dev/zero", filepath.Join(nsDir, "linkboot", "shim-binary-path"))
	write(filepath.Join(rootNS, "garbage", "keep-me"), garbage()) // its bundle is kept: so is it
	// Namespace level.
	symlink(canaries["ns"], filepath.Join(stateDir, "evilns"))
	write(filepath.Join(stateDir, "bad..ns", "x", "f"), garbage())
	write(filepath.Join(stateDir, "nsfile"), garbage())
	// Work dirs without a bundle: removed, a link as a link.
	write(filepath.Join(rootNS, "orphan", "f"), garbage())
	symlink(canaries["work"], filepath.Join(rootNS, "evilwork"))
	symlink(canaries["rootns"], filepath.Join(rootDir, "evilrootns"))

	kept := []string{
		filepath.Join(nsDir, "junk"), filepath.Join(nsDir, "garbage"), filepath.Join(nsDir, "corrupt"),
		filepath.Join(nsDir, "evil"), filepath.Join(nsDir, "bad..name"), filepath.Join(nsDir, "fifo"),
		filepath.Join(nsDir, "fifoboot"), filepath.Join(nsDir, "linkboot"), filepath.Join(rootNS, "garbage"),
		filepath.Join(stateDir, "evilns"), filepath.Join(stateDir, "bad..ns"), filepath.Join(stateDir, "nsfile"),
		filepath.Join(rootDir, "evilrootns"),
	}
	trees := map[string]map[string]string{}
	for _, p := range kept {
		trees[p] = testshim.Tree(t, false, p)
	}
	for _, dir := range canaries {
		trees[dir] = testshim.Tree(t, false, dir)
	}

	since := time.Now()
	d.Start()
	// No usable bootstrap.json: the default address is probed, and a
	// refused dial there proves nothing (the shim may listen where the
	// lost file said): liveness unknown, kept, listed UNKNOWN and
	// re-probed like every bundle that may be alive.
	const noAddress = "shim liveness unknown"
	want := recAdoptedAll(shims)
	for id, w := range map[string]recWant{
		"junk":      {"ignore", "done", "not a directory: file"},
		"garbage":   {"keep", "probing", noAddress},
		"corrupt":   {"keep", "probing", noAddress},
		"empty":     {"remove-empty", "done", "empty bundle"},
		"evil":      {"ignore", "done", "not a directory: symlink"},
		"bad..name": {"ignore", "done", "invalid namespace or id"},
		"fifo":      {"ignore", "done", "not a directory: other"},
		"fifoboot":  {"keep", "probing", noAddress},
		"linkboot":  {"keep", "probing", noAddress},
	} {
		want[ns+"/"+id] = w
	}
	want["bad..ns/x"] = recWant{"ignore", "done", "invalid namespace or id"}
	recAssertReport(t, d, since, want, []string{ns + "/orphan", ns + "/evilwork"})

	// The healthy containers: same tasks, same shims, manageable.
	got := d.tasks(ns)
	if len(got) != 6 || got["h1"] != healthy["h1"] || got["h2"] != healthy["h2"] {
		t.Errorf("tasks after restart: %+v, want %+v and the kept bundles", got, healthy)
	}
	for _, id := range []string{"garbage", "corrupt", "fifoboot", "linkboot"} {
		if got[id].Status != "UNKNOWN" {
			t.Errorf("kept bundle %s listed as %+v, want UNKNOWN", id, got[id])
		}
	}
	if got := recShims(d); len(got) != len(shims) || got[ns+"/h1"] != shims[ns+"/h1"] || got[ns+"/h2"] != shims[ns+"/h2"] {
		t.Errorf("shims after restart: %v, want %v", got, shims)
	}
	for _, p := range []string{filepath.Join(nsDir, "empty"), filepath.Join(rootNS, "empty"), filepath.Join(nsDir, ".dotdir"),
		filepath.Join(rootNS, "orphan"), filepath.Join(rootNS, "evilwork")} {
		recWaitPathGone(t, d, p)
	}
	for p, before := range trees {
		if diff := testshim.DiffTrees(before, testshim.Tree(t, false, p)); len(diff) > 0 {
			t.Errorf("%s changed: %q", p, diff)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if r := d.execIn(ns, "h1", "e1", "/bin/echo", "fine"); r.ExitCode != 0 || r.Stdout != "fine\n" {
		t.Fatalf("exec in h1\n%s", r)
	}
	d.mustCtr("task", "pause", "h2")
	d.waitTask(ns, "h2", "PAUSED")
	d.mustCtr("task", "resume", "h2")
	d.waitTask(ns, "h2", "RUNNING")
	for _, id := range []string{"h1", "h2"} {
		d.removeContainer(ns, id)
	}
	// What the test planted and the daemon rightly left alone.
	for _, p := range kept {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	assertNoLeaks(t, d)
}

// TestRecoveryCorruptBootstrapLiveShim restarts the daemon over a running
// container whose bootstrap.json was torn (truncated) while the daemon was
// down. What a torn file parses to depends on where it was cut: "in the
// address" leaves `{"version":3,"address":"unix`, "before the address"
// leaves `{"version":3,"address":`; neither is JSON, so each is taken
// whole as a legacy address, an abstract socket nobody listens on. A
// refused dial there must not count as proof that the shim is gone (that
// would run `shim delete`, which kills the container): the shim listens at
// the default address of its id, where it must be found and adopted, and
// its bootstrap.json rewritten.
func TestRecoveryCorruptBootstrapLiveShim(t *testing.T) {
	t.Parallel()
	requireOurs(t, "deletes the bundle of a shim it fails to load, killing its container")
	for _, tc := range []struct {
		name string
		cut  func(data []byte) []byte
	}{
		{"in the address", func(data []byte) []byte {
			i := bytes.Index(data, []byte(`"unix://`))
			return data[:i+len(`"unix`)]
		}},
		{"before the address", func(data []byte) []byte {
			i := bytes.Index(data, []byte(`"address":`))
			return data[:i+len(`"address":`)]
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newDaemon(t)
			ns := d.NS
			victim := d.mustRunSleeper(ns, "victim")
			shim := recShimPID(t, d, ns, "victim")
			address := recShimAddress(t, d, ns, "victim")
			d.Stop()
			boot := filepath.Join(recBundle(d, ns, "victim"), "bootstrap.json")
			data, err := os.ReadFile(boot)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(data, []byte(`"address":"unix://`)) {
				t.Fatalf("bootstrap.json %s: no unix address to cut", data)
			}
			torn := tc.cut(data)
			if err := os.WriteFile(boot, torn, 0o644); err != nil {
				t.Fatal(err)
			}

			since := time.Now()
			d.Start()
			rep := recAssertReport(t, d, since, map[string]recWant{
				ns + "/victim": {"adopt", "done", "shim alive, task live"},
			}, []string{})
			t.Logf("bootstrap.json %q → entry %s", torn, recEntryString(recEntries(rep)[ns+"/victim"]))
			if !crihost.PIDAlive(victim.PID) || !crihost.PIDAlive(shim) {
				t.Fatalf("after restart: container pid %d alive %v, shim pid %d alive %v: want both alive",
					victim.PID, crihost.PIDAlive(victim.PID), shim, crihost.PIDAlive(shim))
			}
			if got := d.waitTask(ns, "victim", "RUNNING"); got != victim {
				t.Fatalf("victim after restart: %+v, want %+v", got, victim)
			}
			if got := recShimAddress(t, d, ns, "victim"); got != address {
				t.Errorf("bootstrap.json after adoption has address %q, want %q", got, address)
			}
			if r := d.execIn(ns, "victim", "e1", "/bin/true"); r.ExitCode != 0 {
				t.Fatalf("exec in victim\n%s", r)
			}
			d.removeContainer(ns, "victim")
			assertNoLeaks(t, d)
		})
	}
}

// TestRecoveryHungShim restarts the daemon over a shim that is SIGSTOPped
// (it accepts connections, never answers). By default the daemon serves
// before the hung shim is judged, and a task list answers at once, with
// the hung shim UNKNOWN; with recovery_hold_start it serves after about
// the probe timeout. Either
// way the task is listed UNKNOWN, calls on it fail with a clear error and
// its bundle is left alone; once the shim runs again it is adopted
// (RUNNING, same PID) within the re-probe backoff.
func TestRecoveryHungShim(t *testing.T) {
	t.Parallel()
	requireOurs(t, "waits for the hung shim (up to the load timeout), then deletes its bundle")
	for _, holdStart := range []bool{false, true} {
		t.Run(fmt.Sprintf("hold_start=%v", holdStart), func(t *testing.T) {
			t.Parallel()
			testRecoveryHungShim(t, holdStart)
		})
	}
}

func testRecoveryHungShim(t *testing.T, holdStart bool) {
	const (
		probeTimeout = 5 * time.Second
		retryMax     = time.Second
		slack        = 3 * time.Second // daemon start (plugins, metadata) and ctr, on a loaded 2-core machine
	)
	d := newDaemon(t)
	ns := d.NS
	ok := d.mustRunSleeper(ns, "ok")
	hung := d.mustRunSleeper(ns, "hung")
	hungShim := recShimPID(t, d, ns, "hung")
	d.Stop()
	recSetConfig(t, d, recRecoveryConfig(
		fmt.Sprintf("recovery_probe_timeout = %q", probeTimeout),
		`recovery_retry_initial = "200ms"`,
		fmt.Sprintf("recovery_retry_max = %q", retryMax),
		fmt.Sprintf("recovery_hold_start = %v", holdStart),
	))
	bundle := recBundle(d, ns, "hung")
	before := testshim.Tree(t, false, bundle)
	recKill(t, hungShim, syscall.SIGSTOP)
	stopped := true
	t.Cleanup(func() {
		if stopped {
			_ = syscall.Kill(hungShim, syscall.SIGCONT)
		}
	})
	if msg := eventually(statusTimeout, func() string {
		if p, _ := crihost.ReadProc(hungShim); p.State != 'T' {
			return fmt.Sprintf("shim %d in state %q, want T (stopped)", hungShim, p.State)
		}
		return ""
	}); msg != "" {
		t.Fatal(msg)
	}

	offset := len(readFileString(d.LogPath))
	since := time.Now()
	d.Start()
	ready := time.Since(since)
	judgedAtReady := recLogHasLine(d, offset, `msg="recovery judged"`, "state="+filepath.Join(d.State, taskPluginDir))
	t.Logf("daemon ready %s after exec (probe timeout %s, hold_start %v)", ready.Round(time.Millisecond), probeTimeout, holdStart)
	switch {
	case holdStart && (ready < probeTimeout || ready > probeTimeout+slack):
		t.Errorf("daemon answered %s after exec: with recovery_hold_start the hung shim's probe (%s) should have held it, and no more than that (+%s)", ready, probeTimeout, slack)
	case holdStart && !judgedAtReady:
		t.Errorf("daemon answered before the task plugin's recovery judged every shim, with recovery_hold_start\n%s", d.logTail(30))
	case !holdStart && judgedAtReady:
		t.Errorf("daemon answered only after the hung shim was judged (%s after exec): it should serve while the shim is probed\n%s", ready, d.logTail(30))
	}

	// recovery_hold_start holds the shim sandbox controller's pass too
	// (it has no section of its own: it follows the task runtime's).
	if sx := opExports(t, d, "io.containerd.sandbox.controller.v1", "shim"); sx["recovery.hold_start"] != fmt.Sprint(holdStart) {
		t.Errorf("shim sandbox controller export recovery.hold_start = %q with recovery_hold_start = %v: the controller's pass must follow the task section", sx["recovery.hold_start"], holdStart)
	}

	// While the hung shim is judged, the daemon already creates and
	// starts new containers.
	if !holdStart {
		if r := d.runDetached(ns, "fresh", "/bin/sleep", "3600"); r.ExitCode != 0 {
			t.Fatalf("ctr run while the hung shim is judged\n%s\n%s", r, d.logTail(30))
		}
		if recLogHasLine(d, offset, `msg="recovery judged"`, "state="+filepath.Join(d.State, taskPluginDir)) {
			t.Errorf("ctr run of a new container returned only after the hung shim was judged (%s after exec)", time.Since(since))
		}
	}

	// A task list never waits for a verdict: the shims judged are listed
	// with their state, one not judged yet with an unknown state, so the
	// hung shim's probe delays nothing but its own entry: ok is listed
	// RUNNING long before that probe (5s) ends.
	var tasks map[string]task
	if msg := eventually(probeTimeout+slack, func() string {
		tasks = d.tasks(ns)
		if tasks["ok"] != ok || tasks["hung"].Status != "UNKNOWN" {
			return fmt.Sprintf("listed %v, want ok %+v and hung UNKNOWN", tasks, ok)
		}
		return ""
	}); msg != "" {
		t.Fatal(msg)
	}
	listed := time.Since(since)
	t.Logf("every task listed, ok RUNNING, %s after exec", listed.Round(time.Millisecond))
	if !holdStart && listed >= probeTimeout {
		t.Errorf("ok listed RUNNING only %s after exec: the listing waited for the hung shim's probe (%s)", listed, probeTimeout)
	}
	// The verdicts are in the report moments after the list (it is
	// written once the pass has looked at work dirs too).
	var rep *loader.Report
	if msg := eventually(statusTimeout, func() string {
		r, err := recReadReport(d)
		if err != nil || r.StartedAt.Before(since) || r.Judged == 0 {
			return fmt.Sprintf("no judged report of this start: %v (report %+v)", err, r)
		}
		rep = r
		return ""
	}); msg != "" {
		t.Fatal(msg)
	}
	if got := time.Duration(rep.Judged); got < probeTimeout || got > probeTimeout+time.Second {
		t.Errorf("report judged_ms = %s, want the probe timeout %s (and not much more)", got, probeTimeout)
	}
	if rep.HeldStart != holdStart || (holdStart && rep.Ready < rep.Judged) || (!holdStart && rep.Ready >= rep.Judged) {
		t.Errorf("report held_start %v, ready %s, judged %s", rep.HeldStart, time.Duration(rep.Ready), time.Duration(rep.Judged))
	}
	if msg := recCheckEntries(rep, map[string]recWant{
		ns + "/ok":   {"adopt", "done", "shim alive, task live"},
		ns + "/hung": {"keep", "probing", "shim liveness unknown"},
	}, true); msg != "" {
		t.Errorf("report once judged: %s", msg)
	}

	if tasks["ok"] != ok {
		t.Errorf("ok after restart: %+v, want %+v", tasks["ok"], ok)
	}
	if got := tasks["hung"]; got.Status != "UNKNOWN" {
		t.Errorf("hung after restart: %+v (listed: %v), want status UNKNOWN", got, tasks)
	}
	if got := tasks["fresh"]; !holdStart && (got.Status != "RUNNING" || !crihost.PIDAlive(got.PID)) {
		t.Errorf("fresh, created while judging: %+v, want RUNNING", got)
	}
	r := d.execIn(ns, "hung", "e1", "/bin/true")
	if r.ExitCode == 0 || !strings.Contains(r.ctrError(), "has not answered since") {
		t.Errorf("exec in the hung task: want a failure saying the shim has not answered\n%s", r)
	}
	t.Logf("exec in the hung task: %s", r.ctrError())
	if r := d.execIn(ns, "ok", "e1", "/bin/true"); r.ExitCode != 0 {
		t.Errorf("exec in ok next to the hung shim\n%s", r)
	}
	if diff := testshim.DiffTrees(before, testshim.Tree(t, false, bundle)); len(diff) > 0 {
		t.Errorf("bundle of the hung shim changed: %q", diff)
	}
	if !crihost.PIDAlive(hung.PID) {
		t.Errorf("the hung shim's container pid %d is gone", hung.PID)
	}
	if t.Failed() {
		t.FailNow()
	}

	recKill(t, hungShim, syscall.SIGCONT)
	stopped = false
	resumed := time.Now()
	var got task
	if msg := eventually(retryMax+probeTimeout+slack, func() string {
		r := d.ctrIn(ns, "task", "ls")
		tasks, err := parseTaskList(r.Stdout)
		if err != nil {
			return err.Error()
		}
		if got = tasks["hung"]; got.Status != "RUNNING" {
			return fmt.Sprintf("hung is %+v", got)
		}
		return ""
	}); msg != "" {
		t.Fatalf("after SIGCONT: %s\n%s", msg, d.logTail(30))
	}
	t.Logf("adopted %s after SIGCONT", time.Since(resumed).Round(time.Millisecond))
	if got != hung {
		t.Errorf("hung after SIGCONT: %+v, want %+v", got, hung)
	}
	rep = recWaitReport(t, d, since, func(rep *loader.Report) string {
		return recCheckEntries(rep, map[string]recWant{
			ns + "/ok":   {"adopt", "done", "shim alive, task live"},
			ns + "/hung": {"adopt", "done", "unresponsive shim answered"},
		}, true)
	})
	if got := recShimPID(t, d, ns, "hung"); got != hungShim {
		t.Errorf("shim of hung is pid %d, was %d", got, hungShim)
	}
	if r := d.execIn(ns, "hung", "e2", "/bin/echo", "back"); r.ExitCode != 0 || r.Stdout != "back\n" {
		t.Fatalf("exec in hung after it was adopted\n%s", r)
	}
	ids := []string{"ok", "hung"}
	if !holdStart {
		ids = append(ids, "fresh")
	}
	for _, id := range ids {
		d.removeContainer(ns, id)
	}
	assertNoLeaks(t, d)
}

// TestRecoveryKilledDuringRecovery SIGKILLs the daemon again and again
// while it starts up and recovers ten running containers, at several
// delays after exec, then starts it normally: every container must still
// be RUNNING with the same PID and shim, be manageable, and the report
// must say each was adopted.
func TestRecoveryKilledDuringRecovery(t *testing.T) {
	t.Parallel()
	requireOurs(t, "writes no report")
	d := newDaemon(t)
	ns := d.NS
	before := map[string]task{}
	var ids []string
	for i := 0; i < 10; i++ {
		id := fmt.Sprintf("c%d", i)
		ids = append(ids, id)
		if r := d.runDetached(ns, id, "/bin/sleep", "3600"); r.ExitCode != 0 {
			t.Fatalf("%s", r)
		}
	}
	for _, id := range ids {
		before[id] = d.waitTask(ns, id, "RUNNING")
	}
	shims := recShims(d)
	if len(shims) != len(ids) {
		t.Fatalf("shims %v, want one per container", shims)
	}
	d.Stop()

	// When to SIGKILL each start: at fixed delays after exec, and as soon
	// as the log shows the task plugin loading (the scan and probes run
	// next) or its recovery judged (registration done, background work
	// running).
	type trigger struct {
		name   string
		delay  time.Duration
		marker string
	}
	triggers := []trigger{
		{name: "0ms"}, {name: "20ms", delay: 20 * time.Millisecond}, {name: "50ms", delay: 50 * time.Millisecond},
		{name: "100ms", delay: 100 * time.Millisecond},
		{name: "task plugin loading", marker: "id=" + taskPluginDir + " type=io.containerd.runtime.v2"},
		{name: "recovery judged", marker: `msg="recovery judged"`},
	}
	var killed, beforeReady int
	for round := 0; round < 3; round++ {
		for _, tr := range triggers {
			offset := len(readFileString(d.LogPath))
			raw := recStartRaw(t, d, fmt.Sprintf("round %d, SIGKILL at %s", round, tr.name))
			switch {
			case tr.marker != "":
				if msg := eventually(daemonReadyTimeout, func() string {
					select {
					case <-raw.exited:
						return ""
					default:
					}
					if !strings.Contains(readFileString(d.LogPath)[offset:], tr.marker) {
						return "no " + tr.marker + " in the log yet"
					}
					return ""
				}); msg != "" {
					t.Fatalf("start %s: %s\n%s", tr.name, msg, d.logTail(30))
				}
			case tr.delay > 0:
				select {
				case <-raw.exited:
				case <-time.After(tr.delay): // the point of the test: SIGKILL this long after exec
				}
			}
			if raw.kill(t) {
				killed++
			}
			if !strings.Contains(readFileString(d.LogPath)[offset:], `msg="recovery judged"`) {
				beforeReady++
			}
		}
	}
	t.Logf("%d of %d starts SIGKILLed while running, %d of them before the recovery was ready",
		killed, 3*len(triggers), beforeReady)
	if killed < 3*len(triggers) {
		t.Errorf("only %d of %d starts were running when killed\n%s", killed, 3*len(triggers), d.logTail(40))
	}
	for key, pid := range shims {
		if !crihost.PIDAlive(pid) {
			t.Errorf("shim %s (pid %d) died while the daemon was being killed", key, pid)
		}
	}

	// Not failed on (whether a kill lands inside a write is a matter of
	// timing), but reported: a SIGKILL between atomicfile's CreateTemp
	// and its rename leaves the temp file (a random number) behind.
	for _, dir := range []string{filepath.Join(d.State, taskPluginDir), filepath.Join(d.Root, taskPluginDir)} {
		for _, name := range dirEntries(dir) {
			if name != ns && name != layout.ReportFile && name != layout.BootIDFile {
				head := readFileString(filepath.Join(dir, name))
				t.Logf("left in %s by a killed start: %s (%d bytes: %.40q)", dir, name, len(head), head)
			}
		}
	}

	since := time.Now()
	d.Start()
	recAssertReport(t, d, since, recAdoptedAll(shims), []string{})
	tasks := d.tasks(ns)
	for _, id := range ids {
		if tasks[id] != before[id] {
			t.Errorf("%s after the kills: %+v, want %+v", id, tasks[id], before[id])
		}
	}
	if got := recShims(d); len(got) != len(shims) {
		t.Errorf("shims after the kills: %v, want %v", got, shims)
	} else {
		for k, v := range shims {
			if got[k] != v {
				t.Errorf("shim of %s: pid %d, was %d", k, got[k], v)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	for _, id := range ids {
		if r := d.execIn(ns, id, "e1", "/bin/echo", id); r.ExitCode != 0 || r.Stdout != id+"\n" {
			t.Fatalf("exec in %s\n%s", id, r)
		}
	}
	for _, id := range ids {
		d.removeContainer(ns, id)
	}
	assertNoLeaks(t, d)
}

// readFileString returns the file's content ("" if it cannot be read).
func readFileString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// hasLineWith reports whether a line of text that keep accepts (every line
// when keep is nil) holds every one of parts.
func hasLineWith(text string, keep func(string) bool, parts ...string) bool {
	for _, line := range strings.Split(text, "\n") {
		if keep != nil && !keep(line) {
			continue
		}
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

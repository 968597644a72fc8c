//go:build integration

package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shimkeeper/shimkeeper/internal/crihost"
)

// What a pod looks like after things happened to it while the daemon was
// down: its container exited, or its shim was killed.

// TestCRIContainerExitedWhileDaemonDown: the container's process exits
// (status 7) while the daemon is stopped, the shim seeing the exit with
// nobody to tell. After the restart CRI must list the container EXITED
// with its real exit code and exit time, in a pod still READY (its pause
// process untouched), and the pod must stop and go away cleanly.
//
// Stock v2.4.2 reaps the container's task on load (its ps is empty, see
// TestRestartWithExitedTask), so CRI finds no task and reports the
// container EXITED with exit code 255, reason "Unknown", finished when CRI
// loaded it: the 7 and the time are lost. Ours keeps the exited task, and
// CRI reads its status.
func TestCRIContainerExitedWhileDaemonDown(t *testing.T) {
	t.Parallel()
	// cat blocks on a FIFO bind-mounted into the container until the
	// test releases it: the process exits exactly when the test wants.
	syncDir := t.TempDir()
	fifo := filepath.Join(syncDir, "release")
	recMkfifo(t, fifo)
	spec := criPodSpec{Name: "sk-exit", Command: []string{"/bin/sh", "-c", "cat /sync/release; exit 7"},
		Mounts: map[string]string{"/sync": syncDir}}
	d, pod, before := startCRITest1(t, spec)

	var released, downUntil time.Time
	restartCRIDaemon(t, d, criSIGTERM, func() {
		released = time.Now()
		recReleaseFIFO(t, fifo)
		recWaitGone(t, "container process after its FIFO was released", before.ContainerPID)
		// The shim takes the exit time once it has reaped the process
		// and nothing shows when it has: this pause, not a sync, puts
		// the exit well before the daemon start, so that the time CRI
		// reports tells the exit's (before downUntil) from the one CRI
		// makes up while it loads the container (after downUntil).
		time.Sleep(criExitSettle)
		downUntil = time.Now()
	})

	assertCRIListed(t, d, "SANDBOX_READY", "CONTAINER_EXITED", pod)
	cs := inspectCRIContainer(t, d, pod.CID)
	finished := criTime(t, cs.Status.FinishedAt)
	t.Logf("container after restart: %+v (released %s, daemon down until %s)", cs.Status,
		released.Format(time.RFC3339Nano), downUntil.Format(time.RFC3339Nano))
	wantCode, wantReason := 7, "Error" // the process's, as CRI words a non-zero exit
	finishedWhileDown := true
	if isStock(d.bin) {
		wantCode, wantReason, finishedWhileDown = criUnknownExitCode, criUnknownExitReason, false
	}
	if cs.Status.ExitCode != wantCode || cs.Status.Reason != wantReason {
		t.Errorf("container exit code %d, reason %q; want %d, %q", cs.Status.ExitCode, cs.Status.Reason, wantCode, wantReason)
	}
	if got := !finished.Before(released) && finished.Before(downUntil); got != finishedWhileDown {
		t.Errorf("container finished at %s: between the release (%s) and the daemon start (%s) is %v, want %v",
			cs.Status.FinishedAt, released.Format(time.RFC3339Nano), downUntil.Format(time.RFC3339Nano), got, finishedWhileDown)
	}
	assertCRIPauseUnchanged(t, d, pod, before)
	removeCRIPod(t, d, pod, before.PausePID)
}

// TestCRIShimKilledWhileDaemonDown: the pod's shim is killed (SIGKILL)
// while the daemon is stopped. The pause and container processes outlive
// it (runc sets no parent-death signal; they are reparented), until the
// restart finds the shim gone and its `shim delete` kills them. After the
// restart the pod is NOTREADY, its container EXITED with CRI's unknown
// exit code (CRI finds no task: the exit is not known to it) and no
// process of the pod is left, nor the dead shim's socket; once the pod is
// stopped and removed, no netns, mount, veth or dir is left either.
// Stock v2.4.2 does the same, but leaves the socket file.
func TestCRIShimKilledWhileDaemonDown(t *testing.T) {
	t.Parallel()
	d, pod, before := startCRITest1(t, criPodSpec{Name: "sk-shim"})
	shimSocket := recShimAddress(t, d, criNamespace, pod.ID)

	restartCRIDaemon(t, d, criSIGTERM, func() {
		for _, pid := range before.Shims {
			recKill(t, pid, syscall.SIGKILL)
		}
		recWaitGone(t, "shim after SIGKILL", before.Shims...)
		for what, pid := range map[string]int{"pause": before.PausePID, "container": before.ContainerPID} {
			if !crihost.PIDAlive(pid) {
				t.Errorf("%s pid %d died with its shim", what, pid)
			}
		}
	})

	recWaitGone(t, "pod processes after the restart over a dead shim", before.PausePID, before.ContainerPID)
	cs := waitCRIContainer(t, d, pod.CID, "CONTAINER_EXITED")
	t.Logf("container after restart: %+v", cs.Status)
	if cs.Status.ExitCode != criUnknownExitCode || cs.Status.Reason != criUnknownExitReason {
		t.Errorf("container exit code %d, reason %q; want CRI's unknown %d, %q",
			cs.Status.ExitCode, cs.Status.Reason, criUnknownExitCode, criUnknownExitReason)
	}
	waitCRIPod(t, d, pod, "SANDBOX_NOTREADY")
	assertCRIListed(t, d, "SANDBOX_NOTREADY", "CONTAINER_EXITED", pod)
	if shims := shimProcs(d.Address); len(shims) > 0 {
		t.Errorf("shims run after the restart over a dead shim: %v", shims)
	}
	// Ours removes a dead shim's socket with its bundle (cleanup-dead);
	// stock v2.4.2 leaves the socket file of a shim it did not stop.
	if isStock(d.bin) {
		_, err := os.Lstat(shimSocket)
		t.Logf("stock: socket of the killed shim after the restart: %v", err)
	} else {
		recWaitPathGone(t, d, shimSocket)
	}
	// No task is left, but CRI still has the pod, its network and the
	// container's snapshot until the pod is removed.
	assertLeakCheckSees(t, d, criPodLeaks(d, pod, before.PodIP)...)
	removeCRIPod(t, d, pod)
}

// TestCRIShimSandboxerCannotRunRuncPods is a pod of a runtime handler
// whose sandboxer is "shim" (the pod sandbox driven through the shim's
// sandbox API by the shim sandbox controller instead of CRI's podsandbox
// controller) with the runc shim, which cannot serve it, in stock v2.4.2
// as in ours:
//
//   - CRI's RunPodSandbox hands the controller a sandbox with no spec (it
//     sets the spec only from the controller's Start answer), so the
//     controller's bundle has no config.json, and
//     containerd-shim-runc-v2's `start` (manager.Start → readSpec, for
//     its grouping annotations) fails: "open config.json: no such file or
//     directory";
//   - past that, the runc shim registers only the task service, not
//     containerd.runtime.sandbox.v1.Sandbox, so CreateSandbox would be
//     answered Unimplemented.
//
// So runp must fail with that error, and leave nothing: no shim, bundle,
// netns, veth or pod. A pod surviving a restart under the shim sandboxer
// needs a shim with the sandbox API, which this host does not have.
func TestCRIShimSandboxerCannotRunRuncPods(t *testing.T) {
	t.Parallel()
	const handler = "runc-shim"
	d := newCRIDaemon(t, withCRIRuntime(handler, "shim"))
	pullCRIImages(t, d)
	var info struct {
		Config struct {
			Containerd struct {
				Runtimes map[string]struct {
					Sandboxer string `json:"sandboxer"`
				} `json:"runtimes"`
			} `json:"containerd"`
		} `json:"config"`
	}
	d.mustCrictlJSON(&info, "info", "-o", "json")
	if got := info.Config.Containerd.Runtimes[handler].Sandboxer; got != "shim" {
		t.Fatalf("CRI config: runtime %s has sandboxer %q, want shim (config key not taken?)", handler, got)
	}

	config := writeCRIPodConfig(t, d, "sk-sb", false)
	r := d.crictl("runp", "--runtime", handler, config)
	if id := strings.TrimSpace(r.Stdout); id != "" {
		d.cri.notePod(id)
	}
	const want = "start failed: io.containerd.runc.v2: open config.json: no such file or directory"
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, want) {
		t.Errorf("runp with the shim sandboxer: want it to fail with %q\n%s", want, r)
	}
	ids := podIDsInLog(r.Stderr)
	if len(ids) != 1 {
		t.Errorf("sandbox ids in the runp error: %v, want one", ids)
	}
	for _, id := range ids {
		d.cri.notePod(id) // for the CNI cache check
	}
	t.Logf("runp with the shim sandboxer failed as expected, sandbox %v", ids)
	assertNoLeaks(t, d)
}

// waitCRIPod waits until CRI reports the pod in state.
func waitCRIPod(t *testing.T, d *Daemon, pod criPod, state string) {
	t.Helper()
	if msg := eventually(statusTimeout, func() string {
		if ps := inspectCRIPod(t, d, pod.ID); ps.Status.State != state {
			return ps.Status.State
		}
		return ""
	}); msg != "" {
		t.Fatalf("pod %s is %s, want %s", pod.ID, msg, state)
	}
}

// assertCRIPauseUnchanged checks that the pod's pause process is the one
// of before (pid, start time) and CRI still reports it.
func assertCRIPauseUnchanged(t *testing.T, d *Daemon, pod criPod, before criSnapshot) {
	t.Helper()
	ps := inspectCRIPod(t, d, pod.ID)
	if ps.Info.Pid != before.PausePID || procStartTicks(t, before.PausePID) != before.PauseStart {
		t.Errorf("pause process: CRI reports pid %d, before %d (start %d)", ps.Info.Pid, before.PausePID, before.PauseStart)
	}
}

// criExitSettle is how long TestCRIContainerExitedWhileDaemonDown leaves
// the shim to take a reaped process's exit time before the daemon starts.
const criExitSettle = 500 * time.Millisecond

// criTime reads a time crictl prints in JSON: RFC 3339 (crictl's own
// form) or nanoseconds since the epoch (protojson's int64).
func criTime(t *testing.T, s string) time.Time {
	t.Helper()
	if tm, err := time.Parse(time.RFC3339Nano, s); err == nil && !tm.IsZero() {
		return tm
	}
	if ns, err := strconv.ParseInt(s, 10, 64); err == nil && ns > 0 {
		return time.Unix(0, ns)
	}
	t.Fatalf("crictl time %q: neither RFC 3339 nor nanoseconds", s)
	return time.Time{}
}

// CRI's exit code and reason for a container whose exit it does not know
// (internal/cri/server/helpers.go unknownExitCode, unknownExitReason).
const (
	criUnknownExitCode   = 255
	criUnknownExitReason = "Unknown"
)

// podIDsInLog returns the sandbox ids in CRI's `failed to create sandbox
// "<id>"` errors.
func podIDsInLog(s string) []string {
	var ids []string
	for _, m := range regexp.MustCompile(`failed to create sandbox \\?"([0-9a-f]{64})\\?"`).FindAllStringSubmatch(s, -1) {
		if !slices.Contains(ids, m[1]) {
			ids = append(ids, m[1])
		}
	}
	return ids
}

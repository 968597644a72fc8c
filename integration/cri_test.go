//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The CRI tests drive the daemon the way the kubelet does, through the CRI
// socket, with the CRI community's own client (bin/crictl), images pulled
// from the test's own registry (bin/testimages) and pods networked by the
// reference CNI plugins (bin/cni). They check what a Kubernetes node needs
// from a daemon restart: the same pods and containers, the same processes,
// still answering, and nothing left once the pods are removed.

// criPodStatus is the part of `crictl inspectp -o json` the tests read.
type criPodStatus struct {
	Status struct {
		ID      string `json:"id"`
		State   string `json:"state"`
		Network struct {
			IP string `json:"ip"`
		} `json:"network"`
		Linux struct {
			Namespaces struct {
				Options struct {
					Network string `json:"network"`
				} `json:"options"`
			} `json:"namespaces"`
		} `json:"linux"`
	} `json:"status"`
	Info struct {
		Pid int `json:"pid"`
	} `json:"info"`
}

// criContainerStatus is the part of `crictl inspect -o json` the tests read.
type criContainerStatus struct {
	Status struct {
		ID    string `json:"id"`
		State string `json:"state"`
	} `json:"status"`
	Info struct {
		SandboxID string `json:"sandboxID"`
		Pid       int    `json:"pid"`
	} `json:"info"`
}

// criImages is `crictl images -o json`.
type criImages struct {
	Images []struct {
		ID          string   `json:"id"`
		RepoTags    []string `json:"repoTags"`
		RepoDigests []string `json:"repoDigests"`
		Pinned      bool     `json:"pinned"`
	} `json:"images"`
}

// criPod is a pod sandbox the test started, with its config file.
type criPod struct {
	ID     string
	Config string // pod config JSON, also passed to `crictl create`
}

// writeCRIPodConfig writes a pod sandbox config: its cgroups go under the
// test's namespace dir (/sys/fs/cgroup/<ctrl>/<ns>/<id>, as the ctr tests'
// do, so the harness's cgroup checks and cleanup cover them), its logs
// under the test dir.
func writeCRIPodConfig(t *testing.T, d *Daemon, name string, hostNetwork bool) string {
	t.Helper()
	linux := map[string]any{"cgroup_parent": "/" + d.NS}
	if hostNetwork {
		// NamespaceMode NODE
		linux["security_context"] = map[string]any{"namespace_options": map[string]any{"network": 2}}
	}
	cfg := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "shimkeeper", "uid": randomHex(8), "attempt": 1},
		"log_directory": filepath.Join(d.cri.LogDir, name),
		"linux":         linux,
	}
	if !hostNetwork {
		// A host-network pod shares the host's UTS namespace too, so
		// it has no hostname of its own (the kubelet leaves it empty).
		cfg["hostname"] = name
	}
	return writeJSONFile(t, filepath.Join(d.cri.Dir, "pod-"+name+".json"), cfg)
}

// writeCRIContainerConfig writes a container config running argv from the
// toybox image.
func writeCRIContainerConfig(t *testing.T, d *Daemon, name string, argv ...string) string {
	t.Helper()
	cfg := map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": criToyboxImage},
		"command":  argv,
		"log_path": name + ".log",
		"linux":    map[string]any{},
	}
	return writeJSONFile(t, filepath.Join(d.cri.Dir, "container-"+name+".json"), cfg)
}

func writeJSONFile(t *testing.T, path string, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// pullCRIImages pulls the pause and toybox images through CRI and checks
// they are the registry's (same manifest digest) and that the pause image
// is pinned as the sandbox image.
func pullCRIImages(t *testing.T, d *Daemon) {
	t.Helper()
	for _, ref := range []string{criPauseImage, criToyboxImage} {
		d.mustCrictl("pull", ref)
	}
	var imgs criImages
	d.mustCrictlJSON(&imgs, "images", "-o", "json")
	for _, ref := range []string{criPauseImage, criToyboxImage} {
		repo := ref[:strings.LastIndexByte(ref, ':')]
		wantDigest := repo + "@" + d.cri.Digests[ref]
		found := false
		for _, im := range imgs.Images {
			if !slices.Contains(im.RepoTags, ref) {
				continue
			}
			found = true
			if !slices.Contains(im.RepoDigests, wantDigest) {
				t.Errorf("%s: repo digests %v, want %s (the registry's manifest)", ref, im.RepoDigests, wantDigest)
			}
			if want := ref == criPauseImage; im.Pinned != want {
				t.Errorf("%s: pinned = %v, want %v (pinned_images.sandbox)", ref, im.Pinned, want)
			}
		}
		if !found {
			t.Errorf("%s not in `crictl images`: %+v", ref, imgs.Images)
		}
	}
}

// runCRIPod runs a pod and, in it, a started container sleeping.
func runCRIPod(t *testing.T, d *Daemon, name string, hostNetwork bool) (criPod, string) {
	t.Helper()
	pod := criPod{Config: writeCRIPodConfig(t, d, name, hostNetwork)}
	pod.ID = strings.TrimSpace(d.mustCrictl("runp", pod.Config))
	d.cri.notePod(pod.ID)
	ctrConfig := writeCRIContainerConfig(t, d, "sleeper", "/bin/sleep", "3600")
	cid := strings.TrimSpace(d.mustCrictl("create", pod.ID, ctrConfig, pod.Config))
	d.mustCrictl("start", cid)
	return pod, cid
}

// criSnapshot is what a restart must not change.
type criSnapshot struct {
	PodState, PodIP, PodNetNS string
	PausePID                  int
	PauseStart                uint64
	ContainerState            string
	ContainerPID              int
	ContainerStart            uint64
	Shims                     []int
}

// takeCRISnapshot reads the pod and the container through CRI and /proc,
// and checks what holds whatever the moment: the container runs sleep
// in the pod's network namespace, and is listed by `crictl ps`.
func takeCRISnapshot(t *testing.T, d *Daemon, pod criPod, cid string, hostNetwork bool) criSnapshot {
	t.Helper()
	var ps criPodStatus
	d.mustCrictlJSON(&ps, "inspectp", "-o", "json", pod.ID)
	var cs criContainerStatus
	d.mustCrictlJSON(&cs, "inspect", "-o", "json", cid)
	s := criSnapshot{
		PodState: ps.Status.State, PodIP: ps.Status.Network.IP, PausePID: ps.Info.Pid,
		ContainerState: cs.Status.State, ContainerPID: cs.Info.Pid,
	}
	if ps.Status.ID != pod.ID || cs.Status.ID != cid || cs.Info.SandboxID != pod.ID {
		t.Fatalf("inspect ids: pod %q (want %q), container %q (want %q) in sandbox %q", ps.Status.ID, pod.ID, cs.Status.ID, cid, cs.Info.SandboxID)
	}
	if s.PausePID <= 0 || s.ContainerPID <= 0 {
		t.Fatalf("pids: pause %d, container %d", s.PausePID, s.ContainerPID)
	}
	s.PauseStart = procStartTicks(t, s.PausePID)
	s.ContainerStart = procStartTicks(t, s.ContainerPID)
	if p, ok := readProc(s.PausePID); !ok || !slices.Equal(p.Args(), []string{"/pause"}) {
		t.Errorf("pause pid %d runs %q, want /pause", s.PausePID, p.Args())
	}
	if p, ok := readProc(s.ContainerPID); !ok || !slices.Equal(p.Args(), []string{"/bin/sleep", "3600"}) {
		t.Errorf("container pid %d runs %q, want /bin/sleep 3600", s.ContainerPID, p.Args())
	}

	s.PodNetNS = nsLink(t, s.PausePID, "net")
	if got := nsLink(t, s.ContainerPID, "net"); got != s.PodNetNS {
		t.Errorf("container netns %s, pause netns %s: not the pod's", got, s.PodNetNS)
	}
	hostNetNS := nsLink(t, os.Getpid(), "net")
	if hostNetwork {
		if ps.Status.Linux.Namespaces.Options.Network != "NODE" {
			t.Errorf("pod network namespace mode %q, want NODE", ps.Status.Linux.Namespaces.Options.Network)
		}
		if s.PodNetNS != hostNetNS {
			t.Errorf("host-network pod in netns %s, host is %s", s.PodNetNS, hostNetNS)
		}
		if ns := dirEntries(filepath.Join(d.State, criPluginDir, "netns")); len(ns) > 0 {
			t.Errorf("host-network pod has netns mounts: %v", ns)
		}
	} else {
		if s.PodNetNS == hostNetNS {
			t.Errorf("pod shares the host netns %s", hostNetNS)
		}
		_, subnet, _ := net.ParseCIDR(criSubnet)
		if ip := net.ParseIP(s.PodIP); ip == nil || !subnet.Contains(ip) {
			t.Errorf("pod ip %q not in %s", s.PodIP, criSubnet)
		}
		if ns := dirEntries(filepath.Join(d.State, criPluginDir, "netns")); len(ns) != 1 {
			t.Errorf("netns mounts under state: %v, want one", ns)
		}
		if ports := dirEntries(filepath.Join("/sys/class/net", d.cri.Bridge, "brif")); len(ports) != 1 {
			t.Errorf("ports on bridge %s: %v, want the pod's veth", d.cri.Bridge, ports)
		}
	}

	var list struct {
		Containers []struct {
			ID           string `json:"id"`
			PodSandboxID string `json:"podSandboxId"`
			State        string `json:"state"`
		} `json:"containers"`
	}
	d.mustCrictlJSON(&list, "ps", "-o", "json")
	if len(list.Containers) != 1 || list.Containers[0].ID != cid || list.Containers[0].PodSandboxID != pod.ID {
		t.Errorf("crictl ps: %+v, want %s in %s", list.Containers, cid, pod.ID)
	}
	for _, p := range shimProcs(d.Address) {
		s.Shims = append(s.Shims, p.PID)
	}
	slices.Sort(s.Shims)
	return s
}

// assertCRIExec runs a command in the container through ExecSync.
func assertCRIExec(t *testing.T, d *Daemon, cid string) {
	t.Helper()
	if out := d.mustCrictl("exec", "--sync", cid, "echo", "hello from "+cid[:12]); strings.TrimSpace(out) != "hello from "+cid[:12] {
		t.Errorf("exec printed %q", out)
	}
}

// testCRIPodSurvivesRestart: pull, run a pod and a container, restart the
// daemon with SIGTERM, and find the same pod and container, the same
// processes (same pid and start time) and shims, still exec-able; then
// stop and remove the pod, and find nothing left.
func testCRIPodSurvivesRestart(t *testing.T, hostNetwork bool) {
	d := newCRIDaemon(t)
	pullCRIImages(t, d)
	pod, cid := runCRIPod(t, d, "sk-pod", hostNetwork)
	if msg := eventually(statusTimeout, func() string {
		var cs criContainerStatus
		d.mustCrictlJSON(&cs, "inspect", "-o", "json", cid)
		if cs.Status.State != "CONTAINER_RUNNING" {
			return cs.Status.State
		}
		return ""
	}); msg != "" {
		t.Fatalf("container %s is %s, want CONTAINER_RUNNING", cid, msg)
	}
	before := takeCRISnapshot(t, d, pod, cid, hostNetwork)
	if before.PodState != "SANDBOX_READY" || before.ContainerState != "CONTAINER_RUNNING" {
		t.Fatalf("before restart: pod %s, container %s", before.PodState, before.ContainerState)
	}
	assertCRIExec(t, d, cid)
	t.Logf("before restart: %+v", before)

	start := time.Now()
	d.Restart()
	t.Logf("restart (SIGTERM, start, CRI ready) took %s", time.Since(start).Round(time.Millisecond))

	var pods struct {
		Items []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"items"`
	}
	d.mustCrictlJSON(&pods, "pods", "-o", "json")
	if len(pods.Items) != 1 || pods.Items[0].ID != pod.ID || pods.Items[0].State != "SANDBOX_READY" {
		t.Errorf("crictl pods after restart: %+v, want %s SANDBOX_READY", pods.Items, pod.ID)
	}
	after := takeCRISnapshot(t, d, pod, cid, hostNetwork)
	t.Logf("after restart: %+v", after)
	if fmt.Sprintf("%+v", after) != fmt.Sprintf("%+v", before) {
		t.Errorf("the restart changed the pod:\nbefore %+v\nafter  %+v", before, after)
	}
	assertCRIExec(t, d, cid)

	// The leak check must see the running pod, or its silence at the end
	// proves nothing.
	running := d.leaks()
	seen := strings.Join(running, "\n")
	t.Logf("while the pod runs, the leak check sees %d things", len(running))
	wantSeen := []string{"k8s.io: " + pod.ID, "k8s.io: " + cid, "sandboxes: " + pod.ID, "containers: " + cid,
		"pod still listed by CRI: " + pod.ID, "container still listed by CRI: " + cid, "active snapshot left: " + cid}
	if !hostNetwork {
		wantSeen = append(wantSeen, "netns: cni-", "veth still on bridge", "host-local lease left: "+before.PodIP,
			"CNI result cache left: "+filepath.Join(hostCNIResults, d.cri.Network+"-"+pod.ID))
	}
	for _, w := range wantSeen {
		if !strings.Contains(seen, w) {
			t.Errorf("the leak check does not see %q while the pod runs", w)
		}
	}

	d.mustCrictl("stopp", pod.ID)
	var ps criPodStatus
	d.mustCrictlJSON(&ps, "inspectp", "-o", "json", pod.ID)
	if ps.Status.State != "SANDBOX_NOTREADY" {
		t.Errorf("pod after stopp: %s, want SANDBOX_NOTREADY", ps.Status.State)
	}
	recWaitGone(t, "pod processes after stopp", before.PausePID, before.ContainerPID)
	d.mustCrictl("rmp", pod.ID)
	assertNoLeaks(t, d)
}

// TestCRIPodSurvivesRestart is a pod on the CNI bridge network.
func TestCRIPodSurvivesRestart(t *testing.T) {
	t.Parallel()
	testCRIPodSurvivesRestart(t, false)
}

// TestCRIHostNetworkPodSurvivesRestart is a pod in the host's network
// namespace (no CNI).
func TestCRIHostNetworkPodSurvivesRestart(t *testing.T) {
	t.Parallel()
	testCRIPodSurvivesRestart(t, true)
}

// procStartTicks is field 22 of /proc/<pid>/stat: the start time in clock
// ticks since boot, which with the pid names one process.
func procStartTicks(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("pid %d: %v", pid, err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 {
		t.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		t.Fatalf("/proc/%d/stat starttime: %v", pid, err)
	}
	return v
}

// nsLink is the namespace a process is in, as /proc/<pid>/ns/<kind> reads.
func nsLink(t *testing.T, pid int, kind string) string {
	t.Helper()
	l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, kind))
	if err != nil {
		t.Fatalf("pid %d: %v", pid, err)
	}
	return l
}

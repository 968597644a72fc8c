//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shimkeeper/shimkeeper/internal/crihost"
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
		ID         string `json:"id"`
		State      string `json:"state"`
		ExitCode   int    `json:"exitCode"`
		Reason     string `json:"reason"`
		FinishedAt string `json:"finishedAt"`
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

// criPodSpec is what a test asks of a pod with one container.
type criPodSpec struct {
	Name        string
	HostNetwork bool
	Runtime     string            // CRI runtime handler (`crictl runp --runtime`), "" for the default
	Command     []string          // the container's argv; nil: /bin/sleep 3600
	Mounts      map[string]string // container path → host path, bind-mounted into the container
}

func (s criPodSpec) command() []string {
	if s.Command == nil {
		return []string{"/bin/sleep", "3600"}
	}
	return s.Command
}

// criPod is a pod sandbox the test started, with its config file and
// its one container.
type criPod struct {
	ID     string
	CID    string // the pod's container
	Config string // pod config JSON, also passed to `crictl create`
	Spec   criPodSpec
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

// writeCRIContainerConfig writes a container config (file named after the
// pod and the container) running argv from the toybox image, with mounts
// (container path → host path).
func writeCRIContainerConfig(t *testing.T, d *Daemon, podName, name string, mounts map[string]string, argv ...string) string {
	t.Helper()
	cfg := map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": criToyboxImage},
		"command":  argv,
		"log_path": name + ".log",
		"linux":    map[string]any{},
	}
	var ms []map[string]any
	for _, ctrPath := range slices.Sorted(maps.Keys(mounts)) {
		ms = append(ms, map[string]any{"container_path": ctrPath, "host_path": mounts[ctrPath]})
	}
	if ms != nil {
		cfg["mounts"] = ms
	}
	return writeJSONFile(t, filepath.Join(d.cri.Dir, "container-"+podName+"-"+name+".json"), cfg)
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

// runCRIPod runs a pod and, in it, a started container (sleeping unless
// the spec says otherwise), and waits until the container is RUNNING.
func runCRIPod(t *testing.T, d *Daemon, spec criPodSpec) criPod {
	t.Helper()
	pod := criPod{Config: writeCRIPodConfig(t, d, spec.Name, spec.HostNetwork), Spec: spec}
	runp := []string{"runp"}
	if spec.Runtime != "" {
		runp = append(runp, "--runtime", spec.Runtime)
	}
	pod.ID = strings.TrimSpace(d.mustCrictl(append(runp, pod.Config)...))
	d.cri.notePod(pod.ID)
	ctrConfig := writeCRIContainerConfig(t, d, spec.Name, "sleeper", spec.Mounts, spec.command()...)
	pod.CID = strings.TrimSpace(d.mustCrictl("create", pod.ID, ctrConfig, pod.Config))
	d.mustCrictl("start", pod.CID)
	waitCRIContainer(t, d, pod.CID, "CONTAINER_RUNNING")
	return pod
}

// inspectCRIPod is `crictl inspectp` of id.
func inspectCRIPod(t *testing.T, d *Daemon, id string) criPodStatus {
	t.Helper()
	var ps criPodStatus
	d.mustCrictlJSON(&ps, "inspectp", "-o", "json", id)
	return ps
}

// inspectCRIContainer is `crictl inspect` of cid.
func inspectCRIContainer(t *testing.T, d *Daemon, cid string) criContainerStatus {
	t.Helper()
	var cs criContainerStatus
	d.mustCrictlJSON(&cs, "inspect", "-o", "json", cid)
	return cs
}

// waitCRIContainer waits until CRI reports cid in state and returns its status.
func waitCRIContainer(t *testing.T, d *Daemon, cid, state string) criContainerStatus {
	t.Helper()
	var cs criContainerStatus
	if msg := eventually(statusTimeout, func() string {
		cs = inspectCRIContainer(t, d, cid)
		if cs.Status.State != state {
			return cs.Status.State
		}
		return ""
	}); msg != "" {
		t.Fatalf("container %s is %s, want %s", cid, msg, state)
	}
	return cs
}

// assertCRIListed checks that `crictl pods` lists just pods, each in
// podState, and `crictl ps -a` just their containers, each in its pod and
// in ctrState.
func assertCRIListed(t *testing.T, d *Daemon, podState, ctrState string, pods ...criPod) {
	t.Helper()
	var list struct {
		Items []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"items"`
	}
	d.mustCrictlJSON(&list, "pods", "-o", "json")
	var ctrs criContainerList
	d.mustCrictlJSON(&ctrs, "ps", "-a", "-o", "json")
	gotPods, wantPods := map[string]string{}, map[string]string{}
	gotCtrs, wantCtrs := map[string]string{}, map[string]string{}
	for _, p := range list.Items {
		gotPods[p.ID] = p.State
	}
	for _, c := range ctrs.Containers {
		gotCtrs[c.ID] = c.PodSandboxID + " " + c.State
	}
	for _, pod := range pods {
		wantPods[pod.ID] = podState
		wantCtrs[pod.CID] = pod.ID + " " + ctrState
	}
	if !maps.Equal(gotPods, wantPods) {
		t.Errorf("crictl pods: %v, want %v", gotPods, wantPods)
	}
	if !maps.Equal(gotCtrs, wantCtrs) {
		t.Errorf("crictl ps -a (container: pod state): %v, want %v", gotCtrs, wantCtrs)
	}
}

// criContainerList is `crictl ps -o json`.
type criContainerList struct {
	Containers []struct {
		ID           string `json:"id"`
		PodSandboxID string `json:"podSandboxId"`
		State        string `json:"state"`
	} `json:"containers"`
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

// takeCRISnapshot reads the pod and its container through CRI and /proc,
// and checks what holds whatever the moment: the container runs its
// command in the pod's network namespace, which is the host's only for a
// host-network pod, and the pod has one shim, started for its sandbox id.
func takeCRISnapshot(t *testing.T, d *Daemon, pod criPod) criSnapshot {
	t.Helper()
	cid := pod.CID
	ps := inspectCRIPod(t, d, pod.ID)
	cs := inspectCRIContainer(t, d, cid)
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
	if p, ok := crihost.ReadProc(s.PausePID); !ok || !slices.Equal(p.Args(), []string{"/pause"}) {
		t.Errorf("pause pid %d runs %q, want /pause", s.PausePID, p.Args())
	}
	if p, ok := crihost.ReadProc(s.ContainerPID); !ok || !slices.Equal(p.Args(), pod.Spec.command()) {
		t.Errorf("container pid %d runs %q, want %q", s.ContainerPID, p.Args(), pod.Spec.command())
	}

	s.PodNetNS = nsLink(t, s.PausePID, "net")
	if got := nsLink(t, s.ContainerPID, "net"); got != s.PodNetNS {
		t.Errorf("container netns %s, pause netns %s: not the pod's", got, s.PodNetNS)
	}
	hostNetNS := nsLink(t, os.Getpid(), "net")
	if pod.Spec.HostNetwork {
		if ps.Status.Linux.Namespaces.Options.Network != "NODE" {
			t.Errorf("pod network namespace mode %q, want NODE", ps.Status.Linux.Namespaces.Options.Network)
		}
		if s.PodNetNS != hostNetNS {
			t.Errorf("host-network pod in netns %s, host is %s", s.PodNetNS, hostNetNS)
		}
	} else {
		if s.PodNetNS == hostNetNS {
			t.Errorf("pod shares the host netns %s", hostNetNS)
		}
		_, subnet, _ := net.ParseCIDR(criSubnet)
		if ip := net.ParseIP(s.PodIP); ip == nil || !subnet.Contains(ip) {
			t.Errorf("pod ip %q not in %s", s.PodIP, criSubnet)
		}
	}
	s.Shims = podShims(d, pod.ID)
	if len(s.Shims) != 1 {
		t.Errorf("shims started for pod %s: %v, want one (CRI runs a pod's containers in its sandbox's shim)", pod.ID, s.Shims)
	}
	return s
}

// podShims lists the pids of the shims started for sandbox id (`-id <id>`).
func podShims(d *Daemon, id string) []int {
	var pids []int
	for _, p := range shimProcs(d.Address) {
		if strings.Contains(p.Cmdline, "\x00-id\x00"+id+"\x00") {
			pids = append(pids, p.PID)
		}
	}
	return pids
}

// assertCRIPodSet checks what the running pods hold together: `crictl ps`
// lists just their containers, each in its pod, the daemon runs one shim
// per pod and no other, and each pod not on the host network has one
// netns mount under CRI's state dir and one veth on the test's bridge.
func assertCRIPodSet(t *testing.T, d *Daemon, pods ...criPod) {
	t.Helper()
	var list criContainerList
	d.mustCrictlJSON(&list, "ps", "-o", "json")
	got, want := map[string]string{}, map[string]string{}
	for _, c := range list.Containers {
		got[c.ID] = c.PodSandboxID
	}
	cniPods := 0
	for _, pod := range pods {
		want[pod.CID] = pod.ID
		if !pod.Spec.HostNetwork {
			cniPods++
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("crictl ps (container: pod): %v, want %v", got, want)
	}
	if shims := shimProcs(d.Address); len(shims) != len(pods) {
		t.Errorf("%d shims run, want %d (one per pod): %v", len(shims), len(pods), shims)
	}
	if ns := dirEntries(filepath.Join(d.State, criPluginDir, "netns")); len(ns) != cniPods {
		t.Errorf("netns mounts under state: %v, want %d (one per pod on the CNI network)", ns, cniPods)
	}
	if ports := dirEntries(filepath.Join("/sys/class/net", d.cri.Bridge, "brif")); len(ports) != cniPods {
		t.Errorf("ports on bridge %s: %v, want %d (one veth per pod on the CNI network)", d.cri.Bridge, ports, cniPods)
	}
}

// assertCRIExec runs a command in the container through ExecSync.
func assertCRIExec(t *testing.T, d *Daemon, cid string) {
	t.Helper()
	if out := d.mustCrictl("exec", "--sync", cid, "echo", "hello from "+cid[:12]); strings.TrimSpace(out) != "hello from "+cid[:12] {
		t.Errorf("exec printed %q", out)
	}
}

// criRestart is how a test stops the daemon: (*Daemon).Stop (SIGTERM) or
// (*Daemon).Kill (SIGKILL).
type criRestart struct {
	Name string
	Stop func(*Daemon)
}

var (
	criSIGTERM = criRestart{"SIGTERM", (*Daemon).Stop}
	criSIGKILL = criRestart{"SIGKILL", (*Daemon).Kill}
)

// restartCRIDaemon stops the daemon the way r says, runs whileDown (if
// not nil), starts the daemon again and waits until CRI is ready.
func restartCRIDaemon(t *testing.T, d *Daemon, r criRestart, whileDown func()) {
	t.Helper()
	start := time.Now()
	r.Stop(d)
	if whileDown != nil {
		whileDown()
	}
	d.Start()
	t.Logf("restart (%s, start, CRI ready) took %s", r.Name, time.Since(start).Round(time.Millisecond))
}

// startCRITest starts a CRI daemon (with opts), pulls the images, runs a
// pod of each spec and takes their snapshots, which must be READY and
// RUNNING.
func startCRITest(t *testing.T, specs []criPodSpec, opts ...daemonOption) (*Daemon, []criPod, []criSnapshot) {
	t.Helper()
	d := newCRIDaemon(t, opts...)
	pullCRIImages(t, d)
	var pods []criPod
	for _, spec := range specs {
		pods = append(pods, runCRIPod(t, d, spec))
	}
	var before []criSnapshot
	for _, pod := range pods {
		s := takeCRISnapshot(t, d, pod)
		if s.PodState != "SANDBOX_READY" || s.ContainerState != "CONTAINER_RUNNING" {
			t.Fatalf("pod %s before restart: pod %s, container %s", pod.Spec.Name, s.PodState, s.ContainerState)
		}
		t.Logf("pod %s before restart: %+v", pod.Spec.Name, s)
		before = append(before, s)
	}
	assertCRIPodSet(t, d, pods...)
	return d, pods, before
}

// startCRITest1 is startCRITest of one pod.
func startCRITest1(t *testing.T, spec criPodSpec, opts ...daemonOption) (*Daemon, criPod, criSnapshot) {
	t.Helper()
	d, pods, before := startCRITest(t, []criPodSpec{spec}, opts...)
	return d, pods[0], before[0]
}

// testCRIPodsSurviveRestart: pull, run pods of specs with a container
// each, restart the daemon, and find the same pods and containers (same
// ids), the same processes (same pid and start time), shims and network,
// still exec-able; then stop and remove the pods, and find nothing left.
func testCRIPodsSurviveRestart(t *testing.T, specs []criPodSpec, r criRestart, opts ...daemonOption) {
	d, pods, before := startCRITest(t, specs, opts...)
	for _, pod := range pods {
		assertCRIExec(t, d, pod.CID)
	}

	restartCRIDaemon(t, d, r, nil)

	assertCRIListed(t, d, "SANDBOX_READY", "CONTAINER_RUNNING", pods...)
	for i, pod := range pods {
		after := takeCRISnapshot(t, d, pod)
		t.Logf("pod %s after restart: %+v", pod.Spec.Name, after)
		if fmt.Sprintf("%+v", after) != fmt.Sprintf("%+v", before[i]) {
			t.Errorf("the restart changed pod %s:\nbefore %+v\nafter  %+v", pod.Spec.Name, before[i], after)
		}
	}
	assertCRIPodSet(t, d, pods...)
	for _, pod := range pods {
		assertCRIExec(t, d, pod.CID)
	}

	// The leak check must see the running pods, or its silence at the end
	// proves nothing.
	var want []string
	for i, pod := range pods {
		want = append(want, criPodLeaks(d, pod, before[i].PodIP)...)
		want = append(want, "k8s.io: "+pod.ID, "k8s.io: "+pod.CID)
	}
	assertLeakCheckSees(t, d, want...)
	for i, pod := range pods {
		stopRemoveCRIPod(t, d, pod, before[i].PausePID, before[i].ContainerPID)
	}
	assertNoLeaks(t, d)
}

// criPodLeaks is what the leak check reports of a pod and its container
// as long as CRI has them, whether or not their tasks run.
func criPodLeaks(d *Daemon, pod criPod, podIP string) []string {
	want := []string{"sandboxes: " + pod.ID, "containers: " + pod.CID,
		"pod still listed by CRI: " + pod.ID, "container still listed by CRI: " + pod.CID, "active snapshot left: " + pod.CID}
	if !pod.Spec.HostNetwork {
		want = append(want, "netns: cni-", "veth still on bridge", "host-local lease left: "+podIP,
			"CNI result cache left: "+filepath.Join(hostCNIResults, d.cri.Network+"-"+pod.ID))
	}
	return want
}

// assertLeakCheckSees checks that the leak check reports each of want
// (substrings) now.
func assertLeakCheckSees(t *testing.T, d *Daemon, want ...string) {
	t.Helper()
	leaks := d.leaks()
	seen := strings.Join(leaks, "\n")
	t.Logf("before the pods are removed, the leak check sees %d things", len(leaks))
	for _, w := range want {
		if !strings.Contains(seen, w) {
			t.Errorf("the leak check does not see %q before the pods are removed", w)
		}
	}
}

// stopRemoveCRIPod stops the pod (NOTREADY, pids gone) and removes it.
func stopRemoveCRIPod(t *testing.T, d *Daemon, pod criPod, pids ...int) {
	t.Helper()
	d.mustCrictl("stopp", pod.ID)
	if ps := inspectCRIPod(t, d, pod.ID); ps.Status.State != "SANDBOX_NOTREADY" {
		t.Errorf("pod %s after stopp: %s, want SANDBOX_NOTREADY", pod.Spec.Name, ps.Status.State)
	}
	recWaitGone(t, "pod processes after stopp", pids...)
	d.mustCrictl("rmp", pod.ID)
}

// removeCRIPod is stopRemoveCRIPod, then a check that nothing is left.
func removeCRIPod(t *testing.T, d *Daemon, pod criPod, pids ...int) {
	t.Helper()
	stopRemoveCRIPod(t, d, pod, pids...)
	assertNoLeaks(t, d)
}

// TestCRIPodSurvivesRestart is a pod on the CNI bridge network.
func TestCRIPodSurvivesRestart(t *testing.T) {
	t.Parallel()
	testCRIPodsSurviveRestart(t, []criPodSpec{{Name: "sk-pod"}}, criSIGTERM)
}

// TestCRIHostNetworkPodSurvivesRestart is a pod in the host's network
// namespace (no CNI).
func TestCRIHostNetworkPodSurvivesRestart(t *testing.T) {
	t.Parallel()
	testCRIPodsSurviveRestart(t, []criPodSpec{{Name: "sk-pod", HostNetwork: true}}, criSIGTERM)
}

// TestCRIPodsSurviveDaemonSIGKILL is two pods, one on the CNI network and
// one on the host's, over a daemon that dies (SIGKILL) instead of
// stopping: nothing was flushed or closed on the way out, and both pods
// must come back all the same, with their ids, processes and shims.
func TestCRIPodsSurviveDaemonSIGKILL(t *testing.T) {
	t.Parallel()
	testCRIPodsSurviveRestart(t, []criPodSpec{{Name: "sk-cni"}, {Name: "sk-host", HostNetwork: true}}, criSIGKILL)
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

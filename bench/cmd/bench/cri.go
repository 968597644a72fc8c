package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The CRI cases: N pods, each a pod sandbox on the bench's CNI bridge and
// one container (toybox sleep), created once through the CRI API by stock
// containerd; then the two daemons are restarted alternately over the
// same live state (real shims, runc containers, netns), with the same
// config but for the binary. Each start is timed from exec to CRI Status
// reporting RuntimeReady and NetworkReady, and to ListPodSandbox showing
// every pod SANDBOX_READY and ListContainers (`crictl ps -a`) every
// container CONTAINER_RUNNING.

const (
	// criPoll is the interval of the CRI polls; each poll that finds no
	// connection dials afresh (grpc's own reconnect backoff starts at 1 s).
	criPoll = 5 * time.Millisecond
	// criCallTimeout bounds one CRI call of the populate and teardown.
	criCallTimeout = 2 * time.Minute
)

// criPod is a pod the bench created, with what a restart must keep.
type criPod struct {
	name             string
	id, cid          string
	pausePID, ctrPID int
	ip               string
}

// runCRICase creates the pods, alternates the daemons over them, and
// removes them.
func (b *bench) runCRICase(ctx context.Context, c caseDef) *caseResult {
	res := &caseResult{def: c, runs: map[string][]*runResult{}}
	n := c.cri
	if b.o.criPods > 0 {
		n = b.o.criPods
	}
	if n != c.cri {
		res.def.name = fmt.Sprintf("%d CRI pods (-cri-pods; case %s)", n, c.key)
	}
	fmt.Printf("\n== %s\n", res.def.name)
	env, err := b.newCRIEnv()
	b.cri = env
	if err == nil {
		err = b.useConfig("config-cri.toml", b.baseConfig(criDisabledPlugins)+env.config(b))
	}
	if err != nil {
		res.setupErr = fmt.Errorf("CRI environment: %w", err)
		fmt.Printf("   SETUP FAILED: %v\n", res.setupErr)
		return res
	}
	defer b.endCRICase()
	t0 := time.Now()
	pods, err := b.createCRIPods(ctx, n)
	if err != nil {
		res.setupErr = fmt.Errorf("create pods: %w", err)
		fmt.Printf("   SETUP FAILED: %v\n", res.setupErr)
		if terr := b.teardownCRI(ctx); terr != nil {
			fmt.Printf("   teardown: %v\n", terr)
		}
		return res
	}
	fmt.Printf("   created %d pods (sandbox on bridge %s + one toybox sleep container each) with stock containerd through CRI in %s\n",
		len(pods), env.bridge, time.Since(t0).Round(100*time.Millisecond))
	b.alternate(res, func(name string, round int) *runResult { return b.measureCRI(c, pods, name, round) })
	if err := b.teardownCRI(ctx); err != nil {
		fmt.Printf("   teardown: %v\n", err)
	}
	return res
}

// criDisabledPlugins keeps NRI off (it wants /var/run/nri), as in the
// other cases, and leaves CRI on.
var criDisabledPlugins = []string{"io.containerd.nri.v1.nri"}

// endCRICase goes back to the bench's non-CRI config and tears the CRI
// environment down. The pods should be gone by then (teardownCRI); if
// some are not, their containers are killed and deleted with runc, their
// shims killed by PID and their mounts (rootfs, netns, shm) removed first,
// so that the next case starts on clean dirs.
func (b *bench) endCRICase() {
	b.cfg = filepath.Join(b.tmp, "config.toml")
	if b.cri == nil {
		return
	}
	b.runcDeleteAll(criNamespace)
	for _, pid := range b.procsInTmp() {
		cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(cl), "\x00-namespace\x00"+criNamespace+"\x00") {
			fmt.Printf("   teardown: killing leftover shim %d\n", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, m := range b.mountsInTmp() {
		if strings.Contains(m, "/"+criNamespace+"/") || strings.Contains(m, "/io.containerd.grpc.v1.cri/") {
			fmt.Printf("   teardown: unmounting %s\n", m)
			if err := syscall.Unmount(m, 0); err != nil {
				_ = syscall.Unmount(m, syscall.MNT_DETACH)
			}
		}
	}
	for _, err := range b.cri.teardown() {
		fmt.Printf("   teardown: %v\n", err)
	}
	for _, l := range b.cri.leaks() {
		fmt.Printf("   teardown: LEFT BEHIND: %s\n", l)
	}
	b.cri = nil
}

// criConn is a CRI (and containerd Version) client on the daemon socket.
type criConn struct {
	conn *grpc.ClientConn
	rt   cri.RuntimeServiceClient
	img  cri.ImageServiceClient
}

// dialCRI connects to the daemon socket if it accepts connections now;
// grpc.NewClient alone would connect lazily and back off for a second.
func (b *bench) dialCRI() (*criConn, error) {
	c, err := net.DialTimeout("unix", b.addr, time.Second)
	if err != nil {
		return nil, err
	}
	c.Close()
	conn, err := grpc.NewClient("unix://"+b.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, err
	}
	return &criConn{conn: conn, rt: cri.NewRuntimeServiceClient(conn), img: cri.NewImageServiceClient(conn)}, nil
}

// criState is what one poll of CRI saw.
type criState struct {
	serves, ready, listed bool
	// why the poll did not find every pod and container, for the
	// timeout message.
	why string
}

// pollCRI asks the daemon once: Version until it answers (serves),
// Status until RuntimeReady and NetworkReady (ready), the pod and
// container lists until they show every pod and container (listed; not
// asked if pods is nil). Errors are the daemon's answer, such as CRI's
// "server is not initialized yet" (code Unavailable), or a connection
// that failed; the caller tells them apart by the connection's state.
func pollCRI(ctx context.Context, c *criConn, pods []*criPod, st *criState) error {
	call := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 2*time.Second) }
	var errs []error
	if !st.serves {
		cctx, cancel := call()
		_, err := versionapi.NewVersionClient(c.conn).Version(cctx, &emptypb.Empty{})
		cancel()
		if err != nil {
			return err
		}
		st.serves = true
	}
	if !st.ready {
		cctx, cancel := call()
		resp, err := c.rt.Status(cctx, &cri.StatusRequest{})
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("Status: %w", err))
		} else {
			st.ready = criReady(resp.GetStatus())
		}
	}
	if !st.listed && pods == nil {
		// Only readiness is waited for (populate, teardown).
		st.listed = true
	}
	if !st.listed {
		cctx, cancel := call()
		defer cancel()
		ps, err := c.rt.ListPodSandbox(cctx, &cri.ListPodSandboxRequest{})
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("ListPodSandbox: %w", err))...)
		}
		cs, err := c.rt.ListContainers(cctx, &cri.ListContainersRequest{})
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("ListContainers: %w", err))...)
		}
		st.why = criListed(pods, ps.GetItems(), cs.GetContainers())
		st.listed = st.why == ""
	}
	return errors.Join(errs...)
}

// criReady reports whether Status has RuntimeReady and NetworkReady true.
func criReady(s *cri.RuntimeStatus) bool {
	ok := map[string]bool{}
	for _, c := range s.GetConditions() {
		ok[c.GetType()] = c.GetStatus()
	}
	return ok[cri.RuntimeReady] && ok[cri.NetworkReady]
}

// criListed checks the lists against the pods: every pod SANDBOX_READY,
// every container CONTAINER_RUNNING in its pod, and nothing else. It
// returns what differs ("" when nothing does).
func criListed(pods []*criPod, sandboxes []*cri.PodSandbox, ctrs []*cri.Container) string {
	want := map[string]bool{}
	for _, p := range pods {
		want[p.id], want[p.cid] = true, true
	}
	var bad []string
	gotPod, gotCtr := map[string]cri.PodSandboxState{}, map[string]*cri.Container{}
	for _, s := range sandboxes {
		gotPod[s.GetId()] = s.GetState()
		if !want[s.GetId()] {
			bad = append(bad, "unknown pod "+s.GetId())
		}
	}
	for _, c := range ctrs {
		gotCtr[c.GetId()] = c
		if !want[c.GetId()] {
			bad = append(bad, "unknown container "+c.GetId())
		}
	}
	for _, p := range pods {
		if st, ok := gotPod[p.id]; !ok {
			bad = append(bad, "pod "+p.name+" not listed")
		} else if st != cri.PodSandboxState_SANDBOX_READY {
			bad = append(bad, "pod "+p.name+" "+st.String())
		}
		if c := gotCtr[p.cid]; c == nil {
			bad = append(bad, "container of "+p.name+" not listed")
		} else if c.GetState() != cri.ContainerState_CONTAINER_RUNNING || c.GetPodSandboxId() != p.id {
			bad = append(bad, fmt.Sprintf("container of %s %s in pod %.12s", p.name, c.GetState(), c.GetPodSandboxId()))
		}
	}
	if len(bad) == 0 {
		return ""
	}
	sort.Strings(bad)
	return fmt.Sprintf("%d differences, first: %s", len(bad), strings.Join(bad[:min(3, len(bad))], "; "))
}

// waitCRI polls every criPoll from d's exec until it is ready and lists
// every pod and container; it returns the times from exec and a
// connection for the post-state check. A poll that finds the connection
// gone dials afresh.
func (b *bench) waitCRI(d *daemon, pods []*criPod) (serves, ready, listed time.Duration, c *criConn, err error) {
	ctx := context.Background()
	var st criState
	var lastErr error
	for deadline := d.start.Add(readyTimeout); time.Now().Before(deadline); time.Sleep(criPoll) {
		if d.exited() {
			return 0, 0, 0, nil, fmt.Errorf("%s daemon exited (log: %s)", d.name, d.log)
		}
		d.watch.sample()
		if c == nil {
			if c, lastErr = b.dialCRI(); lastErr != nil {
				continue
			}
		}
		lastErr = pollCRI(ctx, c, pods, &st)
		el := time.Since(d.start)
		if st.serves && serves == 0 {
			serves = el
		}
		if st.ready && ready == 0 {
			ready = el
		}
		if st.listed && listed == 0 {
			listed = el
		}
		if serves > 0 && ready > 0 && listed > 0 {
			return serves, ready, listed, c, nil
		}
		if lastErr != nil && c.conn.GetState() != connectivity.Ready {
			c.conn.Close()
			c = nil
		}
	}
	if c != nil {
		c.conn.Close()
	}
	return 0, 0, 0, nil, fmt.Errorf("%s daemon: CRI not ready and listing every pod within %s (ready %v, last list: %s, last error %v; log: %s)",
		d.name, readyTimeout, ready > 0, st.why, lastErr, d.log)
}

// createCRIPods starts stock containerd on fresh dirs, pulls the images
// and runs n pods, then stops it; it returns the pods with their pids.
func (b *bench) createCRIPods(ctx context.Context, n int) ([]*criPod, error) {
	if err := b.freshDirs(); err != nil {
		return nil, err
	}
	if err := b.writeRuncWrapper(); err != nil {
		return nil, err
	}
	d, err := b.startDaemon("populate", fmt.Sprintf("cri%d-populate", n))
	if err != nil {
		return nil, err
	}
	defer b.stopDaemon(d)
	c, err := b.waitCRIReady(d)
	if err != nil {
		return nil, err
	}
	defer c.conn.Close()
	for _, ref := range []string{criPauseImage, criToyboxImage} {
		cctx, cancel := context.WithTimeout(ctx, criCallTimeout)
		_, err := c.img.PullImage(cctx, &cri.PullImageRequest{Image: &cri.ImageSpec{Image: ref}})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("pull %s: %w", ref, err)
		}
	}
	pods := make([]*criPod, n)
	errc := make(chan error, n)
	sem := make(chan struct{}, max(1, b.o.concurrency))
	var wg sync.WaitGroup
	for i := range pods {
		pods[i] = &criPod{name: fmt.Sprintf("cri-%04d", i)}
		wg.Add(1)
		sem <- struct{}{}
		go func(p *criPod) {
			defer func() { <-sem; wg.Done() }()
			if err := b.runCRIPod(ctx, c, p); err != nil {
				errc <- fmt.Errorf("pod %s: %w", p.name, err)
			}
		}(pods[i])
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return pods, err
	}
	if why, err := criCheckPods(ctx, c, pods, true); err != nil {
		return pods, err
	} else if why != "" {
		return pods, errors.New(why)
	}
	if ports := b.cri.bridgePorts(); len(ports) != n {
		return pods, fmt.Errorf("%d veths on bridge %s, want %d", len(ports), b.cri.bridge, n)
	}
	return pods, b.stopDaemon(d)
}

// waitCRIReady waits until d's CRI reports RuntimeReady and NetworkReady
// (and containerd answers Version).
func (b *bench) waitCRIReady(d *daemon) (*criConn, error) {
	_, _, _, c, err := b.waitCRI(d, nil)
	return c, err
}

func (b *bench) podConfig(p *criPod) *cri.PodSandboxConfig {
	return &cri.PodSandboxConfig{
		Metadata:     &cri.PodSandboxMetadata{Name: p.name, Namespace: namespace, Uid: "uid-" + p.name},
		Hostname:     p.name,
		LogDirectory: filepath.Join(b.cri.logDir, p.name),
		// Cgroups under /sys/fs/cgroup/<ctrl>/skbench/<id>, which the
		// bench's cleanup checks and removes.
		Linux: &cri.LinuxPodSandboxConfig{CgroupParent: "/" + namespace},
	}
}

// runCRIPod runs the pod and starts its container, as `crictl runp`,
// `create` and `start` do.
func (b *bench) runCRIPod(ctx context.Context, c *criConn, p *criPod) error {
	cctx, cancel := context.WithTimeout(ctx, criCallTimeout)
	defer cancel()
	cfg := b.podConfig(p)
	rp, err := c.rt.RunPodSandbox(cctx, &cri.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return fmt.Errorf("run pod sandbox: %w", err)
	}
	p.id = rp.GetPodSandboxId()
	cc, err := c.rt.CreateContainer(cctx, &cri.CreateContainerRequest{
		PodSandboxId: p.id,
		Config: &cri.ContainerConfig{
			Metadata: &cri.ContainerMetadata{Name: "sleeper"},
			Image:    &cri.ImageSpec{Image: criToyboxImage},
			Command:  []string{"/bin/sleep", "3600"},
			LogPath:  "sleeper.log",
			Linux:    &cri.LinuxContainerConfig{},
		},
		SandboxConfig: cfg,
	})
	if err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	p.cid = cc.GetContainerId()
	if _, err := c.rt.StartContainer(cctx, &cri.StartContainerRequest{ContainerId: p.cid}); err != nil {
		return fmt.Errorf("start container: %w", err)
	}
	return nil
}

// verboseInfo is the part of the verbose "info" of PodSandboxStatus and
// ContainerStatus the bench reads.
type verboseInfo struct {
	Pid int `json:"pid"`
}

// criCheckPods reads every pod's and container's status: READY and
// RUNNING, the pause and container processes alive, and, unless record
// is set (then it records them), the same pids and pod IP as when the
// pods were created. It returns what differs.
func criCheckPods(ctx context.Context, c *criConn, pods []*criPod, record bool) (string, error) {
	var bad []string
	for _, p := range pods {
		cctx, cancel := context.WithTimeout(ctx, criCallTimeout)
		ps, err := c.rt.PodSandboxStatus(cctx, &cri.PodSandboxStatusRequest{PodSandboxId: p.id, Verbose: true})
		if err != nil {
			cancel()
			return "", fmt.Errorf("pod %s status: %w", p.name, err)
		}
		cs, err := c.rt.ContainerStatus(cctx, &cri.ContainerStatusRequest{ContainerId: p.cid, Verbose: true})
		cancel()
		if err != nil {
			return "", fmt.Errorf("container of %s status: %w", p.name, err)
		}
		var pi, ci verboseInfo
		_ = json.Unmarshal([]byte(ps.GetInfo()["info"]), &pi)
		_ = json.Unmarshal([]byte(cs.GetInfo()["info"]), &ci)
		ip := ps.GetStatus().GetNetwork().GetIp()
		switch {
		case ps.GetStatus().GetState() != cri.PodSandboxState_SANDBOX_READY:
			bad = append(bad, fmt.Sprintf("pod %s %s", p.name, ps.GetStatus().GetState()))
		case cs.GetStatus().GetState() != cri.ContainerState_CONTAINER_RUNNING:
			bad = append(bad, fmt.Sprintf("container of %s %s", p.name, cs.GetStatus().GetState()))
		case pi.Pid <= 0 || ci.Pid <= 0 || syscall.Kill(pi.Pid, 0) != nil || syscall.Kill(ci.Pid, 0) != nil:
			bad = append(bad, fmt.Sprintf("pod %s: pause pid %d, container pid %d, not both alive", p.name, pi.Pid, ci.Pid))
		case ip == "":
			bad = append(bad, fmt.Sprintf("pod %s has no IP", p.name))
		case record:
			p.pausePID, p.ctrPID, p.ip = pi.Pid, ci.Pid, ip
		case pi.Pid != p.pausePID || ci.Pid != p.ctrPID || ip != p.ip:
			bad = append(bad, fmt.Sprintf("pod %s: pause pid %d, container pid %d, ip %s; want %d, %d, %s",
				p.name, pi.Pid, ci.Pid, ip, p.pausePID, p.ctrPID, p.ip))
		}
	}
	if len(bad) == 0 {
		return "", nil
	}
	return fmt.Sprintf("%d of %d pods not kept: %s", len(bad), len(pods), strings.Join(bad[:min(3, len(bad))], "; ")), nil
}

// measureCRI starts daemon name over the pods and times it; then, with
// the daemon still up, checks that every pod kept its processes and IP.
func (b *bench) measureCRI(c caseDef, pods []*criPod, name string, round int) *runResult {
	r := &runResult{daemon: name, round: round}
	_ = os.WriteFile(b.runcLog(), nil, 0o644)
	d, err := b.startDaemon(name, fmt.Sprintf("%s-%s-%d", c.key, name, round))
	if err != nil {
		r.fail("start: %v", err)
		return r
	}
	defer func() {
		if err := b.stopDaemon(d); err != nil {
			r.fail("%v", err)
		}
	}()
	serves, ready, listed, conn, err := b.waitCRI(d, pods)
	if err != nil {
		r.fail("%v", err)
		return r
	}
	defer conn.conn.Close()
	r.ready, r.criReady, r.list = serves, ready, listed
	r.cpu = cpuTime(d.pid())
	r.runcCalls = countRunc(b.runcLog())
	b.settle(d, r)
	if b.o.pprof {
		b.savePprof(d)
	}
	why, err := criCheckPods(context.Background(), conn, pods, false)
	if err == nil && why == "" {
		if ports := b.cri.bridgePorts(); len(ports) != len(pods) {
			why = fmt.Sprintf("%d veths on bridge %s, want %d", len(ports), b.cri.bridge, len(pods))
		}
	}
	if err != nil {
		why = err.Error()
	}
	switch {
	case why != "":
		msg := why
		if name == "ours" {
			r.fail("%s", msg)
		} else {
			r.invalid = append(r.invalid, msg)
		}
	default:
		r.behaviour = append(r.behaviour, fmt.Sprintf("cri: %d pods READY and containers RUNNING with their pause and container pids and pod IPs, one veth each", len(pods)))
	}
	if name == "ours" {
		if rep, err := readReport(b.state); err != nil {
			r.fail("recovery report: %v", err)
		} else {
			r.recoveryReady, r.recoveryJudged = millis(rep.Ready), millis(rep.Judged)
			if rep.Outcomes["failed"] > 0 {
				r.fail("recovery report: %d entries failed", rep.Outcomes["failed"])
			}
		}
	}
	return r
}

// teardownCRI stops and removes every pod through our daemon (what
// `crictl stopp` and `rmp` do: CNI DEL, netns and shm unmounted, tasks
// and shims gone), then stops it; whatever is left is handled by
// endCRICase and the final cleanup.
func (b *bench) teardownCRI(ctx context.Context) error {
	d, err := b.startDaemon("ours", "cri-teardown")
	if err != nil {
		return err
	}
	defer b.stopDaemon(d)
	c, err := b.waitCRIReady(d)
	if err != nil {
		return err
	}
	defer c.conn.Close()
	cctx, cancel := context.WithTimeout(ctx, criCallTimeout)
	defer cancel()
	ps, err := c.rt.ListPodSandbox(cctx, &cri.ListPodSandboxRequest{})
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range ps.GetItems() {
		if _, err := c.rt.StopPodSandbox(cctx, &cri.StopPodSandboxRequest{PodSandboxId: p.GetId()}); err != nil {
			errs = append(errs, fmt.Errorf("stop pod %s: %w", p.GetId(), err))
			continue
		}
		if _, err := c.rt.RemovePodSandbox(cctx, &cri.RemovePodSandboxRequest{PodSandboxId: p.GetId()}); err != nil {
			errs = append(errs, fmt.Errorf("remove pod %s: %w", p.GetId(), err))
		}
	}
	if cs, err := c.rt.ListContainers(cctx, &cri.ListContainersRequest{}); err == nil && len(cs.GetContainers()) > 0 {
		errs = append(errs, fmt.Errorf("%d containers still listed after removing every pod", len(cs.GetContainers())))
	}
	if ports := b.cri.bridgePorts(); len(ports) > 0 {
		errs = append(errs, fmt.Errorf("veths still on bridge %s: %v", b.cri.bridge, ports))
	}
	return errors.Join(errs...)
}

//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shimkeeper/shimkeeper/internal/crihost"
)

// The CRI side of the harness: a daemon started withCRI() has the CRI
// plugins enabled, a registry of its own serving the test images
// (bin/testimages, a child process in the test dir), a CNI bridge network
// of its own, and is driven with bin/crictl. Everything it writes is under
// the test dir, except the CNI plugins' result cache (libcni's
// /var/lib/cni/results, which containerd has no setting for: checked and
// cleaned per pod id) and the bridge device (deleted at teardown).
//
// The libcni cache is the one host path: /var/lib/cni/results is created
// if missing and left (empty) behind.

// criPlugins are the disabledPlugins that withCRI enables.
var criPlugins = map[string]bool{
	"io.containerd.grpc.v1.cri":                         true,
	"io.containerd.cri.v1.runtime":                      true,
	"io.containerd.cri.v1.images":                       true,
	"io.containerd.podsandbox.controller.v1.podsandbox": true,
}

const (
	// criNamespace is the containerd namespace CRI keeps everything in.
	criNamespace = "k8s.io"
	// criPluginDir is CRI's dir under root and state.
	criPluginDir = "io.containerd.grpc.v1.cri"

	// criRegistryHost names the test images. It resolves nowhere (.test
	// is reserved): only the hosts.toml under the registry config_path
	// sends it to the test's registry, so a pull that works proves the
	// config was used and nothing was fetched from outside.
	criRegistryHost = "registry.shimkeeper.test"
	criPauseImage   = criRegistryHost + "/pause:3.10" // tools/testimages PauseRef
	criToyboxImage  = criRegistryHost + "/toybox:1"   // tools/testimages ToyboxRef

	// criSubnet is the pods' IPAM range. The bridge gets no address and
	// the host no route (isGateway and ipMasq off), so each test's bridge
	// is an isolated segment and parallel tests may share the range.
	criSubnet = "10.247.13.0/24"

	criReadyTimeout    = 30 * time.Second // CRI answering with runtime and network ready
	crictlTimeout      = 90 * time.Second // watchdog for one crictl invocation (a pull, a runp)
	registryStartLimit = 30 * time.Second // testimages building and pushing its images
)

// hostCNIResults is where libcni caches each attachment's result
// (<network>-<container id>-<ifname>); CRI gives no way to move it.
const hostCNIResults = "/var/lib/cni/results"

// criEnv is one CRI daemon's registry, CNI network and crictl config.
type criEnv struct {
	Dir          string // <test dir>/cri
	CrictlConfig string
	HostsDir     string // the registry config_path (certs.d layout)
	CNIConfDir   string
	IPAMDir      string // host-local dataDir
	LogDir       string // pods' log_directory parent
	Bridge       string // the bridge device, unique per test
	Network      string // the CNI network name, unique per test
	Registry     string // host:port of the test's registry
	Digests      map[string]string

	reg *crihost.Registry

	// Runtimes are the CRI runtime handlers configured besides the
	// default "runc" (withCRIRuntime).
	Runtimes []criRuntime

	mu     sync.Mutex
	podIDs map[string]bool // every pod sandbox id seen, for the CNI cache check
}

// criRuntime is a CRI runtime handler running the runc shim.
type criRuntime struct {
	Name      string
	Sandboxer string // CRI's sandboxer for its pods: "" (podsandbox, CRI's default) or "shim"
}

// withCRI enables CRI on the daemon (see criEnv).
func withCRI() daemonOption {
	return func(d *Daemon) {
		if d.cri == nil {
			d.cri = &criEnv{podIDs: map[string]bool{}}
		}
	}
}

// withCRIRuntime enables CRI and adds a runtime handler name, running the
// runc shim like the default one, whose pods CRI runs with sandboxer.
func withCRIRuntime(name, sandboxer string) daemonOption {
	return func(d *Daemon) {
		withCRI()(d)
		d.cri.Runtimes = append(d.cri.Runtimes, criRuntime{Name: name, Sandboxer: sandboxer})
	}
}

// newCRIDaemon starts a CRI-enabled daemon.
func newCRIDaemon(t *testing.T, opts ...daemonOption) *Daemon {
	return newDaemon(t, append([]daemonOption{withCRI()}, opts...)...)
}

func (c *criEnv) requireBinaries(t testing.TB) {
	t.Helper()
	requireBinaries(t, bin("crictl"), bin("testimages"),
		bin("cni/bridge"), bin("cni/loopback"), bin("cni/host-local"), bin("cni/portmap"))
}

// setup lays out the CRI dirs, the CNI network and the crictl config, and
// starts the registry; d.Dir exists, the daemon does not run yet.
func (c *criEnv) setup(t testing.TB, d *Daemon) {
	t.Helper()
	c.Dir = filepath.Join(d.Dir, "cri")
	c.CrictlConfig = filepath.Join(c.Dir, "crictl.yaml")
	c.HostsDir = filepath.Join(c.Dir, "certs.d")
	c.CNIConfDir = filepath.Join(c.Dir, "net.d")
	c.IPAMDir = filepath.Join(c.Dir, "ipam")
	c.LogDir = filepath.Join(c.Dir, "logs")
	suffix := randomHex(4)
	c.Bridge = "skbr" + suffix // ≤ 15 characters (IFNAMSIZ)
	c.Network = "sk-cri-" + suffix
	for _, dir := range []string{c.HostsDir, c.CNIConfDir, c.IPAMDir, c.LogDir, filepath.Join(c.Dir, "cdi")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	// The bridge plugin with host-local IPAM, then portmap as in
	// containerd's own example conflist (a pass-through for pods
	// without port mappings). The loopback plugin is added by CRI.
	conflist, err := crihost.Conflist(c.Network, c.Bridge, criSubnet, c.IPAMDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.CNIConfDir, "10-shimkeeper.conflist"), conflist, 0o644); err != nil {
		t.Fatal(err)
	}

	crictlYAML := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\ndebug: false\npull-image-on-create: false\n",
		d.Address, d.Address)
	if err := os.WriteFile(c.CrictlConfig, []byte(crictlYAML), 0o644); err != nil {
		t.Fatal(err)
	}

	c.startRegistry(t, d)
	hostDir := filepath.Join(c.HostsDir, criRegistryHost)
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Plain HTTP, no TLS keys at all: with skip_verify (or a CA) set,
	// containerd tries HTTPS first on an http:// host.
	hosts := crihost.HostsTOML(c.Registry)
	if err := os.WriteFile(filepath.Join(hostDir, "hosts.toml"), []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startRegistry starts bin/testimages and waits until it serves every
// image the tests use.
func (c *criEnv) startRegistry(t testing.TB, d *Daemon) {
	t.Helper()
	logPath := filepath.Join(c.Dir, "registry.log")
	r, err := crihost.StartRegistry(bin("testimages"), []string{"-toybox", bin("toybox"), "-v"},
		filepath.Join(c.Dir, "registry.json"), logPath, registryStartLimit,
		strings.TrimPrefix(criPauseImage, criRegistryHost+"/"), strings.TrimPrefix(criToyboxImage, criRegistryHost+"/"))
	if err != nil {
		b, _ := os.ReadFile(logPath)
		t.Fatalf("%v\n%s", err, b)
	}
	c.reg, c.Registry = r, r.Addr
	c.Digests = map[string]string{}
	for ref, digest := range r.Images {
		c.Digests[criRegistryHost+"/"+ref] = digest
	}
}

// config is the CRI part of config.toml.
func (c *criEnv) config(d *Daemon) string {
	cfg := crihost.Config{
		PauseImage: criPauseImage,
		HostsDir:   c.HostsDir,
		CDIDir:     filepath.Join(c.Dir, "cdi"),
		CNIBinDir:  bin("cni"),
		CNIConfDir: c.CNIConfDir,
	}
	for _, r := range append([]criRuntime{{Name: "runc"}}, c.Runtimes...) {
		cfg.Runtimes = append(cfg.Runtimes, crihost.Runtime{Name: r.Name, Sandboxer: r.Sandboxer, BinaryName: bin("runc"), Root: d.RuncRoot})
	}
	return cfg.TOML()
}

// crictlCtx runs bin/crictl against the daemon and never fails the test.
func (d *Daemon) crictlCtx(ctx context.Context, args ...string) result {
	full := append([]string{"--config", d.cri.CrictlConfig,
		"--runtime-endpoint", "unix://" + d.Address, "--image-endpoint", "unix://" + d.Address}, args...)
	cmd := exec.CommandContext(ctx, bin("crictl"), full...)
	cmd.WaitDelay = 5 * time.Second
	return runResult(cmd, "crictl", args)
}

// crictl runs crictl under the crictl watchdog.
func (d *Daemon) crictl(args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), crictlTimeout)
	defer cancel()
	return d.crictlCtx(ctx, args...)
}

// mustCrictl runs crictl and fails the test unless it exits 0.
func (d *Daemon) mustCrictl(args ...string) string {
	d.t.Helper()
	r := d.crictl(args...)
	if r.ExitCode != 0 {
		d.t.Fatalf("%s", r)
	}
	return r.Stdout
}

// mustCrictlJSON runs crictl (with -o json among args) and decodes its output into v.
func (d *Daemon) mustCrictlJSON(v any, args ...string) {
	d.t.Helper()
	out := d.mustCrictl(args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		d.t.Fatalf("crictl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// criInfo is the part of `crictl info -o json` the harness reads.
type criInfo struct {
	Status struct {
		Conditions []struct {
			Type    string `json:"type"`
			Status  bool   `json:"status"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"conditions"`
	} `json:"status"`
}

// waitReady waits until CRI reports RuntimeReady and NetworkReady: CRI
// serves on the daemon's socket once its plugins init, but answers only
// once its service runs, and NetworkReady needs the CNI config loaded.
func (c *criEnv) waitReady(d *Daemon, deadline time.Time) {
	d.t.Helper()
	if limit := time.Now().Add(criReadyTimeout); limit.After(deadline) {
		deadline = limit
	}
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r := d.crictlCtx(ctx, "info", "-o", "json")
		cancel()
		last = r.String()
		if r.ExitCode == 0 {
			var info criInfo
			if err := json.Unmarshal([]byte(r.Stdout), &info); err == nil {
				ready := map[string]bool{}
				for _, cond := range info.Status.Conditions {
					ready[cond.Type] = cond.Status
				}
				if ready["RuntimeReady"] && ready["NetworkReady"] {
					return
				}
				last = fmt.Sprintf("conditions %+v", info.Status.Conditions)
			}
		}
		select {
		case <-d.exited:
			d.t.Fatalf("daemon exited before CRI was ready: %v\n%s", d.cmd.ProcessState, d.logTail(60))
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("CRI not ready: %s\n%s", last, d.logTail(60))
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}

// notePod records a pod sandbox id for the CNI cache check and cleanup.
func (c *criEnv) notePod(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.podIDs[id] = true
}

func (c *criEnv) pods() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return keys(c.podIDs)
}

// leaks lists what CRI and CNI left of the test's pods: bundles and work
// dirs in k8s.io, runc state, CRI's sandbox, container and netns dirs,
// ports on the test's bridge (veths), host-local leases, libcni cache
// entries of the test's pods, and, while the daemon runs, pods,
// containers and active snapshots it still lists.
func (c *criEnv) leaks(d *Daemon) []string {
	var out []string
	for _, dir := range []string{
		filepath.Join(d.State, taskPluginDir, criNamespace),
		filepath.Join(d.Root, taskPluginDir, criNamespace),
		filepath.Join(d.State, sandboxPluginDir, criNamespace),
		filepath.Join(d.Root, sandboxPluginDir, criNamespace),
		filepath.Join(d.RuncRoot, criNamespace),
		filepath.Join(d.Root, criPluginDir, "sandboxes"),
		filepath.Join(d.Root, criPluginDir, "containers"),
		filepath.Join(d.State, criPluginDir, "sandboxes"),
		filepath.Join(d.State, criPluginDir, "containers"),
		filepath.Join(d.State, criPluginDir, "netns"),
	} {
		for _, name := range dirEntries(dir) {
			out = append(out, "left in "+dir+": "+name)
		}
	}
	if hostRunc := filepath.Join("/run/containerd/runc", criNamespace); isDir(hostRunc) {
		for _, id := range c.pods() {
			if isDir(filepath.Join(hostRunc, id)) {
				out = append(out, "runc state in host path "+filepath.Join(hostRunc, id))
			}
		}
	}
	for _, port := range dirEntries(filepath.Join("/sys/class/net", c.Bridge, "brif")) {
		out = append(out, "veth still on bridge "+c.Bridge+": "+port)
	}
	for _, lease := range dirEntries(filepath.Join(c.IPAMDir, c.Network)) {
		if lease != "lock" && !strings.HasPrefix(lease, "last_reserved_ip") {
			out = append(out, "host-local lease left: "+lease)
		}
	}
	out = append(out, c.cniCacheEntries()...)
	if d.running() {
		for what, args := range map[string][]string{
			"pod":       {"pods", "-q"},
			"container": {"ps", "-a", "-q"},
		} {
			r := d.crictl(args...)
			if r.ExitCode != 0 {
				out = append(out, fmt.Sprintf("cannot list %ss: %s", what, r))
				continue
			}
			for _, id := range strings.Fields(r.Stdout) {
				out = append(out, what+" still listed by CRI: "+id)
			}
		}
		if r := d.ctrIn(criNamespace, "containers", "ls", "-q"); r.ExitCode == 0 {
			for _, id := range strings.Fields(r.Stdout) {
				out = append(out, "containerd container left in k8s.io: "+id)
			}
		}
		if r := d.ctrIn(criNamespace, "snapshots", "ls"); r.ExitCode == 0 {
			for _, line := range strings.Split(r.Stdout, "\n") {
				if f := strings.Fields(line); len(f) >= 3 && f[len(f)-1] == "Active" {
					out = append(out, "active snapshot left: "+f[0])
				}
			}
		}
	}
	return out
}

// cniCacheEntries lists libcni's cached results of the test's pods.
func (c *criEnv) cniCacheEntries() []string {
	var out []string
	pods := c.pods()
	for _, name := range dirEntries(hostCNIResults) {
		for _, id := range pods {
			if strings.Contains(name, id) {
				out = append(out, "CNI result cache left: "+filepath.Join(hostCNIResults, name))
			}
		}
	}
	return out
}

// teardown, after the harness killed the test's processes and unmounted
// its dirs, stops the registry, deletes the bridge and removes the libcni
// cache entries of the test's pods.
func (c *criEnv) teardown() []error {
	var errs []error
	c.reg.Stop()
	if c.Bridge != "" && isDir(filepath.Join("/sys/class/net", c.Bridge)) {
		if err := crihost.DeleteBridge(c.Bridge); err != nil {
			errs = append(errs, err)
		} else if isDir(filepath.Join("/sys/class/net", c.Bridge)) {
			errs = append(errs, fmt.Errorf("bridge %s still there after its deletion", c.Bridge))
		}
	}
	for _, e := range c.cniCacheEntries() {
		path := strings.TrimPrefix(e, "CNI result cache left: ")
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errs
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// pauseImage is the daemons' pinned sandbox image; toyboxImage is
	// critest's default container image (-test-images-file).
	registryHost = "registry.shimkeeper.test"
	pauseImage   = registryHost + "/pause:3.10"
	toyboxImage  = registryHost + "/toybox:1"

	// podSubnet is the pods' range on each daemon's own bridge (no
	// address on it, no route, no masquerading), as in the CRI
	// integration tests.
	podSubnet = "10.247.14.0/24"

	readyTimeout = 60 * time.Second
	stopTimeout  = 20 * time.Second
)

// mirrored are the registries the critest specs name images under; each
// daemon's hosts.toml sends them to the local registry.
var mirrored = []string{registryHost, "gcr.io", "registry.k8s.io", "k8s.gcr.io"}

// daemon is one containerd (stock or ours) with everything of its own
// under dir.
type daemon struct {
	bin, dir, binary string
	reg              *registry

	address, config, logPath, runcRoot, socketDir string
	bridge, network, nriSocket, imagesFile        string

	cmd    *exec.Cmd
	exited chan struct{}
}

// newDaemon lays out dir: config.toml, hosts.toml per mirrored registry,
// the CNI conflist, the critest images file.
func newDaemon(bin, dir, binary string, reg *registry) (*daemon, error) {
	suffix := fmt.Sprintf("%04x", os.Getpid()&0xffff) + filepath.Base(dir)[:1]
	d := &daemon{
		bin: bin, dir: dir, binary: binary, reg: reg,
		address:    filepath.Join(dir, "c.sock"),
		config:     filepath.Join(dir, "config.toml"),
		logPath:    filepath.Join(dir, "daemon.log"),
		runcRoot:   filepath.Join(dir, "runc"),
		socketDir:  filepath.Join(dir, "s"),
		nriSocket:  filepath.Join(dir, "nri.sock"),
		imagesFile: filepath.Join(dir, "images.yaml"),
		bridge:     "skcr" + suffix, // ≤ 15 characters
		network:    "sk-critest-" + suffix,
	}
	if len(d.socketDir) > 42 {
		return nil, fmt.Errorf("socket dir %s longer than 42 characters", d.socketDir)
	}
	for _, sub := range []string{"certs.d", "net.d", "ipam", "cdi", "nri-plugins", "nri-conf"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	for _, host := range mirrored {
		hostDir := filepath.Join(dir, "certs.d", host)
		if err := os.MkdirAll(hostDir, 0o755); err != nil {
			return nil, err
		}
		// Plain HTTP and no TLS keys: with skip_verify or a CA set,
		// containerd tries HTTPS first. `server` replaces the upstream,
		// so the real host is never asked.
		hosts := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n",
			"http://"+reg.addr, "http://"+reg.addr)
		if err := os.WriteFile(filepath.Join(hostDir, "hosts.toml"), []byte(hosts), 0o644); err != nil {
			return nil, err
		}
	}
	conflist, err := json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		"name":       d.network,
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": d.bridge, "isGateway": false, "ipMasq": false, "hairpinMode": false,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": podSubnet}}},
					"dataDir": filepath.Join(dir, "ipam"),
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "net.d", "10-critest.conflist"), conflist, 0o644); err != nil {
		return nil, err
	}
	images := fmt.Sprintf("defaultTestContainerImage: %s\nwebServerTestImage: %s\n", toyboxImage, toyboxImage)
	if err := os.WriteFile(d.imagesFile, []byte(images), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(d.config, []byte(d.configTOML()), 0o600); err != nil {
		return nil, err
	}
	return d, nil
}

// configTOML is the daemon's config: the integration harness's (own root,
// state, sockets; no opt, no tracing) with CRI and NRI on.
func (d *daemon) configTOML() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("version = 3\nroot = %q\nstate = %q\n", filepath.Join(d.dir, "root"), filepath.Join(d.dir, "state"))
	p("disabled_plugins = [%q, %q, %q]\n\n", "io.containerd.internal.v1.opt",
		"io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp")
	p("[plugins.\"io.containerd.server.v1.grpc\"]\n  address = %q\n\n", d.address)
	p("[plugins.\"io.containerd.server.v1.ttrpc\"]\n  address = %q\n\n", d.address+".ttrpc")
	p("[plugins.\"io.containerd.server.v1.debug\"]\n  address = %q\n\n", filepath.Join(d.dir, "d.sock"))
	p("[plugins.\"io.containerd.shim.v1.manager\"]\n  socket_dir = %q\n\n", d.socketDir)
	p("[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = false\n  socket_path = %q\n  plugin_path = %q\n  plugin_config_path = %q\n\n",
		d.nriSocket, filepath.Join(d.dir, "nri-plugins"), filepath.Join(d.dir, "nri-conf"))
	p("[plugins.\"io.containerd.grpc.v1.cri\"]\n  disable_tcp_service = true\n  stream_server_address = \"127.0.0.1\"\n  stream_server_port = \"0\"\n\n")
	img := "io.containerd.cri.v1.images"
	p("[plugins.%q]\n  snapshotter = \"overlayfs\"\n", img)
	p("  [plugins.%q.pinned_images]\n    sandbox = %q\n", img, pauseImage)
	p("  [plugins.%q.registry]\n    config_path = %q\n\n", img, filepath.Join(d.dir, "certs.d"))
	rt := "io.containerd.cri.v1.runtime"
	p("[plugins.%q]\n  netns_mounts_under_state_dir = true\n  cdi_spec_dirs = [%q]\n", rt, filepath.Join(d.dir, "cdi"))
	if !haveCapSysResource() {
		// Without CAP_SYS_RESOURCE (some sandboxes drop it) runc cannot
		// lower oom_score_adj to the -998 CRI gives the pause container;
		// restrict clamps it to ours, as the CRI integration tests do.
		p("  restrict_oom_score_adj = true\n")
	}
	p("  [plugins.%q.cni]\n    bin_dirs = [%q]\n    conf_dir = %q\n    max_conf_num = 1\n", rt, filepath.Join(d.bin, "cni"), filepath.Join(d.dir, "net.d"))
	p("  [plugins.%q.containerd]\n    default_runtime_name = \"runc\"\n", rt)
	p("    [plugins.%q.containerd.runtimes.runc]\n      runtime_type = \"io.containerd.runc.v2\"\n", rt)
	p("      [plugins.%q.containerd.runtimes.runc.options]\n", rt)
	p("        BinaryName = %q\n        Root = %q\n        SystemdCgroup = false\n", filepath.Join(d.bin, "runc"), d.runcRoot)
	return b.String()
}

// haveCapSysResource reports whether CAP_SYS_RESOURCE is in our
// effective set (and so runc may lower oom_score_adj).
func haveCapSysResource() bool {
	const capSysResource = 24
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if hex, ok := strings.CutPrefix(line, "CapEff:"); ok {
			v, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			return err == nil && v&(1<<capSysResource) != 0
		}
	}
	return false
}

// start starts the daemon and waits until CRI reports the runtime and the
// network ready.
func (d *daemon) start() error {
	logf, err := os.Create(d.logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(d.bin, d.binary), "--config", d.config)
	// The shim and runc come from bin/. A proxy that refuses every
	// connection makes sure no registry but the loopback one (never
	// proxied) is reached, whatever hosts.toml says.
	cmd.Env = append(os.Environ(), "PATH="+d.bin+":"+os.Getenv("PATH"),
		"HTTP_PROXY=http://127.0.0.1:9", "HTTPS_PROXY=http://127.0.0.1:9", "NO_PROXY=")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	d.cmd, d.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(d.exited) }()

	deadline := time.Now().Add(readyTimeout)
	last := ""
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			return fmt.Errorf("%s exited: %v (log: %s)", d.binary, cmd.ProcessState, d.logPath)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := exec.CommandContext(ctx, filepath.Join(d.bin, "crictl"), "--runtime-endpoint", "unix://"+d.address,
			"--image-endpoint", "unix://"+d.address, "info", "-o", "json").Output()
		cancel()
		if err == nil {
			var info struct {
				Status struct {
					Conditions []struct {
						Type   string `json:"type"`
						Status bool   `json:"status"`
					} `json:"conditions"`
				} `json:"status"`
			}
			if json.Unmarshal(out, &info) == nil {
				ready := map[string]bool{}
				for _, c := range info.Status.Conditions {
					ready[c.Type] = c.Status
				}
				if ready["RuntimeReady"] && ready["NetworkReady"] {
					return nil
				}
				last = fmt.Sprintf("conditions %+v", info.Status.Conditions)
			}
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
	return fmt.Errorf("CRI not ready after %s: %s (log: %s)", readyTimeout, last, d.logPath)
}

// critest runs bin/critest against the daemon, writing ginkgo's JSON
// report. Its exit status is not an error: failed specs are in the report.
func (d *daemon) critest(report, focus string, timeout time.Duration, sigs <-chan os.Signal) error {
	args := []string{
		"-runtime-endpoint", "unix://" + d.address, "-image-endpoint", "unix://" + d.address,
		"-test-images-file", d.imagesFile, "-nri-socket", d.nriSocket,
		"-ginkgo.json-report", report, "-ginkgo.timeout", timeout.String(),
		"-ginkgo.no-color", "-ginkgo.v=false", "-ginkgo.succinct",
	}
	for _, s := range skips {
		args = append(args, "-ginkgo.skip", s.re)
	}
	if focus != "" {
		args = append(args, "-ginkgo.focus", focus)
	}
	out, err := os.Create(filepath.Join(d.dir, "critest.log"))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(filepath.Join(d.bin, "critest"), args...)
	cmd.Dir = d.dir // critest looks for crictl.yaml in its working dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case s := <-sigs:
		_ = cmd.Process.Signal(syscall.SIGINT) // ginkgo writes its report on interrupt
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		return fmt.Errorf("interrupted by %v", s)
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return err
	}
	return nil
}

// stop sends SIGTERM and waits for the daemon, then SIGKILL.
func (d *daemon) stop() error {
	if d.cmd == nil {
		return nil
	}
	select {
	case <-d.exited:
		return fmt.Errorf("%s had exited by itself: %v", d.binary, d.cmd.ProcessState)
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		return nil
	case <-time.After(stopTimeout):
		_ = d.cmd.Process.Kill()
		<-d.exited
		return fmt.Errorf("%s ignored SIGTERM for %s, killed", d.binary, stopTimeout)
	}
}

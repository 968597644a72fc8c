package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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

	"github.com/shimkeeper/shimkeeper/internal/crihost"
)

const (
	// registryHost names the pause image and the default container
	// image (-test-images-file); like the CRI tests' host it resolves
	// nowhere, only hosts.toml sends it to the registry.
	registryHost = "registry.shimkeeper.test"
	pauseImage   = registryHost + "/pause:3.10"       // tools/testimages PauseRef
	toyboxImage  = registryHost + "/critest/toybox:1" // tools/testimages CritestToyboxRef

	// podSubnet is the pods' range on each daemon's own bridge (no
	// address on it, no route, no masquerading), as in the CRI
	// integration tests; the two daemons run one after the other.
	podSubnet = "10.247.15.0/24"

	readyTimeout = 60 * time.Second
	stopTimeout  = 20 * time.Second
)

// mirrored are the registries the critest specs name images under; each
// daemon's hosts.toml sends them to the local registry, which serves the
// repositories under their paths (tools/testimages critest.go).
var mirrored = []string{registryHost, "gcr.io", "registry.k8s.io", "k8s.gcr.io"}

// daemon is one containerd (stock or ours) with everything of its own
// under dir.
type daemon struct {
	name, binary, bin, dir string

	address, config, logPath, runcRoot, nriSocket, imagesFile, tmpDir string
	bridge, network                                                   string

	cmd    *exec.Cmd
	exited chan struct{}
}

// newDaemon lays out dir: config.toml, hosts.toml per mirrored registry,
// the CNI conflist, the critest images file.
func newDaemon(bin, dir, name, registry string) (*daemon, error) {
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	d := &daemon{
		name: name, binary: binaries[name], bin: bin, dir: dir,
		address:    filepath.Join(dir, "c.sock"),
		config:     filepath.Join(dir, "config.toml"),
		logPath:    filepath.Join(dir, "daemon.log"),
		runcRoot:   filepath.Join(dir, "runc"),
		nriSocket:  filepath.Join(dir, "nri.sock"),
		imagesFile: filepath.Join(dir, "images.yaml"),
		tmpDir:     filepath.Join(dir, "tmp"),
		bridge:     "skcr" + hex.EncodeToString(suffix), // ≤ 15 characters (IFNAMSIZ)
		network:    "sk-critest-" + hex.EncodeToString(suffix),
	}
	if s := d.socketDir(); len(s) > 42 {
		return nil, fmt.Errorf("socket dir %s longer than 42 characters", s)
	}
	for _, sub := range []string{"certs.d", "net.d", "ipam", "cdi", "nri-plugins", "nri-conf", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	for _, host := range mirrored {
		hostDir := filepath.Join(dir, "certs.d", host)
		if err := os.MkdirAll(hostDir, 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(hostDir, "hosts.toml"), []byte(crihost.HostsTOML(registry)), 0o644); err != nil {
			return nil, err
		}
	}
	conflist, err := crihost.Conflist(d.network, d.bridge, podSubnet, filepath.Join(dir, "ipam"))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "net.d", "10-critest.conflist"), conflist, 0o644); err != nil {
		return nil, err
	}
	images := fmt.Sprintf("defaultTestContainerImage: %s\n", toyboxImage)
	if err := os.WriteFile(d.imagesFile, []byte(images), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(d.config, []byte(d.configTOML()), 0o600); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *daemon) socketDir() string { return filepath.Join(d.dir, "s") }

// pidFile holds the pid of the daemon's current process.
func (d *daemon) pidFile() string { return filepath.Join(d.dir, "daemon.pid") }

// configTOML is the daemon's config: the integration harness's (own root,
// state, sockets; no opt, no tracing) with NRI on its own socket, and the
// CRI tests' CRI part (crihost.Config).
func (d *daemon) configTOML() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("version = 3\nroot = %q\nstate = %q\n", filepath.Join(d.dir, "root"), filepath.Join(d.dir, "state"))
	p("disabled_plugins = [%q, %q, %q]\n\n", "io.containerd.internal.v1.opt",
		"io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp")
	p("[plugins.\"io.containerd.server.v1.grpc\"]\n  address = %q\n\n", d.address)
	p("[plugins.\"io.containerd.server.v1.ttrpc\"]\n  address = %q\n\n", d.address+".ttrpc")
	p("[plugins.\"io.containerd.server.v1.debug\"]\n  address = %q\n\n", filepath.Join(d.dir, "d.sock"))
	p("[plugins.\"io.containerd.shim.v1.manager\"]\n  socket_dir = %q\n\n", d.socketDir())
	p("[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = false\n  socket_path = %q\n  plugin_path = %q\n  plugin_config_path = %q\n",
		d.nriSocket, filepath.Join(d.dir, "nri-plugins"), filepath.Join(d.dir, "nri-conf"))
	b.WriteString(crihost.Config{
		PauseImage: pauseImage,
		HostsDir:   filepath.Join(d.dir, "certs.d"),
		CDIDir:     filepath.Join(d.dir, "cdi"),
		CNIBinDir:  filepath.Join(d.bin, "cni"),
		CNIConfDir: filepath.Join(d.dir, "net.d"),
		Runtimes:   []crihost.Runtime{{Name: "runc", BinaryName: filepath.Join(d.bin, "runc"), Root: d.runcRoot}},
	}.TOML())
	return b.String()
}

// env is the environment of the daemon and of critest: bin/ first in
// PATH (the shim, runc), and a proxy that refuses every connection, so
// that no registry but the loopback one (never proxied) is reached,
// whatever hosts.toml says.
func (d *daemon) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "PATH", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "TMPDIR":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "PATH="+d.bin+":"+os.Getenv("PATH"),
		"HTTP_PROXY=http://127.0.0.1:9", "HTTPS_PROXY=http://127.0.0.1:9", "NO_PROXY=", "TMPDIR="+d.tmpDir)
}

// start starts the daemon and waits until CRI reports the runtime and the
// network ready; it writes the daemon's pid to pidFile.
func (d *daemon) start() error {
	logf, err := os.OpenFile(d.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644) // a restart appends
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(d.bin, d.binary), "--config", d.config)
	cmd.Env = d.env()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	d.cmd, d.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(d.exited) }()
	if err := os.WriteFile(d.pidFile(), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return err
	}

	var last string
	for deadline := time.Now().Add(readyTimeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case <-d.exited:
			return fmt.Errorf("%s exited: %v (log: %s)", d.binary, cmd.ProcessState, d.logPath)
		default:
		}
		var ok bool
		if ok, last = d.criReady(); ok {
			return nil
		}
	}
	return fmt.Errorf("CRI not ready after %s: %s (log: %s)", readyTimeout, last, d.logPath)
}

// criReady asks `crictl info` whether RuntimeReady and NetworkReady are
// true; when not, it says what it got.
func (d *daemon) criReady() (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(d.bin, "crictl"), "--runtime-endpoint", "unix://"+d.address,
		"--image-endpoint", "unix://"+d.address, "info", "-o", "json").Output()
	if err != nil {
		return false, err.Error()
	}
	var info struct {
		Status struct {
			Conditions []struct {
				Type   string `json:"type"`
				Status bool   `json:"status"`
			} `json:"conditions"`
		} `json:"status"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return false, err.Error()
	}
	ready := map[string]bool{}
	for _, c := range info.Status.Conditions {
		ready[c.Type] = c.Status
	}
	return ready["RuntimeReady"] && ready["NetworkReady"], fmt.Sprintf("conditions %+v", info.Status.Conditions)
}

// critest runs bin/critest against the daemon, writing ginkgo's JSON
// report. Its exit status is not an error: failed specs are in the report.
func (d *daemon) critest(report string, o options, sigs <-chan os.Signal) error {
	args := []string{
		"-runtime-endpoint", "unix://" + d.address, "-image-endpoint", "unix://" + d.address,
		"-test-images-file", d.imagesFile, "-nri-socket", d.nriSocket,
		"-ginkgo.json-report", report, "-ginkgo.timeout", o.timeout.String(), "-ginkgo.seed", strconv.FormatInt(o.seed, 10),
		"-ginkgo.no-color", "-ginkgo.v",
	}
	for _, s := range o.skips {
		args = append(args, "-ginkgo.skip", skipRegexp(s.spec))
	}
	if o.focus != "" {
		args = append(args, "-ginkgo.focus", o.focus)
	}
	out, err := os.Create(filepath.Join(d.dir, "critest.log"))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(filepath.Join(d.bin, "critest"), args...)
	cmd.Dir = d.dir
	cmd.Env = d.env()
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

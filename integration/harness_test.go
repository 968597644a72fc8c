//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts used across the package. They bound waits; nothing sleeps for them.
const (
	daemonReadyTimeout = 30 * time.Second // from exec to `ctr version` answering
	daemonStopTimeout  = 30 * time.Second // SIGTERM to exit
	ctrTimeout         = 60 * time.Second // watchdog for a single ctr invocation
	statusTimeout      = 20 * time.Second // a task reaching an expected status
	leakTimeout        = 20 * time.Second // asynchronous teardown settling down
)

// repoRoot is the module root, found relative to this package's directory
// (go test runs tests in the package directory).
var repoRoot string

func TestMain(m *testing.M) {
	flag.Parse()
	raiseParallelism()
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		os.Exit(2)
	}
	repoRoot = filepath.Dir(wd)
	code := m.Run()
	removeFakeShimBuild()
	os.Exit(code)
}

// raiseParallelism lets more tests run at once than the default GOMAXPROCS
// (2 on our machines): the tests mostly wait on daemons and containers, not
// on the CPU. An explicit -parallel wins.
func raiseParallelism() {
	set := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "test.parallel" {
			set = true
		}
	})
	if !set {
		_ = flag.Set("test.parallel", "6")
	}
}

// binDir is where `make tools build` puts the binaries; the Makefile exports
// it as SHIMKEEPER_BIN.
func binDir() string {
	if d := os.Getenv("SHIMKEEPER_BIN"); d != "" {
		return d
	}
	return filepath.Join(repoRoot, "bin")
}

// bin returns the path of a binary in binDir.
func bin(name string) string { return filepath.Join(binDir(), name) }

// daemonBinary is the daemon under test.
func daemonBinary() string { return binaryFromEnv("DAEMON", "containerd") }

// stockBinary is stock containerd v2.4.2.
func stockBinary() string { return binaryFromEnv("STOCK_DAEMON", "containerd-stock") }

// binaryFromEnv returns $env, relative paths taken from the repo root (go
// test runs in the package dir, not where it was started), or bin/name.
func binaryFromEnv(env, name string) string {
	p := os.Getenv(env)
	switch {
	case p == "":
		return bin(name)
	case filepath.IsAbs(p):
		return p
	default:
		return filepath.Join(repoRoot, p)
	}
}

// isStock reports whether path is the stock daemon binary.
func isStock(path string) bool {
	a, errA := os.Stat(path)
	b, errB := os.Stat(stockBinary())
	return errA == nil && errB == nil && os.SameFile(a, b)
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("integration tests need root")
	}
}

// requireBinaries fails the test when a binary is missing: an integration run
// without them is a broken build, not a reason to pass quietly.
func requireBinaries(t testing.TB, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("missing %s (run `make tools build`): %v", p, err)
		}
	}
}

// requireOurs skips a test that states behaviour stock containerd does not
// have; stockBehaviour says what stock does instead. Set
// INTEGRATION_RUN_OURS_ON_STOCK=1 to run such tests against stock anyway
// (to watch stock's behaviour).
func requireOurs(t testing.TB, stockBehaviour string) {
	t.Helper()
	if isStock(daemonBinary()) && os.Getenv("INTEGRATION_RUN_OURS_ON_STOCK") == "" {
		t.Skipf("DAEMON is stock containerd, which %s", stockBehaviour)
	}
}

// randomHex returns n random bytes as hex.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// newNamespace returns a namespace name no other test (or host daemon) uses.
func newNamespace() string { return "sk-" + randomHex(4) }

// Daemon is one daemon instance owned by one test, with its own directories,
// sockets and namespace. Its cleanup is registered by newDaemon.
type Daemon struct {
	t   testing.TB
	bin string // binary used by the next Start

	Dir          string // short temp dir holding everything below
	Root         string
	State        string
	SocketDir    string // shim socket_dir (≤ 42 chars)
	Address      string // GRPC socket
	TTRPCAddress string
	DebugAddress string
	ConfigPath   string
	LogPath      string
	Rootfs       string // container rootfs for ctr run --rootfs
	RuncRoot     string // ctr run --runc-root
	FIFODir      string // ctr --fifo-dir

	NS         string          // the test's default namespace
	mu         sync.Mutex      // guards namespaces (ctr runs from goroutines)
	namespaces map[string]bool // every namespace passed to ctr, for the leak check

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	starts int

	cri *criEnv // CRI enabled (withCRI): its registry, CNI and crictl setup

	configFn  func(*Daemon) string // config.toml instead of config() (withConfig)
	pathFirst []string             // dirs before binDir in the daemon's PATH, read at each Start

	leaksChecked bool
}

// daemonOption adjusts a Daemon before its first start.
type daemonOption func(*Daemon)

// withBinary starts the daemon from bin instead of DAEMON.
func withBinary(bin string) daemonOption { return func(d *Daemon) { d.bin = bin } }

// withConfig writes cfg(d) as config.toml instead of the harness's own
// config (cfg runs once the daemon's paths are set).
func withConfig(cfg func(*Daemon) string) daemonOption {
	return func(d *Daemon) { d.configFn = cfg }
}

// withPathFirst puts dirs before bin/ in the daemon's PATH, where it looks
// for shim binaries (until d.pathFirst is changed before a later Start).
func withPathFirst(dirs ...string) daemonOption {
	return func(d *Daemon) { d.pathFirst = dirs }
}

// newDaemon prepares a daemon's directories, config and rootfs, registers
// the cleanup that tears all of it down, and starts the daemon.
func newDaemon(t *testing.T, opts ...daemonOption) *Daemon {
	t.Helper()
	requireRoot(t)
	d := &Daemon{t: t, bin: daemonBinary(), NS: newNamespace(), namespaces: map[string]bool{}}
	for _, o := range opts {
		o(d)
	}
	requireBinaries(t, d.bin, bin("ctr"), bin("runc"), bin("containerd-shim-runc-v2"), bin("toybox"),
		filepath.Join(repoRoot, "scripts", "mkrootfs.sh"))
	if d.cri != nil {
		d.cri.requireBinaries(t)
	}

	dir, err := os.MkdirTemp("/tmp", "sk")
	if err != nil {
		t.Fatal(err)
	}
	d.Dir = dir
	t.Cleanup(d.teardown) // registered first so it runs last

	d.Root = filepath.Join(dir, "root")
	d.State = filepath.Join(dir, "state")
	d.SocketDir = filepath.Join(dir, "s")
	d.Address = filepath.Join(dir, "c.sock")
	d.TTRPCAddress = d.Address + ".ttrpc"
	d.DebugAddress = filepath.Join(dir, "d.sock")
	d.ConfigPath = filepath.Join(dir, "config.toml")
	d.LogPath = filepath.Join(dir, "daemon.log")
	d.Rootfs = filepath.Join(dir, "rootfs")
	d.RuncRoot = filepath.Join(dir, "runc")
	d.FIFODir = filepath.Join(dir, "fifo")
	if len(d.SocketDir) > 42 {
		t.Fatalf("socket dir %s is longer than 42 characters", d.SocketDir)
	}
	if d.cri != nil {
		d.cri.setup(t, d)
	}
	cfg := d.config()
	if d.configFn != nil {
		cfg = d.configFn(d)
	}
	if err := os.WriteFile(d.ConfigPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(filepath.Join(repoRoot, "scripts", "mkrootfs.sh"), d.Rootfs).CombinedOutput(); err != nil {
		t.Fatalf("mkrootfs.sh %s: %v\n%s", d.Rootfs, err, out)
	}
	d.Start()
	return d
}

// disabledPlugins keeps startup quick and free of host paths: CRI (which
// wants CNI), NRI (/var/run/nri), opt (/opt/containerd) and tracing.
var disabledPlugins = []string{
	"io.containerd.grpc.v1.cri",
	"io.containerd.cri.v1.runtime",
	"io.containerd.cri.v1.images",
	"io.containerd.podsandbox.controller.v1.podsandbox",
	"io.containerd.nri.v1.nri",
	"io.containerd.internal.v1.opt",
	"io.containerd.internal.v1.tracing",
	"io.containerd.tracing.processor.v1.otlp",
}

func (d *Daemon) config() string {
	level := os.Getenv("INTEGRATION_LOG_LEVEL")
	if level == "" {
		level = "info"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "version = 3\n")
	fmt.Fprintf(&b, "root = %q\n", d.Root)
	fmt.Fprintf(&b, "state = %q\n", d.State)
	fmt.Fprintf(&b, "disabled_plugins = [")
	n := 0
	for _, p := range disabledPlugins {
		if d.cri != nil && criPlugins[p] {
			continue
		}
		if n > 0 {
			b.WriteString(", ")
		}
		n++
		fmt.Fprintf(&b, "%q", p)
	}
	b.WriteString("]\n\n")
	fmt.Fprintf(&b, "[debug]\n  level = %q\n\n", level)
	fmt.Fprintf(&b, "[plugins.\"io.containerd.server.v1.grpc\"]\n  address = %q\n\n", d.Address)
	fmt.Fprintf(&b, "[plugins.\"io.containerd.server.v1.ttrpc\"]\n  address = %q\n\n", d.TTRPCAddress)
	fmt.Fprintf(&b, "[plugins.\"io.containerd.server.v1.debug\"]\n  address = %q\n\n", d.DebugAddress)
	fmt.Fprintf(&b, "[plugins.\"io.containerd.server.v1.metrics\"]\n  address = \"\"\n\n")
	fmt.Fprintf(&b, "[plugins.\"io.containerd.shim.v1.manager\"]\n  socket_dir = %q\n", d.SocketDir)
	if d.cri != nil {
		b.WriteString("\n" + d.cri.config(d))
	}
	return b.String()
}

// Start starts the daemon binary currently selected and waits until it
// answers `ctr version`.
func (d *Daemon) Start() {
	d.t.Helper()
	if d.running() {
		d.t.Fatalf("daemon already running (pid %d)", d.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		d.t.Fatal(err)
	}
	defer logf.Close()
	d.starts++
	fmt.Fprintf(logf, "\n=== integration: start #%d: %s ===\n", d.starts, d.bin)

	cmd := exec.Command(d.bin, "--config", d.ConfigPath)
	path := strings.Join(append(append([]string(nil), d.pathFirst...), binDir(), os.Getenv("PATH")), ":")
	cmd.Env = append(os.Environ(), "PATH="+path)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("start %s: %v", d.bin, err)
	}
	d.cmd = cmd
	d.exited = make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(d.exited)

	deadline := time.Now().Add(daemonReadyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r := d.ctrCtx(ctx, "", "version")
		cancel()
		if r.ExitCode == 0 && strings.Contains(r.Stdout, "Server:") {
			if d.cri != nil {
				d.cri.waitReady(d, deadline)
			}
			return
		}
		select {
		case <-d.exited:
			d.t.Fatalf("daemon %s exited during startup: %v\n%s", d.bin, cmd.ProcessState, d.logTail(60))
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("daemon %s not ready after %s; last ctr version: %s\n%s", d.bin, daemonReadyTimeout, r, d.logTail(60))
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// StartWith switches the binary (same dirs and config) and starts it.
func (d *Daemon) StartWith(bin string) {
	d.t.Helper()
	d.bin = bin
	d.Start()
}

func (d *Daemon) running() bool {
	if d.cmd == nil {
		return false
	}
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// Pid is the daemon's process id (0 when not running).
func (d *Daemon) Pid() int {
	if !d.running() {
		return 0
	}
	return d.cmd.Process.Pid
}

// Stop sends SIGTERM and waits for the daemon to exit.
func (d *Daemon) Stop() {
	d.t.Helper()
	d.signalAndWait(syscall.SIGTERM, daemonStopTimeout)
}

// Kill sends SIGKILL and waits for the daemon to exit.
func (d *Daemon) Kill() {
	d.t.Helper()
	d.signalAndWait(syscall.SIGKILL, daemonStopTimeout)
}

// Restart stops the daemon with SIGTERM and starts it again.
func (d *Daemon) Restart() {
	d.t.Helper()
	d.Stop()
	d.Start()
}

func (d *Daemon) signalAndWait(sig syscall.Signal, timeout time.Duration) {
	d.t.Helper()
	if !d.running() {
		d.t.Fatalf("daemon not running")
	}
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatalf("signal %v to daemon: %v", sig, err)
	}
	select {
	case <-d.exited:
	case <-time.After(timeout):
		_ = d.cmd.Process.Kill()
		<-d.exited
		d.t.Fatalf("daemon did not exit within %s of %v\n%s", timeout, sig, d.logTail(60))
	}
}

// logTail returns the last n lines of the daemon log.
func (d *Daemon) logTail(n int) string {
	b, err := os.ReadFile(d.LogPath)
	if err != nil {
		return fmt.Sprintf("(no daemon log: %v)", err)
	}
	var lines [][]byte
	for _, l := range bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n")) {
		// Plugin loading is the bulk of every start and never the story.
		if !bytes.Contains(l, []byte(`msg="loading plugin"`)) && !bytes.Contains(l, []byte(`msg="skip loading plugin"`)) {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "--- daemon log tail (" + d.LogPath + ") ---\n" + string(bytes.Join(lines, []byte("\n")))
}

// logContains reports whether the daemon log contains s.
func (d *Daemon) logContains(s string) bool {
	b, err := os.ReadFile(d.LogPath)
	return err == nil && bytes.Contains(b, []byte(s))
}

// eventually polls cond until it returns "" (success) or the deadline
// passes, and returns the last failure description.
func eventually(timeout time.Duration, cond func() string) string {
	deadline := time.Now().Add(timeout)
	backoff := 10 * time.Millisecond
	for {
		msg := cond()
		if msg == "" || time.Now().After(deadline) {
			return msg
		}
		time.Sleep(backoff) // poll interval, not synchronisation
		if backoff < 200*time.Millisecond {
			backoff *= 2
		}
	}
}

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/shimkeeper/shimkeeper/layout"
)

const (
	namespace      = "skbench"
	readyTimeout   = 3 * time.Minute
	stopTimeout    = 20 * time.Second
	pollInterval   = 10 * time.Millisecond
	settle         = time.Second
	cleanupTimeout = 30 * time.Second
)

// The daemons under test.
var daemons = []string{"ours", "stock"}

// bench holds the temp dir layout shared by every case.
//
//	<tmp>/c.sock, c.sock.ttrpc, d.sock   grpc, ttrpc, debug (pprof) addresses
//	<tmp>/r, <tmp>/st, <tmp>/t           root, state, temp of the daemon
//	<tmp>/s                              shim socket dir (short: at most 42 chars)
//	<tmp>/x/containerd-shim-synth-v1     the synthetic shim binary, x/synth.ctl its server
//	<tmp>/p/<case>/{r,st}                pristine copies
//	<tmp>/log/                           daemon logs
type bench struct {
	o                  options
	tmp                string
	addr, ttrpc, dbg   string
	root, state, temp  string
	sockDir            string
	cfg                string
	synthDir           string
	synthPath, ctlPath string
	logDir             string
	pathEnv            string

	synth    *exec.Cmd
	synthPID int
	live     []*daemon // daemons not yet stopped
	cri      *criEnv   // the CRI case running, if any
}

func newBench(o options) (*bench, error) {
	for _, n := range []string{"containerd", "containerd-stock", "ctr", "containerd-shim-runc-v2", "runc", "toybox"} {
		if _, err := os.Stat(filepath.Join(o.bin, n)); err != nil {
			return nil, fmt.Errorf("%s missing (run make build): %w", n, err)
		}
	}
	for _, n := range []string{"synthshim", "floor"} {
		if _, err := os.Stat(filepath.Join(o.tools, n)); err != nil {
			return nil, fmt.Errorf("%s missing: %w", n, err)
		}
	}
	tmp, err := os.MkdirTemp("/tmp", "skb.")
	if err != nil {
		return nil, err
	}
	b := &bench{
		o:        o,
		tmp:      tmp,
		addr:     filepath.Join(tmp, "c.sock"),
		ttrpc:    filepath.Join(tmp, "c.sock.ttrpc"),
		dbg:      filepath.Join(tmp, "d.sock"),
		root:     filepath.Join(tmp, "r"),
		state:    filepath.Join(tmp, "st"),
		temp:     filepath.Join(tmp, "t"),
		sockDir:  filepath.Join(tmp, "s"),
		synthDir: filepath.Join(tmp, "x"),
		logDir:   filepath.Join(tmp, "log"),
	}
	b.synthPath = filepath.Join(b.synthDir, "containerd-shim-synth-v1")
	b.ctlPath = filepath.Join(b.synthDir, "synth.ctl")
	if len(b.sockDir) > 42 {
		return nil, fmt.Errorf("socket dir %s longer than 42 characters", b.sockDir)
	}
	for _, d := range []string{b.root, b.state, b.temp, b.sockDir, b.synthDir, b.logDir, filepath.Join(tmp, "opt"), filepath.Join(tmp, "iv"), filepath.Join(tmp, "p"), filepath.Join(tmp, "rbin")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, err
		}
	}
	if err := copyFile(filepath.Join(o.tools, "synthshim"), b.synthPath, 0o755); err != nil {
		return nil, err
	}
	// Shims started by a daemon inherit its PATH: the real runc shims find
	// runc through it (a wrapper that logs every runc exec).
	b.pathEnv = filepath.Join(tmp, "rbin") + ":" + o.bin + ":" + os.Getenv("PATH")
	if err := b.useConfig("config.toml", b.baseConfig(disabledPlugins)); err != nil {
		return nil, err
	}
	return b, nil
}

// useConfig writes text as the config both daemons run with, to name in
// the temp dir, and makes it the one they start with. Ours reads its own
// copy, with its one setting that stock does not know when -hold-start is
// given.
func (b *bench) useConfig(name, text string) error {
	b.cfg = filepath.Join(b.tmp, name)
	if err := os.WriteFile(b.cfg, []byte(text), 0o644); err != nil {
		return err
	}
	if b.o.holdStart {
		text += "\n[plugins.\"io.containerd.runtime.v2.task\"]\n  recovery_hold_start = true\n"
	}
	return os.WriteFile(b.oursCfg(), []byte(text), 0o644)
}

// disabledPlugins are demo.sh's: CRI and NRI. The CRI cases keep only NRI
// off (criDisabledPlugins).
var disabledPlugins = []string{
	"io.containerd.grpc.v1.cri",
	"io.containerd.cri.v1.images",
	"io.containerd.cri.v1.runtime",
	"io.containerd.nri.v1.nri",
}

// baseConfig is the daemon config both daemons run with: demo.sh's, with
// every recovery knob at its default, and disabled plugins off.
func (b *bench) baseConfig(disabled []string) string {
	var dis strings.Builder
	for _, p := range disabled {
		fmt.Fprintf(&dis, "  %q,\n", p)
	}
	return fmt.Sprintf(`version = 3
root = %q
state = %q
temp = %q
imports = []
disabled_plugins = [
%s]

[debug]
  level = "info"
  address = %q

[grpc]
  address = %q

[ttrpc]
  address = %q

[metrics]
  address = ""

[plugins."io.containerd.shim.v1.manager"]
  socket_dir = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.image-verifier.v1.bindir"]
  bin_dir = %q
`, b.root, b.state, b.temp, dis.String(), b.dbg, b.addr, b.ttrpc, b.sockDir, filepath.Join(b.tmp, "opt"), filepath.Join(b.tmp, "iv"))
}

// oursCfg is the path of our daemon's config.
func (b *bench) oursCfg() string { return strings.TrimSuffix(b.cfg, ".toml") + "-ours.toml" }

func (b *bench) daemonPath(name string) string {
	if name == "populate" {
		// Populations are always created by the stock binary itself.
		return filepath.Join(b.o.bin, "containerd-stock")
	}
	if name == "stock" {
		if b.o.stock != "" {
			return b.o.stock
		}
		return filepath.Join(b.o.bin, "containerd-stock")
	}
	if b.o.ours != "" {
		return b.o.ours
	}
	return filepath.Join(b.o.bin, "containerd")
}

func (b *bench) env() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PATH=") {
			env = append(env, e)
		}
	}
	return append(env, "PATH="+b.pathEnv)
}

// daemon is one started containerd.
type daemon struct {
	name  string
	cmd   *exec.Cmd
	start time.Time
	done  chan struct{}
	log   string
	conn  *grpc.ClientConn
	// watch samples the bundle set at every poll (settle.go).
	watch *bundleWatch
}

func (b *bench) startDaemon(name, logName string) (*daemon, error) {
	for _, p := range []string{b.addr, b.ttrpc, b.dbg} {
		_ = os.Remove(p)
	}
	logPath := filepath.Join(b.logDir, logName+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cfg := b.cfg
	if name == "ours" {
		cfg = b.oursCfg()
	}
	cmd := exec.Command(b.daemonPath(name), "--config", cfg)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = b.env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	d := &daemon{name: name, cmd: cmd, done: make(chan struct{}), log: logPath, watch: newBundleWatch(b.state)}
	d.start = time.Now()
	d.watch.start = d.start
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		_ = cmd.Wait()
		close(d.done)
	}()
	b.live = append(b.live, d)
	return d, nil
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// waitReady polls the grpc socket every 10 ms and returns the time from exec
// to the first answer of Version.
func (b *bench) waitReady(d *daemon) (time.Duration, error) {
	deadline := d.start.Add(readyTimeout)
	for time.Now().Before(deadline) {
		if d.exited() {
			return 0, fmt.Errorf("%s daemon exited during start (log: %s)", d.name, d.log)
		}
		d.watch.sample()
		if c, err := net.DialTimeout("unix", b.addr, time.Second); err == nil {
			c.Close()
			conn, err := grpc.NewClient("unix://"+b.addr,
				grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err = versionapi.NewVersionClient(conn).Version(ctx, &emptypb.Empty{})
				cancel()
				if err == nil {
					el := time.Since(d.start)
					d.conn = conn
					return el, nil
				}
				conn.Close()
			}
		}
		time.Sleep(pollInterval)
	}
	return 0, fmt.Errorf("%s daemon did not answer Version within %s (log: %s)", d.name, readyTimeout, d.log)
}

// listTasks lists the tasks of the bench namespace.
func (d *daemon) listTasks(timeout time.Duration) ([]*taskInfo, error) {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), namespace), timeout)
	defer cancel()
	resp, err := tasksapi.NewTasksClient(d.conn).List(ctx, &tasksapi.ListTasksRequest{})
	if err != nil {
		return nil, err
	}
	out := make([]*taskInfo, 0, len(resp.Tasks))
	for _, t := range resp.Tasks {
		out = append(out, &taskInfo{ID: t.ID, Pid: t.Pid, Status: t.Status.String(), Exit: t.ExitStatus})
	}
	return out, nil
}

type taskInfo struct {
	ID     string
	Pid    uint32
	Status string
	Exit   uint32
}

// alternate runs measure once per daemon per round, ours first in odd
// rounds and stock first in even ones, and records and prints each run.
func (b *bench) alternate(res *caseResult, measure func(name string, round int) *runResult) {
	for round := 1; round <= b.o.rounds; round++ {
		order := daemons
		switch {
		case res.def.oursOnly:
			order = daemons[:1]
		case round%2 == 0:
			order = []string{daemons[1], daemons[0]}
		}
		for _, name := range order {
			r := measure(name, round)
			res.runs[name] = append(res.runs[name], r)
			fmt.Println(r.line())
			for _, f := range r.failures {
				fmt.Printf("      FAIL: %s\n", f)
			}
		}
	}
}

// timedRun starts daemon name and records in r when it answers, when a
// list holds want tasks that match accepts, its CPU time then, and when it
// settled and its RSS (settle). listed, if set, runs right after the CPU
// reading; after runs while the daemon still serves. The daemon is stopped before
// timedRun returns. Failures go to r; after does not run if a step failed.
func (b *bench) timedRun(r *runResult, name, logName string, want int, match func(*taskInfo) bool, listed func(), after func(d *daemon)) {
	pollCPU := selfCPU()
	d, err := b.startDaemon(name, logName)
	if err != nil {
		r.fail("start: %v", err)
		return
	}
	defer func() {
		if err := b.stopDaemon(d); err != nil {
			r.fail("%v", err)
		}
	}()
	if r.ready, err = b.waitReady(d); err != nil {
		r.fail("%v", err)
		return
	}
	r.list, _, err = b.waitListed(d, func(ts []*taskInfo) bool {
		n := 0
		for _, t := range ts {
			if match(t) {
				n++
			}
		}
		return n == want
	})
	if err != nil {
		r.fail("%v", err)
		return
	}
	r.cpu = cpuTime(d.pid())
	r.pollCPU = selfCPU() - pollCPU
	if listed != nil {
		listed()
	}
	b.settle(d, r)
	if b.o.pprof {
		b.savePprof(d)
	}
	after(d)
}

// waitListed polls List until ok accepts it; it returns the time from exec
// and the last list.
func (b *bench) waitListed(d *daemon, ok func([]*taskInfo) bool) (time.Duration, []*taskInfo, error) {
	deadline := d.start.Add(readyTimeout)
	var last []*taskInfo
	var lastErr error
	for time.Now().Before(deadline) {
		if d.exited() {
			return 0, nil, fmt.Errorf("%s daemon exited (log: %s)", d.name, d.log)
		}
		d.watch.sample()
		ts, err := d.listTasks(time.Minute)
		if err == nil {
			if ok(ts) {
				return time.Since(d.start), ts, nil
			}
			last = ts
		} else {
			lastErr = err
		}
		time.Sleep(pollInterval)
	}
	return 0, last, fmt.Errorf("%s daemon did not list every live task within %s (last error %v, last list %d tasks)", d.name, readyTimeout, lastErr, len(last))
}

// rssKiB reads VmRSS of pid.
func rssKiB(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// cpuTime is the user+system CPU time pid has used (all threads).
func cpuTime(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100) // USER_HZ is 100 on Linux
}

// selfCPU is the CPU time (user+sys) the bench itself has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// savePprof fetches profiles from the daemon's debug socket ([debug]
// address, /debug/pprof/...) into the log dir: the heap (after a GC) and
// the goroutines.
func (b *bench) savePprof(d *daemon) {
	hc := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, "unix", b.dbg)
		}},
	}
	for name, path := range map[string]string{"heap.pprof": "/debug/pprof/heap?gc=1", "goroutines.txt": "/debug/pprof/goroutine?debug=1"} {
		resp, err := hc.Get("http://containerd" + path)
		if err != nil {
			fmt.Printf("      pprof %s: %v\n", path, err)
			continue
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			_ = os.WriteFile(strings.TrimSuffix(d.log, ".log")+"."+name, data, 0o644)
		}
	}
}

// stopDaemon sends SIGTERM and waits; SIGKILL after stopTimeout.
func (b *bench) stopDaemon(d *daemon) error {
	defer func() {
		for i, x := range b.live {
			if x == d {
				b.live = append(b.live[:i], b.live[i+1:]...)
				break
			}
		}
	}()
	if d.conn != nil {
		d.conn.Close()
	}
	if d.exited() {
		return nil
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = d.cmd.Process.Kill()
	<-d.done
	return fmt.Errorf("%s daemon did not exit within %s of SIGTERM; killed", d.name, stopTimeout)
}

// --- small helpers ---

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst+".tmp", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(dst+".tmp", dst)
}

// cpTree copies src to dst (which must not exist) preserving everything:
// symlinks, FIFOs, modes.
func cpTree(src, dst string) error {
	out, err := exec.Command("cp", "-a", src, dst).CombinedOutput()
	if err != nil {
		return fmt.Errorf("cp -a %s %s: %v: %s", src, dst, err, out)
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func (b *bench) bundle(id string) string {
	return layout.BundleDir(layout.PluginDir(b.state, layout.TaskPluginDir), namespace, id)
}

func (b *bench) printMachine() {
	fmt.Println("== machine")
	fmt.Printf("   nproc %d, GOMAXPROCS %d, memory %s, kernel %s, cgroup %s, %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), memTotal(), kernel(), cgroupVersion(), goVersion())
	fmt.Printf("   load average at start: %s\n", loadAvg())
	for _, n := range daemons {
		v, _ := exec.Command(b.daemonPath(n), "--version").Output()
		fmt.Printf("   %-5s  %s (%s)\n", n, b.daemonPath(n), strings.TrimSpace(string(v)))
	}
	fmt.Printf("   temp dir %s, %d rounds per daemon per case\n", b.tmp, b.o.rounds)
	if b.o.holdStart {
		fmt.Println("   ours runs with recovery_hold_start = true: it serves only once every shim is judged, as stock does")
	}
}

func memTotal() string {
	data, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return "?"
}

func kernel() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return "?"
	}
	var s []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

func cgroupVersion() string {
	var st syscall.Statfs_t
	if err := syscall.Statfs("/sys/fs/cgroup", &st); err == nil && st.Type == 0x63677270 {
		return "v2"
	}
	return "v1"
}

func goVersion() string {
	out, err := exec.Command("go", "version").Output()
	if err != nil {
		return runtime.Version() + " (bench binary)"
	}
	return strings.TrimSpace(string(out))
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

var errCheck = errors.New("check failed")

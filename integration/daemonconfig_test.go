//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shimkeeper/shimkeeper/internal/testshim"
)

// badConfigDeadline is how soon a daemon given a bad config must exit.
const badConfigDeadline = 10 * time.Second

// TestBadConfigFailsStart starts the daemon with one bad value of a
// shimkeeper key at a time: it must exit non-zero within seconds, with an
// error naming the key (as must `containerd recovery plan`), leave nothing
// behind, and start again once the value is fixed.
func TestBadConfigFailsStart(t *testing.T) {
	t.Parallel()
	requireOurs(t, "has no recovery_* keys and no limits on socket_dir (and serves without a runtime when a runtime plugin fails)")
	const (
		shimKey = `plugins."io.containerd.shim.v1.manager"`
		taskKey = `plugins."io.containerd.runtime.v2.task"`
	)
	long := "/tmp/" + strings.Repeat("s", 55) // 60 characters
	for _, tc := range []struct {
		name string
		// config returns the config.toml with the bad value.
		config func(d *Daemon) string
		key    string // what the error must name
	}{
		{"relative socket_dir", shimConfig(`socket_dir = "relative/s"`), shimKey + ".socket_dir"},
		{"60-char socket_dir", shimConfig(fmt.Sprintf("socket_dir = %q", long)), shimKey + ".socket_dir"},
		{"env without =", shimConfig(`env = ["NOEQUALS"]`), shimKey + ".env[0]"},
		{"recovery_concurrency 0", taskConfig("recovery_concurrency = 0"), taskKey + ".recovery_concurrency"},
		{"negative recovery_probe_timeout", taskConfig(`recovery_probe_timeout = "-1s"`), taskKey + ".recovery_probe_timeout"},
		{"recovery_deadline not a duration", taskConfig(`recovery_deadline = "banana"`), taskKey + ".recovery_deadline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newDaemon(t)
			d.Stop()
			good := d.config()
			stateBefore := testshim.Tree(t, false, d.State)
			socketsBefore := dirEntries(d.SocketDir)
			if err := os.WriteFile(d.ConfigPath, []byte(tc.config(d)), 0o600); err != nil {
				t.Fatal(err)
			}

			logStart := fileSize(t, d.LogPath)
			start := time.Now()
			raw := recStartRaw(t, d, tc.name)
			select {
			case <-raw.exited:
			case <-time.After(badConfigDeadline):
				t.Fatalf("daemon still running %s after start with a bad config\n%s", badConfigDeadline, d.logTail(20))
			}
			elapsed := time.Since(start)
			if code := raw.cmd.ProcessState.ExitCode(); code <= 0 {
				t.Errorf("daemon exited with %v, want a non-zero exit status", raw.cmd.ProcessState)
			}
			fatal := lastLineWithPrefix(readFrom(t, d.LogPath, logStart), "containerd: ")
			if !strings.Contains(fatal, tc.key) {
				t.Errorf("the daemon's error does not name %s: %q\n%s", tc.key, fatal, d.logTail(10))
			}
			t.Logf("exit after %s: %s", elapsed.Round(time.Millisecond), fatal)

			// The daemon stopped before serving: no shim, nothing new on
			// disk, nobody on its socket.
			if procs := shimProcs(d.Address); len(procs) > 0 {
				t.Errorf("processes of the failed daemon: %+v", procs)
			}
			if diff := testshim.DiffTrees(stateBefore, testshim.Tree(t, false, d.State)); len(diff) > 0 {
				t.Errorf("the failed start changed the state dir:\n%s", strings.Join(diff, "\n"))
			}
			if got := dirEntries(d.SocketDir); !equalStrings(got, socketsBefore) {
				t.Errorf("socket dir %q, was %q", got, socketsBefore)
			}
			if c, err := net.Dial("unix", d.Address); err == nil {
				c.Close()
				t.Errorf("something listens on the daemon's socket %s after the failed start", d.Address)
			}

			// `recovery plan` reads the same config and names the same key.
			ctx, cancel := context.WithTimeout(context.Background(), badConfigDeadline)
			defer cancel()
			out, err := exec.CommandContext(ctx, d.bin, "recovery", "plan", "--config", d.ConfigPath).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() <= 0 || !strings.Contains(string(out), tc.key) {
				t.Errorf("recovery plan: %v, want a non-zero exit naming %s:\n%s", err, tc.key, out)
			}

			// Fixed, it starts.
			if err := os.WriteFile(d.ConfigPath, []byte(good), 0o600); err != nil {
				t.Fatal(err)
			}
			d.Start()
			assertNoLeaks(t, d)
		})
	}
}

// shimConfig returns the harness config with line added to the shim
// manager's section (the last section the harness writes).
func shimConfig(line string) func(d *Daemon) string {
	return func(d *Daemon) string {
		c := d.config()
		if strings.HasPrefix(line, "socket_dir") {
			old := fmt.Sprintf("socket_dir = %q", d.SocketDir)
			if !strings.Contains(c, old) {
				panic("harness config without " + old)
			}
			return strings.Replace(c, old, line, 1)
		}
		return c + "  " + line + "\n"
	}
}

// taskConfig returns the harness config plus a task plugin section with
// line.
func taskConfig(line string) func(d *Daemon) string {
	return func(d *Daemon) string { return d.config() + "\n" + recRecoveryConfig(line) }
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// readFrom returns path's content from offset on.
func readFrom(t testing.TB, path string, offset int64) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if offset > int64(len(b)) {
		offset = int64(len(b))
	}
	return string(b[offset:])
}

func lastLineWithPrefix(s, prefix string) string {
	var last string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			last = l
		}
	}
	return last
}

// procEnv returns the environment of pid.
func procEnv(t testing.TB, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

func hasEnv(env []string, kv string) bool {
	for _, e := range env {
		if e == kv {
			return true
		}
	}
	return false
}

// schedCoreSupported reports whether the kernel has core scheduling
// (CONFIG_SCHED_CORE with SMT): the runc shim's `start` fails when
// SCHED_CORE is set without it. It only reads this process's cookie.
func schedCoreSupported() bool {
	var cookie uint64
	err := unix.Prctl(unix.PR_SCHED_CORE, unix.PR_SCHED_CORE_GET, 0, unix.PR_SCHED_CORE_SCOPE_THREAD, uintptr(unsafe.Pointer(&cookie)))
	return err == nil
}

// TestSchedCoreMigration starts the daemon with a version 2 config whose
// task section has sched_core = true: it starts, and the shims it starts
// get SCHED_CORE=1 in their environment (the migration moves it to the
// shim manager's env), which they do not with the same config without it.
func TestSchedCoreMigration(t *testing.T) {
	t.Parallel()
	requireOurs(t, "migrates sched_core at every version step below 4 and replaces the whole shim manager section each time: "+
		"a version 2 config loses SCHED_CORE=1 at the 3→4 step, and socket_dir with it (shims would use /run/containerd/s)")
	if v, ok := os.LookupEnv("SCHED_CORE"); ok {
		t.Fatalf("the test process has SCHED_CORE=%q in its environment, which every shim would inherit", v)
	}
	d := newDaemon(t)
	shim := installSandboxShim(t, d)
	pod := writePodConfig(t, d, "sched")

	// sandboxEnv runs a sandbox, returns its shim's environment, removes it.
	sandboxEnv := func(id string) []string {
		t.Helper()
		d.mustCtr("sandboxes", "run", "--runtime", shim.Path, pod, id)
		pid := recShimPID(t, d, d.NS, id)
		env := procEnv(t, pid)
		d.mustCtr("sandboxes", "rm", id)
		recWaitGone(t, "sandbox shim", pid)
		return env
	}
	if env := sandboxEnv("plain"); hasEnv(env, "SCHED_CORE=1") {
		t.Fatalf("shim of a daemon without sched_core has SCHED_CORE=1: %q", env)
	}

	d.Stop()
	v2 := strings.Replace(d.config(), "version = 3\n", "version = 2\n", 1)
	if v2 == d.config() {
		t.Fatal("harness config does not start with version = 3")
	}
	v2 += "\n[plugins.\"io.containerd.runtime.v2.task\"]\n  sched_core = true\n"
	if err := os.WriteFile(d.ConfigPath, []byte(v2), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Start()
	plugins, err := parsePlugins(d.mustCtr("plugins", "ls"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"io.containerd.shim.v1.manager", "io.containerd.runtime.v2.task"} {
		if plugins[p].Status != "ok" {
			t.Errorf("plugin %s: %+v, want ok", p, plugins[p])
		}
	}
	if env := sandboxEnv("sched"); !hasEnv(env, "SCHED_CORE=1") {
		t.Errorf("shim of a daemon with sched_core = true lacks SCHED_CORE=1: %q", env)
	}

	// The runc shim acts on it: with core scheduling it puts itself and
	// the container in a core-scheduling group; without, its start fails.
	if schedCoreSupported() {
		d.mustRunSleeper(d.NS, "c1")
		if env := procEnv(t, recShimPID(t, d, d.NS, "c1")); !hasEnv(env, "SCHED_CORE=1") {
			t.Errorf("runc shim lacks SCHED_CORE=1: %q", env)
		}
		d.removeContainer(d.NS, "c1")
	} else {
		r := d.runDetached(d.NS, "c1", "/bin/sleep", "3600")
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, "enable sched core support") {
			t.Errorf("kernel without core scheduling: want the runc shim's start to fail on SCHED_CORE\n%s", r)
		}
		t.Logf("kernel without core scheduling: %s", r.ctrError())
		d.mustCtr("container", "rm", "c1")
	}
	assertNoLeaks(t, d)
}

//go:build integration

package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shimkeeper/shimkeeper/internal/crihost"
)

// badInputDeadline is how fast ctr must get an error for a bad runtime or a
// misbehaving shim: the shim start path must never hang forever.
const badInputDeadline = 30 * time.Second

// TestUnknownRuntime asks for runtimes that cannot be resolved: ctr gets a
// clear error quickly, nothing is left behind, and the daemon still serves.
func TestUnknownRuntime(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		runtime func(d *Daemon) string
		wantErr []string // substrings of ctr's stderr
	}{
		{
			// BinaryName gives containerd-shim-nope-v1, which is not installed.
			name:    "not installed",
			runtime: func(*Daemon) string { return "io.containerd.nope.v1" },
			wantErr: []string{`"io.containerd.nope.v1"`, "containerd-shim-nope-v1", "not installed"},
		},
		{
			// An absolute path must exist (contract §4.1).
			name:    "missing absolute path",
			runtime: func(d *Daemon) string { return filepath.Join(d.Dir, "containerd-shim-missing-v2") },
			wantErr: []string{"containerd-shim-missing-v2", "no such file or directory"},
		},
		{
			// Any other name with a slash is rejected.
			name:    "relative path",
			runtime: func(*Daemon) string { return "bin/containerd-shim-runc-v2" },
			wantErr: []string{"bin/containerd-shim-runc-v2"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newDaemon(t)
			runtime := tc.runtime(d)
			r := d.ctr(d.runArgs([]string{"--runtime", runtime}, "bad", "/bin/sleep", "3600")...)
			if r.ExitCode <= 0 || r.Elapsed > badInputDeadline {
				t.Fatalf("want ctr to fail within %s\n%s", badInputDeadline, r)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(r.Stderr, want) {
					t.Errorf("ctr error does not mention %q\n%s", want, r)
				}
			}
			t.Logf("runtime %q: %q after %s", runtime, r.ctrError(), r.Elapsed.Round(time.Millisecond))
			assertBadRunLeftNothing(t, d, "bad")
		})
	}
}

// TestMisbehavingShim runs containers with fake shims (testdata/fakeshim)
// given to ctr run --runtime as an absolute path. Each must end in a ctr
// error, leave no process, bundle, work dir or mount behind, and
// keep the daemon serving.
func TestMisbehavingShim(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mode string
		// clientTimeout, if set, is passed as `ctr --timeout`: the client
		// gives up and the daemon must clean up after it.
		clientTimeout time.Duration
		// oursOnly marks behaviour stock lacks; stock is what stock does.
		oursOnly bool
		stock    string
		wantErr  []string
	}{
		{
			name: "start exits non-zero", mode: fakeStartFail,
			// Stock returns the shim's combined output and exit status.
			wantErr: []string{fakeStartFailMessage, "exit status 3"},
		},
		{
			name: "start prints garbage", mode: fakeStartGarbage,
			// Stock takes unparsable output as a (scheme-less, so abstract
			// unix socket) address and fails to connect to it.
			wantErr: []string{fakeGarbageOutput},
		},
		{
			name: "start hangs, client gives up", mode: fakeStartHang, clientTimeout: 5 * time.Second,
			wantErr: []string{"context deadline exceeded"},
		},
		{
			name: "start hangs", mode: fakeStartHang, oursOnly: true,
			stock: "runs `shim start` under the request context with no timeout of its own, so ctr run waits forever",
		},
		{
			name: "server never answers, client gives up", mode: fakeServeHang, clientTimeout: 5 * time.Second,
			wantErr: []string{"context deadline exceeded"}, oursOnly: true,
			stock: "fails the Create after ctr gives up, spends 10 s on the hung shim (5 s Delete RPC, 5 s Shutdown), " +
				"removes the bundle and only then runs `shim delete`, whose cwd is gone " +
				"(`sh: 0: getcwd() failed`), so the delete fails and the shim process is leaked",
		},
		{
			// The daemon must stop the server of the shim it started:
			// the shim's own delete does not.
			name: "server never answers, delete leaves it", mode: fakeServeLeak, oursOnly: true,
			stock:   "sends the task Create RPC to the shim with no deadline, so ctr run waits forever",
			wantErr: []string{"did not answer within"},
		},
		{
			name: "server never answers", mode: fakeServeHang, oursOnly: true,
			stock: "sends the task Create RPC to the shim with no deadline, so ctr run waits forever",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.oursOnly {
				requireOurs(t, tc.stock)
			}
			d := newDaemon(t)
			fake := d.installFakeShim(tc.mode)
			var args []string
			if tc.clientTimeout > 0 {
				args = append(args, "--timeout", tc.clientTimeout.String())
			}
			args = append(args, d.runArgs([]string{"--runtime", fake}, "bad", "/bin/sleep", "3600")...)
			// The watchdog only keeps a hang from stalling the suite.
			r := d.ctrWithin(badInputDeadline+10*time.Second, d.NS, args...)
			if r.ExitCode <= 0 || r.Elapsed > badInputDeadline {
				t.Fatalf("want ctr to fail within %s\n%s\n%s", badInputDeadline, r, d.logTail(30))
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(r.Stderr, want) {
					t.Errorf("ctr error does not mention %q\n%s", want, r)
				}
			}
			t.Logf("%s: %q after %s", tc.mode, r.ctrError(), r.Elapsed.Round(time.Millisecond))
			start := time.Now()
			assertBadRunLeftNothing(t, d, "bad")
			t.Logf("clean %s after ctr returned", time.Since(start).Round(time.Millisecond))
		})
	}
}

// assertBadRunLeftNothing is the common tail of the bad-input tests: no task
// for id, nothing left on disk or running, the container record (which ctr
// run creates before the task) removable, and the daemon still able to run a
// normal container.
func assertBadRunLeftNothing(t *testing.T, d *Daemon, id string) {
	t.Helper()
	if tk, ok := d.tasks(d.NS)[id]; ok {
		t.Errorf("failed run left task %+v", tk)
	}
	assertNoLeaks(t, d)
	d.mustCtr("container", "rm", id)

	// The daemon still serves.
	tk := d.mustRunSleeper(d.NS, "good")
	if r := d.execIn(d.NS, "good", "e1", "/bin/echo", "ok"); r.ExitCode != 0 || r.Stdout != "ok\n" {
		t.Fatalf("exec in a normal container after the bad run\n%s", r)
	}
	if !crihost.PIDAlive(tk.PID) {
		t.Fatalf("normal container pid %d not alive", tk.PID)
	}
	d.removeContainer(d.NS, "good")
	assertNoLeaks(t, d)
}

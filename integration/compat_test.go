//go:build integration

package integration

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestStockCompatibility hands the same dirs and config from one daemon
// binary to the other with containers running: stock containerd v2.4.2 must
// be able to take over DAEMON's shims and the other way round. Against
// DAEMON=stock this is a stock-to-stock restart.
func TestStockCompatibility(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	requireBinaries(t, daemonBinary(), stockBinary())
	for _, tc := range []struct {
		name string
		from string
		to   []string // the binaries started in turn
	}{
		{"stock to DAEMON", stockBinary(), []string{daemonBinary()}},
		{"DAEMON to stock", daemonBinary(), []string{stockBinary()}},
		{"stock to DAEMON and back", stockBinary(), []string{daemonBinary(), stockBinary()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, how := range []struct {
				name string
				stop func(*Daemon)
			}{
				{"SIGTERM", (*Daemon).Stop},
				{"SIGKILL", (*Daemon).Kill},
			} {
				t.Run(how.name, func(t *testing.T) {
					t.Parallel()
					d := newDaemon(t, withBinary(tc.from))
					testSurvivesRestart(t, d, func() {
						for _, to := range tc.to {
							shims := recShims(d)
							how.stop(d)
							since := time.Now()
							d.StartWith(to)
							if !isStock(to) {
								// Ours adopts every shim stock left, nothing else.
								recAssertReport(t, d, since, recAdoptedAll(shims), []string{})
							}
						}
					})
				})
			}
		})
	}
}

// TestErrorsMatchStock runs the same failing ctr command against DAEMON and
// against stock containerd and requires the same exit code and the same
// output, once paths, namespaces and log timestamps are normalised: through
// ctr the two daemons must be indistinguishable, error texts included.
func TestErrorsMatchStock(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	requireBinaries(t, daemonBinary(), stockBinary())
	sleeper := func(id string) func(t *testing.T, d *Daemon) {
		return func(t *testing.T, d *Daemon) { d.mustRunSleeper(d.NS, id) }
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, d *Daemon) // must succeed
		probe func(d *Daemon) result        // the command whose failure is compared
	}{
		{
			name: "runtime not installed",
			probe: func(d *Daemon) result {
				return d.ctr(d.runArgs([]string{"--runtime", "io.containerd.nope.v1"}, "x", "/bin/true")...)
			},
		},
		{
			name: "runtime relative path",
			probe: func(d *Daemon) result {
				return d.ctr(d.runArgs([]string{"--runtime", "bin/containerd-shim-runc-v2"}, "x", "/bin/true")...)
			},
		},
		{
			name: "runtime missing absolute path",
			probe: func(d *Daemon) result {
				return d.ctr(d.runArgs([]string{"--runtime", d.Dir + "/containerd-shim-x-v2"}, "x", "/bin/true")...)
			},
		},
		{
			name: "shim start exits non-zero",
			probe: func(d *Daemon) result {
				return d.ctr(d.runArgs([]string{"--runtime", d.installFakeShim(fakeStartFail)}, "x", "/bin/true")...)
			},
		},
		{
			name: "shim start prints garbage",
			probe: func(d *Daemon) result {
				return d.ctr(d.runArgs([]string{"--runtime", d.installFakeShim(fakeStartGarbage)}, "x", "/bin/true")...)
			},
		},
		{
			name:  "delete running task",
			setup: sleeper("x"),
			probe: func(d *Daemon) result { return d.ctr("task", "delete", "x") },
		},
		{
			name: "pause stopped task",
			setup: func(t *testing.T, d *Daemon) {
				d.mustRunSleeper(d.NS, "x")
				d.mustCtr("task", "kill", "x")
				d.waitTask(d.NS, "x", "STOPPED")
			},
			probe: func(d *Daemon) result { return d.ctr("task", "pause", "x") },
		},
		{
			name:  "resume running task",
			setup: sleeper("x"),
			probe: func(d *Daemon) result { return d.ctr("task", "resume", "x") },
		},
		{
			name: "exec in stopped task",
			setup: func(t *testing.T, d *Daemon) {
				d.mustRunSleeper(d.NS, "x")
				d.mustCtr("task", "kill", "x")
				d.waitTask(d.NS, "x", "STOPPED")
			},
			probe: func(d *Daemon) result { return d.execIn(d.NS, "x", "e1", "/bin/true") },
		},
		{
			name: "duplicate exec id",
			setup: func(t *testing.T, d *Daemon) {
				d.mustRunSleeper(d.NS, "x")
				d.mustCtr("task", "exec", "-d", "--fifo-dir", d.FIFODir, "--exec-id", "e1", "x", "/bin/sleep", "3600")
			},
			probe: func(d *Daemon) result { return d.execIn(d.NS, "x", "e1", "/bin/true") },
		},
		{
			name:  "invalid exec id",
			setup: sleeper("x"),
			probe: func(d *Daemon) result { return d.execIn(d.NS, "x", "bad id!", "/bin/true") },
		},
		{
			name:  "exec of a missing binary",
			setup: sleeper("x"),
			probe: func(d *Daemon) result { return d.execIn(d.NS, "x", "e1", "/bin/nope") },
		},
		{
			name:  "kill unknown exec",
			setup: sleeper("x"),
			probe: func(d *Daemon) result { return d.ctr("task", "kill", "--exec-id", "nope", "x") },
		},
		{
			name:  "start task twice",
			setup: sleeper("x"),
			probe: func(d *Daemon) result { return d.ctr("task", "start", "--fifo-dir", d.FIFODir, "x") },
		},
		{
			name: "task of container without one",
			setup: func(t *testing.T, d *Daemon) {
				d.mustCtr("container", "create", "--rootfs", d.Rootfs, "x", "/bin/true")
			},
			probe: func(d *Daemon) result { return d.ctr("task", "kill", "x") },
		},
		{
			name: "run with missing rootfs binary",
			probe: func(d *Daemon) result {
				return d.ctr(d.runArgs([]string{"-d"}, "x", "/bin/nope")...)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got [2]string
			for i, b := range []string{stockBinary(), daemonBinary()} {
				d := newDaemon(t, withBinary(b))
				if tc.setup != nil {
					tc.setup(t, d)
				}
				r := tc.probe(d)
				if r.ExitCode == 0 {
					t.Fatalf("%s: the probe succeeded, want a failure\n%s", b, r)
				}
				got[i] = fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.ExitCode, d.normalise(r.Stdout), d.normalise(r.Stderr))
				// Leave nothing running: remove every container of the test.
				for _, id := range d.containers(d.NS) {
					d.removeContainer(d.NS, id)
				}
				assertNoLeaks(t, d)
			}
			if got[0] != got[1] {
				t.Errorf("ctr output differs from stock\nstock:\n%s\nDAEMON:\n%s", got[0], got[1])
			}
		})
	}
}

var logTimestamp = regexp.MustCompile(`time="[^"]*" `)

// normalise makes ctr output comparable across daemons: it removes the
// per-test dir and namespace and ctr's log timestamps.
func (d *Daemon) normalise(s string) string {
	s = strings.ReplaceAll(s, d.Dir, "<dir>")
	s = strings.ReplaceAll(s, d.NS, "<ns>")
	s = logTimestamp.ReplaceAllString(s, "")
	return strings.TrimSpace(s)
}

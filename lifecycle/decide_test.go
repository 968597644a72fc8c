package lifecycle

import (
	"fmt"
	"slices"
	"testing"
)

// Every value of every fact, so that tests range over the full cross
// product. facts_test.go checks that these lists are complete.
var (
	allKinds      = []Kind{KindDir, KindFile, KindSymlink, KindOther}
	allPresences  = []Presence{PresenceUnknown, PresenceFound, PresenceAbsent, PresenceNotLooked}
	allLiveness   = []Liveness{LivenessUnknown, LivenessAlive, LivenessGone}
	allTaskStates = []TaskState{TaskUnknown, TaskNone, TaskLive, TaskExited}
	allBools      = []bool{false, true}
)

// allObservations calls f with every combination of facts Decide reads:
// 4 kinds × 2^4 flags × 4^5 presences × 3 livenesses × 4 task states.
func allObservations(f func(Observation)) {
	for _, kind := range allKinds {
		for _, valid := range allBools {
			for _, empty := range allBools {
				for _, joined := range allBools {
					for _, rt := range allPresences {
						for _, ctr := range allPresences {
							for _, sb := range allPresences {
								for _, rebooted := range allBools {
									for _, live := range allLiveness {
										for _, task := range allTaskStates {
											for _, sp := range allPresences {
												for _, ip := range allPresences {
													f(Observation{
														Namespace: "default", ID: "c1",
														Kind: kind, ValidName: valid, Empty: empty, Joined: joined,
														Runtime: rt, Container: ctr, Sandbox: sb,
														Rebooted: rebooted, Liveness: live, Task: task,
														ShimProcess: sp, InitProcess: ip,
													})
												}
											}
										}
									}
								}
							}
						}
					}
				}
			}
		}
	}
}

// naiveDecide is a second, deliberately plain statement of the rules, one
// action at a time, written from the issue rather than from decide.go. It
// checks which action Decide picks; the invariants below check that the
// rules themselves are safe.
func naiveDecide(o Observation) Action {
	bundle := o.Kind == KindDir && o.ValidName
	if !bundle {
		return ActionIgnore
	}
	if o.Empty {
		return ActionRemoveEmpty
	}
	canShimDelete := o.Runtime == PresenceFound
	// Dead: the socket is gone and so is every process of the shim.
	dead := o.Liveness == LivenessGone && o.ShimProcess == PresenceAbsent
	if dead && canShimDelete {
		return ActionCleanupDead
	}
	leaked := o.Liveness == LivenessAlive && o.Task == TaskNone && o.Sandbox == PresenceAbsent && !o.Joined
	if leaked && canShimDelete {
		return ActionReapLeaked
	}
	if o.Liveness == LivenessAlive && !leaked {
		return ActionAdopt
	}
	return ActionKeep
}

// removesBundle: the action deletes the bundle or stops the shim.
func removesBundle(a Action) bool {
	return a == ActionReapLeaked || a == ActionCleanupDead || a == ActionRemoveEmpty
}

func TestDecideCrossProduct(t *testing.T) {
	const want = 4 * 2 * 2 * 2 * 4 * 4 * 4 * 2 * 3 * 4 * 4 * 4
	n := 0
	seen := map[Action]int{}
	allObservations(func(o Observation) {
		n++
		d := Decide(o)
		a := d.Action
		seen[a]++
		fail := func(format string, args ...any) {
			t.Helper()
			t.Errorf("%+v → %s (%q): %s", o, a, d.Reason, fmt.Sprintf(format, args...))
		}
		bundle := o.Kind == KindDir && o.ValidName
		reachable := o.Liveness == LivenessAlive || o.Liveness == LivenessUnknown

		// Total and deterministic: exactly one known action, with a
		// reason, the same every time, whatever the names.
		if !slices.Contains(Actions, a) {
			fail("action not in Actions")
		}
		if d.Reason == "" {
			fail("no reason")
		}
		o2 := o
		o2.Namespace, o2.ID = "k8s.io", "other-id"
		if d2, d3 := Decide(o2), Decide(o); d2 != d || d3 != d {
			fail("not deterministic: %v, %v", d2, d3)
		}
		if a.Destructive() != removesBundle(a) {
			fail("Destructive() = %v", a.Destructive())
		}

		// What is not a bundle is ignored, and only that.
		if bundle != (a != ActionIgnore) {
			fail("ignore iff not a directory with a valid name")
		}
		// Nothing is removed or stopped unless the shim is proven gone or
		// the bundle is empty; the one exception is a leaked shim: alive,
		// it says it has no task, no sandbox record, not joined, and its
		// binary can run `shim delete`.
		if removesBundle(a) && !o.Empty && o.Liveness != LivenessGone {
			leaked := o.Liveness == LivenessAlive && o.Task == TaskNone &&
				o.Sandbox == PresenceAbsent && !o.Joined && o.Runtime == PresenceFound
			if !leaked || a != ActionReapLeaked {
				fail("removes the bundle of a shim that is not gone")
			}
		}
		if a == ActionReapLeaked && (o.Liveness != LivenessAlive || o.Task != TaskNone ||
			o.Sandbox != PresenceAbsent || o.Joined || o.Runtime != PresenceFound || o.Empty) {
			fail("reaps a shim that is not a proven leak")
		}
		if a == ActionRemoveEmpty && !o.Empty {
			fail("remove-empty of a bundle that is not empty")
		}
		if a == ActionCleanupDead && o.Liveness != LivenessGone {
			fail("cleanup-dead of a shim that is not gone")
		}
		// No "gone" without the socket and the process both proven gone.
		if a == ActionCleanupDead && o.ShimProcess != PresenceAbsent {
			fail("cleanup-dead while the shim process is %s", o.ShimProcess)
		}
		// No kill on boot evidence from our own record: flipping Rebooted
		// never changes the decision.
		o3 := o
		o3.Rebooted = !o.Rebooted
		if Decide(o3) != d {
			fail("decision depends on our boot id record")
		}
		// The container process is reported, never decisive either way.
		o4 := o
		o4.InitProcess = (o.InitProcess + 1) % 3
		if Decide(o4) != d {
			fail("decision depends on the init process")
		}
		// An empty bundle holds nothing to judge: the scan never probes it.
		if bundle && o.Empty && a != ActionRemoveEmpty {
			fail("empty bundle not removed")
		}
		if !bundle || o.Empty {
			return
		}
		// Unknown liveness keeps the bundle.
		if o.Liveness == LivenessUnknown && a != ActionKeep {
			fail("unknown liveness not kept")
		}
		// A live shim whose ownership is unknown is adopted, never reaped.
		if o.Liveness == LivenessAlive && (o.Sandbox == PresenceUnknown || o.Task == TaskUnknown) && a != ActionAdopt {
			fail("live shim of unknown ownership not adopted")
		}
		// A live shim with a task, or a sandbox's, is adopted.
		if o.Liveness == LivenessAlive && (o.Task == TaskLive || o.Task == TaskExited || o.Joined || o.Sandbox == PresenceFound) && a != ActionAdopt {
			fail("live shim that owns something not adopted")
		}
		// A missing or unresolvable binary never removes the bundle of a
		// shim that may be running.
		if reachable && o.Runtime != PresenceFound && removesBundle(a) {
			fail("bundle of a reachable shim removed without its binary")
		}
		// A gone shim is cleaned up only when its process is proven gone
		// too and `shim delete` can run; otherwise kept and re-probed.
		if o.Liveness == LivenessGone {
			wantA := ActionKeep
			if o.Runtime == PresenceFound && o.ShimProcess == PresenceAbsent {
				wantA = ActionCleanupDead
			}
			if a != wantA {
				fail("gone shim: want %s", wantA)
			}
		}
		if want := naiveDecide(o); a != want {
			fail("reference model says %s", want)
		}
	})
	if n != want {
		t.Fatalf("cross product has %d observations, want %d", n, want)
	}
	for _, a := range Actions {
		if seen[a] == 0 {
			t.Errorf("action %s is never decided", a)
		}
	}
	t.Logf("decisions over %d observations: %v", n, seen)
}

// The naive model and the invariants must themselves be able to fail:
// each mutant below breaks one rule, and the cross product must notice.
func TestDecideModelCatchesMutants(t *testing.T) {
	mutants := map[string]func(Observation) Action{
		"unknown liveness adopted": func(o Observation) Action {
			if o.Kind == KindDir && o.ValidName && !o.Empty && o.Liveness == LivenessUnknown {
				return ActionAdopt
			}
			return Decide(o).Action
		},
		"unknown sandbox reaped": func(o Observation) Action {
			if Decide(o).Action == ActionAdopt && o.Task == TaskNone && o.Sandbox == PresenceUnknown && !o.Joined {
				return ActionReapLeaked
			}
			return Decide(o).Action
		},
		"leak reaped without binary": func(o Observation) Action {
			if o.Kind == KindDir && o.ValidName && !o.Empty && o.Liveness == LivenessAlive &&
				o.Task == TaskNone && o.Sandbox == PresenceAbsent && !o.Joined {
				return ActionReapLeaked
			}
			return Decide(o).Action
		},
		"gone without binary cleaned up": func(o Observation) Action {
			if o.Kind == KindDir && o.ValidName && !o.Empty && o.Liveness == LivenessGone && o.ShimProcess == PresenceAbsent {
				return ActionCleanupDead
			}
			return Decide(o).Action
		},
		"socket gone taken for death": func(o Observation) Action {
			if o.Kind == KindDir && o.ValidName && !o.Empty && o.Liveness == LivenessGone && o.Runtime == PresenceFound {
				return ActionCleanupDead
			}
			return Decide(o).Action
		},
		"reboot record trusted": func(o Observation) Action {
			if o.Kind == KindDir && o.ValidName && !o.Empty && o.Rebooted && o.Liveness != LivenessAlive {
				return ActionCleanupDead
			}
			return Decide(o).Action
		},
	}
	for name, m := range mutants {
		caught := false
		allObservations(func(o Observation) {
			if !caught && m(o) != naiveDecide(o) {
				caught = true
			}
		})
		if !caught {
			t.Errorf("mutant %q agrees with the reference model everywhere", name)
		}
	}
}

// TestDecide names the cases that matter, in the spirit of stock's
// TestShouldCleanupShim. The base is a valid, non-empty bundle of a
// container whose runtime resolves and that has no sandbox.
func TestDecide(t *testing.T) {
	base := Observation{
		Namespace: "default", ID: "c1", Kind: KindDir, ValidName: true,
		Runtime: PresenceFound, Container: PresenceFound, Sandbox: PresenceAbsent,
	}
	with := func(f func(o *Observation)) Observation {
		o := base
		f(&o)
		return o
	}
	for _, tc := range []struct {
		name string
		obs  Observation
		want Action
	}{
		{
			// The shim's socket accepted but it did not answer within the
			// probe timeout (stock: "pids lookup times out"). It may be
			// alive and serving a container: keep everything.
			name: "pids lookup times out",
			obs:  with(func(o *Observation) { o.Liveness = LivenessUnknown }),
			want: ActionKeep,
		},
		{
			// Same, but its runtime was uninstalled: still not ours to
			// touch.
			name: "unknown liveness, binary missing",
			obs:  with(func(o *Observation) { o.Liveness, o.Runtime = LivenessUnknown, PresenceAbsent }),
			want: ActionKeep,
		},
		{
			// The socket is gone or refuses connections: the shim died
			// while containerd was down. Run `shim delete`, remove the
			// bundle and publish the exit.
			name: "socket refused, no shim process",
			obs:  with(func(o *Observation) { o.Liveness, o.ShimProcess = LivenessGone, PresenceAbsent }),
			want: ActionCleanupDead,
		},
		{
			// The socket file was removed (a tmp cleaner, an operator
			// tidying /run) while the shim runs on: alive but unreachable.
			name: "socket file removed, shim process alive",
			obs:  with(func(o *Observation) { o.Liveness, o.ShimProcess = LivenessGone, PresenceFound }),
			want: ActionKeep,
		},
		{
			// /proc could not be read: the process is not ruled out.
			name: "socket refused, shim process unknown",
			obs:  with(func(o *Observation) { o.Liveness, o.ShimProcess = LivenessGone, PresenceUnknown }),
			want: ActionKeep,
		},
		{
			// Gone, but `shim delete` cannot run, and container processes
			// may have outlived the shim: keep it for a start after the
			// runtime is reinstalled.
			name: "shim gone, binary uninstalled",
			obs: with(func(o *Observation) {
				o.Liveness, o.ShimProcess, o.Runtime = LivenessGone, PresenceAbsent, PresenceAbsent
			}),
			want: ActionKeep,
		},
		{
			// Our boot id record differs, but a stock daemon may have
			// run in between: the record proves nothing, the binary is
			// still needed.
			name: "shim gone, boot id record differs, binary uninstalled",
			obs: with(func(o *Observation) {
				o.Liveness, o.ShimProcess, o.Runtime, o.Rebooted = LivenessGone, PresenceAbsent, PresenceUnknown, true
			}),
			want: ActionKeep,
		},
		{
			// A shim that answers is alive whatever the record says.
			name: "alive, boot id record differs",
			obs:  with(func(o *Observation) { o.Liveness, o.Task, o.Rebooted = LivenessAlive, TaskLive, true }),
			want: ActionAdopt,
		},
		{
			// The ordinary restart: the shim answers and has the task.
			name: "alive with a running task",
			obs:  with(func(o *Observation) { o.Liveness, o.Task = LivenessAlive, TaskLive }),
			want: ActionAdopt,
		},
		{
			// The task exited while containerd was down; its exit is
			// still in the shim, to be read by whoever waits on it.
			name: "alive with an exited task",
			obs:  with(func(o *Observation) { o.Liveness, o.Task = LivenessAlive, TaskExited }),
			want: ActionAdopt,
		},
		{
			// containerd crashed between `shim start` and task Create:
			// the shim runs but owns nothing.
			name: "leaked shim",
			obs:  with(func(o *Observation) { o.Liveness, o.Task = LivenessAlive, TaskNone }),
			want: ActionReapLeaked,
		},
		{
			// A leaked shim whose binary is gone: reaping would remove
			// the bundle without `shim delete`; leave it.
			name: "leaked shim, binary uninstalled",
			obs:  with(func(o *Observation) { o.Liveness, o.Task, o.Runtime = LivenessAlive, TaskNone, PresenceAbsent }),
			want: ActionKeep,
		},
		{
			// A sandbox's shim has no task of the sandbox's id.
			name: "sandbox shim without a task",
			obs:  with(func(o *Observation) { o.Liveness, o.Task, o.Sandbox = LivenessAlive, TaskNone, PresenceFound }),
			want: ActionAdopt,
		},
		{
			// The sandbox store failed: it may be a sandbox's shim.
			name: "no task, sandbox store error",
			obs:  with(func(o *Observation) { o.Liveness, o.Task, o.Sandbox = LivenessAlive, TaskNone, PresenceUnknown }),
			want: ActionAdopt,
		},
		{
			// The shim answered State with an error of its own other
			// than NotFound: ownership unknown.
			name: "state call fails",
			obs:  with(func(o *Observation) { o.Liveness, o.Task = LivenessAlive, TaskUnknown }),
			want: ActionAdopt,
		},
		{
			// A task in its sandbox's shim: the shim is the sandbox's,
			// never reaped for this task.
			name: "joined task, shim says no task",
			obs:  with(func(o *Observation) { o.Liveness, o.Task, o.Joined = LivenessAlive, TaskNone, true }),
			want: ActionAdopt,
		},
		{
			// containerd crashed between mkdir and populating the bundle.
			name: "empty bundle",
			obs:  with(func(o *Observation) { o.Empty, o.Runtime = true, PresenceUnknown }),
			want: ActionRemoveEmpty,
		},
		{
			// The scan does not follow symlinks; neither does recovery.
			name: "symlink",
			obs:  with(func(o *Observation) { o.Kind, o.Liveness = KindSymlink, LivenessGone }),
			want: ActionIgnore,
		},
		{
			name: "regular file",
			obs:  with(func(o *Observation) { o.Kind = KindFile }),
			want: ActionIgnore,
		},
		{
			// Not an id containerd could have created ("bad..name").
			name: "invalid name",
			obs:  with(func(o *Observation) { o.ValidName, o.Liveness = false, LivenessGone }),
			want: ActionIgnore,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.obs)
			if d.Action != tc.want {
				t.Fatalf("Decide(%+v) = %s (%q), want %s", tc.obs, d.Action, d.Reason, tc.want)
			}
			if d.Reason == "" {
				t.Fatal("no reason given")
			}
		})
	}
}

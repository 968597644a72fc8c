package manager

import (
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	task "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"

	"github.com/containerd/containerd/v2/core/events/exchange"
	"github.com/containerd/containerd/v2/core/runtime"
)

// subscribedRig is a rig whose manager follows the task events of ex, as
// the daemon's does.
func subscribedRig(t *testing.T, ex *exchange.Exchange) *rig {
	t.Helper()
	r := newRig(t, 5*time.Second)
	cfg := r.m.cfg
	cfg.Subscriber = ex
	r.m = New(cfg)
	r.tm = NewTaskManager(r.tm.stateDir, r.tm.rootDir, r.m, nil)
	return r
}

// recoverShim probes the bundle's shim and adopts it, as recovery does for
// a live shim.
func (r *rig) recoverShim(t *testing.T) *Shim {
	t.Helper()
	s, err := reconnect(r.m, nsCtx(), r.bundle, r.runtime.path)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.m.Adopt(nsCtx(), nil, s); err != nil {
		t.Fatal(err)
	}
	abandonAtEnd(t, s)
	return s
}

func (f *fakeTask) count(method string) int {
	n := 0
	for _, m := range f.methods() {
		if m == method {
			n++
		}
	}
	return n
}

// The State the probe got answers State and listings, without asking the
// shim again, until a task event for the task reaches the exchange; from
// then on the shim is asked.
func TestKnownStateUntilEvent(t *testing.T) {
	ex := exchange.NewExchange()
	r := subscribedRig(t, ex)
	f := newFakeTask()
	r.writeBootstrap(t, 3, serveV3(t, f).addr)
	r.recoverShim(t)
	if n := f.count("State"); n != 1 {
		t.Fatalf("%d State calls by the probe, want 1", n)
	}

	tk := r.task(t)
	if st, err := tk.State(nsCtx()); err != nil || st.Status != runtime.RunningStatus || st.Pid != 4242 {
		t.Fatalf("State = %+v, %v; want RUNNING 4242", st, err)
	}
	tasks, err := r.tm.Tasks(nsCtx(), false)
	if err != nil || len(tasks) != 1 {
		t.Fatalf("Tasks = %v, %v", tasks, err)
	}
	if st, err := tasks[0].State(nsCtx()); err != nil || st.Status != runtime.RunningStatus {
		t.Fatalf("listed State = %+v, %v", st, err)
	}
	if n := f.count("State"); n != 1 {
		t.Fatalf("%d State calls, want 1: the probe's answer was not used", n)
	}

	// The task exits; the shim says so and publishes /tasks/exit.
	f.set(func(f *fakeTask) {
		f.state[""] = &task.StateResponse{ID: fakeTaskID, Pid: 4242, Status: tasktypes.Status_STOPPED, ExitStatus: 3}
	})
	if err := ex.Publish(nsCtx(), runtime.TaskExitEventTopic, &eventstypes.TaskExit{ContainerID: fakeTaskID, ID: fakeTaskID, Pid: 4242, ExitStatus: 3}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := tk.State(nsCtx())
		if err != nil {
			t.Fatal(err)
		}
		if st.Status == runtime.StoppedStatus && st.ExitStatus == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("State still %+v after the exit event", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A call that may change the task drops the probe's answer at once.
func TestKnownStateForgottenByCalls(t *testing.T) {
	for _, tc := range []struct {
		name string
		call func(runtime.Task) error
	}{
		{"Kill", func(tk runtime.Task) error { return tk.Kill(nsCtx(), 9, false) }},
		{"Start", func(tk runtime.Task) error { return tk.Start(nsCtx()) }},
		{"Pause", func(tk runtime.Task) error { return tk.Pause(nsCtx()) }},
		{"Resume", func(tk runtime.Task) error { return tk.Resume(nsCtx()) }},
		{"Wait", func(tk runtime.Task) error { _, err := tk.Wait(nsCtx()); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := subscribedRig(t, exchange.NewExchange())
			f := newFakeTask()
			f.wait = &task.WaitResponse{ExitStatus: 0}
			r.writeBootstrap(t, 3, serveV3(t, f).addr)
			r.recoverShim(t)
			tk := r.task(t)
			if err := tc.call(tk); err != nil {
				t.Fatal(err)
			}
			before := f.count("State")
			if _, err := tk.State(nsCtx()); err != nil {
				t.Fatal(err)
			}
			if f.count("State") != before+1 {
				t.Fatalf("State after %s did not ask the shim", tc.name)
			}
		})
	}
}

// Without a subscriber (no event can clear it) nothing is kept.
func TestKnownStateNeedsSubscriber(t *testing.T) {
	r := newRig(t, 5*time.Second)
	f := newFakeTask()
	r.writeBootstrap(t, 3, serveV3(t, f).addr)
	r.recoverShim(t)
	if _, err := r.task(t).State(nsCtx()); err != nil {
		t.Fatal(err)
	}
	if n := f.count("State"); n != 2 {
		t.Fatalf("%d State calls, want 2 (probe, then State)", n)
	}
}

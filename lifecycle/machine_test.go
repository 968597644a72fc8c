package lifecycle

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata/machine.txt from the machine's answers")

// Observations standing for each kind of verdict.
var (
	obsAlive   = Observation{Kind: KindDir, ValidName: true, Liveness: LivenessAlive, Task: TaskLive, Runtime: PresenceFound}
	obsUnknown = Observation{Kind: KindDir, ValidName: true, Liveness: LivenessUnknown, Runtime: PresenceFound}
	// Gone with proof: socket refused and no process of the shim left.
	obsGone   = Observation{Kind: KindDir, ValidName: true, Liveness: LivenessGone, ShimProcess: PresenceAbsent, Runtime: PresenceFound}
	obsLeaked = Observation{Kind: KindDir, ValidName: true, Liveness: LivenessAlive, Task: TaskNone, Sandbox: PresenceAbsent, Runtime: PresenceFound}
	obsEmpty  = Observation{Kind: KindDir, ValidName: true, Empty: true}
	obsFile   = Observation{Kind: KindFile}
	errBoom   = errors.New("boom")
)

// namedEvent is an event with a short name for the table.
type namedEvent struct {
	name string
	ev   Event
}

var tableEvents = []namedEvent{
	{"listed", Event{Kind: EvListed}},
	{"observed(alive)", Event{Kind: EvObserved, Obs: obsAlive}},
	{"observed(unknown)", Event{Kind: EvObserved, Obs: obsUnknown}},
	{"observed(gone)", Event{Kind: EvObserved, Obs: obsGone}},
	{"observed(leaked)", Event{Kind: EvObserved, Obs: obsLeaked}},
	{"observed(empty)", Event{Kind: EvObserved, Obs: obsEmpty}},
	{"observed(file)", Event{Kind: EvObserved, Obs: obsFile}},
	{"registered(ok)", Event{Kind: EvRegistered}},
	{"registered(err)", Event{Kind: EvRegistered, Err: errBoom}},
	{"start", Event{Kind: EvStart}},
	{"destroyed(ok)", Event{Kind: EvDestroyed}},
	{"destroyed(err)", Event{Kind: EvDestroyed, Err: errBoom}},
	{"probe-due", Event{Kind: EvProbeDue}},
	{"unlisted", Event{Kind: EvUnlisted}},
}

// tableStates are the machine's states, each reached by a path of events
// from a new machine; a state reached in two ways that behave differently
// (a judged machine adopting or registering a placeholder) is listed
// twice.
var tableStates = []struct {
	name string
	path []string
}{
	{"new", nil},
	{"pending", []string{"listed"}},
	{"pending(observing)", []string{"listed", "probe-due"}},
	{"judged(adopt)", []string{"listed", "probe-due", "observed(alive)"}},
	{"judged(placeholder)", []string{"listed", "probe-due", "observed(unknown)"}},
	{"judged(readopt)", []string{"listed", "probe-due", "observed(unknown)", "registered(ok)", "probe-due", "observed(alive)"}},
	{"held(cleanup-dead)", []string{"listed", "probe-due", "observed(gone)"}},
	{"held(remove-empty)", []string{"listed", "probe-due", "observed(empty)"}},
	{"destroying(cleanup-dead)", []string{"listed", "probe-due", "observed(gone)", "start"}},
	{"destroying(remove-empty)", []string{"listed", "probe-due", "observed(empty)", "start"}},
	{"destroying(from-probing)", []string{"listed", "probe-due", "observed(unknown)", "registered(ok)", "probe-due", "observed(gone)", "start"}},
	{"probing", []string{"listed", "probe-due", "observed(unknown)", "registered(ok)"}},
	{"probing(observing)", []string{"listed", "probe-due", "observed(unknown)", "registered(ok)", "probe-due"}},
	{"done", []string{"listed", "probe-due", "observed(file)"}},
}

func eventNamed(t *testing.T, name string) Event {
	for _, e := range tableEvents {
		if e.name == name {
			return e.ev
		}
	}
	t.Fatalf("no event %q", name)
	return Event{}
}

func drive(t *testing.T, path []string) *Machine {
	m := &Machine{}
	for _, n := range path {
		if _, err := m.Step(eventNamed(t, n)); err != nil {
			t.Fatalf("path %v: %s: %v", path, n, err)
		}
	}
	return m
}

func effectsString(effs []Effect) string {
	s := make([]string, len(effs))
	for i, e := range effs {
		s[i] = e.String()
	}
	return strings.Join(s, " ")
}

// TestMachineTable steps every state with every event and compares the
// answers with testdata/machine.txt, reviewed as a diff when the machine
// changes (go test -run TestMachineTable -rewrite).
func TestMachineTable(t *testing.T) {
	var b strings.Builder
	b.WriteString("# state | event -> next state [effects], or illegal. Made by go test -rewrite; review the diff.\n")
	for _, st := range tableStates {
		fmt.Fprintf(&b, "\n%s:\n", st.name)
		for _, e := range tableEvents {
			m := drive(t, st.path)
			before := *m
			effs, err := m.Step(e.ev)
			if err != nil {
				if !errors.Is(err, ErrIllegal) {
					t.Errorf("%s | %s: error %v is not ErrIllegal", st.name, e.name, err)
				}
				if *m != before {
					t.Errorf("%s | %s: an illegal event changed the machine", st.name, e.name)
				}
				fmt.Fprintf(&b, "  %-18s -> illegal\n", e.name)
				continue
			}
			fmt.Fprintf(&b, "  %-18s -> %s [%s] %s\n", e.name, m.State(), effectsString(effs), m.Outcome())
		}
	}
	path := filepath.Join("testdata", "machine.txt")
	if *rewrite {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != string(want) {
		t.Errorf("machine answers differ from %s (rerun with -rewrite and review the diff):\n%s", path, diffLines(string(want), got))
	}
}

func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out []string
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			out = append(out, "- "+wl, "+ "+gl)
		}
	}
	return strings.Join(out, "\n")
}

// TestMachineSafety checks, over random event sequences, what must hold
// whatever the order in which results come back:
//   - DoDestroy is asked for only after an observation that Decide judges
//     destructive, and with that action;
//   - DoPublishExit comes before the hold is released;
//   - the id is held before it stops pending or its placeholder goes;
//   - every pend and hold is released exactly once, and a done machine
//     holds nothing;
//   - once it stops pending, until done, the id is either registered
//     (adopted or a placeholder) or held, or being registered.
func TestMachineSafety(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for run := range 20000 {
		m := &Machine{}
		var log []string
		pends, holds, adopted := 0, 0, false
		var lastObs Observation
		seen := false
		for step := 0; step < 40 && m.State() != StateDone; step++ {
			e := tableEvents[r.IntN(len(tableEvents))]
			effs, err := m.Step(e.ev)
			if err != nil {
				continue
			}
			if e.ev.Kind == EvObserved {
				lastObs, seen = e.ev.Obs, true
			}
			log = append(log, e.name+" -> "+effectsString(effs))
			fail := func(format string, args ...any) {
				t.Fatalf("run %d: "+format+"\n%s", append([]any{run}, append(args, strings.Join(log, "\n"))...)...)
			}
			for i, f := range effs {
				switch f.Kind {
				case DoPend:
					pends++
				case DoReleasePending:
					pends--
					if holds == 0 && !m.placeholder && m.State() != StateDone && m.State() != StateJudged {
						fail("released pending with neither hold nor registration")
					}
				case DoHold:
					holds++
				case DoReleaseHold:
					holds--
				case DoUnregisterPlaceholder:
					if m.State() != StateDone && holds == 0 {
						fail("placeholder removed before the id was held")
					}
				case DoPublishExit:
					if holds != 1 {
						fail("exit published without the hold")
					}
				case DoDestroy:
					if !seen || !Decide(lastObs).Action.Destructive() || f.Action != Decide(lastObs).Action {
						fail("destroy %s without proof (last observation %+v)", f.Action, lastObs)
					}
				case DoAdopt:
					adopted = true
				}
				if pends < 0 || pends > 1 || holds < 0 || holds > 1 {
					fail("gates unbalanced at effect %d: pending %d held %d", i, pends, holds)
				}
			}
		}
		_ = adopted
		if m.State() == StateDone && (pends != 0 || holds != 0) {
			t.Fatalf("run %d: done with pending %d held %d\n%s", run, pends, holds, strings.Join(log, "\n"))
		}
		if p, h, _ := m.Holds(); p != (pends == 1) || h != (holds == 1) {
			t.Fatalf("run %d: Holds() = %v %v, effects say %d %d", run, p, h, pends, holds)
		}
	}
}

// The races recovery had before it had one owner per bundle, each driven
// through the machine in the order that used to go wrong.

// An exit event published after the id's hold was released could reach a
// subscriber after the events of a new task of the same id.
func TestRaceExitBeforeHoldRelease(t *testing.T) {
	m := drive(t, []string{"listed", "probe-due", "observed(gone)", "start"})
	effs, err := m.Step(Event{Kind: EvDestroyed})
	if err != nil {
		t.Fatal(err)
	}
	if got := effectsString(effs); got != "publish-exit release-hold report" {
		t.Fatalf("effects %q: the exit must go out before the hold is released", got)
	}
}

// A failed adoption left the bundle unlisted, and nobody probed it again.
func TestRaceFailedAdoptionIsKeptAndRetried(t *testing.T) {
	m := drive(t, []string{"listed", "probe-due", "observed(alive)"})
	effs, err := m.Step(Event{Kind: EvRegistered, Err: errBoom})
	if err != nil {
		t.Fatal(err)
	}
	if got := effectsString(effs); got != "abandon register-placeholder" {
		t.Fatalf("after a failed adoption: %q, want a placeholder", got)
	}
	effs, _ = m.Step(Event{Kind: EvRegistered})
	if m.State() != StateProbing || !strings.Contains(effectsString(effs), "schedule-probe") {
		t.Fatalf("state %s effects %q: the kept shim must be probed again", m.State(), effectsString(effs))
	}
	// And a re-probe that finds it answering adopts it in place of the
	// placeholder (which the task monitor must drop).
	m.Step(Event{Kind: EvProbeDue})
	effs, _ = m.Step(Event{Kind: EvObserved, Obs: obsAlive})
	if len(effs) != 1 || effs[0].Kind != DoAdopt || !effs[0].Replace {
		t.Fatalf("re-probe of a live shim: %q, want adopt(replace)", effectsString(effs))
	}
	// A failure then keeps the placeholder listed and probes again.
	effs, _ = m.Step(Event{Kind: EvRegistered, Err: errBoom})
	if m.State() != StateProbing || effectsString(effs) != "abandon schedule-probe report" {
		t.Fatalf("failed re-adoption: state %s effects %q", m.State(), effectsString(effs))
	}
}

// A failed cleanup of a dead shim left its bundle unlisted until the next
// daemon start.
func TestRaceFailedCleanupIsKept(t *testing.T) {
	m := drive(t, []string{"listed", "probe-due", "observed(gone)", "start"})
	effs, _ := m.Step(Event{Kind: EvDestroyed, Err: errBoom})
	if got := effectsString(effs); got != "abandon register-placeholder" {
		t.Fatalf("after a failed cleanup: %q", got)
	}
	effs, _ = m.Step(Event{Kind: EvRegistered})
	if got := effectsString(effs); got != "release-hold schedule-probe report" {
		t.Fatalf("hold must be released only once the placeholder is registered: %q", got)
	}
}

package lifecycle

import (
	"errors"
	"fmt"
)

// State is where one bundle is in a recovery pass. Every change of state is
// made by Machine.Step, below, and nowhere else.
type State uint8

const (
	// StateNew: not listed yet.
	StateNew State = iota
	// StatePending: listed; calls naming the id wait for its verdict.
	StatePending
	// StateJudged: decided to adopt or keep; the registration (the shim,
	// or a placeholder) is under way.
	StateJudged
	// StateHeld: proven gone, empty or leaked; the id is held, so that a
	// Create of it waits, until the removal runs in the background.
	StateHeld
	// StateDestroying: being destroyed on that proof.
	StateDestroying
	// StateProbing: registered as a placeholder (listed UNKNOWN, calls on
	// it fail naming why) and observed again with backoff.
	StateProbing
	// StateDone: adopted, ignored, destroyed, or no longer there.
	StateDone
)

// EventKind is what happened to a bundle.
type EventKind uint8

const (
	// EvListed: the bundle was found on disk.
	EvListed EventKind = iota
	// EvObserved: an observation ended; Event.Obs holds it.
	EvObserved
	// EvRegistered: the registration asked for (DoAdopt or
	// DoRegisterPlaceholder) ended; Event.Err says if it failed.
	EvRegistered
	// EvStart: the background may carry out the removal now.
	EvStart
	// EvDestroyed: the removal ended; Event.Err says if it failed.
	EvDestroyed
	// EvProbeDue: a pending bundle's first probe is due (the pass reached
	// it), or a re-probe is due and the placeholder is still what the
	// manager lists under the id.
	EvProbeDue
	// EvUnlisted: the placeholder is no longer listed: a client deleted
	// the task, or another registration replaced it.
	EvUnlisted
)

// Event is one input to a Machine.
type Event struct {
	Kind EventKind
	Obs  Observation
	Err  error
}

// EffectKind is one thing the machine asks its actuator to do.
type EffectKind uint8

const (
	// DoPend marks the id pending: calls naming it wait for the verdict.
	DoPend EffectKind = iota
	// DoReleasePending ends that wait.
	DoReleasePending
	// DoObserve observes the bundle again (names, records, probe, /proc)
	// and answers with EvObserved.
	DoObserve
	// DoAdopt arms the probed shim and registers it (in place of the
	// placeholder when Replace), hands its task to the task monitor in
	// place of the placeholder's, and answers with EvRegistered.
	DoAdopt
	// DoRegisterPlaceholder registers a placeholder that lists the task
	// UNKNOWN and fails calls naming Reason; answers with EvRegistered.
	DoRegisterPlaceholder
	// DoUnregisterPlaceholder removes the placeholder if it is still the
	// one registered.
	DoUnregisterPlaceholder
	// DoAbandon closes the probe's connection, touching nothing else.
	DoAbandon
	// DoHold holds the id: a Create of it waits until DoReleaseHold.
	DoHold
	// DoReleaseHold releases it.
	DoReleaseHold
	// DoDestroy carries out the destructive Action and answers with
	// EvDestroyed.
	DoDestroy
	// DoPublishExit publishes the task's exit and delete events.
	DoPublishExit
	// DoScheduleProbe sends EvProbeDue (or EvUnlisted) after the Attempt'th
	// backoff delay.
	DoScheduleProbe
	// DoReport: the bundle's entry in the report changed.
	DoReport
)

// Effect is one thing to do, as data.
type Effect struct {
	Kind    EffectKind
	Action  Action // DoDestroy
	Reason  string // DoRegisterPlaceholder
	Replace bool   // DoAdopt: in place of the registered placeholder
	Attempt int    // DoScheduleProbe
}

// ErrIllegal: the event cannot happen in the machine's state. The machine
// is left as it was.
var ErrIllegal = errors.New("illegal event")

// want is the registration a judged machine waits for.
type want uint8

const (
	wantAdopt want = iota + 1
	wantPlaceholder
)

// Machine owns one bundle through a recovery pass. It does no I/O and is
// not safe for concurrent use: its driver steps each machine from one
// goroutine at a time and carries out the effects in the order given.
type Machine struct {
	state    State
	obs      Observation
	decision Decision
	// reason is the one reported: the decision's, or why it could not be
	// carried out.
	reason string
	err    error
	failed bool
	want   want
	// The gates and the registration this machine holds.
	pending, held, placeholder bool
	observing                  bool
	attempt                    int
}

// State is the machine's state.
func (m *Machine) State() State { return m.state }

// Observation is the last observation the verdict rests on.
func (m *Machine) Observation() Observation { return m.obs }

// Action is the verdict's action.
func (m *Machine) Action() Action { return m.decision.Action }

// Reason is why the bundle is where it is.
func (m *Machine) Reason() string { return m.reason }

// Err is the last failure carrying out the verdict, if any.
func (m *Machine) Err() error { return m.err }

// Holds reports the gates and registration the machine holds: pending,
// held, and whether a placeholder of it is registered.
func (m *Machine) Holds() (pending, held, placeholder bool) {
	return m.pending, m.held, m.placeholder
}

// Outcome is the report's word for where the machine is.
func (m *Machine) Outcome() string {
	switch {
	case m.state == StateProbing:
		return OutcomeProbing
	case m.state != StateDone:
		return OutcomePending
	case m.failed:
		return OutcomeFailed
	}
	return OutcomeDone
}

// Outcomes, as the report spells them.
const (
	OutcomeDone    = "done"
	OutcomePending = "pending"
	OutcomeFailed  = "failed"
	// OutcomeProbing: kept and registered as a placeholder; re-probed.
	OutcomeProbing = "probing"
)

// Step applies ev and returns the effects to carry out, in order. An event
// that cannot happen in the current state returns ErrIllegal and changes
// nothing.
func (m *Machine) Step(ev Event) ([]Effect, error) {
	switch {
	case m.state == StateNew && ev.Kind == EvListed:
		m.state, m.pending = StatePending, true
		return []Effect{{Kind: DoPend}}, nil
	case m.state == StatePending && ev.Kind == EvProbeDue && !m.observing:
		m.observing = true
		return []Effect{{Kind: DoObserve}}, nil
	case m.state == StatePending && ev.Kind == EvObserved && m.observing:
		m.observing = false
		return m.judge(ev.Obs), nil
	case m.state == StateJudged && ev.Kind == EvRegistered:
		return m.registered(ev.Err), nil
	case m.state == StateHeld && ev.Kind == EvStart:
		m.state = StateDestroying
		return []Effect{{Kind: DoDestroy, Action: m.decision.Action}}, nil
	case m.state == StateDestroying && ev.Kind == EvDestroyed:
		return m.destroyed(ev.Err), nil
	case m.state == StateProbing && ev.Kind == EvProbeDue && !m.observing:
		m.observing = true
		return []Effect{{Kind: DoObserve}}, nil
	case m.state == StateProbing && ev.Kind == EvUnlisted && !m.observing:
		m.state, m.placeholder = StateDone, false
		m.reason = "placeholder no longer listed (the task was deleted or replaced): " + m.reason
		return []Effect{{Kind: DoReport}}, nil
	case m.state == StateProbing && ev.Kind == EvObserved && m.observing:
		m.observing = false
		m.attempt++
		return m.rejudge(ev.Obs), nil
	}
	return nil, fmt.Errorf("%w: %s in state %s", ErrIllegal, ev.Kind, m.state)
}

// judge takes the first verdict. Only a destructive decision, which Decide
// gives on proof alone, leads towards DoDestroy.
func (m *Machine) judge(o Observation) []Effect {
	m.obs, m.decision = o, Decide(o)
	m.reason = m.decision.Reason
	switch a := m.decision.Action; {
	case a == ActionIgnore:
		m.state, m.pending = StateDone, false
		return []Effect{{Kind: DoAbandon}, {Kind: DoReleasePending}, {Kind: DoReport}}
	case a == ActionAdopt:
		m.state, m.want = StateJudged, wantAdopt
		return []Effect{{Kind: DoAdopt}}
	case a.Destructive():
		// Held before it stops pending: a Create of the id waits for the
		// removal instead of meeting the old bundle.
		m.state, m.held, m.pending = StateHeld, true, false
		return append(abandonUnless(a), Effect{Kind: DoHold}, Effect{Kind: DoReleasePending}, Effect{Kind: DoReport})
	default: // keep
		return m.keep(m.reason)
	}
}

// rejudge takes a re-probe's verdict on a bundle whose placeholder is
// registered.
func (m *Machine) rejudge(o Observation) []Effect {
	m.obs, m.decision = o, Decide(o)
	switch a := m.decision.Action; {
	case o.Kind != KindDir:
		m.state, m.placeholder = StateDone, false
		m.reason = "kept bundle was removed: " + m.decision.Reason
		return []Effect{{Kind: DoAbandon}, {Kind: DoUnregisterPlaceholder}, {Kind: DoReport}}
	case a == ActionAdopt:
		m.state, m.want = StateJudged, wantAdopt
		m.reason = "unresponsive shim answered"
		return []Effect{{Kind: DoAdopt, Replace: true}}
	case a.Destructive():
		// Held before the placeholder goes, for the same reason as above.
		m.state, m.held, m.placeholder = StateHeld, true, false
		m.reason = "unresponsive shim is gone: " + m.decision.Reason
		return append(abandonUnless(a), Effect{Kind: DoHold}, Effect{Kind: DoUnregisterPlaceholder}, Effect{Kind: DoReport})
	default:
		changed := m.reason != m.decision.Reason
		m.reason = m.decision.Reason
		out := []Effect{{Kind: DoAbandon}, {Kind: DoScheduleProbe, Attempt: m.attempt}}
		if changed {
			out = append(out, Effect{Kind: DoReport})
		}
		return out
	}
}

// abandonUnless closes the probe's connection unless the action needs it
// (reaping a leaked shim talks to it).
func abandonUnless(a Action) []Effect {
	if a == ActionReapLeaked {
		return nil
	}
	return []Effect{{Kind: DoAbandon}}
}

// keep asks for a placeholder: the bundle may be alive, so it stays listed
// and untouched.
func (m *Machine) keep(why string) []Effect {
	m.state, m.want, m.reason = StateJudged, wantPlaceholder, why
	return []Effect{{Kind: DoAbandon}, {Kind: DoRegisterPlaceholder, Reason: why}}
}

func (m *Machine) registered(err error) []Effect {
	switch {
	case m.want == wantAdopt && err == nil:
		m.state, m.placeholder, m.err = StateDone, false, nil
		return append(m.release(), Effect{Kind: DoReport})
	case m.want == wantAdopt && m.placeholder:
		// The placeholder stays listed; the next re-probe tries again.
		m.state, m.err = StateProbing, err
		m.reason = "shim answered but could not be adopted: " + err.Error()
		return []Effect{{Kind: DoAbandon}, {Kind: DoScheduleProbe, Attempt: m.attempt}, {Kind: DoReport}}
	case m.want == wantAdopt:
		// Never left unlisted and unprobed: kept like a shim that did not
		// answer.
		m.err = err
		return m.keep("adoption failed: " + err.Error())
	case err == nil:
		m.state, m.placeholder = StateProbing, true
		return append(m.release(), Effect{Kind: DoScheduleProbe, Attempt: m.attempt}, Effect{Kind: DoReport})
	default:
		// Only another registration of the id (the other plugin's pass)
		// makes this fail: the id is listed through it.
		m.state, m.err = StateDone, fmt.Errorf("register placeholder: %w", err)
		return append(m.release(), Effect{Kind: DoReport})
	}
}

func (m *Machine) destroyed(err error) []Effect {
	if err == nil {
		m.state, m.held = StateDone, false
		var out []Effect
		if m.decision.Action == ActionCleanupDead {
			// Before the hold goes: no subscriber sees this exit after
			// the events of a new task of the same id.
			out = append(out, Effect{Kind: DoPublishExit})
		}
		return append(out, Effect{Kind: DoReleaseHold}, Effect{Kind: DoReport})
	}
	m.err = err
	if m.decision.Action == ActionRemoveEmpty {
		m.state, m.held, m.failed = StateDone, false, true
		return []Effect{{Kind: DoReleaseHold}, {Kind: DoReport}}
	}
	// The bundle is still there and may hold a live container: listed and
	// probed again, the hold kept until the placeholder is registered.
	return m.keep(m.decision.Action.String() + " failed: " + err.Error() + "; kept")
}

// release returns the effects that let go of the gates the machine holds.
func (m *Machine) release() []Effect {
	var out []Effect
	if m.pending {
		m.pending = false
		out = append(out, Effect{Kind: DoReleasePending})
	}
	if m.held {
		m.held = false
		out = append(out, Effect{Kind: DoReleaseHold})
	}
	return out
}

var stateNames = [...]string{"new", "pending", "judged", "held", "destroying", "probing", "done"}
var eventNames = [...]string{"listed", "observed", "registered", "start", "destroyed", "probe-due", "unlisted"}
var effectNames = [...]string{"pend", "release-pending", "observe", "adopt", "register-placeholder", "unregister-placeholder", "abandon", "hold", "release-hold", "destroy", "publish-exit", "schedule-probe", "report"}

func (s State) String() string      { return name(stateNames[:], int(s)) }
func (k EventKind) String() string  { return name(eventNames[:], int(k)) }
func (k EffectKind) String() string { return name(effectNames[:], int(k)) }

func (e Effect) String() string {
	switch e.Kind {
	case DoDestroy:
		return "destroy(" + e.Action.String() + ")"
	case DoAdopt:
		if e.Replace {
			return "adopt(replace)"
		}
	}
	return e.Kind.String()
}

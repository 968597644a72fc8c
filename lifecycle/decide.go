package lifecycle

// Action is what recovery does with one entry. Exactly one per entry.
type Action uint8

const (
	// ActionIgnore: not a bundle (not a directory, or an invalid name);
	// left exactly as it is.
	ActionIgnore Action = iota
	// ActionAdopt: register the live shim; its task is served again.
	ActionAdopt
	// ActionReapLeaked: the live shim has no task and belongs to no
	// sandbox (containerd crashed between `shim start` and task Create):
	// delete and shut it down, run `shim delete`, remove the bundle.
	ActionReapLeaked
	// ActionCleanupDead: the shim is gone: run `shim delete` (stops what
	// is left of the container, unmounts), remove the bundle, work dir and
	// socket, publish the task's exit and delete events.
	ActionCleanupDead
	// ActionRemoveEmpty: an empty bundle dir: remove it and its work dir.
	ActionRemoveEmpty
	// ActionKeep: the shim may be alive but cannot be judged, or cannot be
	// cleaned up safely: nothing is removed. A shim with a known address
	// is registered as unresponsive and probed again in the background.
	ActionKeep
)

var actionNames = [...]string{"ignore", "adopt", "reap-leaked", "cleanup-dead", "remove-empty", "keep"}

func (a Action) String() string               { return name(actionNames[:], int(a)) }
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// Actions lists every action, in order.
var Actions = []Action{ActionIgnore, ActionAdopt, ActionReapLeaked, ActionCleanupDead, ActionRemoveEmpty, ActionKeep}

// Destructive reports whether the action removes state or stops a shim.
func (a Action) Destructive() bool {
	return a == ActionReapLeaked || a == ActionCleanupDead || a == ActionRemoveEmpty
}

// Decision is the action for one entry and why.
type Decision struct {
	Action Action `json:"action"`
	Reason string `json:"reason"`
}

// Decide maps an observation to one action. It is pure: no I/O, no clock,
// no logging. The rules, in order:
//
//   - anything that is not a directory with a valid name is ignored;
//   - an empty bundle is removed;
//   - a shim is cleaned up only on proof that it is gone: its socket is
//     missing or refuses connections (Liveness gone) *and* no process of
//     it is left (ShimProcess absent: nothing listens on its socket, even
//     unlinked, and no process runs as its shim instance). Cleanup needs
//     the shim's binary to run `shim delete` (which stops container
//     processes that outlived the shim and unmounts); without it the
//     bundle is kept (reinstalling the runtime lets a later probe clean it
//     up). A gone socket with a live or unknown shim process is kept: the
//     shim is alive but unreachable;
//   - a shim of unknown liveness is kept;
//   - a live shim is adopted, unless it says it has no task and its id is
//     not a sandbox (and it is not a sandbox's shared shim): then it leaked
//     and is reaped, if its binary can run `shim delete`; otherwise it is
//     kept (reaping removes the bundle, which must not happen without
//     `shim delete` while the shim may still hold mounts). A live shim
//     whose ownership is unknown is adopted.
//
// Rebooted (our boot id record differs) is reported, never acted on: a
// stock daemon may have run in between without updating the record.
func Decide(o Observation) Decision {
	switch {
	case o.Kind != KindDir:
		return Decision{ActionIgnore, "not a directory: " + o.Kind.String()}
	case !o.ValidName:
		return Decision{ActionIgnore, "invalid namespace or id"}
	case o.Empty:
		return Decision{ActionRemoveEmpty, "empty bundle"}
	}
	switch o.Liveness {
	case LivenessGone:
		switch {
		case o.ShimProcess == PresenceFound:
			return Decision{ActionKeep, "shim socket gone, but the shim process is alive: unreachable"}
		case o.ShimProcess != PresenceAbsent:
			return Decision{ActionKeep, "shim socket gone, but its process could not be ruled out"}
		case o.Runtime != PresenceFound:
			return Decision{ActionKeep, "shim gone, but its binary cannot be resolved to run shim delete"}
		}
		return Decision{ActionCleanupDead, "shim gone"}
	case LivenessAlive:
		switch {
		case o.Task != TaskNone:
			return Decision{ActionAdopt, "shim alive, task " + o.Task.String()}
		case o.Joined:
			return Decision{ActionAdopt, "shim alive, no task, but the shim is its sandbox's"}
		case o.Sandbox != PresenceAbsent:
			return Decision{ActionAdopt, "shim alive, no task, sandbox record " + o.Sandbox.String()}
		case o.Runtime != PresenceFound:
			return Decision{ActionKeep, "shim alive with no task and no sandbox, but its binary cannot be resolved to run shim delete"}
		default:
			return Decision{ActionReapLeaked, "shim alive with no task and no sandbox"}
		}
	default:
		return Decision{ActionKeep, "shim liveness unknown"}
	}
}

package lifecycle

import "fmt"

// The facts a scan records about one entry under <state>/<ns>. Each is a
// small enum so that Decide can be tested over their full cross product.

// Kind is what the entry is on disk. The scan never follows a symlink.
type Kind uint8

const (
	KindDir Kind = iota
	KindFile
	KindSymlink
	KindOther
)

// Presence of a record or a file whose lookup can fail.
type Presence uint8

const (
	// PresenceUnknown: the lookup failed for a reason other than absence.
	PresenceUnknown Presence = iota
	PresenceFound
	PresenceAbsent
	// PresenceNotLooked: not looked up, because the verdict does not
	// depend on it (a record is read only when it can change the verdict:
	// one bolt transaction per bundle is a tenth of a pass's time).
	// Decide takes it as it takes unknown.
	PresenceNotLooked
)

// Liveness of the shim, from dialling its socket and calling the task API.
type Liveness uint8

const (
	// LivenessUnknown: the shim could not be judged: the socket accepted
	// but the shim did not answer in time, the dial timed out, any other
	// error, or the shim's address is unknown. A shim of unknown liveness
	// may be alive.
	LivenessUnknown Liveness = iota
	// LivenessAlive: the shim answered the task API.
	LivenessAlive
	// LivenessGone: the shim's socket does not exist or refuses
	// connections. On its own this is not proof of death (the socket file
	// may have been removed under a running shim): Decide also needs
	// Observation.ShimProcess absent.
	LivenessGone
)

// TaskState is what the shim says of the bundle's task.
type TaskState uint8

const (
	// TaskUnknown: not asked (the shim is not alive) or no clear answer.
	TaskUnknown TaskState = iota
	// TaskNone: the shim answered that it has no such task.
	TaskNone
	// TaskLive: created, running, paused or pausing.
	TaskLive
	// TaskExited: the task exists and its process has exited.
	TaskExited
)

// Observation is everything the scan learned about one entry, and nothing
// else: no handles, no errors. Decide reads only this.
type Observation struct {
	Namespace string `json:"namespace"`
	ID        string `json:"id"`

	Kind Kind `json:"kind"`
	// ValidName: both the namespace and the id pass containerd's
	// identifier rules.
	ValidName bool `json:"valid_name"`
	// Empty: the bundle dir has no entries.
	Empty bool `json:"empty"`
	// Joined: the bundle has a `sandbox` file: its task runs in its
	// sandbox's shim, which it does not own.
	Joined bool `json:"joined"`
	// Runtime: the shim binary was resolved (Found), the runtime is known
	// but its binary is missing (Absent), or the runtime is unknown.
	Runtime Presence `json:"runtime"`
	// Container and Sandbox are the metadata records of this id.
	Container Presence `json:"container"`
	Sandbox   Presence `json:"sandbox"`
	// Rebooted: the boot id differs from the one our last pass recorded.
	// Reported only: a stock daemon may have run in between, so it is no
	// evidence about any shim.
	Rebooted bool      `json:"rebooted"`
	Liveness Liveness  `json:"liveness"`
	Task     TaskState `json:"task"`
	// ShimProcess, looked up in /proc when the socket is gone: Found if a
	// unix socket bound to the shim's address still listens (even with its
	// file removed) or a process runs as its shim instance (-namespace NS
	// -id ID); Absent if neither; Unknown if not looked up or /proc could
	// not be read.
	ShimProcess Presence `json:"shim_process"`
	// InitProcess: the pid in the bundle's init.pid is a live process
	// (Found), is gone or a zombie (Absent), or there is no readable pid
	// (Unknown). Reported: `shim delete` stops a container process that
	// outlived its shim.
	InitProcess Presence `json:"init_process"`
}

var kindNames = [...]string{"dir", "file", "symlink", "other"}
var presenceNames = [...]string{"unknown", "found", "absent", "not looked up"}
var livenessNames = [...]string{"unknown", "alive", "gone"}
var taskNames = [...]string{"unknown", "none", "live", "exited"}

func (k Kind) String() string      { return name(kindNames[:], int(k)) }
func (p Presence) String() string  { return name(presenceNames[:], int(p)) }
func (l Liveness) String() string  { return name(livenessNames[:], int(l)) }
func (t TaskState) String() string { return name(taskNames[:], int(t)) }

func (k Kind) MarshalText() ([]byte, error)      { return []byte(k.String()), nil }
func (p Presence) MarshalText() ([]byte, error)  { return []byte(p.String()), nil }
func (l Liveness) MarshalText() ([]byte, error)  { return []byte(l.String()), nil }
func (t TaskState) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

func name(names []string, i int) string {
	if i >= 0 && i < len(names) {
		return names[i]
	}
	return "invalid"
}

func parseName(names []string, text []byte) (int, error) {
	for i, n := range names {
		if n == string(text) {
			return i, nil
		}
	}
	return 0, fmt.Errorf("unknown value %q", text)
}

func (k *Kind) UnmarshalText(b []byte) error {
	i, err := parseName(kindNames[:], b)
	*k = Kind(i)
	return err
}

func (p *Presence) UnmarshalText(b []byte) error {
	i, err := parseName(presenceNames[:], b)
	*p = Presence(i)
	return err
}

func (l *Liveness) UnmarshalText(b []byte) error {
	i, err := parseName(livenessNames[:], b)
	*l = Liveness(i)
	return err
}

func (t *TaskState) UnmarshalText(b []byte) error {
	i, err := parseName(taskNames[:], b)
	*t = TaskState(i)
	return err
}

func (a *Action) UnmarshalText(b []byte) error {
	i, err := parseName(actionNames[:], b)
	*a = Action(i)
	return err
}

package loader

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/log"

	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/lifecycle"
)

// Entry is what recovery saw, decided and did for one bundle.
type Entry struct {
	lifecycle.Observation
	Action   lifecycle.Action `json:"action"`
	Reason   string           `json:"reason"`
	Outcome  string           `json:"outcome"`
	Error    string           `json:"error,omitempty"`
	Notes    []string         `json:"notes,omitempty"`
	Duration Millis           `json:"duration_ms"`
}

// Millis marshals a duration as fractional milliseconds.
type Millis time.Duration

func (d Millis) MarshalJSON() ([]byte, error) {
	return json.Marshal(float64(time.Duration(d).Microseconds()) / 1000)
}

// UnmarshalJSON reads what MarshalJSON writes, so that ReadReport can read
// a report back.
func (d *Millis) UnmarshalJSON(b []byte) error {
	var ms float64
	if err := json.Unmarshal(b, &ms); err != nil {
		return err
	}
	*d = Millis(math.Round(ms*1000) * float64(time.Microsecond))
	return nil
}

// Report is the record of one recovery pass of one plugin's state dir.
type Report struct {
	StateDir  string    `json:"state_dir"`
	RootDir   string    `json:"root_dir"`
	StartedAt time.Time `json:"started_at"`
	// Ready is the time the pass held the daemon's start: listing the
	// bundles, or, with HeldStart, judging them all. Judged is the time
	// until every entry had its verdict (calls naming a shim not yet
	// judged wait for it). Finished is when background work ended (zero
	// while running).
	Ready     Millis    `json:"ready_ms"`
	Judged    Millis    `json:"judged_ms"`
	HeldStart bool      `json:"held_start"`
	Found     int       `json:"found"`
	Finished  time.Time `json:"finished_at,omitzero"`
	BootID    string    `json:"boot_id"`
	Rebooted  bool      `json:"rebooted"`
	// Totals counts entries by action.
	Totals map[string]int `json:"totals"`
	// Outcomes counts entries by outcome.
	Outcomes        map[string]int `json:"outcomes"`
	Entries         []*Entry       `json:"entries"`
	WorkDirsRemoved []string       `json:"work_dirs_removed,omitempty"`
	Warnings        []string       `json:"warnings,omitempty"`
	// Errors: what the pass failed to do that an operator must see (a
	// boot id record that could not be written, say).
	Errors []string `json:"errors,omitempty"`
}

// report guards a Report shared by the pass and its background work, and
// writes it: at once at the pass's milestones (flush), and at most once per
// coalesceInterval for the changes in between, so that a pass of n
// bundles writes the report a bounded number of times, not once per
// bundle.
type report struct {
	mu   sync.Mutex
	r    Report
	path string
	wmu  sync.Mutex // serializes write
	// scheduled: a coalesced write is due.
	scheduled bool
	// writes counts the writes made (tests).
	writes atomic.Int64
}

// coalesceInterval bounds how stale the report on disk is between
// milestones.
const coalesceInterval = 250 * time.Millisecond

func newReport(path string) *report { return &report{path: path} }

// changed asks for a write within coalesceInterval.
func (rp *report) changed() {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.scheduled || rp.path == "" {
		return
	}
	rp.scheduled = true
	time.AfterFunc(coalesceInterval, func() {
		rp.mu.Lock()
		rp.scheduled = false
		rp.mu.Unlock()
		_ = rp.write()
	})
}

// flush writes the report now.
func (rp *report) flush(ctx context.Context) {
	if err := rp.write(); err != nil {
		log.G(ctx).WithError(err).Warn("failed to write recovery report")
	}
}

func (rp *report) update(f func(r *Report)) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	f(&rp.r)
}

// snapshot returns a deep enough copy for readers.
func (rp *report) snapshot() Report {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	r := rp.r
	r.Totals, r.Outcomes = map[string]int{}, map[string]int{}
	r.Entries = make([]*Entry, len(rp.r.Entries))
	for i, e := range rp.r.Entries {
		c := *e
		r.Entries[i] = &c
		r.Totals[c.Action.String()]++
		r.Outcomes[c.Outcome]++
	}
	for _, a := range lifecycle.Actions {
		if _, ok := r.Totals[a.String()]; !ok {
			r.Totals[a.String()] = 0
		}
	}
	r.WorkDirsRemoved = append([]string(nil), rp.r.WorkDirsRemoved...)
	r.Warnings = append([]string(nil), rp.r.Warnings...)
	return r
}

// write stores the report atomically.
func (rp *report) write() error {
	// One write at a time, each of a snapshot taken under this lock, so
	// that an older snapshot never replaces a newer one.
	rp.wmu.Lock()
	defer rp.wmu.Unlock()
	rp.writes.Add(1)
	r := rp.snapshot()
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return layout.WriteFileAtomic(rp.path, append(data, '\n'), 0o644)
}

// ReadReport reads a report written by a recovery pass.
func ReadReport(stateDir string) (*Report, error) {
	data, err := os.ReadFile(layout.ReportPath(stateDir))
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

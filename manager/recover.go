package manager

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
)

// Operations recovery performs through the manager. Each one that removes
// or stops something is called only for a decision that allows it.

// Adopt puts a probed shim in service: armed, registered (in place of
// prev, a placeholder, when prev is not nil) and handed to the task
// monitor. The monitor drops prev's task first: monitors key tasks by id
// and keep the first they were given, and the task service hands them
// every task it lists at its init, placeholders included.
func (m *Manager) Adopt(ctx context.Context, prev, s *Shim) error {
	if err := s.Arm(); err != nil {
		return err
	}
	if prev == nil {
		if err := m.Add(ctx, s); err != nil {
			s.Abandon()
			return err
		}
	} else if !m.Replace(ctx, prev, s) {
		s.Abandon()
		return fmt.Errorf("placeholder of %s is no longer registered: %w", s.ID(), errdefs.ErrNotFound)
	}
	if p := s.probed; p != nil {
		// Registered first, so that an event from now on clears it.
		s.known.Keep(p.ticket, p.state)
		s.probed = nil
	}
	m.monitorInPlaceOf(ctx, prev, s)
	return nil
}

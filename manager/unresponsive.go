package manager

import (
	"time"
)

// NewUnresponsive returns a placeholder for a shim that recovery could not
// judge or reach: it may be alive, so its task stays listed (with an
// unknown state) and its bundle untouched, while calls on it fail at once
// with a clear error that gives why (recovery's reason). Recovery replaces
// it when the shim answers or is proven gone.
func (m *Manager) NewUnresponsive(b *Bundle, runtimePath string, since time.Time, why string) *Shim {
	s := &Shim{bundle: b, binary: m.binaryFor(b, runtimePath)}
	s.unresponsiveSince = since
	s.unresponsiveWhy = why
	return s
}

// Unresponsive reports whether s is a placeholder for a shim that did not
// answer.
func (s *Shim) Unresponsive() bool { return !s.unresponsiveSince.IsZero() }

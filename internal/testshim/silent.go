package testshim

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Silent accepts connections and never answers: a shim that is alive but
// hung. It keeps count of the connections, for leak checks.
type Silent struct {
	l      net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
	dead   bool
	open   atomic.Int32
	hungUp chan struct{}
}

// ServeSilent listens on a new unix socket at path, until Die or the end
// of the test.
func ServeSilent(t testing.TB, path string) *Silent {
	t.Helper()
	s := &Silent{l: Listen(t, path), hungUp: make(chan struct{}, 16)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			if s.dead {
				c.Close()
			}
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.open.Add(1)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				// Read (and ignore) requests until the client hangs up:
				// a client that gives up must close its connection.
				_, _ = io.Copy(io.Discard, c)
				s.open.Add(-1)
				select {
				case s.hungUp <- struct{}{}:
				default:
				}
			}()
		}
	}()
	t.Cleanup(s.Die)
	return s
}

// Accepted is the number of connections accepted so far.
func (s *Silent) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Open is the number of accepted connections still open on the client
// side.
func (s *Silent) Open() int { return int(s.open.Load()) }

// HungUp receives once each time a client closes its connection (up to
// 16 unread).
func (s *Silent) HungUp() <-chan struct{} { return s.hungUp }

// Die closes the listener, which unlinks the socket, and every
// connection: the shim is gone. It waits for its goroutines to end.
func (s *Silent) Die() {
	s.l.Close()
	s.mu.Lock()
	s.dead = true
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

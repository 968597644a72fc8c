package shimlog

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shimkeeper/shimkeeper/internal/testshim"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// What many shims write reaches the output, from one pump; a FIFO is made
// when missing; stop closes the FIFO.
func TestPumpCopiesEveryFIFO(t *testing.T) {
	out := &testshim.SyncBuffer{}
	p := New(out)
	dir := t.TempDir()
	const n = 200
	stops := make([]func(), n)
	for i := range n {
		path := filepath.Join(dir, fmt.Sprintf("log%d", i))
		if i%2 == 0 {
			// A FIFO the shim made already.
			if err := unix.Mkfifo(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		stop, err := p.Drain(path)
		if err != nil {
			t.Fatal(err)
		}
		stops[i] = stop
		fi, err := os.Lstat(path)
		if err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
			t.Fatalf("%s: %v, %v; want a FIFO", path, fi.Mode(), err)
		}
	}
	if p.Len() != n {
		t.Fatalf("draining %d, want %d", p.Len(), n)
	}
	for i := range n {
		write(t, filepath.Join(dir, fmt.Sprintf("log%d", i)), fmt.Sprintf("shim %d says hello\n", i))
	}
	waitFor(t, "every line", func() bool { return strings.Count(out.String(), "says hello\n") == n })
	for i := range n {
		if !strings.Contains(out.String(), fmt.Sprintf("shim %d says hello\n", i)) {
			t.Fatalf("line of shim %d missing", i)
		}
	}
	// A line longer than the pump's buffer arrives whole, in order.
	long := strings.Repeat("x", 100<<10) + "\n"
	write(t, filepath.Join(dir, "log0"), long)
	waitFor(t, "the long line", func() bool { return strings.Contains(out.String(), long) })

	fds := openFDs(t)
	for _, stop := range stops {
		stop()
		stop() // twice is harmless
	}
	if p.Len() != 0 {
		t.Fatalf("draining %d after stop", p.Len())
	}
	if after := openFDs(t); after > fds-n {
		t.Fatalf("%d fds open after stopping %d FIFOs (were %d)", after, n, fds)
	}
}

func TestPumpRefusesNonFIFOs(t *testing.T) {
	p := New(&testshim.SyncBuffer{})
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o700); err != nil {
		t.Fatal(err)
	}
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{regular, link, dir} {
		if stop, err := p.Drain(path); err == nil {
			stop()
			t.Errorf("%s drained as a shim log", path)
		}
	}
	if p.Len() != 0 {
		t.Fatalf("draining %d", p.Len())
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

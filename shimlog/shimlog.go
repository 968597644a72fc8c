// Package shimlog copies what shims write to their bundle's log FIFO to
// containerd's stderr, as stock does, with one goroutine and one buffer
// for every shim of the daemon (epoll) instead of a goroutine, a 32 KiB
// buffer and a poller registration per shim: on a node of thousands of
// shims that is tens of MiB of resident memory and a pass's worth of
// goroutine starts.
//
// The package opens and closes only the log FIFOs it is given; it makes
// one if it is missing, as stock does, and never follows a symlink.
package shimlog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/shimkeeper/shimkeeper/layout"
)

// Pump copies every FIFO handed to Drain to its writer.
type Pump struct {
	out io.Writer

	start sync.Once
	epfd  int
	err   error

	// mu guards files, and is held while one of them is read, so that
	// Drain's stop never closes an fd the pump is reading (nor lets the
	// number be reused under it).
	mu    sync.Mutex
	files map[int32]*fifo
}

type fifo struct {
	path string
	// quiet: taken off epoll after a hang-up or a read error, until stop.
	quiet bool
}

// Default is the daemon's pump, to its stderr.
var Default = New(os.Stderr)

// New returns a pump to out. It starts on the first Drain.
func New(out io.Writer) *Pump {
	return &Pump{out: out, files: map[int32]*fifo{}}
}

// Drain opens the FIFO at path (making it if missing) and copies what is
// written to it until stop is called. Anything but a FIFO, a symlink
// included, is refused.
func (p *Pump) Drain(path string) (stop func(), err error) {
	p.start.Do(p.init)
	if p.err != nil {
		return nil, p.err
	}
	fd, err := openFIFO(path)
	if err != nil {
		return nil, err
	}
	f := &fifo{path: path}
	p.mu.Lock()
	p.files[int32(fd)] = f
	err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
	if err != nil {
		delete(p.files, int32(fd))
	}
	p.mu.Unlock()
	if err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "epoll_ctl", Path: path, Err: err}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			if !f.quiet {
				_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil)
			}
			delete(p.files, int32(fd))
			unix.Close(fd)
		})
	}, nil
}

// Len is the number of FIFOs drained.
func (p *Pump) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.files)
}

func (p *Pump) init() {
	p.epfd, p.err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if p.err != nil {
		p.err = fmt.Errorf("shim log pump: epoll_create1: %w", p.err)
		return
	}
	go p.run()
}

// run waits for readable FIFOs and copies one read of each to out, for
// the daemon's lifetime. Level-triggered: what one read leaves is
// reported again.
func (p *Pump) run() {
	events := make([]unix.EpollEvent, 128)
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			log.L.WithError(err).Error("shim log pump stopped: shim logs are no longer copied")
			return
		}
		for _, ev := range events[:n] {
			p.copyOne(ev, buf)
		}
	}
}

func (p *Pump) copyOne(ev unix.EpollEvent, buf []byte) {
	p.mu.Lock()
	f := p.files[ev.Fd]
	if f == nil || f.quiet {
		// Stopped since the wait returned.
		p.mu.Unlock()
		return
	}
	n, err := unix.Read(int(ev.Fd), buf)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		p.mu.Unlock()
		return
	}
	if n <= 0 {
		// A FIFO held open for writing by us never ends; one that does
		// (or fails) would be reported for ever: take it off epoll.
		f.quiet = true
		_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(ev.Fd), nil)
	}
	p.mu.Unlock()
	if n > 0 {
		_, _ = p.out.Write(buf[:n])
		return
	}
	log.L.WithError(err).WithField("path", f.path).Warn("shim log FIFO ended; no longer copied")
}

// openFIFO opens the FIFO at path for reading and writing, so that it
// never blocks and never reads end-of-file while the shim reopens it,
// making it first if it is missing (layout.OpenNoFollow: one open and one
// fstat, no symlink followed).
func openFIFO(path string) (int, error) {
	fd, st, err := layout.OpenNoFollow(path, unix.O_RDWR)
	if errors.Is(err, unix.ENOENT) {
		if err := unix.Mkfifo(path, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, &os.PathError{Op: "mkfifo", Path: path, Err: err}
		}
		fd, st, err = layout.OpenNoFollow(path, unix.O_RDWR)
	}
	if err != nil {
		return -1, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: not a FIFO", path)
	}
	return fd, nil
}

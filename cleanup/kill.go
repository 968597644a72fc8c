package cleanup

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shimkeeper/shimkeeper/proc"
)

// KillStarted SIGKILLs the process pid and waits up to timeout for it to
// exit, but only if it is still the process that started at startTicks
// (clock ticks since boot, from proc.Stat): the pid is pinned with a pidfd
// first and its identity checked through it, so a pid reused meanwhile is
// never signalled. A process that is already gone is not an error.
func KillStarted(pid int, startTicks uint64, timeout time.Duration) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(fd)
	// With the pidfd open, /proc/<pid> is this process for as long as it
	// is not reaped; check it is the one we mean.
	st, err := proc.Stat(proc.Root, pid)
	if err != nil {
		return err
	}
	if !st.Exists || st.StartTicks != startTicks {
		return nil // exited, or the pid now belongs to another process
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("kill %d: %w", pid, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("process %d did not exit within %s of SIGKILL", pid, timeout)
		}
		// A pidfd becomes readable when its process exits.
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left.Milliseconds())+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for %d: %w", pid, err)
		}
		if n > 0 {
			return nil
		}
	}
}

package crihost

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Registry is a running bin/testimages: the in-memory registry that
// serves the CRI tests' and the CRI bench's images on loopback.
type Registry struct {
	Addr string // host:port
	// Images maps each repository:tag served (no host) to its digest.
	Images map[string]string

	cmd    *exec.Cmd
	stdin  io.Closer
	exited chan struct{}
}

// StartRegistry starts testimages with args and -listen on loopback,
// -state statePath and -exit-on-eof (its stdin is a pipe, so it exits
// with its starter), in a session of its own, its output to logPath. It
// waits up to limit for the state file to name the address, and fails if
// testimages exits first or does not serve each of want (repository:tag,
// no host). On failure nothing is left running.
func StartRegistry(testimages string, args []string, statePath, logPath string, limit time.Duration, want ...string) (*Registry, error) {
	// A state file left by an earlier registry (the bench's second CRI
	// case) would name its dead address at once.
	if err := os.Remove(statePath); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(testimages, append(args, "-listen", "127.0.0.1:0", "-state", statePath, "-exit-on-eof")...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", testimages, err)
	}
	r := &Registry{cmd: cmd, stdin: stdin, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(r.exited) }()
	if err := r.waitState(statePath, limit); err != nil {
		r.Stop()
		return nil, fmt.Errorf("registry (%s) %w (log: %s)", testimages, err, logPath)
	}
	for _, ref := range want {
		if r.Images[ref] == "" {
			r.Stop()
			return nil, fmt.Errorf("registry serves %v, not %s", r.Images, ref)
		}
	}
	return r, nil
}

// waitState polls the state file until it names the registry's address.
func (r *Registry) waitState(statePath string, limit time.Duration) error {
	var st struct {
		Addr   string            `json:"addr"`
		Images map[string]string `json:"images"`
	}
	for deadline := time.Now().Add(limit); ; time.Sleep(20 * time.Millisecond) {
		select {
		case <-r.exited:
			return fmt.Errorf("exited during start")
		default:
		}
		if data, err := os.ReadFile(statePath); err == nil && json.Unmarshal(data, &st) == nil && st.Addr != "" {
			r.Addr, r.Images = st.Addr, st.Images
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not serving after %s", limit)
		}
	}
}

// Stop ends the registry: EOF on its stdin, then SIGKILL after 5 s. A nil
// Registry, or one stopped already, is left alone.
func (r *Registry) Stop() {
	if r == nil || r.cmd == nil {
		return
	}
	_ = r.stdin.Close()
	select {
	case <-r.exited:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
	r.cmd = nil
}

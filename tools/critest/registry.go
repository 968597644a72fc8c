package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// registry is bin/testimages -critest serving both daemons' images.
type registry struct {
	addr   string
	cmd    *exec.Cmd
	stdin  io.Closer
	exited chan struct{}
}

// startRegistry starts bin/testimages with -exit-on-eof (so it goes away
// with us) and waits for its state file.
func startRegistry(bin, dir string) (*registry, error) {
	state := filepath.Join(dir, "registry.json")
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(bin, "testimages"), "-toybox", filepath.Join(bin, "toybox"),
		"-listen", "127.0.0.1:0", "-state", state, "-exit-on-eof", "-critest", "-v")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &registry{cmd: cmd, stdin: stdin, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(r.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-r.exited:
			return nil, fmt.Errorf("testimages exited: %v (log: %s)", cmd.ProcessState, logf.Name())
		default:
		}
		var st struct {
			Addr string `json:"addr"`
		}
		if b, err := os.ReadFile(state); err == nil && json.Unmarshal(b, &st) == nil && st.Addr != "" {
			r.addr = st.Addr
			return r, nil
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	r.stop()
	return nil, fmt.Errorf("testimages not serving after 30s (log: %s)", logf.Name())
}

// stop closes its stdin, then kills it by PID if it does not exit.
func (r *registry) stop() {
	_ = r.stdin.Close()
	select {
	case <-r.exited:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
}

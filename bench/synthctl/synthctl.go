// Package synthctl is the control protocol of the synthetic shim server
// (bench/synthshim): JSON requests and replies, one per connection on a
// unix socket. The bench driver and the shim binary's start and delete
// actions are its clients.
package synthctl

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"time"
)

// Entry describes one synthetic shim.
type Entry struct {
	NS     string `json:"ns"`
	ID     string `json:"id"`
	Addr   string `json:"addr"`
	Bundle string `json:"bundle"`
	Mode   string `json:"mode"`
	Exit   uint32 `json:"exit,omitempty"`
}

// Request and Reply are the control protocol.
type Request struct {
	Op     string  `json:"op"`
	NS     string  `json:"ns,omitempty"`
	ID     string  `json:"id,omitempty"`
	Addr   string  `json:"addr,omitempty"`
	Bundle string  `json:"bundle,omitempty"`
	Shims  []Entry `json:"shims,omitempty"`
}

type Reply struct {
	Error  string           `json:"error,omitempty"`
	Exit   uint32           `json:"exit,omitempty"`
	Shims  []Entry          `json:"shims,omitempty"`
	Stats  map[string]int64 `json:"stats,omitempty"`
	PID    int              `json:"pid,omitempty"`
	Errors []string         `json:"errors,omitempty"`
}

// Call sends one control request to the server at ctl.
func Call(ctl string, req Request, timeout time.Duration) (*Reply, error) {
	c, err := net.DialTimeout("unix", ctl, timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return nil, err
	}
	var r Reply
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&r); err != nil {
		return nil, err
	}
	if r.Error != "" {
		return &r, errors.New(r.Error)
	}
	return &r, nil
}

package shimbin

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/log"

	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	"github.com/containerd/containerd/v2/pkg/protobuf/proto"
	"github.com/containerd/containerd/v2/pkg/protobuf/types"
	"github.com/containerd/containerd/v2/version"

	"github.com/shimkeeper/shimkeeper/bootstrap"
)

// waitDelay bounds how long a shim command's output pipes may stay open
// after the command exits or is killed: a shim's forked daemon can inherit
// them.
const waitDelay = 2 * time.Second

// Binary runs the shim binary protocol for one bundle: `start`,
// `delete`. The fields are what stock passes on argv, env and stdin.
type Binary struct {
	Runtime      string // absolute path of the shim binary
	Address      string // containerd's grpc address
	TTRPCAddress string
	SocketDir    string
	Env          []string // the shim manager's `env` setting (start only)
	Namespace    string
	ID           string
	Bundle       string
}

func (b *Binary) command(ctx context.Context, action string, opts *types.Any) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-namespace", b.Namespace, "-address", b.Address, "-publish-binary", self, "-id", b.ID}
	if action == "delete" {
		args = append(args, "-bundle", b.Bundle)
	}
	switch log.GetLevel() {
	case log.DebugLevel, log.TraceLevel:
		args = append(args, "-debug")
	}
	args = append(args, action)

	cmd := exec.CommandContext(ctx, b.Runtime, args...)
	// The runc shim works out its paths from the working directory.
	cmd.Dir = b.Bundle
	cmd.Env = append(os.Environ(),
		"GOMAXPROCS=2",
		"MAX_SHIM_VERSION=2",
		"TTRPC_ADDRESS="+b.TTRPCAddress,
		"GRPC_ADDRESS="+b.Address,
		"NAMESPACE="+b.Namespace,
	)
	if action == "start" {
		cmd.Env = append(cmd.Env, b.Env...)
	}
	// The shim leads its own process group; on cancellation the whole group
	// is killed, so a hung `start` leaves no forked daemon behind. The
	// group is ours: its leader is this exec, not yet reaped while Cancel
	// can run, so its pid (and group id) cannot have been reused; and it
	// holds only what this exec forked: for `start`, a shim with no task
	// yet (Create comes after `start` returns), for `delete`, nothing that
	// outlives it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay

	name := filepath.Base(b.Runtime)
	switch {
	case strings.Contains(name, "shim-runc-v1") || strings.Contains(name, "shim-runhcs-v1"):
		// 1.x shims read the bare options on stdin.
		if opts != nil {
			d, err := proto.Marshal(opts)
			if err != nil {
				return nil, err
			}
			cmd.Stdin = bytes.NewReader(d)
		}
	case action == "start":
		params := &bootapi.BootstrapParams{
			InstanceID:             b.ID,
			Namespace:              b.Namespace,
			LogLevel:               bootapi.LogLevelFromString(log.GetLevel().String()),
			ContainerdVersion:      version.Version,
			ContainerdGrpcAddress:  b.Address,
			ContainerdTtrpcAddress: b.TTRPCAddress,
			ContainerdBinary:       self,
		}
		if b.SocketDir != "" {
			params.SocketDir = &b.SocketDir
		}
		if opts != nil {
			if err := params.AddExtension(opts); err != nil {
				return nil, fmt.Errorf("add runtime options extension: %w", err)
			}
		}
		data, err := proto.Marshal(params)
		if err != nil {
			return nil, fmt.Errorf("marshal bootstrap params: %w", err)
		}
		cmd.Stdin = bytes.NewReader(data)
	}
	return cmd, nil
}

// Start runs `<shim> start` and parses its reply. Like stock, the reply is
// the combined output: a shim that writes to stderr corrupts it.
func (b *Binary) Start(ctx context.Context, opts *types.Any) (*bootapi.BootstrapResult, error) {
	cmd, err := b.command(ctx, "start", opts)
	if err != nil {
		return nil, err
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, shimCallError(ctx.Err(), out, err)
	}
	params, err := bootstrap.ParseStartResponse(out)
	if err != nil {
		return nil, fmt.Errorf("parse shim start reply %q: %w", truncate(out, 200), err)
	}
	return params, nil
}

// Delete runs `<shim> delete`, which, for the runc shim, force-deletes the
// container (killing it if it still runs), unmounts its rootfs and reports
// its exit. It does not remove the bundle.
func (b *Binary) Delete(ctx context.Context) (*runtime.Exit, error) {
	cmd, err := b.command(ctx, "delete", nil)
	if err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, shimCallError(ctx.Err(), stderr.Bytes(), err)
	}
	if s := strings.TrimSpace(stderr.String()); s != "" {
		log.G(ctx).WithFields(log.Fields{"id": b.ID, "warnings": s}).Warn("warnings while cleaning up dead shim")
	}
	var resp taskv2.DeleteResponse
	if err := proto.Unmarshal(stdout.Bytes(), &resp); err != nil {
		return nil, fmt.Errorf("decode shim delete reply: %w", err)
	}
	return &runtime.Exit{Pid: resp.Pid, Status: resp.ExitStatus, Timestamp: protobuf.FromTimestamp(resp.ExitedAt)}, nil
}

// Info runs `<shim> -info` with the options on stdin and decodes
// the RuntimeInfo it prints.
func Info(ctx context.Context, binary string, options *types.Any) (*apitypes.RuntimeInfo, error) {
	var stdin []byte
	if options != nil {
		var err error
		if stdin, err = proto.Marshal(options); err != nil {
			return nil, fmt.Errorf("marshal %s: %w", options.TypeUrl, err)
		}
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, binary, "-info")
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stderr = &stderr
	cmd.WaitDelay = waitDelay
	stdout, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("failed to run %v: %w (stderr: %q)", cmd.Args, err, stderr.String())
	}
	var info apitypes.RuntimeInfo
	if err := proto.Unmarshal(stdout, &info); err != nil {
		return nil, fmt.Errorf("failed to unmarshal stdout from %v into %T: %w", cmd.Args, &info, err)
	}
	return &info, nil
}

// shimCallError keeps "killed by us" distinct from "the shim failed":
// a killed shim prints nothing, and the exit status alone does not say
// that the context ran out.
func shimCallError(ctxErr error, output []byte, err error) error {
	if ctxErr != nil {
		err = fmt.Errorf("shim killed after %w: %w", ctxErr, err)
	}
	if s := bytes.TrimSpace(output); len(s) > 0 {
		err = fmt.Errorf("%s: %w", truncate(s, 1024), err)
	}
	return err
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "..."
}

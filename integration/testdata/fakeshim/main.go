//go:build integration

// Command fakeshim is a deliberately broken runtime v2 shim used by the
// integration tests to check how the daemon copes with misbehaving shims,
// and, in mode "sandbox", a minimal working sandbox shim for the "shim"
// sandbox controller (which the runc shim does not serve).
//
// It is invoked as
//
//	fakeshim MODE [containerd shim flags...] start|delete
//
// through a per-test wrapper script, so the daemon sees an ordinary shim
// binary at an absolute path. The shim flags (-namespace, -address, -id,
// -bundle, ...) are accepted and ignored; they stay on the command line so the
// tests can find every process belonging to their daemon by its -address.
//
// Modes:
//
//	start-fail     start writes a message to stderr and exits 3.
//	start-garbage  start exits 0 after printing text that is neither a
//	               bootstrap result nor a reachable address.
//	start-hang     start never returns.
//	serve-hang     start forks a server that listens on <bundle>/fake.sock,
//	               accepts connections and never answers, then prints
//	               unix://<bundle>/fake.sock as its address.
//	serve-hang-leak  serve-hang whose delete leaves the server running, as
//	               the runc shim's delete leaves its own server: only the
//	               daemon can stop it.
//	sandbox        a working sandbox shim: start forks a server for the
//	               sandbox API (and task Connect/State) and prints a
//	               protobuf BootstrapResult; see sandbox.go.
//
// In every mode delete succeeds with an empty DeleteResponse; in serve-hang
// and sandbox modes it first kills the server recorded in <bundle>/fake.pid (relative to
// its cwd, which the daemon sets to the bundle), because a well-behaved
// delete cleans up whatever start left running. Anything else, `-info`
// included, fails with exit status 1.
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

const (
	socketName = "fake.sock"
	pidName    = "fake.pid"

	// GarbageOutput is what start-garbage prints. It must fail to parse as
	// a protobuf BootstrapResult (0x67 'g' is field 12 with the invalid wire
	// type 7) and as JSON, so a stock daemon treats it as an abstract-socket
	// address that nobody listens on.
	garbageOutput = "garbage: this is not a bootstrap result"

	// StartFailMessage is what start-fail writes to stderr; the tests look
	// for it in ctr's error.
	startFailMessage = "fakeshim: start refused on purpose"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: fakeshim MODE [shim flags] start|delete")
		os.Exit(2)
	}
	mode, action := os.Args[1], os.Args[len(os.Args)-1]
	var err error
	switch action {
	case "start":
		err = start(mode)
	case "delete":
		err = del(mode)
	case "serve":
		if mode == sandboxMode {
			err = serveSandbox()
		} else {
			err = serve()
		}
	default:
		err = fmt.Errorf("unsupported action %q", action)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "fakeshim %s %s: %v\n", mode, action, err)
		os.Exit(1)
	}
}

func start(mode string) error {
	if mode == sandboxMode {
		return startSandbox() // reads the bootstrap parameters itself
	}
	// Drain the bootstrap parameters like a real shim would, so the daemon
	// never blocks writing them.
	_, _ = io.Copy(io.Discard, os.Stdin)

	switch mode {
	case "start-fail":
		fmt.Fprintln(os.Stderr, startFailMessage)
		os.Exit(3)
	case "start-garbage":
		fmt.Println(garbageOutput)
		return nil
	case "start-hang":
		for { // until the daemon (or the test's cleanup) kills us
			time.Sleep(time.Hour)
		}
	case "serve-hang", "serve-hang-leak":
		return startServer()
	}
	return fmt.Errorf("unknown mode %q", mode)
}

// spawnServer re-executes the binary in bundle as a detached server
// (same arguments, action "serve", env added to the environment) and waits
// until sock accepts connections.
func spawnServer(bundle, sock string, env []string, what string) error {
	args := append([]string{}, os.Args[1:len(os.Args)-1]...)
	args = append(args, "serve")
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = bundle
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return errors.New(what + " did not come up")
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

// startServer re-executes the binary as a detached server (same arguments,
// action "serve"), waits until it listens and prints its address.
func startServer() error {
	bundle, err := os.Getwd()
	if err != nil {
		return err
	}
	sock := filepath.Join(bundle, socketName)
	if err := spawnServer(bundle, sock, nil, "server"); err != nil {
		return err
	}
	fmt.Print("unix://" + sock)
	return nil
}

// serve accepts connections on <cwd>/fake.sock and never answers them.
func serve() error {
	if err := os.WriteFile(pidName, []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return err
	}
	l, err := net.Listen("unix", socketName)
	if err != nil {
		return err
	}
	var conns []net.Conn // held open forever: the client must give up on its own
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		conns = append(conns, c)
	}
}

func del(mode string) error {
	if mode == sandboxMode {
		return delSandbox()
	}
	if mode == "serve-hang" {
		b, err := os.ReadFile(pidName)
		if err != nil {
			return fmt.Errorf("no server to kill: %w", err)
		}
		pid, err := strconv.Atoi(string(b))
		if err != nil || pid <= 0 {
			return fmt.Errorf("bad %s %q", pidName, b)
		}
		err = syscall.Kill(pid, syscall.SIGKILL)
		// The daemon logs a delete's stderr as a warning.
		fmt.Fprintf(os.Stderr, "fakeshim: delete killed server %d: %v\n", pid, err)
		_ = os.Remove(socketName)
	}
	// An empty protobuf DeleteResponse is a valid, all-zero reply.
	return nil
}

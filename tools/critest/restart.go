package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shimkeeper/shimkeeper/internal/crihost"
)

// containerd v2.4.2's CRI integration test TestContainerdRestart
// (integration/restart_test.go, built into bin/containerd-integration.test)
// restarts the daemon with `pkill -SIG -x ^NAME$`, waits until `pidof -s
// NAME` finds nothing, and expects something else to start the daemon
// again (containerd's CI runs it in a restart loop). Here the driver is
// that loop, and the pkill and pidof the test runs are this binary
// (restartShims), which signal and report only the daemon in the pid file
// named by $SKCRIT_PIDFILE: nothing is killed by name.

const (
	restartTest  = "TestContainerdRestart"
	pidFileEnv   = "SKCRIT_PIDFILE"
	goneMarker   = ".gone" // pidof found the daemon gone: the restart loop may start it again
	restartLimit = 5 * time.Minute
)

// restartShim runs this binary as the test's pkill or pidof when it is
// invoked under that name; ok is false otherwise.
func restartShim(argv []string) (code int, ok bool) {
	switch filepath.Base(argv[0]) {
	case "pkill":
		return shimPkill(argv[1:], os.Getenv(pidFileEnv)), true
	case "pidof":
		return shimPidof(os.Getenv(pidFileEnv)), true
	}
	return 0, false
}

// shimPkill is `pkill -SIGNO -x ^NAME$` for the daemon in pidFile.
func shimPkill(args []string, pidFile string) int {
	sig := syscall.SIGTERM
	if len(args) > 0 && strings.HasPrefix(args[0], "-") {
		n, err := strconv.Atoi(args[0][1:])
		if err != nil {
			fmt.Fprintf(os.Stderr, "pkill: %s: only -SIGNO is supported\n", args[0])
			return 2
		}
		sig = syscall.Signal(n)
	}
	pid, alive := daemonPID(pidFile)
	if !alive {
		return 1 // as pkill when nothing matches
	}
	if err := syscall.Kill(pid, sig); err != nil {
		fmt.Fprintln(os.Stderr, "pkill:", err)
		return 3
	}
	return 0
}

// shimPidof is `pidof -s NAME` for the daemon in pidFile. Once it has
// found the daemon gone it leaves the marker the restart loop waits for.
func shimPidof(pidFile string) int {
	pid, alive := daemonPID(pidFile)
	if !alive {
		_ = os.WriteFile(pidFile+goneMarker, nil, 0o644)
		return 1
	}
	fmt.Println(pid)
	return 0
}

func daemonPID(pidFile string) (int, bool) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, err == nil && crihost.PIDAlive(pid)
}

// restartSuite runs TestContainerdRestart against one daemon, restarting
// the daemon whenever the test has stopped it, and reports whether it
// passed.
func restartSuite(bin, dir, name, registry string) (passed, left bool, err error) {
	d, err := newDaemon(bin, dir, name, registry)
	if err != nil {
		return false, false, err
	}
	defer func() { left = !d.cleanup() }()
	shims := filepath.Join(dir, "shims")
	if err := os.MkdirAll(shims, 0o755); err != nil {
		return false, false, err
	}
	self, err := os.Executable()
	if err != nil {
		return false, false, err
	}
	for _, n := range []string{"pkill", "pidof"} {
		if err := os.Symlink(self, filepath.Join(shims, n)); err != nil {
			return false, false, err
		}
	}
	images := filepath.Join(dir, "images.toml")
	list := fmt.Sprintf("Pause = %q\nBusyBox = %q\n", pauseImage, toyboxImage)
	if err := os.WriteFile(images, []byte(list), 0o644); err != nil {
		return false, false, err
	}
	if err := d.start(); err != nil {
		return false, false, err
	}

	stop := make(chan struct{})
	loopDone := make(chan error, 1)
	go func() { loopDone <- d.keepAlive(stop) }()

	logPath := filepath.Join(dir, "restart-test.log")
	out, err := os.Create(logPath)
	if err != nil {
		return false, false, err
	}
	defer out.Close()
	t0 := time.Now()
	cmd := exec.Command(filepath.Join(bin, "containerd-integration.test"),
		"-test.run", "^"+restartTest+"$", "-test.v", "-test.count", "1", "-test.timeout", restartLimit.String(),
		"-cri-endpoint", "unix://"+d.address, "-image-list", images, "-containerd-bin", d.binary)
	cmd.Dir = dir
	cmd.Env = append(d.env(), "PATH="+shims+":"+d.bin+":"+os.Getenv("PATH"), pidFileEnv+"="+d.pidFile())
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	runErr := cmd.Run()
	close(stop)
	if err := <-loopDone; err != nil {
		fmt.Fprintf(os.Stderr, "critest: %s: restart loop: %v\n", name, err)
	}
	var exit *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exit) {
		return false, false, runErr
	}
	passed = runErr == nil
	fmt.Printf("== %s: %s %s in %s (log: %s)\n", name, restartTest, map[bool]string{true: "PASS", false: "FAIL"}[passed],
		time.Since(t0).Round(time.Second), logPath)
	if err := d.stop(); err != nil {
		fmt.Fprintf(os.Stderr, "critest: %s: %v\n", name, err)
	}
	return passed, false, nil
}

// keepAlive starts the daemon again each time it exits, once the test's
// pidof has seen it gone, until stop is closed.
func (d *daemon) keepAlive(stop <-chan struct{}) error {
	for {
		select {
		case <-stop:
			return nil
		case <-d.exited:
		}
		marker := d.pidFile() + goneMarker
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) { // poll interval
			if _, err := os.Stat(marker); err == nil || time.Now().After(deadline) {
				break
			}
			select {
			case <-stop:
				return nil
			default:
			}
		}
		_ = os.Remove(marker)
		fmt.Printf("   %s: daemon exited (%v), starting it again\n", d.name, d.cmd.ProcessState)
		if err := d.start(); err != nil {
			return err
		}
	}
}

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"

	"github.com/shimkeeper/shimkeeper/bench/synthctl"
)

// runRuncCase runs real containers (containerd-shim-runc-v2, runc, a toybox
// rootfs) created once with `ctr run -d`, then restarts the two daemons
// alternately over the same live state: the shims are real processes, so no
// copy is restored. Every runc exec is logged by a wrapper on the shims'
// PATH, to count what each daemon's recovery makes the shims run.
func (b *bench) runRuncCase(ctx context.Context, c caseDef) *caseResult {
	res := &caseResult{def: c, runs: map[string][]*runResult{}}
	fmt.Printf("\n== %s\n", c.name)
	t0 := time.Now()
	pids, err := b.createRunc(c)
	if err != nil {
		res.setupErr = fmt.Errorf("create containers: %w", err)
		fmt.Printf("   SETUP FAILED: %v\n", res.setupErr)
		b.teardownRunc()
		return res
	}
	fmt.Printf("   created %d runc containers with stock containerd and ctr run -d in %s\n", len(pids), time.Since(t0).Round(100*time.Millisecond))
	b.alternate(res, func(name string, round int) *runResult { return b.measureRunc(c, pids, name, round) })
	if c.floor {
		res.floor = b.measureFloor(nil)
	}
	if err := b.teardownRunc(); err != nil {
		fmt.Printf("   teardown: %v\n", err)
	}
	return res
}

func (b *bench) runcLog() string  { return filepath.Join(b.tmp, "runc-calls.log") }
func (b *bench) runcRoot() string { return filepath.Join(b.tmp, "runc") }

// writeRuncWrapper puts the runc the shims find first on their PATH (and
// the CRI cases name as BinaryName): it logs every exec, then runs
// bin/runc.
func (b *bench) writeRuncWrapper() error {
	wrapper := fmt.Sprintf("#!/bin/sh\necho \"$*\" >>%s\nexec %s \"$@\"\n", b.runcLog(), filepath.Join(b.o.bin, "runc"))
	return os.WriteFile(filepath.Join(b.tmp, "rbin", "runc"), []byte(wrapper), 0o755)
}

func (b *bench) ctr(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(b.o.bin, "ctr"), append([]string{"--address", b.addr, "--namespace", namespace}, args...)...)
	cmd.Env = b.env()
	return cmd
}

// createRunc starts stock containerd on fresh dirs, runs the containers and
// stops it; it returns each task's pid.
func (b *bench) createRunc(c caseDef) (map[string]uint32, error) {
	if _, err := b.ctl(synthctl.Request{Op: "reset"}); err != nil {
		return nil, err
	}
	if err := b.freshDirs(); err != nil {
		return nil, err
	}
	rootfs := filepath.Join(b.tmp, "rootfs")
	mk := exec.Command(filepath.Join(b.o.repo, "scripts", "mkrootfs.sh"), rootfs)
	mk.Env = append(os.Environ(), "TOYBOX="+filepath.Join(b.o.bin, "toybox"))
	if out, err := mk.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mkrootfs: %v: %s", err, out)
	}
	if err := b.writeRuncWrapper(); err != nil {
		return nil, err
	}
	d, err := b.startDaemon("populate", c.key+"-populate")
	if err != nil {
		return nil, err
	}
	defer b.stopDaemon(d)
	if _, err := b.waitReady(d); err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	errc := make(chan error, c.runc)
	sem := make(chan struct{}, 4)
	for _, id := range ids("rc", c.runc) {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out, err := b.ctr("run", "-d", "--null-io", "--rootfs", rootfs, "--runc-root", b.runcRoot(), id, "/bin/sleep", "3600").CombinedOutput()
			if err != nil {
				errc <- fmt.Errorf("ctr run %s: %v: %s", id, err, strings.TrimSpace(string(out)))
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return nil, err
	}
	ts, err := d.listTasks(time.Minute)
	if err != nil {
		return nil, err
	}
	pids := map[string]uint32{}
	for _, t := range ts {
		if t.Status != "RUNNING" {
			return nil, fmt.Errorf("task %s is %s after ctr run -d", t.ID, t.Status)
		}
		pids[t.ID] = t.Pid
	}
	if len(pids) != c.runc {
		return nil, fmt.Errorf("%d tasks listed, want %d", len(pids), c.runc)
	}
	return pids, b.stopDaemon(d)
}

func (b *bench) measureRunc(c caseDef, pids map[string]uint32, name string, round int) *runResult {
	r := &runResult{daemon: name, round: round}
	_ = os.WriteFile(b.runcLog(), nil, 0o644)
	kept := func(t *taskInfo) bool {
		p, ok := pids[t.ID]
		return ok && t.Status == "RUNNING" && t.Pid == p
	}
	b.timedRun(r, name, fmt.Sprintf("%s-%s-%d", c.key, name, round), len(pids), kept, nil, func(d *daemon) { b.checkRunc(d, pids, r) })
	return r
}

// checkRunc checks the post-state: every container listed RUNNING with its
// pid, its process alive, its bundle kept.
func (b *bench) checkRunc(d *daemon, pids map[string]uint32, r *runResult) {
	r.runcCalls = countRunc(b.runcLog())
	ts, err := d.listTasks(time.Minute)
	if err != nil {
		r.fail("final list: %v", err)
		return
	}
	byID := map[string]*taskInfo{}
	for _, t := range ts {
		byID[t.ID] = t
	}
	var bad []string
	for id, pid := range pids {
		t := byID[id]
		switch {
		case t == nil:
			bad = append(bad, id+" not listed")
		case t.Status != "RUNNING" || t.Pid != pid:
			bad = append(bad, fmt.Sprintf("%s listed %s pid %d, want RUNNING pid %d", id, t.Status, t.Pid, pid))
		case syscall.Kill(int(pid), 0) != nil:
			bad = append(bad, fmt.Sprintf("%s: pid %d is gone", id, pid))
		case !exists(b.bundle(id)):
			bad = append(bad, id+": bundle removed")
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		msg := fmt.Sprintf("%d of %d containers not kept: %s", len(bad), len(pids), strings.Join(bad[:min(3, len(bad))], "; "))
		if d.name == "ours" {
			r.fail("%s", msg)
		} else {
			r.invalid = append(r.invalid, msg)
		}
	} else {
		r.behaviour = append(r.behaviour, fmt.Sprintf("runc: %d listed RUNNING with their pids, processes alive, bundles kept", len(pids)))
	}
	if d.name == "ours" {
		if rep, err := readReport(b.state); err == nil {
			r.recoveryReady, r.recoveryJudged = millis(rep.Ready), millis(rep.Judged)
		}
	}
}

// countRunc counts the runc execs in the wrapper's log by subcommand.
func countRunc(path string) map[string]int {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	valued := map[string]bool{"--root": true, "--log": true, "--log-format": true, "--criu": true, "--rootless": true}
	out := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if l == "" {
			continue
		}
		f := strings.Fields(l)
		sub := "?"
		for i := 0; i < len(f); i++ {
			if strings.HasPrefix(f[i], "-") {
				if valued[f[i]] {
					i++
				}
				continue
			}
			sub = f[i]
			break
		}
		out[sub]++
	}
	return out
}

// teardownRunc kills and deletes the containers through our daemon, then
// stops it; whatever is left is handled by the final cleanup.
func (b *bench) teardownRunc() error {
	d, err := b.startDaemon("ours", "runc-teardown")
	if err != nil {
		return err
	}
	defer b.stopDaemon(d)
	if _, err := b.waitReady(d); err != nil {
		return err
	}
	cli, err := containerd.New(b.addr, containerd.WithDefaultNamespace(namespace))
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs, err := cli.Containers(ctx)
	if err != nil {
		return err
	}
	var errs []string
	for _, c := range cs {
		if t, err := c.Task(ctx, nil); err == nil {
			wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
			st, werr := t.Wait(wctx)
			_ = t.Kill(ctx, syscall.SIGKILL)
			if werr == nil {
				<-st
			}
			wcancel()
			if _, err := t.Delete(ctx); err != nil {
				errs = append(errs, fmt.Sprintf("delete task %s: %v", c.ID(), err))
			}
		}
		if err := c.Delete(ctx); err != nil {
			errs = append(errs, fmt.Sprintf("delete container %s: %v", c.ID(), err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// Command floor is the floor of the recovery benchmark: the least a program
// must do to reconnect to every shim of a state dir. For each bundle
// <state>/<ns>/<id> it reads bootstrap.json, dials the shim's socket and calls
// the task API's Connect, at most -c at a time, then exits. Nothing else: no
// metadata store, no plugin init, no State or Pids call.
//
//	floor -state <state>/io.containerd.runtime.v2.task -c 64
//
// It prints "connected N of M" and fails if any shim did not answer.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	task "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/ttrpc"

	"github.com/shimkeeper/shimkeeper/layout"
)

func main() {
	state := flag.String("state", "", "the task plugin's state dir")
	conc := flag.Int("c", 2, "shims connected at once")
	timeout := flag.Duration("timeout", 5*time.Second, "budget of one shim")
	flag.Parse()
	start := time.Now()

	var bundles []string
	nss, err := os.ReadDir(*state)
	if err != nil {
		fail(err)
	}
	for _, ns := range nss {
		if !ns.IsDir() || layout.Hidden(ns.Name()) {
			continue
		}
		ids, err := os.ReadDir(filepath.Join(*state, ns.Name()))
		if err != nil {
			fail(err)
		}
		for _, id := range ids {
			if id.IsDir() && !layout.Hidden(id.Name()) {
				bundles = append(bundles, filepath.Join(*state, ns.Name(), id.Name()))
			}
		}
	}

	var ok atomic.Int64
	var firstErr atomic.Value
	sem := make(chan struct{}, max(*conc, 1))
	var wg sync.WaitGroup
	for _, b := range bundles {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := connect(b, *timeout); err != nil {
				firstErr.CompareAndSwap(nil, fmt.Errorf("%s: %w", b, err))
				return
			}
			ok.Add(1)
		}()
	}
	wg.Wait()
	fmt.Printf("connected %d of %d in %s (concurrency %d)\n", ok.Load(), len(bundles), time.Since(start).Round(time.Millisecond), *conc)
	if e := firstErr.Load(); e != nil {
		fail(e.(error))
	}
}

func connect(bundle string, timeout time.Duration) error {
	data, err := os.ReadFile(layout.BundleFile(bundle, layout.FileBootstrap))
	if err != nil {
		return err
	}
	var p struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", strings.TrimPrefix(p.Address, "unix://"))
	if err != nil {
		return err
	}
	client := ttrpc.NewClient(c)
	defer client.Close()
	_, err = task.NewTTRPCTaskClient(client).Connect(ctx, &task.ConnectRequest{ID: filepath.Base(bundle)})
	return err
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "floor:", err)
	os.Exit(1)
}

// Command critest runs cri-tools' CRI validation suite (bin/critest,
// v1.37.0) against stock containerd v2.4.2 (bin/containerd-stock) and
// against ours (bin/containerd) in one run, prints each daemon's passed,
// failed and skipped specs and the difference, and exits 1 if ours fails a
// spec that stock passes. `make critest` runs it.
//
// Everything is offline: bin/testimages serves the images from memory on
// loopback, and each daemon's hosts.toml sends registry.shimkeeper.test,
// gcr.io, registry.k8s.io and k8s.gcr.io there (with a dead proxy for
// anything else), so the specs keep the image names they compare.
// Each daemon gets its own temp dir (root, state, sockets, runc root, CNI
// config and bridge); at the end every process started for it is killed
// by PID, its mounts and bridge are removed, and the dir is deleted. The
// host's containerd is never touched.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// skips are the specs neither daemon runs: they need images that cannot be
// made from toybox. Each is a ginkgo -skip regexp with its reason; the
// same list goes to both daemons.
var skips = []struct{ re, why string }{
	{`public image with digest should be pulled and removed`, "pins the digest of the upstream image's bytes"},
	{`runtime should support (HostPID|PodPID|ContainerPID)$`, "runs the e2e nginx image (a real nginx master process)"},
	{`Security Context NoNewPrivs`, "runs the e2e nonewprivs image (a setuid test binary)"},
	{`port mapping with (only container port|host port and container port)`, "runs the e2e nginx image as a web server"},
	{`runtime should support portforward`, "runs the e2e nginx or hostnet-nginx image as a web server"},
	{`Multiple Containers`, "runs the e2e httpd image"},
}

func main() {
	binDir := flag.String("bin", "bin", "dir with containerd, containerd-stock, critest, crictl, runc, the shim, testimages, toybox and cni/")
	daemons := flag.String("daemons", "stock,ours", "daemons to run, in order: stock, ours")
	focus := flag.String("focus", "", "ginkgo -focus regexp (default: every spec)")
	keep := flag.Bool("keep", false, "keep the temp dir (daemon logs, reports) instead of deleting it")
	specTimeout := flag.Duration("timeout", 40*time.Minute, "ginkgo suite timeout per daemon")
	flag.Parse()

	bin, err := filepath.Abs(*binDir)
	if err != nil {
		fatal(err)
	}
	os.Exit(run(bin, strings.Split(*daemons, ","), *focus, *keep, *specTimeout))
}

func run(bin string, names []string, focus string, keep bool, timeout time.Duration) int {
	start := time.Now()
	top, err := os.MkdirTemp("/tmp", "skcrit")
	if err != nil {
		fatal(err)
	}
	defer func() {
		if keep {
			fmt.Printf("kept %s\n", top)
			return
		}
		if err := os.RemoveAll(top); err != nil {
			fmt.Fprintln(os.Stderr, "critest:", err)
		}
	}()

	reg, err := startRegistry(bin, top)
	if err != nil {
		fmt.Fprintln(os.Stderr, "critest:", err)
		return 2
	}
	defer reg.stop()

	// An interrupt stops the running critest; the deferred cleanups run.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	results := map[string]*result{}
	for _, name := range names {
		binary := map[string]string{"stock": "containerd-stock", "ours": "containerd"}[name]
		if binary == "" {
			fmt.Fprintf(os.Stderr, "critest: unknown daemon %q (stock, ours)\n", name)
			return 2
		}
		r, err := suite(bin, filepath.Join(top, name), name, binary, reg, focus, timeout, sigs)
		if err != nil {
			fmt.Fprintf(os.Stderr, "critest: %s: %v\n", name, err)
			return 2
		}
		results[name] = r
	}

	fmt.Println()
	for _, s := range skips {
		fmt.Printf("skipped for both: /%s/ (%s)\n", s.re, s.why)
	}
	for _, name := range names {
		results[name].print(name)
	}
	code := 0
	if stock, ours := results["stock"], results["ours"]; stock != nil && ours != nil {
		code = compare(stock, ours)
	}
	fmt.Printf("total time %s\n", time.Since(start).Round(time.Second))
	return code
}

// suite runs critest against one daemon started in dir.
func suite(bin, dir, name, binary string, reg *registry, focus string, timeout time.Duration, sigs <-chan os.Signal) (*result, error) {
	d, err := newDaemon(bin, dir, binary, reg)
	if err != nil {
		return nil, err
	}
	defer d.cleanup()
	t0 := time.Now()
	if err := d.start(); err != nil {
		return nil, err
	}
	fmt.Printf("== %s: %s ready in %s, running critest\n", name, binary, time.Since(t0).Round(time.Millisecond))
	report := filepath.Join(dir, "report.json")
	if err := d.critest(report, focus, timeout, sigs); err != nil {
		return nil, err
	}
	r, err := readReport(report)
	if err != nil {
		return nil, fmt.Errorf("%w (daemon log: %s)", err, d.logPath)
	}
	r.Duration = time.Since(t0)
	if err := d.stop(); err != nil {
		fmt.Fprintf(os.Stderr, "critest: %s: %v\n", name, err)
	}
	return r, nil
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "critest:", err)
	os.Exit(2)
}

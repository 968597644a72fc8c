// Command critest runs cri-tools' CRI validation suite (bin/critest,
// v1.37.0) against stock containerd v2.4.2 (bin/containerd-stock) and
// against ours (bin/containerd) in one run, prints both daemons' outcome
// of every spec, their counts and the difference, and exits 1 if ours does
// not pass a spec that stock passes. `make critest` runs it.
//
// Everything is offline: bin/testimages -critest serves the images from
// memory on loopback, and each daemon's hosts.toml sends every registry
// the specs name (mirrored) there, so the specs keep the image names they
// compare; a proxy that refuses every connection keeps anything else out.
// Each daemon gets its own temp dir (root, state, sockets, runc root, CNI
// config and IPAM, NRI socket, critest's TMPDIR) and a bridge of its own.
// At the end every process started for it is killed by PID, what is
// mounted under its dir is unmounted, and its bridge and libcni cache
// entries are removed. The host's containerd (/run/containerd,
// /var/lib/containerd) is never touched.
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

	"github.com/shimkeeper/shimkeeper/internal/crihost"
)

const registryStartLimit = 60 * time.Second // testimages building and pushing the critest images

// options are what every daemon's critest run shares.
type options struct {
	focus   string        // ginkgo -focus, "" for every spec
	skips   []skip        // ginkgo -skip, one each
	seed    int64         // ginkgo -seed: both daemons run the specs in one order
	timeout time.Duration // ginkgo -timeout
}

func main() {
	if code, ok := restartShim(os.Args); ok {
		os.Exit(code)
	}
	binDir := flag.String("bin", "bin", "dir with containerd, containerd-stock, critest, crictl, runc, the shim, testimages, toybox and cni/")
	daemons := flag.String("daemons", "stock,ours", "daemons to run, in order: stock, ours")
	focus := flag.String("focus", "", "ginkgo -focus regexp (default: every spec)")
	seed := flag.Int64("seed", 0, "ginkgo -seed, the order of the specs for both daemons (default: from the clock)")
	keep := flag.Bool("keep", false, "keep the temp dir (daemon and critest logs, reports) instead of deleting it")
	timeout := flag.Duration("timeout", 40*time.Minute, "ginkgo suite timeout per daemon")
	restart := flag.Bool("containerd-restart", false, "run containerd v2.4.2's CRI test "+restartTest+
		" (bin/containerd-integration.test) instead of critest")
	flag.Parse()

	bin, err := filepath.Abs(*binDir)
	if err != nil {
		fatal(err)
	}
	o := options{focus: *focus, seed: *seed, timeout: *timeout, skips: skipsFor(filepath.Join(bin, "runc"))}
	if o.seed == 0 {
		o.seed = time.Now().Unix()
	}
	if *restart {
		os.Exit(runRestart(bin, strings.Split(*daemons, ","), *keep))
	}
	os.Exit(run(bin, strings.Split(*daemons, ","), o, *keep))
}

// binaries are the daemons by name.
var binaries = map[string]string{"stock": "containerd-stock", "ours": "containerd"}

// inEnv checks bin, makes the run's temp dir and starts the registry,
// calls body, and removes the dir unless keep is set or body reports
// something left behind (then removing it could reach into a mount).
func inEnv(bin string, names []string, keep bool, body func(top, registry string) (code int, leftover bool)) int {
	start := time.Now()
	for _, name := range names {
		if binaries[name] == "" {
			fmt.Fprintf(os.Stderr, "critest: unknown daemon %q (stock, ours)\n", name)
			return 2
		}
	}
	for _, n := range []string{"critest", "crictl", "runc", "containerd-shim-runc-v2", "testimages", "toybox",
		"cni/bridge", "cni/loopback", "cni/host-local", "cni/portmap", binaries["stock"], binaries["ours"]} {
		if _, err := os.Stat(filepath.Join(bin, n)); err != nil {
			fmt.Fprintf(os.Stderr, "critest: %v (run make build)\n", err)
			return 2
		}
	}
	top, err := os.MkdirTemp("/tmp", "skcrit")
	if err != nil {
		fatal(err)
	}
	// 0711 like containerd's own state dirs: a user namespace's root
	// (a host uid of its own) must get through to the bundles.
	if err := os.Chmod(top, 0o711); err != nil {
		fatal(err)
	}
	leftover := false
	defer func() {
		if keep || leftover {
			fmt.Printf("kept %s\n", top)
			return
		}
		if err := os.RemoveAll(top); err != nil {
			fmt.Fprintln(os.Stderr, "critest:", err)
		}
	}()

	reg, err := crihost.StartRegistry(filepath.Join(bin, "testimages"),
		[]string{"-toybox", filepath.Join(bin, "toybox"), "-critest"},
		filepath.Join(top, "registry.json"), filepath.Join(top, "registry.log"), registryStartLimit,
		strings.TrimPrefix(pauseImage, registryHost+"/"), strings.TrimPrefix(toyboxImage, registryHost+"/"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "critest:", err)
		return 2
	}
	defer reg.Stop()

	code, leftover := body(top, reg.Addr)
	if leftover {
		code = 2
	}
	fmt.Printf("total time %s\n", time.Since(start).Round(time.Second))
	return code
}

func run(bin string, names []string, o options, keep bool) int {
	return inEnv(bin, names, keep, func(top, registry string) (int, bool) {
		// An interrupt stops the running critest; the deferred cleanups run.
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
		defer signal.Stop(sigs)

		fmt.Printf("critest %s against %s, ginkgo seed %d, %d skips by name\n", filepath.Join(bin, "critest"),
			strings.Join(names, " then "), o.seed, len(o.skips))
		results := map[string]*result{}
		var rs []*result
		leftover := false
		for _, name := range names {
			r, left, err := suite(bin, filepath.Join(top, name), name, registry, o, sigs)
			leftover = leftover || left
			if err != nil {
				fmt.Fprintf(os.Stderr, "critest: %s: %v\n", name, err)
				return 2, leftover
			}
			results[name] = r
			rs = append(rs, r)
		}

		printTable(os.Stdout, rs)
		printSkips(os.Stdout, rs, o.skips)
		fmt.Println()
		for _, r := range rs {
			r.printSummary(os.Stdout)
		}
		if stock, ours := results["stock"], results["ours"]; stock != nil && ours != nil {
			if lost := compare(os.Stdout, stock, ours); len(lost) > 0 {
				return 1, leftover
			}
		}
		return 0, leftover
	})
}

// runRestart runs TestContainerdRestart against each daemon; it fails if
// the test fails against ours, or against ours and not against stock.
func runRestart(bin string, names []string, keep bool) int {
	if _, err := os.Stat(filepath.Join(bin, "containerd-integration.test")); err != nil {
		fmt.Fprintf(os.Stderr, "critest: %v (run make critest-restart)\n", err)
		return 2
	}
	return inEnv(bin, names, keep, func(top, registry string) (int, bool) {
		passed := map[string]bool{}
		leftover := false
		for _, name := range names {
			ok, left, err := restartSuite(bin, filepath.Join(top, name), name, registry)
			leftover = leftover || left
			if err != nil {
				fmt.Fprintf(os.Stderr, "critest: %s: %v\n", name, err)
				return 2, leftover
			}
			passed[name] = ok
		}
		if ok, ran := passed["ours"]; ran && !ok {
			fmt.Println("FAIL: " + restartTest + " fails against ours")
			return 1, leftover
		}
		return 0, leftover
	})
}

// suite starts one daemon in dir, runs critest against it, stops it and
// cleans up after it; left is true if anything could not be removed.
func suite(bin, dir, name, registry string, o options, sigs <-chan os.Signal) (r *result, left bool, err error) {
	d, err := newDaemon(bin, dir, name, registry)
	if err != nil {
		return nil, false, err
	}
	defer func() { left = !d.cleanup() }()
	t0 := time.Now()
	if err := d.start(); err != nil {
		return nil, false, err
	}
	fmt.Printf("== %s: %s ready in %s, running critest\n", name, d.binary, time.Since(t0).Round(time.Millisecond))
	report := filepath.Join(dir, "report.json")
	if err := d.critest(report, o, sigs); err != nil {
		return nil, false, err
	}
	r, err = readReport(report, name)
	if err != nil {
		return nil, false, fmt.Errorf("%w (critest log: %s)", err, filepath.Join(dir, "critest.log"))
	}
	r.Duration = time.Since(t0)
	if err := d.stop(); err != nil {
		fmt.Fprintf(os.Stderr, "critest: %s: %v\n", name, err)
	}
	return r, false, nil
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "critest:", err)
	os.Exit(2)
}

// Command bench is shimkeeper's recovery benchmark (`make bench`): it
// restarts our daemon and stock containerd v2.4.2, alternately, over the same
// populations of shims, and compares how soon each lists every live task
// (the headline), serves, and settles (background cleanup done), and how
// much memory it holds afterwards. Every run's
// post-state is checked, so that a fast wrong answer cannot score; a check
// failure of our daemon fails the benchmark.
//
// The shims are synthetic (bench/synthshim: one process serves every shim
// socket) except in the "real runc" and CRI cases. Each population is created once, by
// stock containerd through the Go client, and a pristine copy of the root and
// state dirs is restored to the same paths before every run.
//
// Usage (as root; `make bench` builds everything first):
//
//	bench -bin <repo>/bin -tools <repo>/bin/bench [-rounds 3] [-cases a,b] [-cri-pods N] [-keep]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// caseDef is one benchmark case.
type caseDef struct {
	key                              string
	name                             string
	live, hung, dead, leaked, exited int
	runc                             int
	floor                            bool
	// target is the goal for the median time until every live task is
	// listed, ours/stock (0: none).
	target float64
	// rssTarget is the goal for the median RSS, ours/stock (0: none).
	rssTarget float64
	// floorTarget is the goal for ours listed / floor at c=64, medians
	// (0: none).
	floorTarget float64
	// relTo and relFactor: a goal relative to another case of ours, met
	// when ours listed ≤ relFactor × ours listed in case relTo (medians;
	// judged only when both ran).
	relTo     string
	relFactor float64
	// oursOnly: stock is not run (it would take many minutes a round:
	// it loads hung shims one after the other).
	oursOnly bool
	// cri is the number of CRI pods (sandbox + one container each).
	cri int
	// optional: not in the default set, run only when named in -cases.
	optional bool
}

var allCases = []caseDef{
	{key: "empty", name: "no shims (daemon start)"},
	// The reference of the hung case, and the small end of the scaling
	// table.
	{key: "live100", name: "100 live", live: 100},
	{key: "live1000", name: "1000 live", live: 1000, floor: true, target: 0.5, floorTarget: 1.5},
	{key: "live3000", name: "3000 live", live: 3000, floor: true, target: 0.5, rssTarget: 1.0, floorTarget: 1.5},
	// Not in the default set: populating 6000 or 10000 shims takes
	// minutes. 6000 is the most a 20000 open-file hard limit allows (the
	// synthshim server holds 3 files per shim); 10000 needs more, and is
	// printed as not run where the limit cannot be raised.
	{key: "live6000", name: "6000 live", live: 6000, floor: true, optional: true},
	{key: "live10000", name: "10000 live", live: 10000, floor: true, optional: true},
	// Hung shims must not delay the listing of the live ones.
	{key: "hung", name: "100 live + 10 hung", live: 100, hung: 10, relTo: "live100", relFactor: 1.2},
	// More hung shims (first in order) than the recovery deadline can
	// reach: every live task must still be listed RUNNING and every hung
	// bundle kept and listed UNKNOWN (the post-state check).
	{key: "manyhung", name: "100 live + 400 hung (ours only)", live: 100, hung: 400, oursOnly: true},
	{key: "dead", name: "100 live + 100 dead", live: 100, dead: 100, target: 0.2},
	{key: "leaked", name: "100 live + 50 leaked", live: 100, leaked: 50, target: 0.3},
	{key: "exited", name: "100 live + 20 exited", live: 100, exited: 20},
	{key: "runc", name: "30 real runc", runc: 30, floor: true, target: 0.5},
	// Real pods through CRI, on a CNI bridge (bench/cmd/bench/cri.go).
	{key: "cri30", name: "30 CRI pods", cri: 30},
	// Not in the default set: about a minute at 3 rounds, most of it
	// creating and removing 100 pods (100 netns and veths), which loads
	// a shared 2-core host.
	{key: "cri100", name: "100 CRI pods", cri: 100, optional: true},
}

type options struct {
	bin, tools, repo string
	rounds           int
	cases            map[string]bool
	keep             bool
	concurrency      int
	ours, stock      string
	pprof            bool
	// holdStart runs ours with recovery_hold_start = true: it serves only
	// once every shim is judged, as stock does.
	holdStart bool
	// criPods, if set, replaces the pod count of the CRI cases.
	criPods int
}

func main() {
	var o options
	var cases string
	flag.StringVar(&o.bin, "bin", "", "dir holding containerd, containerd-stock, ctr, containerd-shim-runc-v2, runc, toybox")
	flag.StringVar(&o.tools, "tools", "", "dir holding the bench's synthshim and floor binaries")
	flag.StringVar(&o.repo, "repo", "", "repository root (for scripts/mkrootfs.sh); default: parent of -bin")
	flag.IntVar(&o.rounds, "rounds", 3, "runs per daemon per case")
	flag.StringVar(&cases, "cases", "", "comma-separated case keys (default all but "+optionalKeys()+", which run only when named): "+caseKeys())
	flag.IntVar(&o.criPods, "cri-pods", 0, "pods per CRI case instead of the case's own count (e.g. 5 for a quick try)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp dir (logs, pristine copies)")
	flag.StringVar(&o.ours, "ours", "", "our daemon binary (default <bin>/containerd), e.g. an unstripped build to profile")
	flag.StringVar(&o.stock, "stock", "", "stock daemon binary (default <bin>/containerd-stock)")
	flag.BoolVar(&o.holdStart, "hold-start", false, "run our daemon with recovery_hold_start = true (serve only once every shim is judged, as stock does)")
	flag.BoolVar(&o.pprof, "pprof", false, "after each run, save the daemon's heap profile and goroutines (debug socket) next to its log; use with -keep")
	flag.IntVar(&o.concurrency, "populate-concurrency", 8, "containers created at once when populating")
	flag.Parse()
	if o.bin == "" || o.tools == "" {
		fmt.Fprintln(os.Stderr, "bench: -bin and -tools are required")
		os.Exit(2)
	}
	if o.repo == "" {
		o.repo = filepath.Dir(o.bin)
	}
	// Absolute: the runc wrapper and the daemon configs name them.
	for _, p := range []*string{&o.bin, &o.tools, &o.repo} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(2)
		}
		*p = abs
	}
	if cases != "" {
		o.cases = map[string]bool{}
		for _, c := range strings.Split(cases, ",") {
			c = strings.TrimSpace(c)
			if !strings.Contains(","+caseKeys()+",", ","+c+",") {
				fmt.Fprintf(os.Stderr, "bench: unknown case %q (cases: %s)\n", c, caseKeys())
				os.Exit(2)
			}
			o.cases[c] = true
		}
	}
	os.Exit(run(o))
}

// optionalKeys are the cases left out of the default set.
func optionalKeys() string {
	var k []string
	for _, c := range allCases {
		if c.optional {
			k = append(k, c.key)
		}
	}
	return strings.Join(k, ",")
}

// selected reports whether case c runs with the -cases given (nil: the
// default set).
func selected(c caseDef, cases map[string]bool) bool {
	if cases == nil {
		return !c.optional
	}
	return cases[c.key]
}

// filesNeeded is the open-file limit case c needs: per shim, the
// synthshim server holds a listener, the log FIFO and the daemon's
// connection, and a daemon the connection and the log FIFO; 1024 for the
// rest.
func filesNeeded(c caseDef) uint64 {
	return uint64(3*c.synthShims() + 1024)
}

// synthShims is the number of synthetic shims of case c.
func (c caseDef) synthShims() int { return c.live + c.hung + c.dead + c.leaked + c.exited }

// raiseFileLimit raises the open-file limit, which the synthshim server
// and the daemons inherit, to what the selected cases need, if it is
// lower and can be raised (the hard limit needs CAP_SYS_RESOURCE; a
// containerd under systemd runs with LimitNOFILE=infinity). It returns the
// limit in force and, if raising failed, why.
func raiseFileLimit(cases map[string]bool) (uint64, error) {
	var want uint64
	for _, c := range allCases {
		if selected(c, cases) {
			want = max(want, filesNeeded(c))
		}
	}
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	if l.Cur >= want {
		return l.Cur, nil
	}
	raised := syscall.Rlimit{Cur: want, Max: max(l.Max, want)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
		// Use all the hard limit allows, for the cases that fit.
		soft := syscall.Rlimit{Cur: l.Max, Max: l.Max}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &soft) != nil {
			soft.Cur = l.Cur
		}
		return soft.Cur, fmt.Errorf("the open-file hard limit is %d and raising it to %d failed (it needs CAP_SYS_RESOURCE): %w", l.Max, want, err)
	}
	fmt.Printf("   open-file limit raised from %d to %d\n", l.Cur, want)
	return want, nil
}

// tooBig is why case c cannot run under the open-file limit, or nil.
func tooBig(c caseDef, limit uint64, raiseErr error) error {
	if filesNeeded(c) <= limit {
		return nil
	}
	return fmt.Errorf("not run here: %d shims need a limit of %d open files (3 per shim in the synthshim server, 2 in a daemon); the limit is %d: %v",
		c.synthShims(), filesNeeded(c), limit, raiseErr)
}

func caseKeys() string {
	var k []string
	for _, c := range allCases {
		k = append(k, c.key)
	}
	return strings.Join(k, ",")
}

func run(o options) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: must run as root")
		return 2
	}
	started := time.Now()
	b, err := newBench(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	var once sync.Once
	cleanup := func() { once.Do(b.cleanup) }
	defer cleanup()
	// A closed stdout (bench | head) must not kill the bench before it
	// cleans up: writes fail instead.
	signal.Ignore(syscall.SIGPIPE)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "\nbench: %v: cleaning up\n", s)
		cleanup()
		os.Exit(130)
	}()

	b.printMachine()
	fileLimit, raiseErr := raiseFileLimit(o.cases)
	if fileLimit == 0 {
		fmt.Fprintln(os.Stderr, "bench: open-file limit:", raiseErr)
		return 2
	}
	if err := b.startSynth(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	var results []*caseResult
	for _, c := range allCases {
		if !selected(c, o.cases) {
			continue
		}
		var r *caseResult
		t0 := time.Now()
		if err := tooBig(c, fileLimit, raiseErr); err != nil {
			fmt.Printf("\n== %s\n   %v\n", c.name, err)
			results = append(results, &caseResult{def: c, notRun: err})
			continue
		}
		switch {
		case c.cri > 0:
			r = b.runCRICase(context.Background(), c)
		case c.runc > 0:
			r = b.runRuncCase(context.Background(), c)
		default:
			r = b.runSynthCase(context.Background(), c)
		}
		fmt.Printf("   (case took %s; load average %s)\n", time.Since(t0).Round(time.Second), loadAvg())
		results = append(results, r)
	}
	failed := printSummary(os.Stdout, results, o.rounds)
	fmt.Printf("\ntotal run time: %s; load average at the end: %s\n", time.Since(started).Round(time.Second), loadAvg())
	if failed {
		fmt.Println("\nBENCH FAILED: our daemon failed a post-state check (see above)")
		return 1
	}
	return 0
}

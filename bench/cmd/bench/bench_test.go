package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestCountRunc(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	log := "--root /x/runc/ns --log /x/log.json --log-format json ps --format json rc-0000\n" +
		"--root /x/runc/ns --log /x/log.json --log-format json ps --format json rc-0001\n" +
		"--root /x/runc/ns --log /x/log.json --log-format json --systemd-cgroup state rc-0000\n"
	if err := os.WriteFile(p, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	got := countRunc(p)
	if got["ps"] != 2 || got["state"] != 1 || len(got) != 2 {
		t.Fatalf("countRunc = %v", got)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []time.Duration
		want time.Duration
	}{{nil, 0}, {[]time.Duration{3}, 3}, {[]time.Duration{5, 1, 3}, 3}, {[]time.Duration{4, 1, 3, 2}, 2}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestModeOf(t *testing.T) {
	c := caseDef{live: 2, hung: 1, dead: 1, leaked: 1, exited: 1}
	n := map[string]int{}
	for _, id := range c.ids() {
		n[modeOf(id)]++
	}
	if n["live"] != 2 || n["hung"] != 1 || n["dead"] != 1 || n["leaked"] != 1 || n["exited"] != 1 {
		t.Fatalf("modes: %v", n)
	}
}

func TestCRIListed(t *testing.T) {
	pods := []*criPod{{name: "a", id: "pa", cid: "ca"}, {name: "b", id: "pb", cid: "cb"}}
	ready, notReady := cri.PodSandboxState_SANDBOX_READY, cri.PodSandboxState_SANDBOX_NOTREADY
	running, exited := cri.ContainerState_CONTAINER_RUNNING, cri.ContainerState_CONTAINER_EXITED
	sb := func(id string, st cri.PodSandboxState) *cri.PodSandbox { return &cri.PodSandbox{Id: id, State: st} }
	ctr := func(id, pod string, st cri.ContainerState) *cri.Container {
		return &cri.Container{Id: id, PodSandboxId: pod, State: st}
	}
	for _, c := range []struct {
		name string
		sbs  []*cri.PodSandbox
		ctrs []*cri.Container
		ok   bool
	}{
		{"every pod ready, every container running", []*cri.PodSandbox{sb("pa", ready), sb("pb", ready)},
			[]*cri.Container{ctr("ca", "pa", running), ctr("cb", "pb", running)}, true},
		// CRI before its recovery ran, or a daemon that lost the pods.
		{"nothing listed", nil, nil, false},
		{"a pod not ready", []*cri.PodSandbox{sb("pa", ready), sb("pb", notReady)},
			[]*cri.Container{ctr("ca", "pa", running), ctr("cb", "pb", running)}, false},
		// A container whose task was not recovered.
		{"a container exited", []*cri.PodSandbox{sb("pa", ready), sb("pb", ready)},
			[]*cri.Container{ctr("ca", "pa", running), ctr("cb", "pb", exited)}, false},
		{"a container missing", []*cri.PodSandbox{sb("pa", ready), sb("pb", ready)},
			[]*cri.Container{ctr("ca", "pa", running)}, false},
		{"a container in another pod", []*cri.PodSandbox{sb("pa", ready), sb("pb", ready)},
			[]*cri.Container{ctr("ca", "pa", running), ctr("cb", "pa", running)}, false},
		{"a pod the bench did not create", []*cri.PodSandbox{sb("pa", ready), sb("pb", ready), sb("px", ready)},
			[]*cri.Container{ctr("ca", "pa", running), ctr("cb", "pb", running)}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			why := criListed(pods, c.sbs, c.ctrs)
			if (why == "") != c.ok {
				t.Fatalf("criListed = %q, want ok %v", why, c.ok)
			}
		})
	}
}

func TestCRIReady(t *testing.T) {
	cond := func(typ string, ok bool) *cri.RuntimeCondition { return &cri.RuntimeCondition{Type: typ, Status: ok} }
	for _, c := range []struct {
		name  string
		conds []*cri.RuntimeCondition
		want  bool
	}{
		{"both", []*cri.RuntimeCondition{cond(cri.RuntimeReady, true), cond(cri.NetworkReady, true)}, true},
		// NetworkReady is false until the CNI config is loaded.
		{"network not ready", []*cri.RuntimeCondition{cond(cri.RuntimeReady, true), cond(cri.NetworkReady, false)}, false},
		{"network missing", []*cri.RuntimeCondition{cond(cri.RuntimeReady, true)}, false},
		{"none", nil, false},
	} {
		if got := criReady(&cri.RuntimeStatus{Conditions: c.conds}); got != c.want {
			t.Errorf("%s: criReady = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestDefaultCases(t *testing.T) {
	var def []string
	for _, c := range allCases {
		if selected(c, nil) {
			def = append(def, c.key)
		}
	}
	for _, k := range []string{"empty", "live100", "live1000", "live3000", "hung", "dead", "leaked", "cri30"} {
		if !slices.Contains(def, k) {
			t.Errorf("default cases %v: %s missing", def, k)
		}
	}
	for _, k := range []string{"cri100", "live6000", "live10000"} {
		if slices.Contains(def, k) {
			t.Errorf("default cases %v: %s is optional", def, k)
		}
		if !selected(caseByKey(t, k), map[string]bool{k: true}) {
			t.Errorf("%s not run when named", k)
		}
	}
}

func caseByKey(t *testing.T, key string) caseDef {
	t.Helper()
	i := slices.IndexFunc(allCases, func(c caseDef) bool { return c.key == key })
	if i < 0 {
		t.Fatalf("no case %s", key)
	}
	return allCases[i]
}

// The targets are issue 13's, on "every live task listed".
func TestCaseTargets(t *testing.T) {
	for _, c := range []struct {
		key                       string
		target, rss, floor, ratio float64
		relTo                     string
	}{
		{key: "live1000", target: 0.5, floor: 1.5},
		{key: "live3000", target: 0.5, rss: 1.0, floor: 1.5},
		{key: "leaked", target: 0.3},
		{key: "dead", target: 0.2},
		{key: "hung", relTo: "live100", ratio: 1.2},
		{key: "live6000"},
		{key: "live10000"},
		{key: "live100"},
	} {
		d := caseByKey(t, c.key)
		if d.target != c.target || d.rssTarget != c.rss || d.floorTarget != c.floor || d.relTo != c.relTo || d.relFactor != c.ratio {
			t.Errorf("%s: target %v, rss %v, floor %v, relative %s × %v; want %v, %v, %v, %s × %v", c.key,
				d.target, d.rssTarget, d.floorTarget, d.relTo, d.relFactor, c.target, c.rss, c.floor, c.relTo, c.ratio)
		}
		if d.floorTarget > 0 && !d.floor {
			t.Errorf("%s: a floor target without a floor", c.key)
		}
	}
	for _, c := range allCases {
		if c.relTo != "" {
			if ref := caseByKey(t, c.relTo); ref.optional && !c.optional {
				t.Errorf("%s is judged against optional case %s", c.key, c.relTo)
			}
		}
	}
}

// result makes a case result with one valid run per daemon and value
// listed (seconds), cpu (seconds) and rss (MiB) for ours and stock.
func result(d caseDef, ours, stock [3]float64) *caseResult {
	c := &caseResult{def: d, runs: map[string][]*runResult{}}
	for name, v := range map[string][3]float64{"ours": ours, "stock": stock} {
		sec := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
		c.runs[name] = []*runResult{{daemon: name, round: 1, ready: time.Millisecond, list: sec(v[0]), settled: sec(v[0]), cpu: sec(v[1]), rssKiB: int64(v[2] * 1024)}}
	}
	return c
}

func TestRelGoal(t *testing.T) {
	hung := result(caseByKey(t, "hung"), [3]float64{0.12, 0, 50}, [3]float64{25, 0, 50})
	if _, _, ok := relGoal(hung, []*caseResult{hung}); ok {
		t.Fatal("relative goal judged without its reference case")
	}
	live100 := result(caseByKey(t, "live100"), [3]float64{0.1, 0, 50}, [3]float64{0.2, 0, 50})
	ref, r, ok := relGoal(hung, []*caseResult{live100, hung})
	if !ok || ref != "100 live" || r != "1.20" || verdict(r, hung.def.relFactor) != "target <= 1.2: met" {
		t.Fatalf("relGoal = %q, %q, %v", ref, r, ok)
	}
}

func TestScaling(t *testing.T) {
	empty := result(caseByKey(t, "empty"), [3]float64{0.02, 0.01, 40}, [3]float64{0.02, 0.01, 42})
	l1000 := result(caseByKey(t, "live1000"), [3]float64{0.4, 0.5, 80}, [3]float64{0.8, 0.5, 82})
	l3000 := result(caseByKey(t, "live3000"), [3]float64{1.2, 1.5, 160}, [3]float64{2.4, 1.5, 162})
	dead := result(caseByKey(t, "dead"), [3]float64{0.1, 0.1, 50}, [3]float64{0.5, 0.1, 50})
	if pts, _ := scaling([]*caseResult{empty, l1000, dead}); pts != nil {
		t.Fatalf("a scaling table from one case of 1000 or more: %v", pts)
	}
	pts, base := scaling([]*caseResult{empty, l1000, l3000, dead})
	if len(pts) != 2 || base != `(RSS − RSS of "no shims (daemon start)") / shims` {
		t.Fatalf("scaling = %v, %q", pts, base)
	}
	p := pts[1]
	const eps = 1e-9
	near := func(a, b float64) bool { return a-b < eps && b-a < eps }
	if p.shims != 3000 || !near(p.listed[0], 0.4) || !near(p.listed[1], 0.8) || !near(p.cpu[0], 0.5) ||
		!near(p.rss[0], 120.0*1024/3000) || !near(p.rss[1], 120.0*1024/3000) {
		t.Fatalf("3000 live per shim: %+v", p)
	}
	if pts, base := scaling([]*caseResult{l1000, l3000}); len(pts) != 2 || !near(pts[0].rss[0], 80.0*1024/1000) || base != "RSS / shims (the no-shim case did not run)" {
		t.Fatalf("without the no-shim case: %v, %q", pts, base)
	}
}

func TestBaseConfigDisabledPlugins(t *testing.T) {
	b := &bench{tmp: "/x", root: "/x/r", state: "/x/st", temp: "/x/t", sockDir: "/x/s"}
	if cfg := b.baseConfig(disabledPlugins); !strings.Contains(cfg, `  "io.containerd.grpc.v1.cri",`) {
		t.Fatalf("CRI not disabled in the shim cases' config:\n%s", cfg)
	}
	cfg := b.baseConfig(criDisabledPlugins)
	if strings.Contains(cfg, "io.containerd.grpc.v1.cri") || !strings.Contains(cfg, `  "io.containerd.nri.v1.nri",`) {
		t.Fatalf("CRI cases' config:\n%s", cfg)
	}
}

// The headline is "every live task listed", with its target, before
// serving, settled, CPU and RSS.
func TestSummaryHeadline(t *testing.T) {
	l1000 := result(caseByKey(t, "live1000"), [3]float64{0.4, 0.5, 80}, [3]float64{1.0, 0.5, 82})
	var out strings.Builder
	printCase(&out, l1000, []*caseResult{l1000})
	lines := strings.Split(out.String(), "\n")
	for i, want := range []string{"every live task listed", "serving", "settled", "daemon CPU", "RSS"} {
		if !strings.HasPrefix(strings.TrimSpace(lines[i]), want) {
			t.Fatalf("line %d: %q, want it to start with %q\n%s", i, lines[i], want, out.String())
		}
	}
	if !strings.HasSuffix(lines[0], "ratio 0.40   target <= 0.5: met") {
		t.Fatalf("headline %q", lines[0])
	}
}

// On a host whose open-file hard limit is 20000 (this one's), 6000 shims
// run and 10000 are printed as not run, with the reason.
func TestTooBig(t *testing.T) {
	raiseErr := errors.New("operation not permitted")
	if err := tooBig(caseByKey(t, "live6000"), 20000, raiseErr); err != nil {
		t.Errorf("live6000 at 20000 files: %v", err)
	}
	err := tooBig(caseByKey(t, "live10000"), 20000, raiseErr)
	if err == nil || !strings.Contains(err.Error(), "31024") || !strings.Contains(err.Error(), "operation not permitted") {
		t.Errorf("live10000 at 20000 files: %v, want the files it needs and why the limit was not raised", err)
	}
}

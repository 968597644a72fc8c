package main

import (
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
	if !slices.Contains(def, "cri30") || slices.Contains(def, "cri100") {
		t.Fatalf("default cases %v: want cri30 and not cri100", def)
	}
	i := slices.IndexFunc(allCases, func(c caseDef) bool { return c.key == "cri100" })
	if i < 0 || !selected(allCases[i], map[string]bool{"cri100": true}) {
		t.Fatal("cri100 not run when named")
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

package main

import (
	"bytes"
	"regexp"
	"slices"
	"testing"
)

// report is a ginkgo JSON report cut to what parseReport reads: passed,
// failed and skipped specs, one skipped at run time with a message, and a
// suite node that failed.
const report = `[{"SpecReports": [
 {"ContainerHierarchyTexts": ["[k8s.io] Image Manager"], "LeafNodeType": "It", "LeafNodeText": "pulls", "State": "passed"},
 {"ContainerHierarchyTexts": ["[k8s.io] Image Manager"], "LeafNodeType": "It", "LeafNodeText": "removes", "State": "failed",
  "Failure": {"Message": "Expected\n    <string>: a\nto equal b"}},
 {"ContainerHierarchyTexts": ["[k8s.io] AppArmor", "field"], "LeafNodeType": "It", "LeafNodeText": "enforces", "State": "skipped",
  "Failure": {"Message": "AppArmor is disabled on this host"}},
 {"ContainerHierarchyTexts": ["[k8s.io] Streaming"], "LeafNodeType": "It", "LeafNodeText": "portforward", "State": "skipped"},
 {"LeafNodeType": "SynchronizedBeforeSuite", "State": "passed"},
 {"LeafNodeType": "ReportAfterSuite", "State": "timedout", "Failure": {"Message": "took too long"}}
]}]`

func TestParseReport(t *testing.T) {
	r, err := parseReport([]byte(report), "stock")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]outcome{
		"[k8s.io] Image Manager pulls":     passed,
		"[k8s.io] Image Manager removes":   failed,
		"[k8s.io] AppArmor field enforces": skipped,
		"[k8s.io] Streaming portforward":   skipped,
		"[ReportAfterSuite]":               failed,
	} {
		if got := r.Outcome[name]; got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if len(r.Outcome) != 5 {
		t.Errorf("outcomes %v, want 5 (a suite node that passed is no spec)", r.Outcome)
	}
	for name, want := range map[string]string{
		"[k8s.io] Image Manager removes":   "failed: Expected",
		"[k8s.io] AppArmor field enforces": "AppArmor is disabled on this host",
		"[k8s.io] Streaming portforward":   "", // filtered out: no message, not run
		"[ReportAfterSuite]":               "timedout: took too long",
	} {
		if got := r.Reason[name]; got != want {
			t.Errorf("reason of %s: %q, want %q", name, got, want)
		}
	}
	if _, err := parseReport([]byte("{"), "stock"); err == nil {
		t.Error("a truncated report parsed")
	}
}

func TestCompare(t *testing.T) {
	res := func(daemon string, o map[string]outcome) *result {
		return &result{Daemon: daemon, Outcome: o, Reason: map[string]string{}}
	}
	for _, tc := range []struct {
		name        string
		stock, ours map[string]outcome
		lost        []string
	}{
		{name: "same", stock: map[string]outcome{"a": passed, "b": failed}, ours: map[string]outcome{"a": passed, "b": failed}},
		// Ours may pass more than stock: only stock's passes must hold.
		{name: "ours passes more", stock: map[string]outcome{"a": passed, "b": failed}, ours: map[string]outcome{"a": passed, "b": passed}},
		{name: "ours fails one", stock: map[string]outcome{"a": passed, "b": passed}, ours: map[string]outcome{"a": passed, "b": failed}, lost: []string{"b"}},
		// A spec stock passes and ours skipped, or never reported, is lost too.
		{name: "ours skips one", stock: map[string]outcome{"a": passed}, ours: map[string]outcome{"a": skipped}, lost: []string{"a"}},
		{name: "ours lacks one", stock: map[string]outcome{"a": passed, "b": passed}, ours: map[string]outcome{"a": passed}, lost: []string{"b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			lost := compare(&out, res("stock", tc.stock), res("ours", tc.ours))
			if !slices.Equal(lost, tc.lost) {
				t.Errorf("lost %q, want %q\n%s", lost, tc.lost, out.String())
			}
		})
	}
}

func TestSkipRegexp(t *testing.T) {
	group := skip{spec: "[k8s.io] Security Context NoNewPrivs"}
	one := skip{spec: "[k8s.io] Image Manager public image with digest should be pulled and removed [Conformance]"}
	for _, tc := range []struct {
		s    skip
		name string
		want bool
	}{
		{group, "[k8s.io] Security Context NoNewPrivs should allow privilege escalation when false", true},
		// A group is its leading containers, word for word.
		{group, "[k8s.io] Security Context NoNewPrivsX should not match", false},
		{group, "[k8s.io] Security Context bucket runtime should support RunAsUser", false},
		{one, one.spec, true},
		// The brackets are literal, not a character class; the name is
		// anchored at the suite's description, not matched inside.
		{one, "[k8s.io] Image Manager public image with digest should be pulled and removed [Conformance] more", true},
		{one, "k Image Manager public image with digest should be pulled and removed [Conformance]", false},
		{one, "[k8s.io] Image Manager public image with tag should be pulled and removed [Conformance]", false},
	} {
		if got := tc.s.matches(tc.name); got != tc.want {
			t.Errorf("skip %q matches %q = %v, want %v", tc.s.spec, tc.name, got, tc.want)
		}
		// ginkgo matches -skip against the suite description, a space
		// and the spec's name: the regexp must say the same.
		if got := regexp.MustCompile(skipRegexp(tc.s.spec)).MatchString(suiteDescription + " " + tc.name); got != tc.want {
			t.Errorf("regexp of %q on %q = %v, want %v", tc.s.spec, tc.name, got, tc.want)
		}
	}
}

func TestHostSkips(t *testing.T) {
	seccomp := []byte(`{"linux": {"seccomp": {"enabled": true}}}`)
	noSeccomp := []byte(`{"linux": {"namespaces": ["pid"]}}`)
	for _, tc := range []struct {
		name     string
		iptables bool
		features []byte
		want     int
	}{
		{"everything there", true, seccomp, 0},
		{"no iptables", false, seccomp, 1},
		{"runc without seccomp", true, noSeccomp, 3},
		// Unreadable features: runc's seccomp cannot be relied on.
		{"no runc features", false, nil, 4},
	} {
		if got := hostSkips(tc.iptables, tc.features); len(got) != tc.want {
			t.Errorf("%s: %d skips %v, want %d", tc.name, len(got), got, tc.want)
		}
	}
}

package main

import (
	"encoding/json"
	"os/exec"
	"regexp"
)

// suiteDescription is what critest names its ginkgo suite (cmd/critest
// RunSpecs); ginkgo matches -skip against it, a space and the spec's name.
const suiteDescription = "CRI validation"

// skip names a spec, or a group of specs by the names of its leading
// containers, that neither daemon runs, and says why. The same skips go
// to both daemons.
type skip struct{ spec, why string }

// imageSkips need images that cannot be made from toybox here.
var imageSkips = []skip{
	{"[k8s.io] Image Manager public image with digest should be pulled and removed [Conformance]",
		"names test-image-digest by the digest of the upstream image's bytes"},
	{"[k8s.io] Security Context NamespaceOption runtime should support HostPID",
		"runs the e2e nginx image (its master process and /var/run/nginx.pid)"},
	{"[k8s.io] Security Context NamespaceOption runtime should support PodPID",
		"runs the e2e nginx image (its master process)"},
	{"[k8s.io] Security Context NamespaceOption runtime should support ContainerPID",
		"runs the e2e nginx image (its master process)"},
	{"[k8s.io] Networking runtime should support networking runtime should support port mapping with only container port [Conformance]",
		"runs the e2e nginx image as the web server"},
	{"[k8s.io] Streaming runtime should support streaming interfaces runtime should support portforward [Conformance]",
		"runs the e2e nginx image as the web server"},
	{"[k8s.io] Streaming runtime should support streaming interfaces runtime should support portforward in host network",
		"runs the hostnet-nginx image as the web server"},
	{"[k8s.io] Security Context NoNewPrivs",
		"runs the e2e nonewprivs image (a setuid test binary)"},
	{"[k8s.io] Multiple Containers [Conformance]",
		"runs the e2e httpd image"},
}

// raceSkips pass or skip themselves (Skip, "spec discrepancy") by chance,
// on stock as on ours: whether containerd's NRI adaptation (in CRI, not
// the runtime) loses a container created while a late plugin's
// Synchronize runs. Either outcome on either daemon says nothing about
// the shim manager, so neither daemon runs them.
var raceSkips = []skip{
	{"[k8s.io] NRI plugin synchronization should receive a callback for container created during the Synchronize call",
		"its outcome is a race in containerd's NRI Synchronize (in CRI): it passes or skips itself by chance on stock as on ours"},
	{"[k8s.io] NRI plugin synchronization should receive information about all containers without the race condition during initialization",
		"its outcome is a race in containerd's NRI Synchronize (in CRI): it passes or skips itself by chance on stock as on ours"},
}

// hostSkips need what this host lacks: iptables for CNI's portmap plugin
// (hostPort mappings), and seccomp in runc (built without libseccomp
// when it is absent, see the Makefile). runcFeatures is the output of
// `runc features`.
func hostSkips(haveIptables bool, runcFeatures []byte) []skip {
	var out []skip
	if !haveIptables {
		out = append(out, skip{"[k8s.io] Networking runtime should support networking runtime should support port mapping with host port and container port [Conformance]",
			"the portmap CNI plugin needs iptables, which this host lacks"})
	}
	var features struct {
		Linux struct {
			Seccomp *struct{ Enabled *bool }
		}
	}
	if json.Unmarshal(runcFeatures, &features) != nil || features.Linux.Seccomp == nil ||
		features.Linux.Seccomp.Enabled == nil || !*features.Linux.Seccomp.Enabled {
		why := "bin/runc has no seccomp support (built without libseccomp)"
		for _, spec := range []string{
			"should support seccomp localhost profile on the container",
			"should support seccomp default on the container",
			"runtime should support an seccomp profile that blocks setting hostname with SYS_ADMIN",
		} {
			out = append(out, skip{"[k8s.io] Security Context SeccompProfilePath " + spec, why})
		}
	}
	return out
}

// skipsFor is imageSkips, raceSkips and the hostSkips of this host and
// bin/runc.
func skipsFor(runc string) []skip {
	_, err := exec.LookPath("iptables")
	features, _ := exec.Command(runc, "features").Output()
	out := append(append([]skip(nil), imageSkips...), raceSkips...)
	return append(out, hostSkips(err == nil, features)...)
}

// skipRegexp is the ginkgo -skip regexp that matches spec, a spec's whole
// name or the leading containers of a group, and nothing else.
func skipRegexp(spec string) string {
	return "^" + regexp.QuoteMeta(suiteDescription+" "+spec) + "( |$)"
}

// matches reports whether the skip covers the spec named name.
func (s skip) matches(name string) bool {
	return regexp.MustCompile(skipRegexp(s.spec)).MatchString(suiteDescription + " " + name)
}

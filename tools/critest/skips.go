package main

import "regexp"

// suiteDescription is what critest names its ginkgo suite (cmd/critest
// RunSpecs); ginkgo matches -skip against it, a space and the spec's name.
const suiteDescription = "CRI validation"

// skip names a spec, or a group of specs by the names of its containers,
// that neither daemon runs, and says why. The same skips go to both.
type skip struct{ spec, why string }

// skips are the specs that cannot run on this host, for either daemon.
var skips = []skip{}

// skipRegexp is the ginkgo -skip regexp that matches spec, a spec's whole
// name or the leading containers of a group, and nothing else.
func skipRegexp(spec string) string {
	return "^" + regexp.QuoteMeta(suiteDescription+" "+spec) + "( |$)"
}

// matches reports whether the skip covers the spec named name.
func (s skip) matches(name string) bool {
	return regexp.MustCompile(skipRegexp(s.spec)).MatchString(suiteDescription + " " + name)
}

// skipFor is the skip that covers name, or nil.
func skipFor(name string) *skip {
	for i := range skips {
		if skips[i].matches(name) {
			return &skips[i]
		}
	}
	return nil
}


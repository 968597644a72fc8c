package lifecycle

import (
	"encoding"
	"testing"
)

// The value lists the cross product ranges over must hold every named
// value, or the exhaustive test silently shrinks when a value is added.
func TestFactListsComplete(t *testing.T) {
	check := func(what string, n int, names int) {
		t.Helper()
		if n != names {
			t.Errorf("%s: test lists %d values, facts.go names %d", what, n, names)
		}
	}
	check("Kind", len(allKinds), len(kindNames))
	check("Presence", len(allPresences), len(presenceNames))
	check("Liveness", len(allLiveness), len(livenessNames))
	check("TaskState", len(allTaskStates), len(taskNames))
	check("Action", len(Actions), len(actionNames))
}

type textValue interface {
	encoding.TextMarshaler
	String() string
}

func TestFactsTextRoundTrip(t *testing.T) {
	var vals []textValue
	var fresh []func() encoding.TextUnmarshaler
	for _, v := range allKinds {
		vals, fresh = append(vals, v), append(fresh, func() encoding.TextUnmarshaler { return new(Kind) })
	}
	for _, v := range allPresences {
		vals, fresh = append(vals, v), append(fresh, func() encoding.TextUnmarshaler { return new(Presence) })
	}
	for _, v := range allLiveness {
		vals, fresh = append(vals, v), append(fresh, func() encoding.TextUnmarshaler { return new(Liveness) })
	}
	for _, v := range allTaskStates {
		vals, fresh = append(vals, v), append(fresh, func() encoding.TextUnmarshaler { return new(TaskState) })
	}
	for _, v := range Actions {
		vals, fresh = append(vals, v), append(fresh, func() encoding.TextUnmarshaler { return new(Action) })
	}
	for i, v := range vals {
		text, err := v.MarshalText()
		if err != nil || string(text) != v.String() || v.String() == "invalid" {
			t.Errorf("%T %d: MarshalText = %q, %v; String = %q", v, v, text, err, v.String())
			continue
		}
		u := fresh[i]()
		if err := u.UnmarshalText(text); err != nil {
			t.Errorf("%T: UnmarshalText(%q): %v", v, text, err)
			continue
		}
		if got := u.(interface{ String() string }).String(); got != v.String() {
			t.Errorf("%T: round trip of %q gave %q", v, text, got)
		}
		if err := u.UnmarshalText([]byte("no-such-" + string(text))); err == nil {
			t.Errorf("%T: UnmarshalText accepted an unknown value", v)
		}
	}
	if got := Kind(200).String(); got != "invalid" {
		t.Errorf("Kind(200).String() = %q", got)
	}
}

// Package lifecycle is recovery's pure core: the facts observed about one
// bundle (facts.go), the verdict they allow (decide.go), and the state
// machine that owns each bundle through a recovery pass (machine.go).
//
// It does no I/O, reads no clock and logs nothing: every function is a
// function of its arguments, so the whole of it is tested by tables over
// every value. The loader observes and carries out what the machine asks
// for; the manager reports probe results in these same types.
//
// What it may touch on disk: nothing.
package lifecycle

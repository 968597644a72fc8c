// Package loader recovers the shims that outlived a containerd restart.
//
// This first slice only adopts: for every bundle under <state>/<ns>/<id>
// it reconnects to the shim and registers it when it answers. It never
// removes, unmounts or kills anything; bundles whose shim does not answer
// are left in place and logged.
package loader

// Package taskapi speaks the task API to a shim over whichever connection
// and version it has: task v3 over ttrpc or grpc, or task v2 over ttrpc
// through a bridge, behind one Client interface. It touches nothing on
// disk.
package taskapi

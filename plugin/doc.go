// Package plugin registers shimkeeper with containerd's plugin registry,
// under the Types, IDs and config keys of the stock plugins it replaces:
//
//   - io.containerd.shim.v1.manager (ShimConfig)
//   - io.containerd.runtime.v2.task (TaskConfig)
//   - io.containerd.sandbox.controller.v1.shim
//
// It also sets the stock defaults of io.containerd.timeout.shim.load,
// .cleanup and .shutdown (5s, 5s, 3s), plus shimkeeper's
// io.containerd.timeout.shim.start (20s).
//
// Only this package has an init() or imports the registry; the logic lives
// in manager/, loader/ and cleanup/, which take explicit dependencies.
// Importing this package into a binary that also links
// core/runtime/v2 or plugins/sandbox panics: the registry rejects
// duplicates.
package plugin

// Package manager is shimkeeper's runtime v2 shim manager: bundles, the
// shim binary protocol (start, delete, -info), connections to shims (ttrpc
// or grpc, task API v3 with a v2 fallback), the task runtime
// (runtime.PlatformRuntime and runtime.Task) and the "shim" sandbox
// controller.
//
// What it touches on disk: it creates bundles under <state>/<ns>/<id> and
// work dirs under <root>/<ns>/<id> in the layout stock containerd v2.4.2
// writes (config.json, rootfs/, work, log, shim-binary-path,
// bootstrap.json, sandbox), so that stock containerd and shimkeeper can
// take over each other's shims. Every removal goes through package cleanup.
//
// Instances never implement io.Closer: containerd's server closes every
// plugin instance that has Close on shutdown, and closing a shim client
// runs `shim delete`, which kills the container.
package manager

// Package metrics exports what recovery does on containerd's own metrics
// endpoint (the stock io.containerd.server.v1.metrics plugin, enabled by
// [metrics] address in config.toml, Prometheus text at /v1/metrics). It
// implements loader.Observer with github.com/docker/go-metrics, the
// library every stock collector uses, so there is no second HTTP server.
//
// Every series carries a plugin label, "task" or "sandbox", taken from the
// plugin state dir a recovery pass works on:
//
//	shimkeeper_recovery_ready_seconds{plugin}                 gauge: how long the last pass held daemon start
//	shimkeeper_recovery_pass_seconds{plugin}                  gauge: the last pass, background work included
//	shimkeeper_recovery_decisions_total{plugin,action}        bundles by decided action
//	shimkeeper_recovery_bundles_total{plugin,action,outcome}  bundles by action and outcome (done, failed, probing)
//	shimkeeper_recovery_probe_seconds{plugin,liveness}        histogram: one shim probe, re-probes included
//	shimkeeper_recovery_unresponsive_shims{plugin}            gauge: shims kept and being re-probed
//	shimkeeper_recovery_cleanup_queue{plugin}                 gauge: background removals not yet finished
//	shimkeeper_recovery_cleanup_failures_total{plugin,action} background removals that failed
//
// The package touches nothing on disk.
package metrics

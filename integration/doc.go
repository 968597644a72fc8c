//go:build integration

// Package integration holds end-to-end tests that run a real daemon, real
// runc and the real runc shim, and drive them only through the ctr binary.
//
// The tests are behind the "integration" build tag and need root:
//
//	make tools build
//	go test -tags integration -count=1 ./integration/...
//
// Environment:
//
//	DAEMON        the daemon under test (default <repo>/bin/containerd;
//	              a relative path is taken from the repo root)
//	STOCK_DAEMON  stock containerd v2.4.2 for the compatibility tests
//	              (default <repo>/bin/containerd-stock)
//	SHIMKEEPER_BIN  where ctr, runc, the runc shim, toybox, crictl,
//	              testimages and cni/ are
//	              (default <repo>/bin; the Makefile exports it)
//	INTEGRATION_LOG_LEVEL  daemon log level (default "info")
//	INTEGRATION_LOG_DIR    if set, every daemon log is copied there
//	INTEGRATION_RUN_OURS_ON_STOCK=1  run requireOurs tests against stock too
//
// Every test starts its own daemon in a short temp dir (/tmp/skXXXX) holding
// root, state, sockets, config.toml, a rootfs, the runc state (ctr run
// --runc-root) and the daemon log, and uses a unique namespace (sk-XXXXXXXX).
// Nothing under /run/containerd or /var/lib/containerd is touched. A test
// tears down what it started itself and then calls assertNoLeaks; the
// harness cleanup kills anything left by PID, unmounts, removes the test's
// cgroups and deletes the temp dir, even when the test failed.
//
// The CRI tests (cri_test.go, harness in cri_harness_test.go) start the
// daemon withCRI(): CRI enabled, images pulled from a registry the test
// starts (bin/testimages, loopback only), pods on a CNI bridge of the
// test's own (bin/cni), all driven with bin/crictl.
//
// Tests that describe the behaviour we want but that stock containerd does
// not have call requireOurs, which skips them when DAEMON is the stock
// binary.
package integration

// Package operator is `containerd recovery plan|report`: what the next
// start of a stopped daemon would do with each bundle, and what the last
// recovery did.
//
// It reads the daemon's config.toml (with the defaults and config
// migrations the daemon applies), its state and root dirs and its metadata
// database, opened read-only (bbolt ReadOnly, a shared lock taken with a
// one-second timeout, so a running daemon's exclusive lock is reported
// instead of waited for). It probes shims only with the task API's
// read-only Connect and State calls and closes those connections.
//
// It writes, creates, removes, unmounts and kills nothing: not the
// metadata database (checked for before opening, so a missing one is not
// created), not bootstrap.json, not the report, not the boot id.
package operator

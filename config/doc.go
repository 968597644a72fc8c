// Package config owns the config.toml sections shimkeeper reads, under
// the stock keys: [plugins."io.containerd.shim.v1.manager"] (Shim),
// [plugins."io.containerd.runtime.v2.task"] (Task, with shimkeeper's
// recovery_* keys after the stock ones) and the shim budgets of
// [timeouts]; their defaults, their validation (every error names its
// key), the version migration of the manager section, and what follows
// from them: the socket dir, the recovery options of a plugin's dirs.
//
// It has no init() and imports no plugin registry, so that the `containerd
// recovery` subcommands (package operator) read a config exactly as the
// daemon does without registering anything. Package plugin hands these
// types to the registry.
package config

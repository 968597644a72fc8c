package config

import (
	"context"

	"github.com/containerd/log"
)

// Migrate is the shim manager's ConfigMigration. It moves `sched_core`
// from the task section, where config versions 1 and 2 had it, to the
// shim manager's `env` (sched_core = true becomes SCHED_CORE=1).
//
// It differs from stock on purpose: stock runs at every version step below
// 4 and replaces the whole manager section each time, so a version 2
// config loses SCHED_CORE=1 at the 3→4 step and a version 3 config loses
// its manager env and socket_dir. This runs only for versions below 3 (the
// manager section exists from version 3 on) and merges into the section.
func Migrate(ctx context.Context, configVersion int, pluginConfigs map[string]any) error {
	if configVersion >= 3 {
		return nil
	}
	task, ok := pluginConfigs[TaskPlugin].(map[string]any)
	if !ok {
		return nil
	}
	v, ok := task["sched_core"]
	if !ok {
		return nil
	}
	delete(task, "sched_core")
	on, isBool := v.(bool)
	if !isBool {
		log.G(ctx).Warnf("skipping migration for non-boolean 'sched_core' value %v", v)
		return nil
	}
	if !on {
		return nil
	}
	shim, _ := pluginConfigs[ShimPlugin].(map[string]any)
	if shim == nil {
		shim = map[string]any{}
		pluginConfigs[ShimPlugin] = shim
	}
	env := toStrings(shim["env"])
	for _, e := range env {
		if e == "SCHED_CORE=1" {
			return nil
		}
	}
	shim["env"] = append(env, "SCHED_CORE=1")
	return nil
}

// toStrings reads a toml string array, which decodes as []any.
func toStrings(v any) []string {
	switch vv := v.(type) {
	case []string:
		return append([]string(nil), vv...)
	case []any:
		out := make([]string, 0, len(vv))
		for _, e := range vv {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

package config

import (
	"context"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/plugin"

	srvconfig "github.com/containerd/containerd/v2/cmd/containerd/server/config"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/containerd/v2/version"
)

const (
	shimKey = ShimPlugin
	taskKey = TaskPlugin
)

func TestShimValidate(t *testing.T) {
	// 42 characters: the longest socket dir a 64-hex socket name fits in.
	dir42 := "/run/" + strings.Repeat("d", 37)
	if len(dir42) != 42 {
		t.Fatalf("test setup: %d", len(dir42))
	}
	dir43 := dir42 + "e"

	for _, tc := range []struct {
		name string
		cfg  Shim
		// wantKey is the toml key the error must name; "" means valid.
		wantKey string
	}{
		{name: "zero value", cfg: Shim{}},
		{name: "env entries", cfg: Shim{Env: []string{"A=b", "EMPTY=", "WITH=EQ=SIGN"}}},
		{name: "env entry without =", cfg: Shim{Env: []string{"A=b", "NOEQ"}}, wantKey: ShimSection + ".env[1]"},
		{name: "env entry with empty key", cfg: Shim{Env: []string{"=value"}}, wantKey: ShimSection + ".env[0]"},
		{name: "env entry empty", cfg: Shim{Env: []string{""}}, wantKey: ShimSection + ".env[0]"},
		{name: "default socket dir", cfg: Shim{SocketDir: "/run/containerd/s"}},
		{name: "relative socket_dir", cfg: Shim{SocketDir: "run/containerd/s"}, wantKey: ShimSection + ".socket_dir"},
		{name: "dot-relative socket_dir", cfg: Shim{SocketDir: "./s"}, wantKey: ShimSection + ".socket_dir"},
		{name: "42 characters", cfg: Shim{SocketDir: dir42}},
		{name: "43 characters", cfg: Shim{SocketDir: dir43}, wantKey: ShimSection + ".socket_dir"},
		// The length that counts is the cleaned path's, the one shims get.
		{name: "43 raw, 42 cleaned (trailing slash)", cfg: Shim{SocketDir: dir42 + "/"}},
		{name: "long raw, short cleaned", cfg: Shim{SocketDir: "/run/../run/./containerd//s/"}},
		{name: "cleaned still 43", cfg: Shim{SocketDir: dir43 + "//"}, wantKey: ShimSection + ".socket_dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireNamesKey(t, tc.cfg.Validate(), tc.wantKey)
		})
	}
}

func TestConfigKeys(t *testing.T) {
	// The error messages name keys by the section constants: make sure they
	// are the stock TOML sections and that the struct tags carry the stock
	// keys (the task section may have keys of our own after them).
	if ShimSection != `plugins."io.containerd.shim.v1.manager"` || TaskSection != `plugins."io.containerd.runtime.v2.task"` {
		t.Fatalf("sections %s, %s", ShimSection, TaskSection)
	}
	keys := func(typ reflect.Type) []string {
		var out []string
		for i := range typ.NumField() {
			out = append(out, typ.Field(i).Tag.Get("toml"))
		}
		return out
	}
	if got, want := keys(reflect.TypeFor[Shim]()), []string{"env", "socket_dir"}; !slices.Equal(got, want) {
		t.Errorf("Shim toml keys %v, want %v", got, want)
	}
	if got := keys(reflect.TypeFor[Task]()); len(got) == 0 || got[0] != "platforms" {
		t.Errorf("Task toml keys %v, want platforms first", got)
	}
}

func TestTaskValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mod     func(*Task)
		wantKey string // "" means valid
	}{
		{name: "defaults", mod: func(*Task) {}},
		{name: "several platforms", mod: func(c *Task) { c.Platforms = []string{"linux/amd64", "linux/arm64/v8", "windows/amd64"} }},
		{name: "no platforms", mod: func(c *Task) { c.Platforms = nil }},
		{
			name:    "bad platform",
			mod:     func(c *Task) { c.Platforms = []string{"linux/amd64", "linux/amd64/v3/extra/parts"} },
			wantKey: TaskSection + ".platforms[1]",
		},
		{name: "concurrency 0", mod: func(c *Task) { c.RecoveryConcurrency = 0 }, wantKey: TaskSection + ".recovery_concurrency"},
		{name: "concurrency 4097", mod: func(c *Task) { c.RecoveryConcurrency = 4097 }, wantKey: TaskSection + ".recovery_concurrency"},
		{name: "concurrency 1", mod: func(c *Task) { c.RecoveryConcurrency = 1 }},
		{name: "zero deadline", mod: func(c *Task) { c.RecoveryDeadline = 0 }, wantKey: TaskSection + ".recovery_deadline"},
		{name: "negative probe timeout", mod: func(c *Task) { c.RecoveryProbeTimeout = -1 }, wantKey: TaskSection + ".recovery_probe_timeout"},
		{name: "zero retry initial", mod: func(c *Task) { c.RecoveryRetryInitial = 0 }, wantKey: TaskSection + ".recovery_retry_initial"},
		{
			name: "retry max below initial",
			mod: func(c *Task) {
				c.RecoveryRetryInitial, c.RecoveryRetryMax = Duration(time.Minute), Duration(time.Second)
			},
			wantKey: TaskSection + ".recovery_retry_max",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultTask()
			tc.mod(c)
			requireNamesKey(t, c.Validate(), tc.wantKey)
		})
	}
}

// env reads the manager section's env back, whatever slice type holds it.
func env(t *testing.T, pc map[string]any) []string {
	t.Helper()
	m, ok := pc[shimKey].(map[string]any)
	if !ok {
		return nil
	}
	switch v := m["env"].(type) {
	case nil:
		return nil
	case []string:
		return v
	case []any:
		var out []string
		for _, e := range v {
			out = append(out, e.(string))
		}
		return out
	default:
		t.Fatalf("env is %T", v)
		return nil
	}
}

func TestMigrateConfig(t *testing.T) {
	ctx := context.Background()

	t.Run("v2 sched_core true merges into the manager section", func(t *testing.T) {
		pc := map[string]any{
			taskKey: map[string]any{"sched_core": true, "platforms": []any{"linux/amd64"}},
			shimKey: map[string]any{"env": []any{"FOO=1"}, "socket_dir": "/run/sk"},
		}
		if err := Migrate(ctx, 2, pc); err != nil {
			t.Fatal(err)
		}
		if got, want := env(t, pc), []string{"FOO=1", "SCHED_CORE=1"}; !slices.Equal(got, want) {
			t.Errorf("env %v, want %v", got, want)
		}
		if got := pc[shimKey].(map[string]any)["socket_dir"]; got != "/run/sk" {
			t.Errorf("socket_dir %v, want /run/sk", got)
		}
		task := pc[taskKey].(map[string]any)
		if _, ok := task["sched_core"]; ok {
			t.Error("sched_core still in the task section")
		}
		if !reflect.DeepEqual(task["platforms"], []any{"linux/amd64"}) {
			t.Errorf("platforms changed: %v", task["platforms"])
		}
	})

	t.Run("v2 sched_core true without a manager section", func(t *testing.T) {
		pc := map[string]any{taskKey: map[string]any{"sched_core": true}}
		if err := Migrate(ctx, 2, pc); err != nil {
			t.Fatal(err)
		}
		if got := env(t, pc); !slices.Equal(got, []string{"SCHED_CORE=1"}) {
			t.Errorf("env %v", got)
		}
	})

	t.Run("sched_core false is dropped", func(t *testing.T) {
		pc := map[string]any{taskKey: map[string]any{"sched_core": false}}
		if err := Migrate(ctx, 2, pc); err != nil {
			t.Fatal(err)
		}
		if _, ok := pc[taskKey].(map[string]any)["sched_core"]; ok {
			t.Error("sched_core kept")
		}
		if _, ok := pc[shimKey]; ok {
			t.Errorf("manager section created: %v", pc[shimKey])
		}
	})

	t.Run("non-bool sched_core is dropped with no env", func(t *testing.T) {
		for _, v := range []any{"true", int64(1), []any{true}} {
			pc := map[string]any{
				taskKey: map[string]any{"sched_core": v},
				shimKey: map[string]any{"env": []any{"FOO=1"}},
			}
			if err := Migrate(ctx, 2, pc); err != nil {
				t.Fatal(err)
			}
			if _, ok := pc[taskKey].(map[string]any)["sched_core"]; ok {
				t.Errorf("%v: sched_core kept", v)
			}
			if got := env(t, pc); !slices.Equal(got, []string{"FOO=1"}) {
				t.Errorf("%v: env %v, want [FOO=1]", v, got)
			}
		}
	})

	t.Run("SCHED_CORE=1 already set is not duplicated", func(t *testing.T) {
		pc := map[string]any{
			taskKey: map[string]any{"sched_core": true},
			shimKey: map[string]any{"env": []any{"SCHED_CORE=1", "FOO=1"}},
		}
		if err := Migrate(ctx, 2, pc); err != nil {
			t.Fatal(err)
		}
		if got := env(t, pc); !slices.Equal(got, []string{"SCHED_CORE=1", "FOO=1"}) {
			t.Errorf("env %v", got)
		}
	})

	// Stock runs its migration at every step below ConfigVersion (4) and
	// replaces the manager section each time: a version 3 file loses its
	// manager env and socket_dir, and a version 2 file loses SCHED_CORE=1
	// at the 3->4 step. We migrate only below 3 and never touch a file
	// that already has the manager section's format: this differs from
	// stock on purpose.
	for _, v := range []int{3, 4} {
		t.Run(fmt.Sprintf("version %d is untouched", v), func(t *testing.T) {
			pc := map[string]any{
				taskKey: map[string]any{"sched_core": true, "platforms": []any{"linux/amd64"}},
				shimKey: map[string]any{"env": []any{"FOO=1"}, "socket_dir": "/run/sk"},
			}
			want := map[string]any{
				taskKey: map[string]any{"sched_core": true, "platforms": []any{"linux/amd64"}},
				shimKey: map[string]any{"env": []any{"FOO=1"}, "socket_dir": "/run/sk"},
			}
			if err := Migrate(ctx, v, pc); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(pc, want) {
				t.Errorf("changed to %v", pc)
			}
		})
	}

	// The server calls the migration once per version step (1, 2, 3 for a
	// version 1 file); the SCHED_CORE=1 must come out exactly once.
	t.Run("per-step runs are idempotent", func(t *testing.T) {
		pc := map[string]any{
			taskKey: map[string]any{"sched_core": true},
			shimKey: map[string]any{"env": []any{"FOO=1"}},
		}
		for v := 1; v < version.ConfigVersion; v++ {
			if err := Migrate(ctx, v, pc); err != nil {
				t.Fatal(err)
			}
		}
		if got := env(t, pc); !slices.Equal(got, []string{"FOO=1", "SCHED_CORE=1"}) {
			t.Errorf("env %v", got)
		}
		// Even if sched_core came back between steps (it cannot through
		// the server, but the merge must not rely on that).
		pc[taskKey].(map[string]any)["sched_core"] = true
		if err := Migrate(ctx, 2, pc); err != nil {
			t.Fatal(err)
		}
		if got := env(t, pc); !slices.Equal(got, []string{"FOO=1", "SCHED_CORE=1"}) {
			t.Errorf("env after a second run %v", got)
		}
	})

	t.Run("no task section", func(t *testing.T) {
		pc := map[string]any{shimKey: map[string]any{"env": []any{"FOO=1"}}}
		if err := Migrate(ctx, 2, pc); err != nil {
			t.Fatal(err)
		}
		if got := env(t, pc); !slices.Equal(got, []string{"FOO=1"}) {
			t.Errorf("env %v", got)
		}
	})
}

// loadConfig runs containerd's own loader over a config.toml, with the
// shim manager's migration, as `containerd` does at start.
func loadConfig(t *testing.T, toml string) *srvconfig.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	regs := func() iter.Seq[plugin.Registration] {
		return slices.Values([]plugin.Registration{{Type: plugins.ShimPlugin, ID: "manager", ConfigMigration: Migrate}})
	}
	cfg := &srvconfig.Config{Version: version.ConfigVersion}
	if err := srvconfig.LoadConfigWithPlugins(context.Background(), path, regs, cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func decodeShim(t *testing.T, cfg *srvconfig.Config) *Shim {
	t.Helper()
	out, err := cfg.Decode(context.Background(), shimKey, &Shim{})
	if err != nil {
		t.Fatal(err)
	}
	return out.(*Shim)
}

func TestConfigLoaderMigration(t *testing.T) {
	t.Run("version 2", func(t *testing.T) {
		cfg := loadConfig(t, `
version = 2
[plugins."io.containerd.runtime.v2.task"]
  platforms = ["linux/amd64"]
  sched_core = true
  recovery_deadline = "3s"
[plugins."io.containerd.shim.v1.manager"]
  env = ["FOO=1"]
  socket_dir = "/run/sk"
`)
		sc := decodeShim(t, cfg)
		if !slices.Equal(sc.Env, []string{"FOO=1", "SCHED_CORE=1"}) || sc.SocketDir != "/run/sk" {
			t.Errorf("shim config %+v", sc)
		}
		task := cfg.Plugins[taskKey].(map[string]any)
		if _, ok := task["sched_core"]; ok {
			t.Error("sched_core left in the task section")
		}
		tc, err := cfg.Decode(context.Background(), taskKey, DefaultTask())
		if err != nil {
			t.Fatal(err)
		}
		if got := tc.(*Task); !slices.Equal(got.Platforms, []string{"linux/amd64"}) ||
			got.RecoveryDeadline != Duration(3*time.Second) || got.RecoveryConcurrency != DefaultRecoveryConcurrency {
			t.Errorf("task config %+v", got)
		}
		if err := tc.(*Task).Validate(); err != nil {
			t.Error(err)
		}
	})

	// Version 1 names plugins by their short id; the server renames them
	// before our migration sees them, then calls it for steps 1, 2 and 3.
	t.Run("version 1", func(t *testing.T) {
		cfg := loadConfig(t, `
version = 1
[plugins.task]
  sched_core = true
`)
		if sc := decodeShim(t, cfg); !slices.Equal(sc.Env, []string{"SCHED_CORE=1"}) {
			t.Errorf("shim env %v, want exactly one SCHED_CORE=1", sc.Env)
		}
	})

	// Stock would replace this manager section with an empty one.
	t.Run("version 3 keeps the manager section", func(t *testing.T) {
		cfg := loadConfig(t, `
version = 3
[plugins."io.containerd.shim.v1.manager"]
  env = ["FOO=1"]
  socket_dir = "/run/sk"
`)
		sc := decodeShim(t, cfg)
		if !slices.Equal(sc.Env, []string{"FOO=1"}) || sc.SocketDir != "/run/sk" {
			t.Errorf("shim config %+v", sc)
		}
	})
}

func TestTimeoutsFrom(t *testing.T) {
	got, err := TimeoutsFrom(map[string]string{TimeoutLoad: "7s"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Load != 7*time.Second || got.Start != 20*time.Second || got.Cleanup != 5*time.Second || got.Shutdown != 3*time.Second {
		t.Errorf("timeouts %+v, want load 7s and the defaults (start 20s, cleanup 5s, shutdown 3s)", got)
	}
	if _, err := TimeoutsFrom(map[string]string{TimeoutCleanup: "soon"}); err == nil || !strings.Contains(err.Error(), `timeouts."`+TimeoutCleanup+`"`) {
		t.Errorf("bad duration: %v, want an error naming the key", err)
	}
}

// requireNamesKey checks a Validate error: none when wantKey is "", else
// one that names wantKey.
func requireNamesKey(t *testing.T, err error, wantKey string) {
	t.Helper()
	switch {
	case wantKey == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case wantKey != "" && err == nil:
		t.Fatal("expected an error")
	case wantKey != "" && !strings.Contains(err.Error(), wantKey):
		t.Errorf("error %q does not name %s", err, wantKey)
	}
}

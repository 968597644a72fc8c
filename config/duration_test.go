package config

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A value that is not a duration must fail Validate naming its key, not
// the config decoding, whose error has no key (containerd prints it as is
// and exits).
func TestDurationNotADurationNamesKey(t *testing.T) {
	for _, key := range []string{"recovery_deadline", "recovery_probe_timeout", "recovery_retry_initial", "recovery_retry_max"} {
		t.Run(key, func(t *testing.T) {
			cfg := loadConfig(t, "version = 3\n[plugins.\"io.containerd.runtime.v2.task\"]\n  "+key+" = \"banana\"\n")
			tc, err := cfg.Decode(context.Background(), taskKey, DefaultTask())
			if err != nil {
				t.Fatalf("decode: %v, want the bad value left to Validate", err)
			}
			err = tc.(*Task).Validate()
			if want := TaskSection + "." + key + ": not a duration"; err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Validate: %v, want an error with %q", err, want)
			}
		})
	}
	// Valid strings still decode, negative ones are still refused as such.
	cfg := loadConfig(t, "version = 3\n[plugins.\"io.containerd.runtime.v2.task\"]\n  recovery_deadline = \"1m30s\"\n  recovery_probe_timeout = \"-1s\"\n")
	tc, err := cfg.Decode(context.Background(), taskKey, DefaultTask())
	if err != nil {
		t.Fatal(err)
	}
	c := tc.(*Task)
	if c.RecoveryDeadline != Duration(90*time.Second) || c.RecoveryProbeTimeout != Duration(-time.Second) {
		t.Fatalf("decoded %+v", c)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), TaskSection+".recovery_probe_timeout: must be a positive duration") {
		t.Fatalf("Validate: %v", err)
	}
	if b, _ := DefaultRecoveryDeadline.MarshalText(); string(b) != "10s" {
		t.Fatalf("MarshalText = %q", b)
	}
}

package config

import (
	"math"
	"time"
)

// Duration is a time.Duration written in config.toml as a Go duration
// string ("10s", "500ms").
type Duration time.Duration

// invalidDuration is what a string that is not a duration decodes to.
// UnmarshalText does not fail on it because containerd's config decoder
// reports such an error without the key ("toml: invalid duration ..."):
// Validate rejects it, naming the key.
const invalidDuration = Duration(math.MinInt64)

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		*d = invalidDuration
		return nil
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

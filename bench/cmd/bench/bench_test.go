package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCountRunc(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	log := "--root /x/runc/ns --log /x/log.json --log-format json ps --format json rc-0000\n" +
		"--root /x/runc/ns --log /x/log.json --log-format json ps --format json rc-0001\n" +
		"--root /x/runc/ns --log /x/log.json --log-format json --systemd-cgroup state rc-0000\n"
	if err := os.WriteFile(p, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	got := countRunc(p)
	if got["ps"] != 2 || got["state"] != 1 || len(got) != 2 {
		t.Fatalf("countRunc = %v", got)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []time.Duration
		want time.Duration
	}{{nil, 0}, {[]time.Duration{3}, 3}, {[]time.Duration{5, 1, 3}, 3}, {[]time.Duration{4, 1, 3, 2}, 2}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestModeOf(t *testing.T) {
	c := caseDef{live: 2, hung: 1, dead: 1, leaked: 1, exited: 1}
	n := map[string]int{}
	for _, id := range c.ids() {
		n[modeOf(id)]++
	}
	if n["live"] != 2 || n["hung"] != 1 || n["dead"] != 1 || n["leaked"] != 1 || n["exited"] != 1 {
		t.Fatalf("modes: %v", n)
	}
}

package manager

import (
	"context"
	"testing"
	"time"
)

// Holds of one id nest: the id stays held until the last release, and a
// second release of the same hold is harmless.
func TestHoldsNest(t *testing.T) {
	m := New(Config{})
	r1 := m.Hold("ns", "id")
	r2 := m.Hold("ns", "id")
	r1()
	r1()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := m.WaitHeld(ctx, "ns", "id"); err == nil {
		t.Fatal("id free while a hold remains")
	}
	r2()
	if err := m.WaitHeld(context.Background(), "ns", "id"); err != nil {
		t.Fatalf("id still held after the last release: %v", err)
	}
}

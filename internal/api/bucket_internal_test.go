package api

import (
	"testing"
	"time"
)

// The start bucket refills at its rate up to its burst, says how long
// until a token when it has none (taking nothing), gives a refunded token
// back up to the burst, and keeps what is left when its limits change.
func TestBucket(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	b := newBucket(2, 3, t0) // 2 a second, bursts of 3
	for i := range 3 {
		if d := b.take(t0); d != 0 {
			t.Fatalf("take %d of the burst: wait %s", i+1, d)
		}
	}
	if d := b.take(t0); d != 500*time.Millisecond {
		t.Fatalf("take from an empty bucket: wait %s, want 500ms", d)
	}
	if d := b.take(t0.Add(250 * time.Millisecond)); d != 250*time.Millisecond {
		t.Fatalf("take a quarter second on: wait %s, want 250ms (nothing was taken before)", d)
	}
	if d := b.take(t0.Add(500 * time.Millisecond)); d != 0 {
		t.Fatalf("take half a second on: wait %s, want a token", d)
	}
	b.refund()
	if d := b.take(t0.Add(500 * time.Millisecond)); d != 0 {
		t.Fatalf("take after a refund: wait %s, want the refunded token", d)
	}
	// Refunds and refills stop at the burst.
	b.refund()
	b.refund()
	b.refund()
	b.refund()
	now := t0.Add(time.Hour)
	for i := range 3 {
		if d := b.take(now); d != 0 {
			t.Fatalf("take %d after an hour: wait %s", i+1, d)
		}
	}
	if d := b.take(now); d == 0 {
		t.Fatal("a fourth token after an hour: the burst is 3")
	}
	// A smaller burst keeps no more than it allows.
	b.set(1, 1, now.Add(time.Hour))
	if d := b.take(now.Add(time.Hour)); d != 0 {
		t.Fatalf("take after set: wait %s", d)
	}
	if d := b.take(now.Add(time.Hour)); d != time.Second {
		t.Fatalf("take past the new burst: wait %s, want 1s at the new rate", d)
	}
}

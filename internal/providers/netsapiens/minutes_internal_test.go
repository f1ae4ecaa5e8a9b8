package netsapiens

import (
	"context"
	"testing"
	"time"
)

// On a PBX keeping expiries to the minute, writes in one minute read alike
// whatever seconds they end on. Replicas starting together adopted the
// maker's subscription in the minute it was written: neither told the
// other's write, and the maker letting go deleted it under its adopters
// (a third's write, pushed past the maker's minute by the second's, came
// back to it). Each write now reads later than the one it replaces: the
// adopters learn their writes and the maker's age, and the maker leaves the
// subscription to them.
func TestWritesInOneMinuteOnAPBXKeepingMinutesAreToldApart(t *testing.T) {
	p := walkPBX{minutes: true}
	sim, url := p.serve(t)
	at := time.Now().Truncate(time.Minute)
	now := func() time.Time { return at }
	maker := newSubClient(t, url, time.Hour, 7, now)
	id, written, _, _, err := maker.subs.create("TEST")
	if err != nil || written == "" {
		t.Fatalf("the maker's create: %q, %q, %v", id, written, err)
	}
	for i, mark := range []int{23, 41} {
		at = at.Add(5 * time.Second)
		adopter := newSubClient(t, url, time.Hour, mark, now)
		aid, awritten, makerAt, adopted, err := adopter.subs.create("TEST")
		if err != nil || aid != id || !adopted || awritten == "" || makerAt.IsZero() {
			t.Fatalf("adoption %d: %q, %q, maker at %v, adopted %v, %v; want %s adopted, its write and its maker's age known",
				i+1, aid, awritten, makerAt, adopted, err, id)
		}
	}
	at = at.Add(time.Minute)
	if err := maker.subs.delete(context.Background(), "TEST", &domainSub{id: id, written: written}); err != nil {
		t.Fatal(err)
	}
	if left := len(sim.Subscriptions()); left != 1 || subDeletes(sim) != 0 {
		t.Errorf("%d subscriptions left, %d deletions: the maker took its adopters' writes for its own", left, subDeletes(sim))
	}
}

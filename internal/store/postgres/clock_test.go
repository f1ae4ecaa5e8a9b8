package postgres_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/postgres"
)

// Two replicas whose clocks disagree by more than the lease share one
// database. Heartbeats were stamped and judged by each replica's own
// clock: a replica 20 s ahead took over the transfers of a live replica
// (TTL 15 s) and drove them while their owner still did, and one 20 s
// behind had its own transfers taken by the other as soon as it beat.
// Each store now tells the server's time (Now, clock.go), which the
// replica stamps and judges by: the skewed replica claims only what a
// dead replica owned, and nobody claims its own.
func TestHeartbeatsAreJudgedOnTheServersClock(t *testing.T) {
	const ttl = 15 * time.Second
	for _, skew := range []time.Duration{20 * time.Second, -20 * time.Second} {
		t.Run("skew "+skew.String(), func(t *testing.T) {
			ctx := context.Background()
			steady, skewed := twoReplicas(t, func() time.Time { return time.Now().Add(skew) })
			if off := skewed.ClockOffset(); off > -skew+clockTolerance || off < -skew-clockTolerance {
				t.Fatalf("the skewed replica measured the server %v ahead of it; want about %v", off, -skew)
			}
			if d := skewed.Now().Sub(steady.Now()); d > clockTolerance || d < -clockTolerance {
				t.Fatalf("the skewed replica tells the time %v from the steady one; want the same time", d)
			}

			beat := func(s *postgres.Store, owner string, now time.Time) {
				t.Helper()
				if _, err := s.Heartbeat(ctx, owner, "token-"+owner, now, ttl, false); err != nil {
					t.Fatal(err)
				}
			}
			ofSteady := createOwned(t, steady, "1000", "steady")
			ofSkewed := createOwned(t, skewed, "1001", "skewed")
			ofDead := createOwned(t, steady, "1002", "dead")
			beat(steady, "steady", steady.Now())
			beat(skewed, "skewed", skewed.Now())
			// The dead replica's last heartbeat ended a minute ago.
			beat(steady, "dead", steady.Now().Add(-time.Minute-ttl))

			byskewed := claimIDs(t, skewed, "skewed", skewed.Now())
			if byskewed[ofSteady.ID] {
				t.Errorf("the replica whose clock is %v off claimed a transfer of a live replica", skew)
			}
			if !byskewed[ofDead.ID] {
				t.Errorf("the replica whose clock is %v off did not claim the dead replica's transfer", skew)
			}
			if bysteady := claimIDs(t, steady, "steady", steady.Now()); bysteady[ofSkewed.ID] {
				t.Errorf("a transfer of the live replica whose clock is %v off was claimed by another", skew)
			}
		})
	}
}

// A step of a replica's host clock (NTP correcting a clock far off, an
// operator) moved the time it told by the step until its next heartbeat
// read the server's clock again: stepped back an hour, its first
// heartbeat after the step was stamped to end an hour early, and another
// replica claimed its live transfer; stepped forward, it judged a live
// replica's heartbeat ended and claimed that one's transfer. Now counts
// from the last reading of the server's clock on the monotonic clock, so
// a step moves nothing.
func TestAStepOfTheHostsClockMovesNotTheServersTime(t *testing.T) {
	const ttl = 15 * time.Second
	for _, step := range []time.Duration{-time.Hour, time.Hour} {
		t.Run("step "+step.String(), func(t *testing.T) {
			ctx := context.Background()
			var stepped atomic.Int64
			steady, s := twoReplicas(t, func() time.Time { return time.Now().Add(time.Duration(stepped.Load())) })
			ofSteady := createOwned(t, steady, "1000", "steady")
			ofStepped := createOwned(t, s, "1001", "stepped")
			before := s.Now()
			stepped.Store(int64(step))
			// Readings of the wall clocks alone (Round(0) drops the
			// monotonic one).
			if d := s.Now().Round(0).Sub(before.Round(0)); d < 0 || d > time.Minute {
				t.Errorf("the replica's time moved by %v when its host's clock stepped %v; want it to go on", d, step)
			}
			// Its first claim and its first heartbeat after the step,
			// before any reading of the server's clock since.
			if _, err := steady.Heartbeat(ctx, "steady", "token-steady", steady.Now(), ttl, false); err != nil {
				t.Fatal(err)
			}
			if got := claimIDs(t, s, "stepped", s.Now()); got[ofSteady.ID] {
				t.Errorf("a replica whose host's clock stepped %v claimed a live replica's transfer", step)
			}
			if _, err := s.Heartbeat(ctx, "stepped", "token-stepped", s.Now(), ttl, false); err != nil {
				t.Fatal(err)
			}
			if got := claimIDs(t, steady, "steady", steady.Now()); got[ofStepped.ID] {
				t.Errorf("after its host's clock stepped %v, a replica's first heartbeat did not cover its live transfer: another claimed it", step)
			}
		})
	}
}

// twoReplicas opens two stores on one new schema, as two replicas: steady
// on the process's clock, other on host as its host's clock. Both are
// closed when the test ends.
func twoReplicas(t *testing.T, host func() time.Time) (steady, other *postgres.Store) {
	t.Helper()
	ctx := context.Background()
	url := inSchema(baseURL(t), newSchema(t, baseURL(t)))
	steady, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(steady.Close)
	other, err = postgres.OpenWithClock(ctx, url, host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	return steady, other
}

// createOwned saves a consulting transfer of owner through s.
func createOwned(t *testing.T, s *postgres.Store, user, owner string) *orchestrator.Transfer {
	t.Helper()
	now := time.Now()
	tr := &orchestrator.Transfer{ID: orchestrator.NewID(now), State: orchestrator.StateConsulting, CreatedAt: now, UpdatedAt: now,
		Owner: owner, Request: orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "TEST", User: user}, Target: "1010"}}
	if err := s.Create(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	return tr
}

// claimIDs claims for owner at now through s and returns the ids claimed.
func claimIDs(t *testing.T, s *postgres.Store, owner string, now time.Time) map[string]bool {
	t.Helper()
	ts, err := s.Claim(context.Background(), owner, "", now, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, tr := range ts {
		got[tr.ID] = true
	}
	return got
}

// clockTolerance bounds how far a measured offset may be from the skew
// a test set: half a round trip to a local server, and slack.
const clockTolerance = 2 * time.Second

// The offset changes only when a measurement moves it by more than its
// slack beyond the measurement's own uncertainty (half its round trip): a
// clock stepped or drifted, not the jitter of a round trip, which would
// move the times of one replica's calls against each other.
func TestClockOffsetMovesOnlyForAStep(t *testing.T) {
	s := open(t)
	base := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	reading := func(serverAhead, roundTrip time.Duration) {
		postgres.TookClock(s, base, base.Add(roundTrip/2+serverAhead), base.Add(roundTrip))
	}
	reading(3*time.Second, 10*time.Millisecond)
	if got := s.ClockOffset(); got != 3*time.Second {
		t.Fatalf("offset %v after a reading 3s ahead; want 3s (a first reading, or a step from what Open measured)", got)
	}
	reading(3*time.Second+200*time.Millisecond, 400*time.Millisecond)
	if got := s.ClockOffset(); got != 3*time.Second {
		t.Errorf("offset %v after a reading 200ms off over a round trip of 400ms; want 3s still (jitter)", got)
	}
	reading(3*time.Second+50*time.Millisecond, 10*time.Millisecond)
	if got := s.ClockOffset(); got != 3*time.Second {
		t.Errorf("offset %v after a reading 50ms off; want 3s still (within the slack)", got)
	}
	reading(3*time.Second+200*time.Millisecond, 10*time.Millisecond)
	if got := s.ClockOffset(); got != 3*time.Second+200*time.Millisecond {
		t.Errorf("offset %v after a reading 200ms off over a round trip of 10ms; want 3.2s (the clock drifted)", got)
	}
	reading(-5*time.Second, 10*time.Millisecond)
	if got := s.ClockOffset(); got != -5*time.Second {
		t.Errorf("offset %v after a reading 5s behind; want -5s (the clock was stepped)", got)
	}
}

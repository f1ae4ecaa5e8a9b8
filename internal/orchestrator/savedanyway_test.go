package orchestrator_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// claimedBy has another replica claim the stored transfer id and save it
// holding, as happens when the creator's heartbeat lapsed while the store
// could not be reached.
func claimedBy(s orchestrator.Store, owner string) {
	ts, err := s.Claim(context.Background(), owner, "", time.Now(), false, 0)
	if err != nil || len(ts) != 1 {
		panic("the claim by the other replica failed")
	}
	c := ts[0]
	c.State = orchestrator.StateHolding
	c.UpdatedAt = time.Now()
	if err := s.Update(context.Background(), c); err != nil {
		panic(err)
	}
}

func startLost(t *testing.T, e *orchestrator.Engine) {
	t.Helper()
	_, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if !errors.Is(err, orchestrator.ErrSaveUnknown) || orchestrator.KindOf(err) != orchestrator.KindUnavailable {
		t.Fatalf("Start: %v; want ErrSaveUnknown, unavailable (the store's answer and the read-back both failed)", err)
	}
}

// Found by review: a create whose save was committed although the store's
// answer said it failed left a transfer that held its call (every new
// transfer of it a 409) and that nobody drove until the replica restarted.
// The engine now reads such a record back: saved, it is driven, and the
// create succeeds.
func TestCreateSavedDespiteALostAnswerIsDriven(t *testing.T) {
	st := &orchestratortest.LostCreate{Store: memory.New()}
	e := testEngine(t, fastConfig(time.Second, stormWindowShort), st, orchestratortest.NewFake("fake"), nil)
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatalf("Start: %v; want the saved transfer", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	end, err := e.Wait(ctx, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if err != nil || end.State != orchestrator.StateCompleted {
		t.Fatalf("the transfer ended %v (%v); want completed", end.State, err)
	}
}

// When the read-back fails too, the create fails as the store said, and
// the engine goes on looking for the record: saved, it is driven (a
// second review: it stayed pending, undriven, until the replica
// restarted). A third: the first look waited a whole PollMaxInterval
// (an hour here, as with provider events), long after the looking ends.
func TestCreateWhoseReadBackFailedIsFoundLaterAndDriven(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fails   int32 // Gets that fail: the read-back, then looks
		maxPoll time.Duration
	}{{"looked for again", 3, 5 * time.Millisecond}, {"slow polling", 1, time.Hour}} {
		t.Run(tc.name, func(t *testing.T) {
			st := &orchestratortest.LostCreate{Store: memory.New(), OnGet: orchestratortest.FailFirstGets(tc.fails)}
			cfg := fastConfig(time.Second, stormWindowShort)
			cfg.PollMaxInterval = tc.maxPoll
			e := testEngine(t, cfg, st, orchestratortest.NewFake("fake"), nil)
			startLost(t, e)
			ts, _, err := st.Store.List(context.Background(), orchestrator.ListFilter{})
			if err != nil || len(ts) != 1 {
				t.Fatalf("stored transfers %d (%v); want the one saved", len(ts), err)
			}
			var end *orchestrator.Transfer
			eventually(t, "the saved transfer driven to its end", func() bool {
				end, _ = st.Store.Get(context.Background(), ts[0].ID)
				return end != nil && end.State.Terminal()
			})
			if end.State != orchestrator.StateCompleted {
				t.Fatalf("the transfer ended %v; want completed", end.State)
			}
		})
	}
}

// Found by a second review: the read-back set only its version on the
// engine's own record of the create, and adopted it. When another replica
// had claimed the transfer meanwhile and saved it, the creator's first
// save was a compare-and-set at the claimer's version: it overwrote the
// claim, and both replicas drove the transfer. Now a record read back is
// driven only if it is still as the create saved it; otherwise the create
// answers with it and leaves it to its owner. Found later, likewise (and,
// a third review, counted started all the same).
func TestCreateReadBackClaimedByAnotherReplicaIsLeftToIt(t *testing.T) {
	for _, later := range []bool{false, true} {
		t.Run(map[bool]string{false: "read back", true: "found later"}[later], func(t *testing.T) {
			looked := make(chan struct{})
			st := &orchestratortest.LostCreate{Store: memory.New()}
			st.OnGet = func(ctx context.Context, n int32, s orchestrator.Store, id string) (*orchestrator.Transfer, error) {
				switch {
				case n == 1 && later:
					return nil, orchestratortest.ErrGetRefused
				case n == 1 || n == 2:
					claimedBy(s, "other")
					defer close(looked)
				}
				return s.Get(ctx, id)
			}
			cfg := fastConfig(time.Second, stormWindowShort)
			cfg.Owner = "creator"
			reg := prometheus.NewRegistry()
			f := orchestratortest.NewFake("fake")
			e := testEngine(t, cfg, st, f, reg)
			if later {
				startLost(t, e)
			} else {
				tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
				if err != nil {
					t.Fatalf("Start: %v; the transfer was saved, so the create succeeds", err)
				}
				if tr.Owner != "other" || tr.State != orchestrator.StateHolding {
					t.Errorf("the create answered %s owned by %q; want the record as the claimer saved it", tr.State, tr.Owner)
				}
			}
			<-looked
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = e.Shutdown(ctx) // whatever looked for the record has returned
			if n := metric(t, reg, "transferd_transfers_in_flight", map[string]string{"provider": "fake"}); n != 0 {
				t.Errorf("%v transfers in flight on the creator; want 0 (the claimer drives it)", n)
			}
			if n := metric(t, reg, "transferd_transfers_started_total", map[string]string{"provider": "fake"}); n != 1 {
				t.Errorf("%v transfers counted started; want 1", n)
			}
			if acts := f.Actions(); len(acts) != 0 {
				t.Errorf("the creator sent %v", acts)
			}
		})
	}
}

// Found by a third review: findLater read the store on a context cut
// loose from the engine's, so that a Shutdown out of time still waited for
// a hung read (findLater's expected case: the store cannot be reached) to
// run out its own 5 s.
func TestCreateLookedForLaterStopsWithAShutdownOutOfTime(t *testing.T) {
	entered := make(chan struct{})
	ended := make(chan error, 1)
	st := &orchestratortest.LostCreate{Store: memory.New()}
	st.OnGet = func(ctx context.Context, n int32, s orchestrator.Store, id string) (*orchestrator.Transfer, error) {
		if n == 2 { // findLater's first look: the store hangs
			close(entered)
			<-ctx.Done()
			ended <- ctx.Err()
		}
		return nil, orchestratortest.ErrGetRefused
	}
	e := testEngine(t, fastConfig(time.Second, stormWindowShort), st, orchestratortest.NewFake("fake"), nil)
	startLost(t, e)
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the shutdown's grace is already over
	_ = e.Shutdown(ctx)
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("the look ended with %v, not cancelled by the engine's hard stop", err)
	}
}

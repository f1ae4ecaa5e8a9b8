package bandwidth_test

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// An unhold refused (the agent still leaving the consult bridge) has the
// adapter read the caller's call A to say why. Locate read A, and
// Catapult reads an ended call "completed": a 404 for it says nothing
// (getKnownCall). Taken for the caller gone, it answered the unhold "not
// found"; the engine takes one such answer back when a reading shows the
// caller held, but a second one, while the caller shows held, is its
// sign that the unhold addresses a leg that has ended, and it gives the
// unhold up for good: the caller stayed on hold, alone in the muted
// bridge, with the agent up. Here two unholds are refused and A reads
// 404 once after each.
func TestAnUnholdRefusedTwiceWithTheCallerReadNotFoundEachTimeRestoresTheCaller(t *testing.T) {
	var (
		mu                 sync.Mutex
		a, g, b1           string
		refusals, notFound int
	)
	wrap := func(_ *bwsim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			unhold := isUnhold(r, b1)
			switch {
			case unhold && refusals < 4:
				// Two unholds, each sent again once after b2 was emptied.
				refusals++
				writeBridgedElsewhere(w, g)
				return
			case refusals == 2*(notFound+1) && r.Method == http.MethodGet && r.URL.Path == "/users/"+userID+"/calls/"+a:
				notFound++
				writeCallNotFound(w, a)
				return
			}
			api.ServeHTTP(w, r)
		})
	}
	h := setup(t, options{wrap: wrap, engine: briefWindow})
	ca, cg, cb1 := h.placeBridged(t)
	mu.Lock()
	a, g, b1 = ca.ID, cg.ID, cb1.ID
	mu.Unlock()
	tr := h.start(t, attendedReq(ca, cg, orchestrator.CompletionManual))
	tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
	if _, err := h.eng.Cancel(context.Background(), tr.ID); err != nil {
		t.Fatal(err)
	}
	tr = h.end(t, tr.ID)
	mu.Lock()
	n := notFound
	mu.Unlock()
	if n != 2 {
		t.Fatalf("the caller's call was read not found %d times, want 2 (the test did not reach its case)", n)
	}
	if tr.State != orchestrator.StateCancelled || !tr.Outcome.CallerRestored {
		t.Errorf("state %s outcome %+v, want cancelled with the caller restored", tr.State, tr.Outcome)
	}
	assertAgentRestored(t, h, tr, ca, cg)
}

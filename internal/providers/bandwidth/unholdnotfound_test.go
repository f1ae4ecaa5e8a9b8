package bandwidth_test

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// An unhold refused (the agent still leaving the consult bridge: an
// emptying answered before it was applied) has the adapter read the
// caller's and the agent's calls to say why. Catapult reads an ended call
// "completed", so a 404 for either, both read before by Locate, says
// nothing of it (getKnownCall). Taken for gone, the caller's 404 made the
// engine stop unholding (the caller hung up, it thought) and the agent's
// made it give up the unhold for good (the agent ended, it thought): the
// caller stayed on hold, alone in the muted bridge, with the agent up.
func TestAnUnholdRefusedThenAKnownCallReadNotFoundIsTriedAgain(t *testing.T) {
	for _, who := range []string{"caller", "agent"} {
		t.Run(who, func(t *testing.T) {
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
					read := map[string]string{"caller": a, "agent": g}[who]
					switch {
					case unhold && refusals < 2:
						// The unhold and its retry after emptying b2 again.
						refusals++
						writeBridgedElsewhere(w, g)
						return
					case refusals == 2 && notFound == 0 && r.Method == http.MethodGet && r.URL.Path == "/users/"+userID+"/calls/"+read:
						notFound++
						writeCallNotFound(w, read)
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
			if n != 1 {
				t.Fatalf("the %s's call was read not found %d times, want 1 (the test did not reach its case)", who, n)
			}
			if tr.State != orchestrator.StateCancelled || !tr.Outcome.CallerRestored {
				t.Errorf("state %s outcome %+v, want cancelled with the caller restored", tr.State, tr.Outcome)
			}
			assertAgentRestored(t, h, tr, ca, cg)
		})
	}
}

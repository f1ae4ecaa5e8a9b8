package bandwidth_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// The dial's POST /bridges is applied and its answer lost while the
// agent's call G cannot be read, so b2 (G alone in it) is never saved; the
// caller hangs up meanwhile. The recovery's hang-up finds b2 through G
// (agentBridge), and G reads 404 once. Catapult reads an ended call
// "completed", and Locate read G: the 404 says nothing of it
// (getKnownCall). Taken for "G is in no bridge", the hang-up reported b2
// emptied, and with the caller gone no unhold came to find it refused: the
// agent was left alone in b2 for good, on a silent call, in a bridge that
// makes the platform refuse to bridge it to anyone else.
func TestAnUnsavedConsultBridgeIsEmptiedWhenTheAgentReadsNotFoundOnce(t *testing.T) {
	var (
		mu          sync.Mutex
		a, g        string
		unreadable  = 3 // the dial's read of G, every attempt
		notFound    = 1 // then the hang-up's
		created     bool
		notFoundHit int
	)
	wrap := func(sim *bwsim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case !created && r.Method == http.MethodPost && r.URL.Path == "/users/"+userID+"/bridges":
				// Applied, the caller hangs up, the answer is lost.
				created = true
				rec := httptest.NewRecorder()
				api.ServeHTTP(rec, r)
				if rec.Code != http.StatusCreated {
					t.Errorf("create bridge: %d %s", rec.Code, rec.Body)
				}
				if err := sim.Hangup(a); err != nil {
					t.Error(err)
				}
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			case created && r.Method == http.MethodGet && r.URL.Path == "/users/"+userID+"/calls/"+g:
				switch {
				case unreadable > 0:
					unreadable--
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				case notFound > 0:
					notFound--
					notFoundHit++
					writeCallNotFound(w, g)
					return
				}
			}
			api.ServeHTTP(w, r)
		})
	}
	h := setup(t, options{wrap: wrap, engine: briefWindow})
	ca, cg, b1 := h.placeBridged(t)
	mu.Lock()
	a, g = ca.ID, cg.ID
	mu.Unlock()
	tr := h.end(t, h.start(t, attendedReq(ca, cg, orchestrator.CompletionAuto)).ID)
	h.idle(t)
	mu.Lock()
	n := notFoundHit
	mu.Unlock()
	if n != 1 || tr.Legs.Consult.BridgeID != "" {
		t.Fatalf("setup: the agent's call read not found %d times (want 1), consult bridge saved %q (want none); state %s outcome %+v",
			n, tr.Legs.Consult.BridgeID, tr.State, tr.Outcome)
	}
	if c := mustCall(t, h, g); c.BridgeID != "" && c.BridgeID != b1.ID {
		t.Errorf("transfer %s (%+v), steps %v: the agent's call is left in the consult bridge %s: %+v",
			tr.State, tr.Outcome, stepNames(tr), c.BridgeID, h.sim.Bridges())
	}
}

// The other side of it: a join whose b2 was not learnt (a reading found T
// by its tag) looks for b2 through G first, and a 404 for G, now unknown,
// must not hold the join back: T, created into b2, names it (consultBridge).
func TestAJoinFindsAnUnsavedConsultBridgeThroughTheTargetWhenTheAgentReadsNotFound(t *testing.T) {
	var (
		mu    sync.Mutex
		g     string
		armed bool
		hits  int
	)
	wrap := func(_ *bwsim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			nf := armed && r.Method == http.MethodGet && r.URL.Path == "/users/"+userID+"/calls/"+g
			if nf {
				hits++
			}
			mu.Unlock()
			if nf {
				writeCallNotFound(w, g)
				return
			}
			api.ServeHTTP(w, r)
		})
	}
	h := setup(t, options{wrap: wrap, engine: briefWindow})
	ca, cg, _ := h.placeBridged(t)
	mu.Lock()
	g = cg.ID
	mu.Unlock()
	tr := h.start(t, attendedReq(ca, cg, orchestrator.CompletionManual))
	tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
	tr.Legs.Consult.BridgeID = "" // not learnt
	mu.Lock()
	armed = true
	mu.Unlock()
	err := h.client.Complete(t.Context(), tr)
	mu.Lock()
	armed = false
	n := hits
	mu.Unlock()
	if err != nil || n == 0 {
		t.Fatalf("complete = %v with the agent's call read not found %d times; want the join sent", err, n)
	}
	h.idle(t)
	if !h.sim.Connected(ca.ID, tr.Legs.Consult.CallID) {
		t.Errorf("the caller is not with the target: %+v", h.sim.Bridges())
	}
}

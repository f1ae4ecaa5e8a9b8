package bandwidth_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// The split (G leaves b1, {"callIds":[A],"bridgeAudio":false}) was a
// safe request, sent again at once after an answer lost. Here its first
// attempt was applied, its answer lost, and a copy, accepted, is applied
// late, after the join ({"callIds":[A,T],"bridgeAudio":true}): it took T
// out of b1 and muted the caller. The join had happened; the transfer
// then ended failed, provider_error, the target hung up and the caller
// given back to the agent. The engine guards the join against a twin of
// the hold (holdLanded), not of the dial's split, which mutes b1 just as
// the hold does. The split is now sent again only once b1 shows the
// earlier attempt did not land, so no copy is in flight when the join is
// sent (were one sent, the wrapper below would apply it after the join).
func TestASplitTwinLandingAfterTheJoinDoesNotUndoIt(t *testing.T) {
	var (
		mu       sync.Mutex
		a, g, b1 string
		splits   int
		twin     []byte
	)
	wrap := func(_ *bwsim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			mu.Lock()
			path := "/users/" + userID + "/bridges/" + b1
			var upd struct {
				CallIDs     []string `json:"callIds"`
				BridgeAudio *bool    `json:"bridgeAudio"`
			}
			isB1 := b1 != "" && r.Method == http.MethodPost && r.URL.Path == path && json.Unmarshal(body, &upd) == nil
			split := isB1 && len(upd.CallIDs) == 1 && upd.CallIDs[0] == a && upd.BridgeAudio != nil && !*upd.BridgeAudio
			join := isB1 && len(upd.CallIDs) == 2 && upd.CallIDs[1] != g && upd.BridgeAudio != nil && *upd.BridgeAudio
			mu.Unlock()
			switch {
			case split:
				mu.Lock()
				splits++
				n := splits
				mu.Unlock()
				if n == 1 {
					// Applied, its answer lost.
					api.ServeHTTP(httptest.NewRecorder(), r)
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				if n == 2 {
					// Accepted, applied after the join: a copy the
					// fix no longer sends.
					mu.Lock()
					twin = body
					mu.Unlock()
					w.WriteHeader(http.StatusOK)
					return
				}
			case join:
				api.ServeHTTP(w, r)
				mu.Lock()
				tw := twin
				twin = nil
				mu.Unlock()
				if tw != nil {
					req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(tw))
					req.SetBasicAuth(apiToken, apiSecret)
					req.Header.Set("Content-Type", "application/json")
					rec := httptest.NewRecorder()
					api.ServeHTTP(rec, req)
					if rec.Code != http.StatusOK {
						t.Errorf("the twin split was refused: %d %s", rec.Code, rec.Body)
					}
				}
				return
			}
			api.ServeHTTP(w, r)
		})
	}
	h := setup(t, options{wrap: wrap})
	ca, cg, cb1 := h.placeBridged(t)
	mu.Lock()
	a, g, b1 = ca.ID, cg.ID, cb1.ID
	mu.Unlock()
	tr := h.end(t, h.start(t, attendedReq(ca, cg, orchestrator.CompletionAuto)).ID)
	h.idle(t)
	if tr.State != orchestrator.StateCompleted || !h.sim.Connected(a, tr.Legs.Consult.CallID) {
		t.Fatalf("state %s outcome %+v undos %v; the caller with the target: %v", tr.State, tr.Outcome, undos(tr),
			h.sim.Connected(a, tr.Legs.Consult.CallID))
	}
}

// A split answered 503 without being applied is sent again once b1 shows
// it did not land, and the transfer goes on.
func TestASplitRefusedOnTheWayIsSentAgain(t *testing.T) {
	h := setup(t, options{})
	a, g, b1 := h.placeBridged(t)
	h.faultAt(bridgeUpdate(b1.ID, map[string]any{"callIds": []any{a.ID}, "bridgeAudio": false}),
		bwsim.Fault{Operation: bwsim.OpUpdateBridge, Status: 503, Count: 1})
	tr := h.end(t, h.start(t, attendedReq(a, g, orchestrator.CompletionAuto)).ID)
	h.idle(t)
	if tr.State != orchestrator.StateCompleted || !h.sim.Connected(a.ID, tr.Legs.Consult.CallID) {
		t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
	}
	splits := 0
	for _, c := range h.commands(t) {
		if c.Path == "/bridges/"+b1.ID && jsonEqualMaps(c.Body, map[string]any{"callIds": []any{a.ID}, "bridgeAudio": false}) {
			splits++
		}
	}
	if splits != 2 {
		t.Errorf("splits sent = %d, want 2 (the one refused on the way and the one after it)", splits)
	}
}

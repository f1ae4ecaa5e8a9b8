package bandwidth_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// The consult call's answer is lost, and by the time a reading looks for
// it (by its tag, among the calls to the target) the target, a busy
// number, has been called a hundred times more. The listing is paged
// (size at most 1000, newest first), and only its first page of 100 was
// read: the consult, on the second, was never found. The transfer gave
// up (consult_failed, the caller back with the agent) and left the
// target's call up, orphaned, never hung up. Pages are read until they
// reach calls older than the transfer.
func TestAConsultOnASecondPageOfTheListingIsFound(t *testing.T) {
	var dialled atomic.Bool
	wrap := func(_ *bwsim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost || r.URL.Path != "/users/"+userID+"/calls" || !dialled.CompareAndSwap(false, true) {
				api.ServeHTTP(w, r)
				return
			}
			// The consult call is created, its answer lost; then other
			// calls to the target are made.
			api.ServeHTTP(httptest.NewRecorder(), r)
			for range 100 {
				req := httptest.NewRequest(http.MethodPost, "/users/"+userID+"/calls",
					strings.NewReader(`{"from":"`+owned+`","to":"`+target+`"}`))
				req.SetBasicAuth(apiToken, apiSecret)
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				api.ServeHTTP(rec, req)
				if rec.Code != http.StatusCreated {
					t.Errorf("another call to the target: %d %s", rec.Code, rec.Body)
				}
			}
			w.WriteHeader(http.StatusServiceUnavailable)
		})
	}
	h := setup(t, options{wrap: wrap})
	a, g, _ := h.placeBridged(t)
	tr := h.end(t, h.start(t, attendedReq(a, g, orchestrator.CompletionAuto)).ID)
	h.idle(t)
	if tr.State != orchestrator.StateCompleted || tr.Legs.Consult.CallID == "" || !h.sim.Connected(a.ID, tr.Legs.Consult.CallID) {
		t.Fatalf("state %s outcome %+v consult %q", tr.State, tr.Outcome, tr.Legs.Consult.CallID)
	}
}

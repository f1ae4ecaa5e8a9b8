package bandwidth_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// A call's event history may be served from an index that lags the call
// object (reads failing or lagging while the call store is current are
// what the adversarial simulator plays for listings and single reads;
// nothing documents the history's freshness). A B-leg read ended whose
// history did not show its end yet was taken for one whose history says
// nothing: an announced transfer to a busy target, polling, the platform
// ending the caller's call with the failed transfer (TransferFailure
// hangup), was reported caller_hung_up, verified, at the first reading.
// A history that shows no end of a call read ended is not read yet: the
// reading is unknown for the visibility window, and the next history
// says busy.
func TestAnEventHistoryThatDoesNotShowTheLegsEndYetIsNotTheCallerHangingUp(t *testing.T) {
	for _, c := range []struct {
		name      string
		callbacks bool
	}{{"polling", false}, {"callbacks, their hangup lost", true}} {
		t.Run(c.name, func(t *testing.T) {
			var lagged atomic.Int32
			wrap := func(_ *bwsim.Sim, api http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/events") {
						api.ServeHTTP(w, r)
						return
					}
					rec := httptest.NewRecorder()
					api.ServeHTTP(rec, r)
					var events []map[string]any
					if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &events) != nil {
						t.Errorf("setup: the history answered %d %s", rec.Code, rec.Body)
						return
					}
					kept := events[:0:0]
					for _, ev := range events {
						if name, _ := ev["name"].(string); name != "hangup" && name != "timeout" {
							kept = append(kept, ev)
						}
					}
					if len(kept) < len(events) && lagged.Add(1) <= 2 {
						// The first two reads that would show the end do not yet.
						events = kept
					}
					w.Header().Set("Content-Type", "application/json")
					_ = json.NewEncoder(w).Encode(events)
				})
			}
			o := options{wrap: wrap, callbacks: c.callbacks, engine: func(c *orchestrator.Config) {
				c.VisibilityWindow = time.Second
			}}
			if c.callbacks {
				o.dropCallback = func([]byte) bool { return true }
			}
			h := setup(t, o)
			h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeBusy, Delay: 50 * time.Millisecond})
			a := h.placeCall(t)
			req := announcedReq(a, target)
			req.ConsultTimeout = 30 * time.Second
			tr := h.end(t, h.start(t, req).ID)
			h.idle(t)
			if cl := mustCall(t, h, a.ID); cl.State != bwsim.StateCompleted || cl.Cause == bwsim.CauseOriginatorCancel {
				t.Fatalf("setup: the caller's call is %s (%s), want ended by the platform with the failed transfer", cl.State, cl.Cause)
			}
			if lagged.Load() == 0 {
				t.Fatal("setup: no history read lagged")
			}
			if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonBusy {
				t.Fatalf("state %s outcome %+v: want failed, busy (the caller never hung up)", tr.State, tr.Outcome)
			}
		})
	}
}

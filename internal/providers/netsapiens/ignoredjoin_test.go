package netsapiens_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// Found by a fifth review. A join the PBX accepted and never applied (nssim's guess
// HostnameMatch=destination with WrongHostname=ignore: the caller's and
// the consult's sessions are on different cores, and the adapter names
// the caller's), after which the target hangs up. The recovery's readings,
// taken long after the join step's end plus a visibility window, show the
// caller's call still carrying the agent's leg, held: on NetSapiens a join
// that took replaces the agent's leg (JoinKeepsCaller) or ends the caller's
// session (JoinKeepsConsult), so such a reading proves the join did not
// take. The PBX accepts the first two unholds and applies neither; before
// the third reaches it the caller hangs up. The outcome is knowable (the
// caller was never with the target) and must be verified. The engine set
// Seen.NotJoined only while the consult was still up (a rule made for a
// Bandwidth caller left alone in a bridge), and reported "cannot be
// verified". Now the adapter says when the caller is positively with the
// agent (Observation.CallerWithAgent), which is such proof whatever the
// consult shows.
func TestIgnoredJoinThenTargetGoneThenCallerGoneIsKnowable(t *testing.T) {
	var orig nssim.ActiveCall
	var mu sync.Mutex
	var joinApplied, hungUp bool
	unholds := 0
	wrap := func(sim *nssim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
			defer cancel()
			switch {
			case r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, "/transfer"):
				api.ServeHTTP(w, r)
				if err := sim.WaitApplied(ctx); err != nil {
					t.Error(err)
					return
				}
				s, _, ok := callerSession(sim, orig.OrigCallID)
				mu.Lock()
				joinApplied = !ok || (s.Orig.User != "1000" && s.Term.User != "1000")
				mu.Unlock()
				for _, s := range sim.Truth().Sessions {
					if s.ByCallID != "" { // the consult: its target hangs up
						if err := sim.Hangup(s.SessionID, "term"); err != nil {
							t.Error(err)
						}
					}
				}
				return
			case r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, "/unhold"):
				mu.Lock()
				unholds++
				n := unholds
				mu.Unlock()
				if n <= 2 {
					w.WriteHeader(http.StatusAccepted) // accepted, never applied
					return
				}
				if n == 3 {
					if s, party, ok := callerSession(sim, orig.OrigCallID); ok {
						if err := sim.Hangup(s.SessionID, party); err != nil {
							t.Error(err)
						}
						mu.Lock()
						hungUp = true
						mu.Unlock()
					}
				}
			}
			api.ServeHTTP(w, r)
		})
	}
	h := setupWrapped(t, nssim.Config{HostnameMatch: nssim.HostnameOfDestination, WrongHostname: nssim.HostnameIgnore}, wrap,
		func(c *orchestrator.Config) { c.VerifyTimeout = 3 * time.Second })
	orig = h.placeCall(t)
	tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
	tr = h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	mu.Lock()
	defer mu.Unlock()
	if joinApplied {
		t.Fatal("setup: the join was applied (the sessions share a core?)")
	}
	if !hungUp {
		t.Fatalf("setup: the caller never hung up at the third unhold (%d unholds); outcome %+v", unholds, tr.Outcome)
	}
	o := tr.Outcome
	if !tr.Seen.NotJoined {
		t.Error("no reading was taken as showing that the join did not take")
	}
	if !o.Verified || o.CallerRestored {
		t.Errorf("the join never took, and readings a window after it showed the caller held with the agent: "+
			"want verified, not restored; got state %s outcome %+v", tr.State, o)
	}
}

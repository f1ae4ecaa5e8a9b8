package bandwidth_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// Polling (no callbacks), a busy target whose new B-leg cannot be read:
// never (bwsim VanishFailedLegs), or not within the visibility window
// (ListingDelay with UnlistedNotFound). The platform ends the caller's
// call when the transfer fails (TransferFailure "hangup", the default
// guess). The caller's call ended next to a leg never read was reported
// caller_hung_up, verified: a claim nothing showed, since a caller who
// hung up while the leg rang, a platform that ended the call because the
// transfer failed, and a caller who talked to the target and then hung up
// all read alike. The outcome now says it cannot be verified (final, the
// caller not restored, never caller_hung_up). A leg that becomes readable
// within the window is waited for, and tells (busy, verified). On the
// other side of the guess (TransferFailure "restore") the caller's call
// comes back, and the caller is restored, verified, as before.
func TestAnUnreadableLegNextToAnEndedCallerIsNotTheCallerHangingUp(t *testing.T) {
	cases := []struct {
		name string
		cfg  bwsim.Config
		// listAt: the leg becomes readable (Sim.Settle) at this read of
		// it; 0: never.
		listAt int
		want   string // "unknowable", "busy" or "restored"
	}{
		{"never readable/hangup", bwsim.Config{VanishFailedLegs: true}, 0, "unknowable"},
		{"not readable within the window/hangup", bwsim.Config{ListingDelay: time.Hour, UnlistedNotFound: true}, 0, "unknowable"},
		{"readable within the window/hangup", bwsim.Config{ListingDelay: time.Hour, UnlistedNotFound: true}, 2, "busy"},
		{"never readable/restore", bwsim.Config{VanishFailedLegs: true, TransferFailure: bwsim.TransferFailureRestore}, 0, "restored"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			engine := func(c *orchestrator.Config) { shortWindows(c); c.TombstoneTTL = time.Second }
			if tc.listAt > 0 {
				// A window the reads before the leg is listed fall well
				// within (the default, 5 s): the leg is listed at its
				// second read.
				engine = nil
			}
			h := setup(t, options{sim: tc.cfg, engine: engine})
			h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeBusy})
			a := h.placeCall(t)
			if tc.listAt > 0 {
				var (
					mu    sync.Mutex
					reads int
				)
				h.beforeEach(func(method, path, _ string) bool {
					return method == http.MethodGet && strings.HasPrefix(path, "/users/"+userID+"/calls/c-") &&
						!strings.Contains(path, a.ID) && !strings.HasSuffix(path, "/events")
				}, func() {
					mu.Lock()
					defer mu.Unlock()
					if reads++; reads == tc.listAt {
						h.sim.Settle()
					}
				})
			}
			req := announcedReq(a, target)
			req.ConsultTimeout = time.Minute
			tr := h.end(t, h.start(t, req).ID)
			tr = h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
			h.idle(t)
			aEnded := mustCall(t, h, a.ID).Ended()
			if want := tc.want != "restored"; aEnded != want {
				t.Fatalf("setup: the caller's call ended: %t, want %t", aEnded, want)
			}
			o := tr.Outcome
			switch tc.want {
			case "unknowable":
				if tr.State != orchestrator.StateFailed || o.Reason == orchestrator.ReasonCallerHungUp || o.Verified || o.CallerRestored ||
					!strings.Contains(o.Detail, "cannot be verified") {
					t.Fatalf("the platform ended the caller's call for a busy target, and no reading showed why: state %s outcome %+v, "+
						"want failed, unverified and final, not caller_hung_up", tr.State, o)
				}
				if n := strings.Count(o.Detail, "cannot be verified"); n != 1 {
					t.Errorf("the detail says %d times that the outcome cannot be verified: %s", n, o.Detail)
				}
			case "busy":
				if tr.State != orchestrator.StateFailed || o.Reason != orchestrator.ReasonBusy || !o.Verified || o.CallerRestored {
					t.Fatalf("the leg, readable within the window, says busy: state %s outcome %+v", tr.State, o)
				}
			case "restored":
				if tr.State != orchestrator.StateFailed || !o.Verified || !o.CallerRestored {
					t.Fatalf("the caller's call came back: state %s outcome %+v, want failed, restored, verified", tr.State, o)
				}
			}
			for _, c := range h.sim.Calls() {
				if c.ID != a.ID && !c.Ended() {
					t.Errorf("a leg is left up: %+v", c)
				}
			}
		})
	}
}

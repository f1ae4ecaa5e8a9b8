package netsapiens_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// A transfer of a call whose last transfer ended unverified, still owing
// the call its end state, is refused (409, naming that transfer) until its
// sweeper verifies the outcome; then it starts, and its hold stays. Found
// by review: the second create was accepted as soon as the first transfer
// was terminal, and the first's sweeper, seeing the caller held (by the
// second's hold), took the caller off hold in the middle of the second's
// consult.
func TestCallOwedItsEndStateRefusesANewTransfer(t *testing.T) {
	var hideConsults, failReads atomic.Bool
	wrap := hidingOursFailingReads(&hideConsults, &failReads)
	h, hs := setupHookedWrapped(t, nssim.Config{}, wrap, func(c *orchestrator.Config) {
		c.VerifyTimeout = time.Second
		c.TombstoneTTL = 2 * time.Second
	})
	orig := h.placeCall(t)
	hideConsults.Store(true)

	var firstID atomic.Value
	firstID.Store("")
	var once sync.Once
	hs.setHook(func(tr *orchestrator.Transfer) {
		if tr.ID != firstID.Load().(string) {
			return
		}
		switch {
		case tr.State == orchestrator.StateRecovering:
			failReads.Store(true) // reads fail while writes succeed
		case tr.State.Terminal():
			once.Do(func() {
				failReads.Store(false)
				hideConsults.Store(false)
			})
		}
	})
	// The first transfer's consult never shows: it gives the caller back,
	// but cannot verify it (reads fail): unverified, with an obligation.
	a := h.start(t, orchestrator.CompletionAuto, 30*time.Second)
	firstID.Store(a.ID)
	a = h.end(t, a.ID)
	if a.Cleanup == nil || a.Outcome.Verified {
		t.Fatalf("the first transfer ended %s %+v without an open obligation; the scenario did not arise", a.State, a.Outcome)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.sim.WaitApplied(ctx); err != nil {
		t.Fatal(err)
	}
	if user, held := callerWith(t, h, orig); user != "1000" || held {
		t.Fatalf("precondition: the caller should be back with the agent, is with %q held %v", user, held)
	}

	// The agent starts a second transfer of the same call while the first
	// still owes it: refused, naming the first.
	req := orchestrator.Request{Provider: netsapiens.Name, Call: orchestrator.CallRef{Domain: domain, User: "1000"}, Target: "1020",
		Completion: orchestrator.CompletionManual, ConsultTimeout: 60 * time.Second}
	h.sim.SetBehaviour(domain, "1020", nssim.Behaviour{Mode: nssim.ModeManual})
	_, err := h.eng.Start(context.Background(), req, orchestrator.StartOptions{})
	var active *orchestrator.ActiveTransferError
	if !errors.As(err, &active) || active.ID != a.ID || !active.CleaningUp || orchestrator.KindOf(err) != orchestrator.KindConflict {
		t.Fatalf("a transfer of the call while %s owes it its end state: %v, want a conflict naming it", a.ID, err)
	}
	// Once the sweeper has verified the first outcome, the call is free,
	// and nothing of the first transfer touches the second's hold.
	h.waitSaved(t, a.ID, func(x *orchestrator.Transfer) bool { return x.Cleanup == nil })
	b, err := h.eng.Start(context.Background(), req, orchestrator.StartOptions{})
	if err != nil {
		t.Fatalf("a transfer of the call once the first outcome was verified: %v", err)
	}
	if bw := h.wait(t, b.ID, func(x *orchestrator.Transfer) bool { return x.State == orchestrator.StateConsulting }); bw.State != orchestrator.StateConsulting {
		t.Fatalf("the second transfer: %s, want consulting", bw.State)
	}
	if user, held := callerWith(t, h, orig); !held {
		t.Fatalf("the second transfer is consulting, but the PBX shows the caller not held (with %q)", user)
	}
	if _, err := h.eng.Cancel(context.Background(), b.ID); err != nil {
		t.Fatal(err)
	}
	h.end(t, b.ID)
}

// hidingOursFailingReads wraps nssim's API: while *hide, listings leave
// out every call of ours (a new call listed late, the chaos knob
// ListingDelay made certain); while *fail, every read fails and every
// write goes through.
func hidingOursFailingReads(hide, fail *atomic.Bool) func(*nssim.Sim, http.Handler) http.Handler {
	return func(_ *nssim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet {
				api.ServeHTTP(w, r)
				return
			}
			if fail.Load() {
				http.Error(w, `{"code":503,"message":"replica unavailable"}`, http.StatusServiceUnavailable)
				return
			}
			if !hide.Load() || !strings.HasSuffix(r.URL.Path, "/calls") {
				api.ServeHTTP(w, r)
				return
			}
			filterListing(w, r, api, func(rows []map[string]any) []map[string]any {
				kept := rows[:0]
				for _, row := range rows {
					ours := false
					for _, v := range row {
						if s, ok := v.(string); ok && strings.HasPrefix(s, "transferd-") {
							ours = true
						}
					}
					if !ours {
						kept = append(kept, row)
					}
				}
				return kept
			})
		})
	}
}

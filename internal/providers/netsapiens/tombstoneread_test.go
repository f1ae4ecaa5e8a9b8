package netsapiens_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
	"github.com/transferd/transferd/internal/store/memory"
)

// A transfer cancelled right after its dial, on a PBX whose listings look
// whole and leave the consult out: it pages by a size of its own (3),
// below the limit transferd asks for (100), so that a first page of 3
// rows is the end of the listing as far as a client can tell, and the
// consult, placed after other calls, is on a later page. The consult's
// reject and DELETE are answered 404 by an API node that does not know
// the call yet (doing nothing), and the target answers. The transfer,
// which never saw its consult, gives the caller back and verifies with a
// tombstone: a late leg of ours is owed a hang-up. The tombstone took the
// listings that did not show the consult for no leg alive, and its watch
// ended with the agent talking to the target of a cancelled transfer
// (storm seed 2931182153342264, case 23, with the storm's list limit lost
// on its way to transferd). Past the visibility window, the consult not
// listed is now read by its call-id: shown up, it is hung up, and the
// watch ends only once it is gone.
func TestALateConsultAListingLeavesOutIsHungUpByTheTombstone(t *testing.T) {
	var lagged atomic.Int32
	wrap := func(sim *nssim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodDelete && strings.Contains(r.URL.Path, "/calls/transferd-") && lagged.Load() < 2 {
				if lagged.Add(1) == 1 {
					// The target answers as the hang-up goes out.
					if err := sim.Answer(domain, "1010"); err != nil {
						t.Error(err)
					}
				}
				writeError(w, http.StatusNotFound, "Call not found")
				return
			}
			api.ServeHTTP(w, r)
		})
	}
	sim, srv := newSimServer(t, nssim.Config{ListPageSize: 3, ListParams: nssim.ListParamsStartOnly}, wrap)
	store := orchestratortest.NewSaved(memory.New())
	h := newHarnessWith(t, sim, srv, store, store, "", netsapiens.Config{}, func(c *orchestrator.Config) {
		c.VerifyTimeout, c.TombstoneTTL = 300*time.Millisecond, time.Second
	})
	orig := h.placeCall(t) // first: on the first page, which the locate reads
	others := placeOthers(t, sim, 4)
	h.sim.SetBehaviour(domain, "1010", nssim.Behaviour{Mode: nssim.ModeManual})
	tr := h.start(t, orchestrator.CompletionAuto, time.Minute)
	h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return !x.Sent.Dial.IsZero() })
	if _, err := h.eng.Cancel(context.Background(), tr.ID); err != nil {
		t.Fatal(err)
	}
	if got := h.end(t, tr.ID); got.State != orchestrator.StateCancelled || !got.Outcome.CallerRestored {
		t.Fatalf("transfer %s %+v, want cancelled with the caller restored", got.State, got.Outcome)
	}
	if lagged.Load() < 2 {
		t.Fatalf("the consult's hang-up was answered 404 %d times, want 2: the test did not reach its case; requests %q",
			lagged.Load(), commands(sim.Requests()))
	}
	// Once the tombstone's watch has ended, nothing hangs the consult up.
	got := h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Cleanup == nil })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sim.WaitApplied(ctx); err != nil {
		t.Fatal(err)
	}
	if s := consultSession(sim, tr.ID); s != nil {
		t.Fatalf("the tombstone's watch ended (outcome %+v) with the consult up: %+v; requests %q",
			got.Outcome, *s, commands(sim.Requests()))
	}
	others()
	if user, held := callerWith(t, h, orig); user != "1000" || held {
		t.Errorf("the caller is with %q, held %v: want back with the agent", user, held)
	}
}

// consultSession returns the live session carrying transfer trID's
// consult call-id, or nil.
func consultSession(sim *nssim.Sim, trID string) *nssim.ActiveCall {
	consult := netsapiens.ConsultCallID(trID)
	for _, s := range sim.Sessions(domain) {
		if s.OrigCallID == consult || s.ByCallID == consult {
			return &s
		}
	}
	return nil
}

// writeError answers status with an ErrorResponse body, as nssim does.
func writeError(w http.ResponseWriter, status int, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, `{"code":%d,"message":%q}`, status, message)
}

// The other side of reading a consult by its call-id after its hang-up:
// a PBX that answers a read of an ended call 200 with no row (not 404).
// Such a read tells nothing; past the visibility window the listing that
// does not show the consult stands, as it did before the consult was read
// after its hang-up, and the transfer given back is verified. Taken for
// unknown, every transfer given back on such a PBX stayed unverified.
func TestAConsultReadAsNothingAfterItsHangupLeavesTheListingStanding(t *testing.T) {
	var reads atomic.Int32
	wrap := func(_ *nssim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/calls/transferd-") {
				reads.Add(1)
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`[]`))
				return
			}
			api.ServeHTTP(w, r)
		})
	}
	h := setupWrapped(t, nssim.Config{}, wrap, func(c *orchestrator.Config) { c.VerifyTimeout = 5 * time.Second })
	h.placeCall(t)
	h.sim.SetBehaviour(domain, "1010", nssim.Behaviour{Mode: nssim.ModeManual})
	tr := h.start(t, orchestrator.CompletionManual, time.Minute)
	h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Seen.Consult })
	if _, err := h.eng.Cancel(context.Background(), tr.ID); err != nil {
		t.Fatal(err)
	}
	got := h.end(t, tr.ID)
	if got.State != orchestrator.StateCancelled || !got.Outcome.Verified || !got.Outcome.CallerRestored {
		t.Fatalf("transfer %s %+v, want cancelled, the caller restored, verified", got.State, got.Outcome)
	}
	if reads.Load() == 0 {
		t.Fatal("the consult was never read by its call-id: the test did not reach its case")
	}
}
